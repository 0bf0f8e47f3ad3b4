using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Bench;

/// <summary>
/// fp32 MatMul throughput of ONNX Runtime on this machine: the peak that model-FLOPs-utilisation figures
/// divide by. 2·n³ FLOPs per n×n×n product; best of several timed runs after a warm-up.
/// </summary>
public static class GemmBench
{
    public static string Run(BenchContext ctx)
    {
        var sizes = ctx.Quick ? new[] { 512, 1024 } : new[] { 1024, 2048 };
        var rows = new List<string>();
        double best = 0;
        foreach (var n in sizes)
        {
            var gflops = Measure(ctx, n);
            best = Math.Max(best, gflops);
            rows.Add($"| {n}×{n}×{n} | {gflops:F1} |");
        }
        ctx.GemmPeakFlops = best * 1e9;
        return $"""
            ## fp32 GEMM peak (ONNX Runtime MatMul)

            | shape | GFLOP/s (best of 5, all cores) |
            |---|---|
            {string.Join("\n", rows)}

            Peak used for MFU below: **{best:F1} GFLOP/s**.

            """;
    }

    static double Measure(BenchContext ctx, int n)
    {
        var g = new GraphBuilder("gemm");
        var a = g.Input("a", DataType.Float, n, n);
        var b = g.Input("b", DataType.Float, n, n);
        g.OutputAs(g.MatMul(a, b), "c", DataType.Float, n, n);
        var path = Path.Combine(ctx.WorkDir, $"gemm{n}.onnx");
        OnnxFile.Save(g.ToModel(), path);

        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var session = new InferenceSession(path, options);
        var rng = new Random(1);
        var av = new float[n * n]; var bv = new float[n * n]; var cv = new float[n * n];
        for (var i = 0; i < av.Length; i++) { av[i] = (float)rng.NextDouble(); bv[i] = (float)rng.NextDouble(); }
        using var at = OrtValue.CreateTensorValueFromMemory(av, [n, n]);
        using var bt = OrtValue.CreateTensorValueFromMemory(bv, [n, n]);
        using var ct = OrtValue.CreateTensorValueFromMemory(cv, [n, n]);
        using var run = new RunOptions();
        session.Run(run, ["a", "b"], [at, bt], ["c"], [ct]); // warm-up
        var bestSeconds = double.MaxValue;
        for (var rep = 0; rep < 5; rep++)
        {
            var sw = Stopwatch.StartNew();
            session.Run(run, ["a", "b"], [at, bt], ["c"], [ct]);
            bestSeconds = Math.Min(bestSeconds, sw.Elapsed.TotalSeconds);
        }
        return 2.0 * n * n * n / bestSeconds / 1e9;
    }
}
