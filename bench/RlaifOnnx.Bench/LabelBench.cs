using System.Diagnostics;
using System.Text;
using RlaifOnnx.Data;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Bench;

/// <summary>
/// Labels per second of the label stage (issue 4 §7): the stage's way — every question's prefix run
/// once, both answer candidates continuing from its cache — against the plain way, where each
/// (question, candidate) is its own full forward pass, one at a time. Both run the same stage on the
/// same hh-rlhf pairs (M = 4 principles, both orders, one few-shot example), so the questions are
/// identical; the labels must agree, which the benchmark checks.
/// </summary>
public static class LabelBench
{
    public static string Run(BenchContext ctx)
    {
        var hh = SharedData("hh-rlhf/harmless-base-test.dev.jsonl.gz");
        if (hh is null) return "## label\n\nskipped: ../shared/data/hh-rlhf is missing\n";
        var pairs = ctx.Quick ? 8 : 32;

        // A small Llama (4 layers, hidden 128, 512-token vocabulary), random weights: speed does not depend on what it knows.
        var config = new ModelConfig
        {
            Architecture = Architecture.Llama, ModelType = "llama", VocabSize = 512, HiddenSize = 128, NumLayers = 4,
            NumHeads = 4, NumKvHeads = 2, IntermediateSize = 344, MaxPositions = 2048, NormEps = 1e-5,
            BosTokenId = 0, EosTokenId = 2, PadTokenId = 0,
        };
        var model = Path.Combine(ctx.WorkDir, "label-feedback");
        if (!Directory.Exists(model))
            ModelWriter.Write(model, config, WeightSet.Random(config, 1), TinyTokenizer.Train(config.VocabSize), "feedback", []);

        var stage = new Label.Config
        {
            Pairs = hh, FeedbackModel = model, Principles = 4, BothOrders = true, FewShot = 1,
            BatchSize = 8, Limit = pairs, MaxQuestionTokens = 768, OutputDir = "",
        };
        using var scorer = new OrtScorer(model);
        int Tokens(string t) => scorer.Encode(t).Length;

        // Warm-up (session creation, first-run allocations) outside the timings.
        Label.Run(stage with { OutputDir = Path.Combine(ctx.WorkDir, "label-warm"), Limit = 2 }, scorer, Tokens, 768, null, null).GetAwaiter().GetResult();

        var fastDir = Path.Combine(ctx.WorkDir, "label-fast");
        using var fastScorer = new Timed(scorer);
        var fast = Stopwatch.StartNew();
        Label.Run(stage with { OutputDir = fastDir }, fastScorer, Tokens, 768, null, null).GetAwaiter().GetResult();
        fast.Stop();

        var perQuestionDir = Path.Combine(ctx.WorkDir, "label-per-question");
        using var perQuestionScorer = new Timed(scorer);
        var perQuestion = Stopwatch.StartNew();
        Label.Run(stage with { OutputDir = perQuestionDir, SharePrefix = false }, perQuestionScorer, Tokens, 768, null, null).GetAwaiter().GetResult();
        perQuestion.Stop();

        var plainDir = Path.Combine(ctx.WorkDir, "label-plain");
        using var plainScorer = new Timed(new OnePassPerCandidate(scorer));
        var plain = Stopwatch.StartNew();
        Label.Run(stage with { OutputDir = plainDir }, plainScorer, Tokens, 768, null, null).GetAwaiter().GetResult();
        plain.Stop();

        var a = Jsonl.ReadAll<ComparisonRecord>(Path.Combine(fastDir, Label.ComparisonsFile));
        var b = Jsonl.ReadAll<ComparisonRecord>(Path.Combine(plainDir, Label.ComparisonsFile));
        var c = Jsonl.ReadAll<ComparisonRecord>(Path.Combine(perQuestionDir, Label.ComparisonsFile));
        var maxDiff = a.Zip(b).Concat(a.Zip(c)).Max(x => Math.Abs(x.First.PA - x.Second.PA));
        var questions = pairs * stage.Principles * 2;
        var fastRate = pairs / fast.Elapsed.TotalSeconds;
        var plainRate = pairs / plain.Elapsed.TotalSeconds;

        var sb = new StringBuilder();
        sb.AppendLine("## label: AI feedback labels per second");
        sb.AppendLine();
        sb.AppendLine($"{pairs} hh-rlhf pairs, M = {stage.Principles} principles, both orders ({questions} questions), one few-shot example, " +
                      $"questions up to {stage.MaxQuestionTokens} tokens; Llama 4 layers × hidden 128, random weights, CPU.");
        sb.AppendLine();
        sb.AppendLine("| scoring | labels/s | questions/s | time | of it in the scorer |");
        sb.AppendLine("|---|---:|---:|---:|---:|");
        sb.AppendLine($"| plain: one full forward pass per (question, candidate) | {plainRate:F2} | {questions / plain.Elapsed.TotalSeconds:F1} | {plain.Elapsed.TotalSeconds:F1} s | {plainScorer.Elapsed.TotalSeconds:F1} s |");
        sb.AppendLine($"| one pass per question, both answers from its cache (share_prefix: false) | {pairs / perQuestion.Elapsed.TotalSeconds:F2} | {questions / perQuestion.Elapsed.TotalSeconds:F1} | {perQuestion.Elapsed.TotalSeconds:F1} s | {perQuestionScorer.Elapsed.TotalSeconds:F1} s |");
        sb.AppendLine($"| stage default: the conversation once per comparison when cheaper, every principle × order × answer from it | {fastRate:F2} | {questions / fast.Elapsed.TotalSeconds:F1} | {fast.Elapsed.TotalSeconds:F1} s | {fastScorer.Elapsed.TotalSeconds:F1} s |");
        sb.AppendLine();
        sb.AppendLine($"Speed-up of the stage default: {fastRate / plainRate:F2}× over one pass per (question, candidate), " +
                      $"{perQuestion.Elapsed.TotalSeconds / fast.Elapsed.TotalSeconds:F2}× over one pass per question (goal ≥ 3×). " +
                      $"Largest |Δp_a| between the three: {maxDiff:E1}. Sharing the conversation pays in proportion to its length against " +
                      "what follows it (principle and both answers), which the scorer still runs once per principle × order × answer.");
        return sb.ToString();
    }

