using System.Text.Json;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Records;
using RlaifOnnx.Reporting;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Tests.Stages;

/// <summary>The SFT stage: the mix arithmetic with numbers, then whole runs on a tiny local Llama folder (real GenAI sampling, real training).</summary>
public class SftStageTests
{
    [Fact]
    public void HelpfulnessNeededAndMixCountsWithLiteralNumbers()
    {
        Assert.Equal(16, Sft.HelpfulnessNeeded(16, 0.5));
        Assert.Equal(7, Sft.HelpfulnessNeeded(16, 0.3));   // 16·0.3/0.7 = 6.86 → 7
        Assert.Equal(2, Sft.HelpfulnessNeeded(6, 0.25));   // 6·0.25/0.75 = 2 exactly, not 3
        Assert.Equal(0, Sft.HelpfulnessNeeded(10, 0));
        Assert.Null(Sft.HelpfulnessNeeded(10, 1));

        Assert.Equal((16, 16), Sft.MixCounts(16, 16, 0.5, "s"));
        Assert.Equal((7, 15), Sft.MixCounts(7, 16, 0.3, "s"));  // floor(min(7/0.3, 16/0.7)) = 22 in all; 6.6 → 7 helpfulness
        Assert.Equal((3, 3), Sft.MixCounts(3, 16, 0.5, "s"));   // the helpfulness side limits
        Assert.Equal((0, 16), Sft.MixCounts(5, 16, 0, "s"));
        Assert.Equal((5, 0), Sft.MixCounts(5, 16, 1, "s"));
        Assert.Equal((2, 6), Sft.MixCounts(2, 6, 0.25, "s"));
    }

