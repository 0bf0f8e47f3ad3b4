using System.Diagnostics;
using System.Text;
using RlaifOnnx.Constitution;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Stages;
using RlaifOnnx.Records;

namespace RlaifOnnx.Bench;

/// <summary>
/// Labels per second of the label stage (issue 4 §7) against the plain way: one full forward pass per
/// question and order (share_prefix: false, no prefix kept across calls). The stage default runs the
/// run's few-shot block once and keeps its cache for every comparison (the scorer's prefix cache), each
/// comparison's header and conversation once, each principle's text once for both orders (a tree of shared
/// token spans) and both answers of every question from its cache. Both ways run the same stage
/// on the same hh-rlhf pairs (M = 4 principles, both orders), so the questions are identical; the table
/// reports how far their probabilities differ.
/// </summary>
public static class LabelBench
{
    public static string Run(BenchContext ctx)
    {
        var load = Machine.LoadNote();
        var hh = SharedData("hh-rlhf/harmless-base-test.dev.jsonl.gz");
        if (hh is null) return "## label\n\nskipped: ../shared/data/hh-rlhf is missing\n";
        var pairs = ctx.Quick ? 4 : 16;

        // A small Llama with random weights (speed does not depend on what it knows): hidden 512, 4 layers,
        // 8 heads of 64 (4 kv heads), a 512-token vocabulary. Narrower models spend most of their time on
        // attention over the long questions, which no prefix reuse removes; feedback models in use are wider
        // still, so their share of weight multiplications, which the reuse does cut, is larger than here.
        var config = new ModelConfig
        {
            Architecture = Architecture.Llama, ModelType = "llama", VocabSize = 512, HiddenSize = 512, NumLayers = 4,
            NumHeads = 8, NumKvHeads = 4, IntermediateSize = 1376, MaxPositions = 2048, NormEps = 1e-5,
            BosTokenId = 0, EosTokenId = 2, PadTokenId = 0,
        };
        // Weights a token passes (layers and LM head), for model FLOPs per token.
        var weights = (double)config.NumLayers * (2 * config.HiddenSize * config.HiddenSize + 2 * config.HiddenSize * config.NumKvHeads * config.HeadDim
            + 3 * config.HiddenSize * config.IntermediateSize) + config.HiddenSize * config.VocabSize;
        var model = Path.Combine(ctx.WorkDir, "label-feedback");
        if (!Directory.Exists(model))
            ModelWriter.Write(model, config, WeightSet.Random(config, 1), TinyTokenizer.Train(config.VocabSize), "feedback", []);

        var stage = new Label.Config
        {
            Pairs = hh, FeedbackModel = model, Principles = 4, BothOrders = true, FewShot = 1,
            BatchSize = 8, Limit = pairs, MaxQuestionTokens = 768, OutputDir = "",
        };
        using var scorer = new OrtScorer(model);
        // The plain way keeps no prefix cache across calls either: every question runs from its first token.
        using var plainScorer = new OrtScorer(model, new InferenceOptions { PrefixCacheBytes = 0 });
        int Tokens(string t) => scorer.Encode(t).Length;

        // Warm-up (session creation, first-run allocations) outside the timings.
        foreach (var s in new[] { scorer, plainScorer })
            Label.Run(stage with { OutputDir = Path.Combine(ctx.WorkDir, "label-warm"), Limit = 1 }, s, Tokens, 768, null, null).GetAwaiter().GetResult();

        var sb = new StringBuilder();
        var questions = pairs * stage.Principles * 2;
        var rounds = ctx.Quick ? 1 : 3;
        sb.AppendLine("## label: AI feedback labels per second");
        sb.AppendLine();
        sb.AppendLine($"{pairs} hh-rlhf pairs, M = {stage.Principles} principles, both orders ({questions} questions); Llama hidden {config.HiddenSize} × " +
                      $"{config.NumLayers} layers, random weights, CPU ({Environment.ProcessorCount} cores). Each way ran {rounds} times, interleaved " +
                      "with the other; the tables show each way's fastest run. The gain grows with the share of the question that all its principles " +
                      "and orders have in common (few-shot examples, header, conversation), so it is measured with one and with three few-shot examples.");
        sb.AppendLine();
        foreach (var fewShot in new[] { 1, 3 })
            Measure(stage with { FewShot = fewShot, MaxQuestionTokens = fewShot == 1 ? 768 : 1536 });
        sb.AppendLine("Both ways compute logits [B, S, V] at every position though only the answers' are read (the graph has no input to select positions; with " +
                      $"this {config.VocabSize}-token vocabulary the LM head is {100.0 * config.HiddenSize * config.VocabSize / weights:F1}% of the weights a token passes). " +
                      $"Run-to-run variation on 2 cores is large; {load}.");
        return sb.ToString();

        void Measure(Label.Config stage)
        {
            // Both ways, same stage and questions; each run gets a fresh output folder.
            Timed? sharedCalls = null;
            long reusedBefore = 0, reusedAfter = 0;
            // Work per comparison each way, counted by the scorer: real tokens run and the keys they attend to.
            var work = new Dictionary<bool, (double Tokens, double Keys)>();
            (TimeSpan Total, TimeSpan InScorer, string Dir) Time(string name, Label.Config config, OrtScorer inner)
            {
                var dir = Path.Combine(ctx.WorkDir, $"{name}-{stage.FewShot}shot");
                var timed = new Timed(inner);
                inner.ClearPrefixCache();   // each run pays for its few-shot block once, as a fresh run of the stage does
                var (reused, tokens, keys) = (inner.PrefixTokensReused, inner.TokensRun, inner.KeysAttended);
                var clock = Stopwatch.StartNew();
                Label.Run(config with { OutputDir = dir }, timed, Tokens, stage.MaxQuestionTokens!.Value, null, null).GetAwaiter().GetResult();
                var elapsed = clock.Elapsed;
                if (config.SharePrefix) (sharedCalls, reusedBefore, reusedAfter) = (timed, reused, inner.PrefixTokensReused);
                work[config.SharePrefix] = ((inner.TokensRun - tokens) / (double)pairs, (inner.KeysAttended - keys) / (double)pairs);
                return (elapsed, timed.Elapsed, dir);
            }
            // Rounds interleave the ways and each keeps its fastest round, so a slow spell of the shared
            // machine does not land on one way only.
            (TimeSpan Total, TimeSpan InScorer, string Dir) Best((TimeSpan Total, TimeSpan InScorer, string Dir)? best, (TimeSpan Total, TimeSpan InScorer, string Dir) run)
                => best is { } b && b.Total <= run.Total ? b : run;
            (TimeSpan Total, TimeSpan InScorer, string Dir)? plainBest = null, sharedBest = null;
            for (var round = 0; round < rounds; round++)
            {
                plainBest = Best(plainBest, Time($"label-plain-{round}", stage with { SharePrefix = false }, plainScorer));
                sharedBest = Best(sharedBest, Time($"label-default-{round}", stage, scorer));
            }
            var (plain, shared) = (plainBest!.Value, sharedBest!.Value);

            // Where the bound lies: C tokens of prefix per comparison (few-shot block, header, conversation), of
            // which F came from the kept cache, and S tokens of each question's own part (principle, both answers,
            // cue), of which the principle's text is shared by its two orders.
            var calls = sharedCalls!.Shared;
            var prefixTokens = calls.Average(c => (double)Tokens(c.Prefix));
            var suffixTokens = calls.SelectMany(c => c.Suffixes.Select(x => (double)Tokens(c.Prefix + x) - Tokens(c.Prefix))).Average();
            var reusedTokens = (reusedAfter - reusedBefore) / (double)calls.Count;
            var fewShotTokens = Tokens(Label.FewShotBlock(ConstitutionSet.Default, stage));
            var (plainWork, sharedWork) = (work[false], work[true]);
            // Model FLOPs per token: 2 per weight of the layers and the LM head, and 4·h per key attended in every layer.
            double Flops((double Tokens, double Keys) w) => 2 * weights * w.Tokens + 4.0 * config.NumLayers * config.HiddenSize * w.Keys;

            var reference = Jsonl.ReadAll<ComparisonRecord>(Path.Combine(plain.Dir, Label.ComparisonsFile));
            double MaxDiff(string dir) => reference.Zip(Jsonl.ReadAll<ComparisonRecord>(Path.Combine(dir, Label.ComparisonsFile)))
                .Max(x => x.First.PerPrinciple.Zip(x.Second.PerPrinciple).Max(l => Math.Max(Math.Abs(l.First.PAOrderAb - l.Second.PAOrderAb),
                    Math.Abs((l.First.PAOrderBa ?? 0) - (l.Second.PAOrderBa ?? 0)))));
            string Row(string way, (TimeSpan Total, TimeSpan InScorer, string Dir) r) =>
                $"| {way} | {pairs / r.Total.TotalSeconds:F2} | {questions / r.Total.TotalSeconds:F1} | {r.Total.TotalSeconds:F1} s | {r.InScorer.TotalSeconds:F1} s |";

            sb.AppendLine($"### {stage.FewShot} few-shot example(s), questions up to {stage.MaxQuestionTokens} tokens");
            sb.AppendLine();
            sb.AppendLine("| scoring | labels/s | questions/s | time | of it in the scorer |");
            sb.AppendLine("|---|---:|---:|---:|---:|");
            sb.AppendLine(Row("plain: one full forward pass per question and order, both answers from its cache (share_prefix: false)", plain));
            sb.AppendLine(Row("stage default: few-shot block from the kept cache, the rest of the prefix once per comparison, each principle's text once for both orders (a tree of shared spans, one batch per level), the first answer in its question's pass, the second from that pass's cache in place", shared));
            sb.AppendLine();
            sb.AppendLine($"**Stage default ÷ plain: {plain.Total.TotalSeconds / shared.Total.TotalSeconds:F2}× (goal ≥ 3×)**. " +
                          $"Largest |Δp| per principle and order against the plain way: {MaxDiff(shared.Dir):E1}.");
            sb.AppendLine();
            sb.AppendLine($"Work per comparison (8 questions, 2 labels each), counted by the scorer over real tokens (padding not counted): a comparison's prefix is " +
                          $"C ≈ {prefixTokens:F0} tokens (the few-shot block is {fewShotTokens} of them; on average F ≈ {reusedTokens:F0} came from the kept cache) and " +
                          $"each question's own part (principle, both answers in its order, cue) S ≈ {suffixTokens:F0} tokens; the answers follow a different " +
                          "principle in every question, so no exact reuse skips them.");
            sb.AppendLine();
            sb.AppendLine("| per comparison | plain | stage default | plain ÷ default |");
            sb.AppendLine("|---|---:|---:|---:|");
            sb.AppendLine($"| tokens run | {plainWork.Tokens:F0} | {sharedWork.Tokens:F0} | {plainWork.Tokens / sharedWork.Tokens:F2}× |");
            sb.AppendLine($"| keys attended (summed over those tokens) | {plainWork.Keys:F0} | {sharedWork.Keys:F0} | {plainWork.Keys / sharedWork.Keys:F2}× |");
            sb.AppendLine($"| mean keys per token | {plainWork.Keys / plainWork.Tokens:F0} | {sharedWork.Keys / sharedWork.Tokens:F0} | |");
            sb.AppendLine($"| model GFLOP (2 per weight per token + 4·h per key per layer) | {Flops(plainWork) / 1e9:F2} | {Flops(sharedWork) / 1e9:F2} | **{Flops(plainWork) / Flops(sharedWork):F2}×** |");
            sb.AppendLine();
            sb.AppendLine("The last column bounds what exact reuse can gain at this question shape if every FLOP cost the same; a suffix token attends " +
                          "to the whole prefix before it, so the default's tokens each cost more than the plain way's on average.");
            sb.AppendLine();
        }
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

        /// <summary>The (prefix, suffixes) of every shared-prefix call, kept to count their tokens after the timing.</summary>
        public List<(string Prefix, IReadOnlyList<string> Suffixes)> Shared { get; } = [];

        public async Task<IReadOnlyList<double[]>> QuestionCandidateLogProbsAsync(string prefix, IReadOnlyList<string> suffixes, IReadOnlyList<string> candidates, CancellationToken cancellationToken = default)
        {
            Shared.Add((prefix, suffixes));
            clock.Start();
            try { return await inner.QuestionCandidateLogProbsAsync(prefix, suffixes, candidates, cancellationToken); } finally { clock.Stop(); }
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
