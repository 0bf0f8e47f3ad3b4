using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Training;


namespace RlaifOnnx.Tests.Configuration;

/// <summary>Which revisions go into the SFT export.</summary>
public enum ExportRounds { LastOnly, EveryRound }

/// <summary>Settings of a test stage, standing in for a real stage config.</summary>
public sealed record DemoStageConfig
{
    /// <summary>
    /// The prompts file: JSONL (<c>prompt</c> or <c>messages</c>), plain text or hh-rlhf transcripts.
    /// </summary>
    [ConfigPath] public required string Prompts { get; init; }

    /// <summary>Critique→revision rounds per prompt (the paper uses 4).</summary>
    public int Rounds { get; init; } = 4;

    /// <summary>Seed of every random draw in the stage.</summary>
    public long Seed { get; init; } = 1234;

    /// <summary>Peak learning rate of <see cref="DemoSampling"/>-free training.</summary>
    public double LearningRate { get; init; } = 1e-4;

    /// <summary>Score both orders of (A) and (B) and average them.</summary>
    public bool BothOrders { get; init; } = true;

    /// <summary>Which revisions the SFT export holds.</summary>
    public ExportRounds Export { get; init; } = ExportRounds.LastOnly;

    /// <summary>The constitution file, or "default" for the built-in one.</summary>
    [ConfigPath("default")] public string Constitution { get; init; } = "default";

    /// <summary>A model folder or an OpenAI-compatible URL; none means the stage's default.</summary>
    [ConfigPath] public string? Model { get; init; }

    /// <summary>How the helpful model samples.</summary>
    public DemoSampling Sampling { get; init; } = new();

    /// <summary>Principle ids to draw from; empty means all.</summary>
    public List<string> Principles { get; init; } = [];

    /// <summary>Share of each source in the mixed training set.</summary>
    public Dictionary<string, double> Mix { get; init; } = [];

    /// <summary>Extra inputs, each a file with a weight.</summary>
    public List<DemoSource> Sources { get; init; } = [];

    /// <summary>Derived, not a key: only properties with a setter are config keys.</summary>
    public int TotalRounds => Rounds * 2;
}

/// <summary>Sampling settings.</summary>
public sealed record DemoSampling : IValidatableConfig
{
    /// <summary>Softmax temperature; 0 is greedy.</summary>
    public double Temperature { get; init; } = 0.7;

    /// <summary>Most tokens generated per answer.</summary>
    public int MaxNewTokens { get; init; } = 128;

    /// <summary>Nucleus sampling mass.</summary>
    public double? TopP { get; init; }

    public IEnumerable<ConfigProblem> Problems()
    {
        if (Temperature < 0) yield return new("temperature", $"must be ≥ 0, got {Temperature}");
    }
}

/// <summary>One extra input.</summary>
public sealed record DemoSource
{
    /// <summary>The file.</summary>
    [ConfigPath] public required string Path { get; init; }

    /// <summary>Relative weight.</summary>
    public double Weight { get; init; } = 1;
}

/// <summary>A stage written the way stages are: a static class with its Config record nested inside.</summary>
public static class DemoNestedStage
{
    /// <summary>Settings of the nested stage.</summary>
    public sealed record Config
    {
        /// <summary>Where the stage writes its files.</summary>
        [ConfigPath] public required string OutputDir { get; init; }

        /// <summary>Items per batch.</summary>
        public int BatchSize { get; init; } = 8;
    }
}

public class StageConfigTests
{
    const string Source = "stage.yaml";

    static DemoStageConfig Parse(string yaml) => StageConfig.Parse<DemoStageConfig>(yaml, Source);

    static string ErrorOf(string yaml) => Assert.Throws<UserError>(() => Parse(yaml)).Message;