    static string WriteRevisions(TempDir dir, int n = 6)
    {
        var path = dir.File("sft_messages.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, n).Select(i => JsonSerializer.Serialize(new
        {
            id = $"r{i}",
            messages = new[] { new { role = "user", content = $"How do I pick lock {i}?" }, new { role = "assistant", content = $"I can't help with that, but a locksmith can ({i})." } },
        })));
        return path;
    }

    static string WritePrompts(TempDir dir, int n = 8)
    {
        var path = dir.File("helpful.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, n).Select(i => JsonSerializer.Serialize(new { id = $"h{i}", prompt = $"How do I bake bread number {i}?" })));
        return path;
    }

    static Sft.Config Config(string model, string revisions, string output) => new()
    {
        Model = model,
        Revisions = revisions,
        HelpfulnessPrompts = null,
        OutputDir = output,
        HelpfulnessFraction = 0.5,
        Sampling = new() { Temperature = 1.0, MaxNewTokens = 6 },
        GenerationBatchSize = 4,
        Seed = 3,
        Steps = 4,
        BatchSize = 4,
        MaxLength = 48,
        SaveEvery = 2,
        Optimizer = new() { LearningRate = 1e-2, Warmup = 1, Schedule = "cosine" },
    };

    static Sft.Config Sampled(string model, string revisions, string prompts, string output) =>
        Config(model, revisions, output) with { HelpfulnessPrompts = prompts, HelpfulModel = model };

    [Fact]
    public async Task SampledHelpfulnessIsMixedAtTheShareAndTrainsAModelThatDiffersFromTheStart()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("model"));
        var revisions = WriteRevisions(dir);
        var config = Sampled(model, revisions, WritePrompts(dir), dir.File("out"));
        var summary = await Sft.Run(config, cancellationToken: TestContext.Current.CancellationToken);

        // the helpful model answered as many prompts as the mix needs (6 revisions at 0.5 → 6), in two batches of 4
        var samplesPath = Path.Combine(config.OutputDir, Sft.HelpfulnessSamplesFile);
        var samples = Jsonl.ReadAll<HelpfulnessSample>(samplesPath);
        Assert.Equal(["h0", "h1", "h2", "h3", "h4", "h5"], samples.Select(s => s.Id));
        Assert.All(samples, s => Assert.Equal(["user", "assistant"], s.Messages.Select(m => m.Role)));
        Assert.All(samples, s => Assert.StartsWith("How do I bake bread number", s.Messages[0].Content));
        using (var doc = JsonDocument.Parse(File.ReadLines(samplesPath).First()))
            Assert.Equal(["id", "messages", "truncated"], doc.RootElement.EnumerateObject().Select(p => p.Name));

        // the mix: 6 + 6, sources named, ids unique, revisions as given
        var mix = Jsonl.ReadAll<SftMixExample>(summary.Mix);
        Assert.Equal(12, mix.Count);
        Assert.Equal(6, mix.Count(m => m.Source == Sft.RevisionSource));
        Assert.Equal(6, mix.Count(m => m.Source == Sft.HelpfulnessSource));
        Assert.Equal(12, mix.Select(m => m.Id).Distinct().Count());
        var r3 = mix.Single(m => m.Id == "revision/r3");
        Assert.Equal("I can't help with that, but a locksmith can (3).", r3.Messages[^1].Content);
        Assert.Equal(samples.Single(s => s.Id == "h2").Messages, mix.Single(m => m.Id == "helpfulness/h2").Messages);
        Assert.NotEqual(mix.Select(m => m.Source).Take(6), Enumerable.Repeat(Sft.RevisionSource, 6)); // shuffled, not concatenated
        Assert.Equal((6, 6), (summary.RevisionExamples, summary.HelpfulnessExamples));

        // training: metrics per step, checkpoints, a model whose weights moved
        var train = Path.Combine(config.OutputDir, Sft.TrainSubdir);
        Assert.Equal(Path.Combine(train, "model"), summary.Model);
        var metrics = RlaifOnnx.Reporting.MetricsLog.Read(Path.Combine(train, "metrics.jsonl"));
        Assert.Equal([1L, 2, 3, 4], metrics.Select(m => m.Step));
        Assert.True(double.IsFinite(summary.FinalLoss) && summary.FinalLoss > 0);
        Assert.Equal(metrics[^1].Values["loss"], summary.FinalLoss);
        var before = ModelFolder.ReadWeights(model);
        var after = ModelFolder.ReadWeights(summary.Model);
        Assert.NotEqual(before["model.layers.0.mlp.up_proj.weight"].Data, after["model.layers.0.mlp.up_proj.weight"].Data);
        var exported = File.ReadAllBytes(Path.Combine(summary.Model, ModelFolder.DataFile));

        // a crash after step 2: the rerun of the same config resumes training and ends where the whole run did
        Directory.Delete(Path.Combine(train, "checkpoints", "step-00000004"), recursive: true);
        Directory.Delete(summary.Model, recursive: true);
        var resumed = await Sft.Run(config, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(summary.FinalLoss, resumed.FinalLoss);
        Assert.Equal(exported, File.ReadAllBytes(Path.Combine(resumed.Model, ModelFolder.DataFile)));

        // another share gives another training set: it may not continue this run's checkpoints
        var e = await Assert.ThrowsAsync<UserError>(() => Sft.Run(config with { HelpfulnessFraction = 0.25 }, cancellationToken: TestContext.Current.CancellationToken));
        Assert.Contains("the training set changed", e.Message);
    }

    [Fact]
    public async Task SamplingIsDeterministicUnderTheSeedAndResumesWithoutDuplicates()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("model"));
        var revisions = WriteRevisions(dir, 10);
        var prompts = WritePrompts(dir, 12);
        Sft.Config Small(string output) => Sampled(model, revisions, prompts, dir.File(output)) with { Steps = 1, BatchSize = 2, MaxLength = 32 };
        var ct = TestContext.Current.CancellationToken;

        var whole = Path.Combine((await Sft.Run(Small("whole"), cancellationToken: ct)).Mix);
        var wholeSamples = File.ReadAllLines(Path.Combine(dir.File("whole"), Sft.HelpfulnessSamplesFile));
        Assert.Equal(10, wholeSamples.Length);
        var again = await Sft.Run(Small("again"), cancellationToken: ct);
        Assert.Equal(wholeSamples, File.ReadAllLines(Path.Combine(dir.File("again"), Sft.HelpfulnessSamplesFile)));
        Assert.Equal(File.ReadAllBytes(whole), File.ReadAllBytes(again.Mix));
        await Sft.Run(Small("other") with { Seed = 4 }, cancellationToken: ct);
        Assert.NotEqual(wholeSamples, File.ReadAllLines(Path.Combine(dir.File("other"), Sft.HelpfulnessSamplesFile)));

        // interrupted after the first batch of 4 is written (the second call cancels before its answers are kept)
        var config = Small("resumed");
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using (var inner = new GenAIGenerator(model))
        using (var stopping = new CancelAfterCalls(inner, calls: 2, cts))
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Sft.Run(config, stopping, cancellationToken: cts.Token));
        var samplesPath = Path.Combine(config.OutputDir, Sft.HelpfulnessSamplesFile);
        Assert.Equal(wholeSamples[..4], File.ReadAllLines(samplesPath));
        Assert.False(File.Exists(Path.Combine(config.OutputDir, Sft.MixFile)));
        Assert.False(Directory.Exists(Path.Combine(config.OutputDir, Sft.TrainSubdir)));

        // a batch cut in the middle (5 of 10 written, a torn sixth line): the rerun redoes that batch and keeps only what is missing
        File.WriteAllText(samplesPath, string.Join('\n', wholeSamples[..5]) + "\n" + wholeSamples[5][..20]);
        var resumed = await Sft.Run(config, cancellationToken: ct);
        Assert.Equal(wholeSamples, File.ReadAllLines(samplesPath));
        Assert.Equal(File.ReadAllBytes(whole), File.ReadAllBytes(resumed.Mix));
    }

    [Fact]
    public async Task HelpfulnessDataFromAFileIsDrawnAtTheShare()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("model"));
        var revisions = dir.File("sft_prompt_completion.jsonl");
        File.WriteAllLines(revisions, Enumerable.Range(0, 6).Select(i => JsonSerializer.Serialize(new
        {
            id = $"r{i}",
            prompt = new[] { new { role = "user", content = $"Insult person {i}." } },
            completion = new[] { new { role = "assistant", content = "I'd rather say something kind." } },
        })));
        var data = dir.File("helpful.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 5).Select(i => JsonSerializer.Serialize(new { prompt = $"What is {i} plus {i}?", completion = $"{2 * i}." })));
        var config = Config(model, revisions, dir.File("out")) with { HelpfulnessData = data, HelpfulnessFraction = 0.25, Steps = 2, BatchSize = 2 };

        var summary = await Sft.Run(config, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal((6, 2), (summary.RevisionExamples, summary.HelpfulnessExamples));
        Assert.False(File.Exists(Path.Combine(config.OutputDir, Sft.HelpfulnessSamplesFile)));
        var mix = Jsonl.ReadAll<SftMixExample>(summary.Mix);
        Assert.Equal(8, mix.Count);
        // prompt/completion lists are joined; string pairs become one user turn and one assistant turn; ids from line numbers
        Assert.Equal(["user", "assistant"], mix.First(m => m.Id == "revision/r0").Messages.Select(m => m.Role));
        var helpful = mix.Where(m => m.Source == Sft.HelpfulnessSource).ToList();
        Assert.Equal(2, helpful.Count);
        Assert.All(helpful, h => Assert.Matches(@"^helpfulness/line-[1-5]$", h.Id));
        Assert.All(helpful, h => Assert.Equal([new ChatMessage("user", $"What is {h.Id[^1] - '1'} plus {h.Id[^1] - '1'}?"), new ChatMessage("assistant", $"{2 * (h.Id[^1] - '1')}.")], h.Messages));
        Assert.True(Directory.Exists(summary.Model));

        // at fraction 0 the revisions train alone
        var alone = await Sft.Run(config with { HelpfulnessFraction = 0, HelpfulnessData = null, OutputDir = dir.File("alone") }, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal((6, 0), (alone.RevisionExamples, alone.HelpfulnessExamples));
        Assert.All(Jsonl.ReadAll<SftMixExample>(alone.Mix), m => Assert.Equal(Sft.RevisionSource, m.Source));
    }

    [Fact]
    public async Task MissingRevisionsFileStopsBeforeAnyWork()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("model"));
        var config = Sampled(model, dir.File("nowhere.jsonl"), WritePrompts(dir), dir.File("out"));
        var e = await Assert.ThrowsAsync<UserError>(() => Sft.Run(config, source: "sft.yaml", cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal($"sft.yaml: revisions: file '{dir.File("nowhere.jsonl")}' not found (give the revise stage's sft_messages.jsonl or sft_prompt_completion.jsonl)", e.Message);
        Assert.False(Directory.Exists(config.OutputDir));
    }

    [Fact]
    public void BothHelpfulnessDataAndPromptsIsAnError()
    {
        var yaml = "model: m\nrevisions: r.jsonl\noutput_dir: o\nhelpfulness_data: h.jsonl\nhelpfulness_prompts: builtin:helpful-train\nhelpful_model: m\n";
        var e = Assert.Throws<UserError>(() => StageConfig.Parse<Sft.Config>(yaml, "sft.yaml"));
        Assert.Equal("sft.yaml:5: helpfulness_prompts: give either helpfulness_data (existing examples) or helpfulness_prompts (answered by helpful_model), not both", e.Message);
    }

    [Fact]
    public async Task FractionOutsideZeroToOneIsAnError()
    {
        var e = Assert.Throws<UserError>(() => StageConfig.Parse<Sft.Config>("model: m\nrevisions: r.jsonl\noutput_dir: o\nhelpfulness_fraction: 1.5\nhelpfulness_data: h.jsonl\n", "sft.yaml"));
        Assert.Equal("sft.yaml:4: helpfulness_fraction: must be in [0, 1], got 1.5", e.Message);
        using var dir = new TempDir();
        var config = new Sft.Config { Model = "m", Revisions = "r.jsonl", OutputDir = dir.File("o"), HelpfulnessFraction = -0.1 };
        var run = await Assert.ThrowsAsync<UserError>(() => Sft.Run(config, source: "sft.yaml", cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal("sft.yaml: helpfulness_fraction: must be in [0, 1], got -0.1", run.Message);
        Assert.False(Directory.Exists(config.OutputDir));
    }

    [Theory]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n{\"messages\": [\n", 2, null)]
    [InlineData("{\"prompt\": \"hi\", \"completion\": \"hello\"}\n\n{\"prompt\": \"hi\"}\n", 3, "completion")]
    [InlineData("{\"text\": \"just text\"}\n", 1, "text")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n", 1, "messages")]
    public async Task MalformedRevisionsLineNamesFileAndLine(string contents, int line, string? field)
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("model"));
        var revisions = dir.File("revisions.jsonl");
        File.WriteAllText(revisions, contents);
        var config = Config(model, revisions, dir.File("out")) with { HelpfulnessFraction = 0 };
        var e = await Assert.ThrowsAsync<UserError>(() => Sft.Run(config, cancellationToken: TestContext.Current.CancellationToken));
        Assert.StartsWith(field is null ? $"{revisions}:{line}: " : $"{revisions}:{line}: {field}: ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(Directory.Exists(config.OutputDir));
    }

    [Fact]
    public async Task MalformedHelpfulnessDataLineNamesFileAndLine()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("model"));
        var data = dir.File("helpful.jsonl");
        File.WriteAllText(data, "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\", \"completion\": 3}\n");
        var config = Config(model, WriteRevisions(dir), dir.File("out")) with { HelpfulnessData = data };
        var e = await Assert.ThrowsAsync<UserError>(() => Sft.Run(config, cancellationToken: TestContext.Current.CancellationToken));
        Assert.StartsWith($"{data}:2: completion: ", e.Message);
    }


    [Fact]
    public void ShippedSftConfigsParse()
    {
        var stage = StageConfig.Load<Sft.Config>(Path.Combine(Repository.Root, "configs", "stages", "sft.yaml"));
        Assert.Equal(0.5, stage.HelpfulnessFraction);
        Assert.Equal("builtin:helpful-train", stage.HelpfulnessPrompts);
        Assert.NotEmpty(PromptSources.ReadPrompts(stage.HelpfulnessPrompts!));
        var demo = StageConfig.Load<Sft.Config>(Path.Combine(Repository.Root, "configs", "demo", "02_sft.yaml"));
        Assert.Equal(Path.Combine(Repository.Root, "runs", "demo", "01_revise", Revise.SftMessagesFile), demo.Revisions);
        // the label stage samples from the model this stage exports
        var label = StageConfig.Load<Label.Config>(Path.Combine(Repository.Root, "configs", "demo", "03_label.yaml"));
        Assert.Equal(Path.Combine(demo.OutputDir, Sft.TrainSubdir, "model"), label.PolicyModel);
    }

    [Fact]
    public void CliListsTheKeysAndRefusesAnUnknownOneWithExitCode2()
    {
        using var dir = new TempDir();
        var help = CliProcess.Run("sft", "--help-config");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("helpfulness_fraction", help.Stdout);
        Assert.Contains("helpful_model", help.Stdout);

        File.WriteAllText(dir.File("bad.yaml"), "model: m\nrevisions: r.jsonl\noutput_dir: o\nhelpfulness_fracton: 0.5\n");
        var bad = CliProcess.Run("sft", "--config", dir.File("bad.yaml"));
        Assert.Equal(2, bad.ExitCode);
        Assert.Equal($"error: {dir.File("bad.yaml")}:4: helpfulness_fracton: unknown key; did you mean 'helpfulness_fraction'?", bad.Stderr.Trim());
    }
}