    /// <summary>Time spent inside a scorer's calls.</summary>
    sealed class Timed(IScorer inner) : IScorer
    {
        readonly Stopwatch clock = new();
        public TimeSpan Elapsed => clock.Elapsed;

        public async Task<IReadOnlyList<double>> ContinuationLogProbsAsync(IReadOnlyList<(string Prompt, string Continuation)> pairs, CancellationToken cancellationToken = default)
        {
            clock.Start();
            try { return await inner.ContinuationLogProbsAsync(pairs, cancellationToken); } finally { clock.Stop(); }
        }

        public async Task<IReadOnlyList<double[]>> CandidateLogProbsAsync(IReadOnlyList<string> prompts, IReadOnlyList<string> candidates, CancellationToken cancellationToken = default)
        {
            clock.Start();
            try { return await inner.CandidateLogProbsAsync(prompts, candidates, cancellationToken); } finally { clock.Stop(); }
        }

        public void Dispose() { }
    }

    /// <summary>The plain way: each candidate's log-prob from its own full pass over question + candidate, one at a time.</summary>
    sealed class OnePassPerCandidate(IScorer inner) : IScorer
    {
        public Task<IReadOnlyList<double>> ContinuationLogProbsAsync(IReadOnlyList<(string Prompt, string Continuation)> pairs, CancellationToken cancellationToken = default) =>
            inner.ContinuationLogProbsAsync(pairs, cancellationToken);

        public async Task<IReadOnlyList<double[]>> CandidateLogProbsAsync(IReadOnlyList<string> prompts, IReadOnlyList<string> candidates, CancellationToken cancellationToken = default)
        {
            var result = new List<double[]>();
            foreach (var prompt in prompts)
            {
                var row = new double[candidates.Count];
                for (var c = 0; c < candidates.Count; c++)
                    row[c] = (await inner.ContinuationLogProbsAsync([(prompt, candidates[c])], cancellationToken))[0];
                result.Add(row);
            }
            return result;
        }

        public void Dispose() { }
    }

    static string? SharedData(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (dir.GetFiles("RlaifOnnx.sln").Length > 0)
            {
                var path = Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "data", relative));
                return File.Exists(path) ? path : null;
            }
        return null;
    }
}