    [Fact]
    public void FullConfig_Binds()
    {
        var config = Parse("""
            prompts: data/prompts.jsonl
            rounds: 2
            seed: 10_000
            learning_rate: 3e-5
            both_orders: false
            export: every_round
            model: http://127.0.0.1:8080/v1
            sampling:
              temperature: 0
              max_new_tokens: 64
              top_p: 0.9
            principles: [harmful, "evasive"]
            mix:
              harmless: 0.5
              helpful: 0.5
            sources:
              - path: a.jsonl
              - path: b.jsonl
                weight: 2.5
            """);
        Assert.Equal("data/prompts.jsonl", config.Prompts);
        Assert.Equal(2, config.Rounds);
        Assert.Equal(10_000, config.Seed);
        Assert.Equal(3e-5, config.LearningRate);
        Assert.False(config.BothOrders);
        Assert.Equal(ExportRounds.EveryRound, config.Export);
        Assert.Equal("http://127.0.0.1:8080/v1", config.Model);
        Assert.Equal(new DemoSampling { Temperature = 0, MaxNewTokens = 64, TopP = 0.9 }, config.Sampling);
        Assert.Equal(["harmful", "evasive"], config.Principles);
        Assert.Equal(0.5, config.Mix["helpful"]);
        Assert.Equal([new DemoSource { Path = "a.jsonl" }, new DemoSource { Path = "b.jsonl", Weight = 2.5 }], config.Sources);
    }

    [Fact]
    public void OmittedKeys_KeepTheirDefaults()
    {
        var config = Parse("prompts: p.txt\n");
        Assert.Equal(4, config.Rounds);
        Assert.Equal(0.7, config.Sampling.Temperature);
        Assert.Null(config.Sampling.TopP);
        Assert.Null(config.Model);
        Assert.Empty(config.Principles);
    }

    [Fact]
    public void UnknownKey_NamesLineAndNearestKey()
    {
        Assert.Equal("stage.yaml:2: roundz: unknown key; did you mean 'rounds'?", ErrorOf("prompts: p\nroundz: 3\n"));
        // Another spelling of a real key is suggested too.
        Assert.Equal("stage.yaml:2: learningRate: unknown key; did you mean 'learning_rate'?", ErrorOf("prompts: p\nlearningRate: 3\n"));
    }

    [Fact]
    public void UnknownKeyInNestedRecord_SuggestsFromThatRecord()
    {
        var message = ErrorOf("prompts: p\nsampling:\n  max_new_tokens: 5\n  tempreature: 0.5\n");
        Assert.Equal("stage.yaml:4: sampling.tempreature: unknown key; did you mean 'temperature'?", message);
        var inList = ErrorOf("prompts: p\nsources:\n  - path: a\n    wieght: 2\n");
        Assert.Equal("stage.yaml:4: sources[0].wieght: unknown key; did you mean 'weight'?", inList);
    }

    [Fact]
    public void UnknownKeyWithNothingClose_ListsTheValidKeys()
    {
        var message = ErrorOf("prompts: p\nsampling:\n  zzzzzzzz: 1\n");
        Assert.Equal("stage.yaml:3: sampling.zzzzzzzz: unknown key; valid keys: temperature, max_new_tokens, top_p", message);
    }

    [Fact]
    public void WrongScalarType_NamesKeyAndValue()
    {
        Assert.Equal("stage.yaml:2: rounds: expected an integer, got 'abc'", ErrorOf("prompts: p\nrounds: abc\n"));
        Assert.Equal("stage.yaml:2: rounds: expected an integer, got '2.5'", ErrorOf("prompts: p\nrounds: 2.5\n"));
        Assert.Equal("stage.yaml:3: sampling.temperature: expected a number, got 'hot'", ErrorOf("prompts: p\nsampling:\n  temperature: hot\n"));
        Assert.Equal("stage.yaml:2: both_orders: expected true or false, got 'maybe'", ErrorOf("prompts: p\nboth_orders: maybe\n"));
        Assert.Equal("stage.yaml:2: sampling: expected a mapping (key: value lines), got '3'", ErrorOf("prompts: p\nsampling: 3\n"));
        Assert.Equal("stage.yaml:2: principles: expected a list, got 'harmful'", ErrorOf("prompts: p\nprinciples: harmful\n"));
        Assert.Equal("stage.yaml:2: rounds: expected an integer between -2147483648 and 2147483647, got '99999999999'", ErrorOf("prompts: p\nrounds: 99999999999\n"));
    }

    [Fact]
    public void BadEnumValue_ListsTheValidNames()
    {
        Assert.Equal("stage.yaml:2: export: expected one of last_only, every_round; got 'all'", ErrorOf("prompts: p\nexport: all\n"));
        // Other spellings of a valid name are accepted.
        Assert.Equal(ExportRounds.EveryRound, Parse("prompts: p\nexport: EveryRound\n").Export);
    }

