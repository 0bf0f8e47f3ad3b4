using System.Diagnostics;
using System.Text.Json;
using RlaifOnnx.Models;
using RlaifOnnx.Training;

namespace RlaifOnnx.Bench;

/// <summary>
/// Training throughput of a ~100M-parameter Llama-style model (hidden 768, 12 layers, 12 heads, 4 kv heads,
/// intermediate 2048, vocab 32000, tied embeddings) at batch × length 8 × 256: full fine-tuning steps
/// (forward + backward graph in ONNX Runtime, global-norm clipping and AdamW in C#).
///
/// Model FLOPs per token: 6·N (N = parameters, embedding included — its tied use as the output head is a
/// real 2·h·V matmul each way) plus attention's 12·L·h·T (Chowdhery et al. 2022, PaLM appendix B: the
/// score and value matmuls, forward and backward, at full T×T since our graph computes masked positions
/// too). MFU divides by the fp32 GEMM peak measured earlier in the same run. ONNX Runtime's profiler shows
/// which operators dominate.
/// </summary>
public static class TrainingBench
{
    public static string Run(BenchContext ctx)
    {
        var config = new ModelConfig
        {
            Architecture = Architecture.Llama, ModelType = "llama", VocabSize = 32000, HiddenSize = 768, NumLayers = 12,
            NumHeads = 12, NumKvHeads = 4, IntermediateSize = 2048, MaxPositions = 1024, TieEmbeddings = true,
            BosTokenId = 1, EosTokenId = 2, PadTokenId = 0,
        };
        // The MFU divides by a peak from this run: measure it here when `--only train` skipped the gemm benchmark.
        var gemmSection = ctx.GemmPeakFlops is null ? GemmBench.Run(ctx) : "";
        const int batchSize = 8, length = 256;
        var timedSteps = ctx.Quick ? 1 : 2;
        var n = config.ParameterCount;
        var weights = WeightSet.Random(config, 1);
        var rng = new Random(2);
        var sequences = Enumerable.Range(0, batchSize).Select(_ => new TokenSequence(
            Enumerable.Range(0, length).Select(_ => rng.Next(3, config.VocabSize)).ToArray(), Enumerable.Repeat((byte)1, length).ToArray())).ToList();
        var batch = CausalLm.Batch(sequences, config.PadTokenId);
        var options = CausalLm.Options(new TrainerOptions { LearningRate = 1e-4 });
        var graph = CausalLm.Graph(config);

        // One warm-up step, then the timed ones. ONNX Runtime's profiler is on throughout (it records a
        // timestamp pair per node, microseconds against steps of seconds) and its file is written when the
        // trainer is disposed.
        var profilePrefix = Path.Combine(ctx.WorkDir, "train-profile");
        double loss, stepSeconds, runSeconds;
        var build = Stopwatch.StartNew();
        using (var trainer = new Trainer(graph, CausalLm.LossOutput, weights, new Dictionary<string, WeightTensor>(), options with { ProfilePrefix = profilePrefix }))
        {
            Console.Error.WriteLine($"   built the training session in {build.Elapsed.TotalSeconds:F1} s");
            trainer.Step(batch);
            Console.Error.WriteLine($"   warm-up step {trainer.StepSeconds:F1} s");
            var (step0, run0) = (trainer.StepSeconds, trainer.RunSeconds);
            var result = trainer.Step(batch);
            for (var i = 1; i < timedSteps; i++) result = trainer.Step(batch);
            loss = result.Loss;
            stepSeconds = (trainer.StepSeconds - step0) / timedSteps;
            runSeconds = (trainer.RunSeconds - run0) / timedSteps;
        }
        // The machine may be shared: measure the GEMM peak again now and divide by the larger of the two
        // peaks, so a quiet moment during the GEMM run cannot make the MFU look better than it is.
        var peakBefore = ctx.GemmPeakFlops;
        GemmBench.Run(ctx);
        var peakAfter = ctx.GemmPeakFlops;
        ctx.GemmPeakFlops = Math.Max(peakBefore ?? 0, peakAfter ?? 0);
        var profile = Directory.GetFiles(ctx.WorkDir, "train-profile*.json").MaxBy(f => new FileInfo(f).Length); // the eval session writes an empty one too
        var opShares = profile is null ? [] : OperatorShares(profile);
        var peakBytes = Process.GetCurrentProcess().PeakWorkingSet64;

        double tokens = batchSize * length;
        var tokensPerSecond = tokens / stepSeconds;
        var dense = 6.0 * n;
        var attention = 12.0 * config.NumLayers * config.HiddenSize * length;
        var peak = ctx.GemmPeakFlops;
        string Mfu(double flopsPerToken) => peak is { } p ? $"{100 * flopsPerToken * tokensPerSecond / p:F1}%" : "n/a";
        var outside = (stepSeconds - runSeconds) / stepSeconds;
        var opRows = string.Join("\n", opShares.Take(10).Select(o => $"| {o.Op} | {100 * o.Share:F1}% |"));
        return gemmSection + $"""
            ## Training throughput (~100M Llama-style, full fine-tuning)

            Model: hidden 768, 12 layers, 12 heads / 4 kv heads, intermediate 2048, vocab 32000, tied embeddings:
            N = {n:N0} parameters. Batch × length = {batchSize} × {length} = {tokens:N0} tokens per step, float32,
            AdamW over all weights, one ONNX Runtime run per step (no micro-batching). {timedSteps} timed step(s) after one warm-up step.

            | measure | value |
            |---|---|
            | step time | {stepSeconds:F2} s (loss {loss:F3}) |
            | training tokens/s | **{tokensPerSecond:F1}** |
            | MFU, 6·N FLOPs/token | **{Mfu(dense)}** |
            | MFU, 6·N + 12·L·h·T FLOPs/token (attention at full T×T) | {Mfu(dense + attention)} |
            | achieved model GFLOP/s (6·N + attention) | {(dense + attention) * tokensPerSecond / 1e9:F1} |
            | GEMM peak divided by (max of before / after the steps) | {(peak ?? 0) / 1e9:F1} GFLOP/s ({(peakBefore ?? 0) / 1e9:F1} / {(peakAfter ?? 0) / 1e9:F1}) |
            | peak working set (whole bench process) | {peakBytes / (1024.0 * 1024 * 1024):F2} GiB |
            | time outside ONNX Runtime's Run | **{100 * outside:F1}%** of the step ({stepSeconds - runSeconds:F2} s: batch binding, clipping, AdamW) |

            Goals: MFU ≥ 50%, outside-Run share ≤ 5%.

            Where ONNX Runtime spends the steps (profiler, share of summed node time by operator):

            | operator | share |
            |---|---|
            {opRows}

            """;
    }

    /// <summary>Summed "dur" of the profile's node events by operator type, as shares of the total, largest first.</summary>
    static List<(string Op, double Share)> OperatorShares(string profilePath)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(profilePath));
        var byOp = new Dictionary<string, double>();
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            if (!e.TryGetProperty("cat", out var cat) || cat.GetString() != "Node") continue;
            if (!e.TryGetProperty("args", out var args) || !args.TryGetProperty("op_name", out var op)) continue;
            var name = e.GetProperty("name").GetString() ?? "";
            if (!name.EndsWith("_kernel_time")) continue;
            var key = op.GetString() ?? "?";
            byOp[key] = byOp.GetValueOrDefault(key) + e.GetProperty("dur").GetDouble();
        }
        var total = byOp.Values.Sum();
        return byOp.OrderByDescending(kv => kv.Value).Select(kv => (kv.Key, total > 0 ? kv.Value / total : 0)).ToList();
    }
}
