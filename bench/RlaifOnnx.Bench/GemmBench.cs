using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Bench;

/// <summary>
/// fp32 GEMM throughput of ONNX Runtime on this machine: the peak that model-FLOPs-utilisation figures
/// divide by. Each shape runs as MatMul, as Gemm and as Gemm with transB (ONNX Runtime routes the two
/// operators through different code, and a training step uses both), and the peak is the best of all of
/// them: a peak below what the step's own products reach would flatter the MFU. 2·M·K·N FLOPs per
/// product; best of several timed runs after a warm-up.
/// </summary>
public static class GemmBench
{
    public static string Run(BenchContext ctx)
    {
        // The square products, and the training step's own [B·T, h] shapes (quick: the small model's).
        (int M, int K, int N)[] shapes = ctx.Quick
            ? [(512, 512, 512), (1024, 1024, 1024), (512, 256, 688)]
            : [(1024, 1024, 1024), (2048, 2048, 2048), (2048, 768, 2048), (2048, 2048, 768), (2048, 768, 768)];
        var rows = new List<string>();
        double best = 0, bestMatMul = 0, bestGemm = 0;
        foreach (var (m, k, n) in shapes)
        {
            var matMul = Measure(ctx, m, k, n, "MatMul");
            var gemm = Measure(ctx, m, k, n, "Gemm");
            var gemmT = Measure(ctx, m, k, n, "GemmTransB");
            bestMatMul = Math.Max(bestMatMul, matMul);
            bestGemm = Math.Max(bestGemm, Math.Max(gemm, gemmT));
            best = Math.Max(best, Math.Max(matMul, Math.Max(gemm, gemmT)));
            rows.Add($"| {m}×{k}·{k}×{n} | {matMul:F1} | {gemm:F1} | {gemmT:F1} |");
        }
        ctx.GemmPeakFlops = best * 1e9;
        ctx.GemmPeaks.Add((bestMatMul, bestGemm));
        return $"""
            ## fp32 GEMM peak (ONNX Runtime MatMul and Gemm)

            GFLOP/s, best of 5 runs of 8 products each, all cores; M×K·K×N, 2·M·K·N FLOPs per product. Gemm transB reads the right
            operand as [N, K] (the layout of a tied LM head and of the weight gradients).

            | shape | MatMul | Gemm | Gemm transB |
            |---|---:|---:|---:|
            {string.Join("\n", rows)}

            Best MatMul {bestMatMul:F1}, best Gemm {bestGemm:F1}: peak used for MFU below: **{best:F1} GFLOP/s** (the best of both).

            """;
    }

    /// <summary>
    /// Products per timed Run: one Run of one product left ONNX Runtime's worker threads parked between runs, so the
    /// isolated product ran at about half the rate the same shape reaches inside a training step, where nodes follow
    /// each other; eight back to back in one Run keep the workers as busy as a step does.
    /// </summary>
    const int ProductsPerRun = 8;

    static double Measure(BenchContext ctx, int m, int k, int n, string kind)
    {
        var transB = kind == "GemmTransB";
        var g = new GraphBuilder("gemm");
        var a = g.Input("a", DataType.Float, m, k);
        var b = transB ? g.Input("b", DataType.Float, n, k) : g.Input("b", DataType.Float, k, n);
        var outputs = new string[ProductsPerRun];
        for (var i = 0; i < ProductsPerRun; i++)
        {
            var c = kind == "MatMul" ? g.MatMul(a, b) : g.Op("Gemm", [a, b], ("transB", transB ? 1L : 0L));
            g.OutputAs(c, outputs[i] = $"c{i}", DataType.Float, m, n);
        }
        var path = Path.Combine(ctx.WorkDir, $"gemm-{kind}-{m}x{k}x{n}.onnx");
        OnnxFile.Save(g.ToModel(), path);

        // No graph optimisation: it would merge the identical products into one.
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, IntraOpNumThreads = Environment.ProcessorCount };
        using var session = new InferenceSession(path, options);
        var rng = new Random(1);
        var av = new float[m * k]; var bv = new float[k * n];
        for (var i = 0; i < av.Length; i++) av[i] = (float)rng.NextDouble();
        for (var i = 0; i < bv.Length; i++) bv[i] = (float)rng.NextDouble();
        using var at = OrtValue.CreateTensorValueFromMemory(av, [m, k]);
        using var bt = OrtValue.CreateTensorValueFromMemory(bv, transB ? [n, k] : [k, n]);
        var results = Enumerable.Range(0, ProductsPerRun).Select(_ => OrtValue.CreateTensorValueFromMemory(new float[m * n], [m, n])).ToArray();
        try
        {
            using var run = new RunOptions();
            session.Run(run, ["a", "b"], [at, bt], outputs, results); // warm-up
            var bestSeconds = double.MaxValue;
            for (var rep = 0; rep < 5; rep++)
            {
                var sw = Stopwatch.StartNew();
                session.Run(run, ["a", "b"], [at, bt], outputs, results);
                bestSeconds = Math.Min(bestSeconds, sw.Elapsed.TotalSeconds);
            }
            return ProductsPerRun * 2.0 * m * k * n / bestSeconds / 1e9;
        }
        finally
        {
            foreach (var r in results) r.Dispose();
        }
    }
}
