using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Records;

namespace RlaifOnnx.Stages;

/// <summary>
/// The preference model's training set (paper §4.1: the PM is trained on AI-labelled harmlessness
/// comparisons mixed with human-labelled helpfulness comparisons). Takes the label stage's
/// comparisons.jsonl and a human pairs file (any format the label stage reads, with a preference), draws
/// from each so the AI share is <see cref="Config.AiFraction"/>, shuffles with the seed and writes
/// pm_mix.jsonl atomically.
/// </summary>
public static class PreferenceMix
{
    public const string OutputFile = "pm_mix.jsonl";

    /// <summary>Configuration of the mixing step.</summary>
    public sealed record Config : IValidatableConfig
    {
        /// <summary>AI-labelled comparisons: the label stage's comparisons.jsonl.</summary>
        [ConfigPath] public required string AiComparisons { get; init; }
        /// <summary>Human-labelled comparisons: prompt/chosen/rejected, hh-rlhf transcripts, or response_a/response_b with preferred (null: AI comparisons only, ai_fraction 1).</summary>
        [ConfigPath] public string? HumanComparisons { get; init; }
        /// <summary>
        /// A checks file (one rule-based truth per prompt id, as `rlaif sandbox world` writes): each AI comparison's
        /// soft label is replaced by the checker's binary verdict — 1 when response_a is truly better, 0 when worse —
        /// and 1/2 when the truth ranks them equal (a forced choice between equals). The stand-in for a human labeller's "better"/"worse"
        /// on the same samples (the RLHF arm beside RLAIF). Null: the AI labels as they are.
        /// </summary>
        [ConfigPath] public string? LabelsFromChecks { get; init; }
        /// <summary>Share of AI comparisons in the mix, in [0, 1].</summary>
        public double AiFraction { get; init; } = 0.5;
        /// <summary>Comparisons in the mix (null: as many as the inputs allow at that share, without repeating any).</summary>
        public int? Size { get; init; }
        /// <summary>Seed for the draws and the shuffle.</summary>
        public int Seed { get; init; }
        /// <summary>Folder for pm_mix.jsonl.</summary>
        [ConfigPath] public required string OutputDir { get; init; }

        public IEnumerable<ConfigProblem> Problems()
        {
            if (AiFraction is < 0 or > 1) yield return new("ai_fraction", $"must be in [0, 1], got {AiFraction}");
            if (Size is < 1) yield return new("size", $"must be at least 1, got {Size}");
            if (HumanComparisons is null && AiFraction < 1) yield return new("ai_fraction", $"is {AiFraction} but there are no human_comparisons to make up the rest; give human_comparisons or set ai_fraction: 1");
        }
    }

    /// <summary>How many of each to take: (ai, human). Pure, so the proportions can be tested with numbers.</summary>
    public static (int Ai, int Human) Counts(int aiAvailable, int humanAvailable, double aiFraction, int? size, string source)
    {
        int total;
        if (size is { } n) total = n;
        else if (aiFraction >= 1) total = aiAvailable;
        else if (aiFraction <= 0) total = humanAvailable;
        else total = (int)Math.Floor(Math.Min(aiAvailable / aiFraction, humanAvailable / (1 - aiFraction)) + 1e-9);
        var ai = (int)Math.Round(total * aiFraction, MidpointRounding.AwayFromZero);
        var human = total - ai;
        if (ai > aiAvailable) throw UserError.At(source, null, "size", $"needs {ai} AI comparisons but ai_comparisons has {aiAvailable}");
        if (human > humanAvailable) throw UserError.At(source, null, "size", $"needs {human} human comparisons but human_comparisons has {humanAvailable}");
        return (ai, human);
    }

    public static string Run(Config config, string source = "mix config")
    {
        foreach (var problem in config.Problems()) throw UserError.At(source, null, problem.Key, problem.Problem);
        var checks = config.LabelsFromChecks is { } checksPath ? ResponseChecker.ReadFile(checksPath, source, "labels_from_checks").ToDictionary(c => c.Id) : null;
        var ai = new List<MixedComparison>();
        foreach (var (line, c) in Jsonl.Read<ComparisonRecord>(config.AiComparisons).Select(l => (l.LineNumber, l.Value)))
        {
            if (checks is null) { ai.Add(new MixedComparison($"ai/{c.Id}", "ai", c.Messages, c.ResponseA, c.ResponseB, c.PA)); continue; }
            if (!checks.TryGetValue(c.Id, out var check)) throw UserError.At(config.AiComparisons, line, "id", $"no check for comparison '{c.Id}' in {config.LabelsFromChecks}");
            int a = ResponseChecker.Goodness(ResponseChecker.Judge(check, c.ResponseA)), b = ResponseChecker.Goodness(ResponseChecker.Judge(check, c.ResponseB));
            // A tie is a labeller forced to pick between two equally good answers: a coin flip, 1/2 in expectation.
            ai.Add(new MixedComparison($"checker/{c.Id}", "checker", c.Messages, c.ResponseA, c.ResponseB, a > b ? 1.0 : a < b ? 0.0 : 0.5));
        }
        var human = new List<MixedComparison>();
        foreach (var p in config.HumanComparisons is null ? [] : PromptSources.ReadPairs(config.HumanComparisons, config.Seed))
        {
            if (p.HumanChoseA is not { } choseA)
                throw UserError.At(config.HumanComparisons!, null, "preferred", $"comparison '{p.Id}' has no human preference");
            human.Add(new MixedComparison($"human/{p.Id}", "human", p.Context, p.ResponseA, p.ResponseB, choseA ? 1.0 : 0.0));
        }

        var (aiCount, humanCount) = Counts(ai.Count, human.Count, config.AiFraction, config.Size, source);
        var rng = new Random(config.Seed);
        var mix = Draw(ai, aiCount, rng).Concat(Draw(human, humanCount, rng)).ToArray();
        rng.Shuffle(mix);
        var path = Path.Combine(config.OutputDir, OutputFile);
        Jsonl.Write(path, mix);
        return path;
    }

    /// <summary>n items drawn without repetition (a seeded shuffle, then the first n); the SFT stage draws its mix the same way.</summary>
    internal static IEnumerable<T> Draw<T>(List<T> items, int n, Random rng)
    {
        var copy = items.ToArray();
        rng.Shuffle(copy);
        return copy.Take(n);
    }
}
