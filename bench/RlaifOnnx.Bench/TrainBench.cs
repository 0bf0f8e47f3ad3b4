using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using RlaifOnnx.Models;
using RlaifOnnx.Training;
using DataType = Onnx.TensorProto.Types.DataType;
// Microsoft.ML.OnnxRuntime still ships a retired TrainingSession type of its own.
using TrainingSession = RlaifOnnx.Training.TrainingSession;

namespace RlaifOnnx.Bench;

/// <summary>
/// Full fine-tuning throughput of a ~100M-parameter Llama-style model (hidden 768, 12 layers, vocab
/// 32000, tied embeddings) at batch × length 8 × 256: our gradient graph on ONNX Runtime, plus global-norm
/// clipping and AdamW over the bound buffers. Model FLOPs per token = 6·N + 12·layers·hidden·length
/// (PaLM appendix B), divided by the GEMM peak measured earlier in this run.
/// </summary>
public static class TrainBench
{
    public static string Run(BenchContext ctx)
    {
        var config = new ModelConfig
        {
            Architecture = Architecture.Llama, ModelType = "llama", VocabSize = ctx.Quick ? 8000 : 32000,
            HiddenSize = ctx.Quick ? 256 : 768, NumLayers = ctx.Quick ? 2 : 12, NumHeads = ctx.Quick ? 4 : 12,
            NumKvHeads = ctx.Quick ? 4 : 12, IntermediateSize = ctx.Quick ? 688 : 2048, MaxPositions = 1024,
            NormEps = 1e-5, TieEmbeddings = true, BosTokenId = 0, EosTokenId = 2, PadTokenId = 0,
        };
        int batch = ctx.Quick ? 2 : 8, length = ctx.Quick ? 64 : 256, timedSteps = ctx.Quick ? 2 : 3;

        var weights = WeightSet.Random(config, 1);
        var graphs = GradientBuilder.ForCausalLm(DecoderGraphs.Training(config, DataType.Float), weights.Keys.ToList());
        using var session = new TrainingSession(graphs, weights.ToDictionary(kv => kv.Key, kv => kv.Value.Data));
        var adam = new AdamW(session.Parameters, new AdamWOptions(WeightDecay: 0.01));
        var rng = new Random(1);
        var ids = Enumerable.Range(0, batch * length).Select(_ => (long)rng.Next(config.VocabSize)).ToArray();
        var positions = Enumerable.Range(0, batch * length).Select(i => (long)(i % length)).ToArray();
        var ones = Enumerable.Repeat(1L, batch * length).ToArray();
        var inputs = new Dictionary<string, OrtValue>
        {
            ["input_ids"] = OrtValue.CreateTensorValueFromMemory(ids, [batch, length]),
            ["attention_mask"] = OrtValue.CreateTensorValueFromMemory(ones, [batch, length]),
            ["position_ids"] = OrtValue.CreateTensorValueFromMemory(positions, [batch, length]),
            ["loss_mask"] = OrtValue.CreateTensorValueFromMemory(ones.ToArray(), [batch, length]),
        };
        try
        {
            // Warm-up: allocations, kernel selection, JIT of the optimizer.
            session.Step(inputs);
            GradientClipping.ClipByGlobalNorm(session.Parameters, 1.0);
            adam.Step(1e-4);
            double ortSeconds = 0, totalSeconds = 0;
            for (var step = 0; step < timedSteps; step++)
            {
                var total = Stopwatch.StartNew();
                var ort = Stopwatch.StartNew();
                session.Step(inputs);
                ortSeconds += ort.Elapsed.TotalSeconds;
                GradientClipping.ClipByGlobalNorm(session.Parameters, 1.0);
                adam.Step(1e-4);
                totalSeconds += total.Elapsed.TotalSeconds;
            }
            var parameters = session.Parameters.Sum(p => (long)p.Weight.Length);
            var tokens = (double)batch * length;
            var flopsPerToken = 6.0 * parameters + 12.0 * config.NumLayers * config.HiddenSize * length;
            var stepSeconds = totalSeconds / timedSteps;
            var achieved = flopsPerToken * tokens / stepSeconds;
            var mfu = ctx.GemmPeakFlops is { } peak ? $"{100 * achieved / peak:F1}%" : "n/a (run gemm first)";
            var outside = 100 * (totalSeconds - ortSeconds) / totalSeconds;
            var peakMemory = Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024 * 1024);
            return $"""
                ## Training step (full fine-tuning, causal-LM loss, AdamW)

                Llama-style, {parameters / 1e6:F1}M parameters (hidden {config.HiddenSize}, {config.NumLayers} layers, vocab {config.VocabSize}, tied), batch × length {batch} × {length}, fp32, mean of {timedSteps} steps after one warm-up.

                | figure | value |
                |---|---|
                | step time | {stepSeconds:F2} s |
                | training tokens/s | {tokens / stepSeconds:F0} |
                | model FLOP/s (6N + 12·L·h·T per token) | {achieved / 1e9:F1} GFLOP/s |
                | MFU against the GEMM peak above | {mfu} |
                | share of step time outside ONNX Runtime (clipping + AdamW) | {outside:F1}% |
                | peak working set of the process | {peakMemory:F2} GiB |

                """;
        }
        finally
        {
            foreach (var v in inputs.Values) v.Dispose();
        }
    }
}