    [Fact]
    public void MissingRequired_NamesTheKey()
    {
        Assert.Equal("stage.yaml: prompts: is required", ErrorOf("rounds: 2\n"));
        Assert.Equal("stage.yaml: prompts: is required", ErrorOf(""));
        Assert.Equal("stage.yaml: sources[1].path: is required", ErrorOf("prompts: p\nsources:\n  - path: a\n  - weight: 2\n"));
    }

    [Fact]
    public void NullForNonNullable_IsAnError_ButNullableAcceptsIt()
    {
        Assert.Equal("stage.yaml:1: prompts: expected a string, got nothing", ErrorOf("prompts:\n"));
        Assert.Equal("stage.yaml:2: rounds: expected an integer, got nothing", ErrorOf("prompts: p\nrounds: ~\n"));
        Assert.Null(Parse("prompts: p\nmodel: null\n").Model);
    }

    [Fact]
    public void DuplicateKey_IsAnError()
    {
        var message = ErrorOf("prompts: p\nrounds: 1\nrounds: 2\n");
        Assert.StartsWith("stage.yaml:", message);
        Assert.Contains("rounds", message);
    }

    [Fact]
    public void InvalidYaml_NamesTheLine()
    {
        var message = ErrorOf("prompts: p\nsampling:\n  temperature: [1, 2\nrounds: 3\n");
        Assert.Matches(@"^stage\.yaml:\d+: invalid YAML: ", message);
        Assert.DoesNotContain("\n", message);
    }

    [Fact]
    public void RecordChecks_AreReportedAtTheKeyLine()
    {
        Assert.Equal("stage.yaml:4: sampling.temperature: must be ≥ 0, got -1", ErrorOf("prompts: p\nsampling:\n  max_new_tokens: 5\n  temperature: -1\n"));
    }

