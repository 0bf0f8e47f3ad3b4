using System.Diagnostics;
using System.Text.Json;
using RlaifOnnx.Constitution;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Stages;
using RlaifOnnx.Records;

namespace RlaifOnnx.Tests.Stages;

/// <summary>The label stage on tiny local Llama model folders (real ONNX Runtime scoring, real GenAI generation).</summary>
public class LabelStageTests
{
    static string WritePairs(TempDir dir, int n = 6)
    {
        var path = dir.File("pairs.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, n).Select(i => JsonSerializer.Serialize(new
        {
            id = $"c{i}",
            prompt = $"Can you help me with task {i}?",
            response_a = $"Yes, here is how to do task {i}.",
            response_b = "No.",
            preferred = i % 3 == 0 ? "b" : "a",
        })));
        return path;
    }

    static Label.Config Config(string feedback, string output) => new()
    {
        FeedbackModel = feedback,
        OutputDir = output,
        Principles = 3,
        FewShot = 1,
        BatchSize = 4,
        Seed = 3,
    };

    [Fact]
    public async Task LabelsExistingPairsWithEveryFieldAndMetrics()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("feedback"));
        var config = Config(model, dir.File("out")) with { Pairs = WritePairs(dir) };
        var path = await Label.Run(config, TestContext.Current.CancellationToken);

        var records = Jsonl.ReadAll<ComparisonRecord>(path);
        Assert.Equal(6, records.Count);
        var constitution = ConstitutionSet.Default;
        foreach (var r in records)
        {
            Assert.InRange(r.PA, 0.0, 1.0);
            Assert.Equal(3, r.PrincipleIds.Count);
            Assert.Equal(3, r.PrincipleIds.Distinct().Count());
            Assert.Equal(r.PrincipleIds, r.PerPrinciple.Select(p => p.PrincipleId));
            foreach (var p in r.PerPrinciple)
            {
                constitution.Feedback(p.PrincipleId, "test");
                Assert.NotNull(p.PAOrderBa);
                Assert.Equal((p.PAOrderAb + p.PAOrderBa!.Value) / 2, p.PA, 12);
            }
            Assert.Equal(r.PerPrinciple.Average(p => p.PA), r.PA, 12);
            Assert.NotNull(r.HumanPreferred);
            Assert.False(r.Truncated);
        }
        // the tiny random model is not indifferent: the labels are not all exactly one half
        Assert.Contains(records, r => Math.Abs(r.PA - 0.5) > 1e-6);
        using (var doc = JsonDocument.Parse(File.ReadLines(path).First()))
        {
            var keys = doc.RootElement.EnumerateObject().Select(p => p.Name).ToHashSet();
            Assert.Superset(new HashSet<string> { "id", "prompt", "messages", "response_a", "response_b", "p_a", "principle_ids", "per_principle", "human_preferred", "truncated", "cot_unparsed" }, keys);
            Assert.Superset(new HashSet<string> { "principle_id", "p_a", "p_a_order_ab", "p_a_order_ba" }, doc.RootElement.GetProperty("per_principle")[0].EnumerateObject().Select(p => p.Name).ToHashSet());
        }

        var preferences = Jsonl.ReadAll<PreferenceRecord>(Path.Combine(config.OutputDir, Label.PreferencesFile));
        Assert.Equal(6, preferences.Count);
        foreach (var (pref, r) in preferences.Zip(records))
        {
            Assert.Equal(r.PA >= 0.5 ? r.ResponseA : r.ResponseB, Assert.Single(pref.Chosen).Content);
            Assert.Equal(Math.Abs(2 * r.PA - 1), pref.Margin, 12);
        }

        var metrics = Label.ReadMetrics(config.OutputDir);
        Assert.Equal(6, metrics.Comparisons);
        Assert.Equal(6, metrics.WithHumanPreference);
        Assert.Equal(LabelMath.Agreement(records.Select(r => r.PA).ToList(), records.Select(r => r.HumanPreferred == "a").ToList()), metrics.Agreement);
        Assert.NotNull(metrics.PositionConsistency);
        Assert.NotNull(metrics.ExpectedCalibrationError);
        Assert.Equal(10, metrics.CalibrationBins!.Count);
        Assert.True(File.Exists(Path.Combine(config.OutputDir, "metrics.jsonl")));
    }

    [Fact]
    public async Task SamplesTwoAnswersPerPromptFromAPolicyModel()
    {
        using var dir = new TempDir();
        var feedback = TinyModels.Folder(dir.File("feedback"), seed: 1);
        var policy = TinyModels.Folder(dir.File("policy"), seed: 2);
        var prompts = dir.File("prompts.txt");
        File.WriteAllLines(prompts, ["Tell me a joke.", "How do I bake bread?", "What is a star?"]);
        var config = Config(feedback, dir.File("out")) with { Prompts = prompts, PolicyModel = policy, Sampling = new() { Temperature = 1.0, MaxNewTokens = 8 }, Principles = 2 };
        var records = Jsonl.ReadAll<ComparisonRecord>(await Label.Run(config, TestContext.Current.CancellationToken));
        Assert.Equal(3, records.Count);
        Assert.All(records, r => Assert.Null(r.HumanPreferred));
        Assert.Contains(records, r => r.ResponseA != r.ResponseB); // two samples, not one answer twice
        var metrics = Label.ReadMetrics(config.OutputDir);
        Assert.Null(metrics.Agreement);
        Assert.NotNull(metrics.PositionConsistency);
    }

    [Fact]
    public async Task SameSeedSameLabels()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("feedback"));
        var pairs = WritePairs(dir);
        var a = await Label.Run(Config(model, dir.File("a")) with { Pairs = pairs }, TestContext.Current.CancellationToken);
        var b = await Label.Run(Config(model, dir.File("b")) with { Pairs = pairs }, TestContext.Current.CancellationToken);
        Assert.Equal(File.ReadAllText(a), File.ReadAllText(b));
        var c = await Label.Run(Config(model, dir.File("c")) with { Pairs = pairs, Seed = 4 }, TestContext.Current.CancellationToken);
        Assert.NotEqual(Jsonl.ReadAll<ComparisonRecord>(a).Select(r => string.Join(",", r.PrincipleIds)), Jsonl.ReadAll<ComparisonRecord>(c).Select(r => string.Join(",", r.PrincipleIds)));
    }

    [Fact]
    public async Task ResumesAfterAnInterruptionWithNoLossAndNoDuplicate()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("feedback"));
        var pairs = WritePairs(dir, 10);
        var reference = await Label.Run(Config(model, dir.File("whole")) with { Pairs = pairs }, TestContext.Current.CancellationToken);

        var config = Config(model, dir.File("resumed")) with { Pairs = pairs };
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        // The scorer the stage opens itself (batch_size from the config): batches of another size would group the
        // questions' rows differently, which moves the last bits of the float32 sums.
        using (var scorer = new OrtScorer(model, new InferenceOptions { BatchSize = config.BatchSize }))
        using (var stopping = new CancelAfterCalls(scorer, calls: 6, cts)) // one scorer call per comparison, batches of 4: stop inside batch 2
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
                Label.Run(config, stopping, t => scorer.Encode(t).Length, 4096, null, null, cts.Token));
        Assert.Equal(4, Jsonl.ReadAll<ComparisonRecord>(Path.Combine(config.OutputDir, Label.ComparisonsFile)).Count);

        var resumed = await Label.Run(config, TestContext.Current.CancellationToken);
        var records = Jsonl.ReadAll<ComparisonRecord>(resumed);
        Assert.Equal(10, records.Select(r => r.Id).Distinct().Count());
        Assert.Equal(10, records.Count);
        Assert.Equal(File.ReadAllLines(reference).Order(), File.ReadAllLines(resumed).Order());
        Assert.Equal(10, Label.ReadMetrics(config.OutputDir).Comparisons);
    }

    [Fact]
    public async Task OverLongInputsAreTruncatedAndCounted()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("feedback"));
        var path = dir.File("long.jsonl");
        var longTalk = string.Concat(Enumerable.Range(0, 40).Select(i => $"\n\nHuman: question number {i} about many things\n\nAssistant: a long answer number {i} that goes on"));
        File.WriteAllLines(path, [
            JsonSerializer.Serialize(new { chosen = longTalk + "\n\nHuman: last one?\n\nAssistant: kind answer", rejected = longTalk + "\n\nHuman: last one?\n\nAssistant: rude answer" }),
            JsonSerializer.Serialize(new { prompt = "short?", response_a = "yes", response_b = "no" }),
        ]);
        var config = Config(model, dir.File("out")) with { Pairs = path, MaxQuestionTokens = 400, FewShot = 0 };
        var records = Jsonl.ReadAll<ComparisonRecord>(await Label.Run(config, TestContext.Current.CancellationToken));
        Assert.True(records[0].Truncated);
        Assert.False(records[1].Truncated);
        Assert.Equal(1, Label.ReadMetrics(config.OutputDir).Truncated);
        Assert.Equal(81, records[0].Messages.Count); // the record keeps the whole conversation; only the question was cut
    }

    [Fact]
    public async Task ChainOfThoughtWithoutAParseableAnswerIsCountedAndFallsBack()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("feedback"));
        var config = Config(model, dir.File("out")) with { Pairs = WritePairs(dir, 3), ChainOfThought = true, CotMaxNewTokens = 8, Principles = 1 };
        var records = Jsonl.ReadAll<ComparisonRecord>(await Label.Run(config, TestContext.Current.CancellationToken));
        // a tiny random model writes no "(A)"/"(B)" answer: every question falls back to log-probs, clamped
        var unparsed = records.Sum(r => r.CotUnparsed);
        Assert.Equal(unparsed, Label.ReadMetrics(config.OutputDir).CotUnparsed);
        Assert.True(unparsed > 0);
        foreach (var p in records.SelectMany(r => r.PerPrinciple))
        {
            Assert.InRange(p.PAOrderAb, 0.4, 0.6);
            Assert.NotNull(p.ReasoningAb);
        }
    }

    [Fact]
    public async Task BadPairsFailWithFileAndLine()
    {
        using var dir = new TempDir();
        var path = dir.File("bad.jsonl");
        File.WriteAllText(path, "{\"prompt\": \"q\", \"response_a\": \"x\", \"response_b\": \"y\"}\n{\"prompt\": \"q\", \"response_a\": \"x\"\n");
        var config = Config(dir.File("no-model"), dir.File("out")) with { Pairs = path };
        var e = await Assert.ThrowsAsync<UserError>(() => Label.Run(config, TestContext.Current.CancellationToken));
        Assert.StartsWith($"{path}:2: malformed JSON", e.Message);
    }

    /// <summary>
    /// The whole hh-rlhf dev file (1,156 human-labelled pairs) through a tiny local feedback model: it
    /// finishes and reports agreement, position consistency and calibration. A random model's agreement
    /// hovers near chance; the point is the pipeline at full size, not the number.
    /// </summary>
    [Fact]
    public async Task LabelsAllHhRlhfDevPairs()
    {
        var hh = SharedData.Require("hh-rlhf/harmless-base-test.dev.jsonl.gz");
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("feedback"));
        var config = Config(model, dir.File("out")) with { Pairs = hh, Principles = 1, FewShot = 0, BatchSize = 32, MaxQuestionTokens = 512 };
        var clock = Stopwatch.StartNew();
        await Label.Run(config, TestContext.Current.CancellationToken);
        var metrics = Label.ReadMetrics(config.OutputDir);
        TestContext.Current.SendDiagnosticMessage($"hh-rlhf dev: {metrics.Comparisons} pairs in {clock.Elapsed.TotalSeconds:F1} s\n{Label.Describe(metrics)}");
        Assert.Equal(1156, metrics.Comparisons);
        Assert.Equal(1156, metrics.WithHumanPreference);
        Assert.InRange(metrics.Agreement!.Value, 0.0, 1.0);
        Assert.InRange(metrics.PositionConsistency!.Value, 0.0, 1.0);
        Assert.InRange(metrics.ExpectedCalibrationError!.Value, 0.0, 1.0);
        Assert.Equal(1156, metrics.CalibrationBins!.Sum(b => b.Count));
        Assert.True(metrics.Truncated > 0);
    }
}