    [Fact]
    public void Load_ResolvesRelativePathsAgainstTheConfigFolder()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("configs"));
        var yamlPath = dir.File("configs/stage.yaml");
        File.WriteAllText(yamlPath, "prompts: ../data/prompts.jsonl\nconstitution: default\nmodel: http://host:1/v1\nsources:\n  - path: /abs/x.jsonl\n  - path: y.jsonl\n");
        var config = StageConfig.Load<DemoStageConfig>(yamlPath);
        Assert.Equal(dir.File("data/prompts.jsonl"), config.Prompts);
        Assert.Equal("default", config.Constitution);
        Assert.Equal("http://host:1/v1", config.Model);
        Assert.Equal("/abs/x.jsonl", config.Sources[0].Path);
        Assert.Equal(dir.File("configs/y.jsonl"), config.Sources[1].Path);
        // A keyword is kept; any other value of the same key is a path.
        File.WriteAllText(yamlPath, "prompts: p\nconstitution: mine.yaml\n");
        Assert.Equal(dir.File("configs/mine.yaml"), StageConfig.Load<DemoStageConfig>(yamlPath).Constitution);
    }

    [Fact]
    public void Load_MissingFile_IsAUserError()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<UserError>(() => StageConfig.Load<DemoStageConfig>(dir.File("none.yaml")));
        Assert.EndsWith("none.yaml: config file not found", e.Message);
    }

    [Fact]
    public void ResolvePath_Helper()
    {
        Assert.Equal("/runs/x/data.jsonl", StageConfig.ResolvePath("/runs/x/config.yaml", "data.jsonl"));
        Assert.Equal("/runs/data.jsonl", StageConfig.ResolvePath("/runs/x/config.yaml", "../data.jsonl"));
        Assert.Equal("/elsewhere/d.jsonl", StageConfig.ResolvePath("/runs/x/config.yaml", "/elsewhere/d.jsonl"));
        Assert.Equal("https://api.example/v1", StageConfig.ResolvePath("/runs/x/config.yaml", "https://api.example/v1"));
        Assert.Equal("builtin:red-team-train", StageConfig.ResolvePath("/runs/x/config.yaml", "builtin:red-team-train"));
        Assert.Equal("/runs/x/sub/a:b.jsonl", StageConfig.ResolvePath("/runs/x/config.yaml", "sub/a:b.jsonl"));
    }

    [Fact]
    public void Describe_ListsKeysTypesDefaultsAndDocComments()
    {
        var text = StageConfig.Describe<DemoStageConfig>();
        Assert.Contains("# Settings of a test stage, standing in for a real stage config.", text);
        Assert.Contains("# The prompts file: JSONL (prompt or messages), plain text or hh-rlhf transcripts.\nprompts:  # path, required", text);
        Assert.Contains("# Critique→revision rounds per prompt (the paper uses 4).\nrounds: 4  # integer", text);
        Assert.Contains("learning_rate: 0.0001  # number", text);
        Assert.Contains("# Peak learning rate of DemoSampling-free training.", text);
        Assert.Contains("export: last_only  # one of: last_only, every_round", text);
        Assert.Contains("model:  # path, optional", text);
        Assert.Contains("sampling:  # section\n  # Softmax temperature; 0 is greedy.\n  temperature: 0.7  # number", text);
        Assert.Contains("  top_p:  # number, optional", text);
        Assert.Contains("principles: []  # list of string", text);
        Assert.DoesNotContain("total_rounds", text);
    }

    [Fact]
    public void Describe_NestedConfigType_FindsItsDocComments()
    {
        var text = StageConfig.Describe<DemoNestedStage.Config>();
        Assert.StartsWith("# Settings of the nested stage.\n\n# Where the stage writes its files.\noutput_dir:  # path, required\n", text);
        Assert.Contains("# Items per batch.\nbatch_size: 8  # integer", text);
    }

    [Fact]
    public void Describe_IsItselfAValidTemplate()
    {
        // The template leaves required keys empty; filling them in gives the defaults.
        var template = StageConfig.Describe<DemoStageConfig>().Replace("prompts:  # path, required", "prompts: p.jsonl");
        var config = Parse(template);
        Assert.Equal("p.jsonl", config.Prompts);
        Assert.Equal(4, config.Rounds);
        Assert.Equal(new DemoSampling(), config.Sampling);
    }

    [Fact]
    public void ToYaml_RoundTrips_IncludingStringsThatNeedQuotes()
    {
        var config = new DemoStageConfig
        {
            Prompts = "/data/my prompts: v2.jsonl",
            Rounds = 3,
            Seed = 5_000_000_000,
            LearningRate = 1e-7,
            Export = ExportRounds.EveryRound,
            Model = "null",
            Sampling = new DemoSampling { Temperature = 0, TopP = 0.95 },
            Principles = ["true", "123", "say \"no\"\nplease", "plain-name"],
            Mix = new() { ["a b"] = 0.25, ["c"] = 0.75 },
            Sources = [new DemoSource { Path = "x.jsonl", Weight = 2 }, new DemoSource { Path = "#y" }],
        };
        var yaml = StageConfig.ToYaml(config);
        var back = Parse(yaml);
        Assert.Equal(StageConfig.ToYaml(back), yaml);
        Assert.Equal(config.Prompts, back.Prompts);
        Assert.Equal(config.Seed, back.Seed);
        Assert.Equal(config.LearningRate, back.LearningRate);
        Assert.Equal("null", back.Model);
        Assert.Equal(config.Principles, back.Principles);
        Assert.Equal(config.Mix, back.Mix);
        Assert.Equal(config.Sources, back.Sources);
        Assert.Equal(config.Sampling, back.Sampling);
        Assert.Contains("rounds: 3\n", yaml);
        Assert.Contains("export: every_round\n", yaml);
        Assert.Contains("  - path: x.jsonl\n    weight: 2\n", yaml);
    }

    [Fact]
    public void EditDistance_LiteralValues()
    {
        Assert.Equal(0, StageConfig.EditDistance("rounds", "rounds"));
        Assert.Equal(1, StageConfig.EditDistance("roundz", "rounds"));
        Assert.Equal(2, StageConfig.EditDistance("tempreature", "temperature"));
        Assert.Equal(3, StageConfig.EditDistance("kitten", "sitting"));
        Assert.Equal(5, StageConfig.EditDistance("", "seeds"));
    }
}
