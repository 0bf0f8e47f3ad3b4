using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Bench;

/// <summary>
/// The attention products of the 100M training step (batch 8, 4 kv heads × 3 query heads, T 256, D 64) in the
/// layouts a graph can give them, so the training graph's choice rests on a measurement: the grouped query
/// heads broadcast against their key head (a 5-D MatMul) or folded into the rows ([B, kvH, group·T, D]),
/// the keys transposed by a Transpose node (which ONNX Runtime fuses into FusedMatMul) or laid out [D, T]
/// by the graph.
/// </summary>
public static class AttentionProductsBench
{
    public static string Run(BenchContext ctx)
    {
        long b = 8, kv = 4, grp = 3, t = 256, d = 64;
        if (ctx.Quick) (b, kv, grp, t, d) = (4, 2, 2, 128, 64);
        var flops = 2.0 * b * kv * grp * t * t * d;
        var rows = new List<string>();
        void Row(string name, long[] aShape, long[] bShape, Func<GraphBuilder, string, string, string> product)
            => rows.Add($"| {name} | {flops / Measure(ctx, aShape, bShape, product) / 1e9:F1} |");
        Row("scores, group broadcast: [B,kvH,g,T,D] · Transpose([B,kvH,1,T,D])", [b, kv, grp, t, d], [b, kv, 1, t, d],
            (g, q, k) => g.MatMul(q, g.Transpose(k, 0, 1, 2, 4, 3)));
        Row("scores, group in rows: [B,kvH,g·T,D] · Transpose([B,kvH,T,D])", [b, kv, grp * t, d], [b, kv, t, d],
            (g, q, k) => g.MatMul(q, g.Transpose(k, 0, 1, 3, 2)));
        Row("scores, group in rows, keys laid out [B,kvH,D,T]: MatMul", [b, kv, grp * t, d], [b, kv, d, t],
            (g, q, k) => g.MatMul(q, k));
        Row("scores, heads as batch: [B·H,T,D] · [B·H,D,T]", [b * kv * grp, t, d], [b * kv * grp, d, t],
            (g, q, k) => g.MatMul(q, k));
        Row("probs·V, group broadcast: [B,kvH,g,T,T] · [B,kvH,1,T,D]", [b, kv, grp, t, t], [b, kv, 1, t, d],
            (g, p, v) => g.MatMul(p, v));
        Row("probs·V, group in rows: [B,kvH,g·T,T] · [B,kvH,T,D]", [b, kv, grp * t, t], [b, kv, t, d],
            (g, p, v) => g.MatMul(p, v));
        return $"""
            ## Attention products by layout (ONNX Runtime, fp32)

            Batch {b}, {kv} kv heads × {grp} query heads each, T = {t}, D = {d}; {flops / 1e9:F2} GFLOP per product; GFLOP/s, best of 5 runs.

            | product and layout | GFLOP/s |
            |---|---:|
            {string.Join("\n", rows)}

            """;
    }

    static double Measure(BenchContext ctx, long[] aShape, long[] bShape, Func<GraphBuilder, string, string, string> product)
    {
        var g = new GraphBuilder("attention_product");
        var a = g.Input("a", DataType.Float, aShape.Cast<object>().ToArray());
        var b = g.Input("b", DataType.Float, bShape.Cast<object>().ToArray());
        g.OutputAs(product(g, a, b), "c", DataType.Float);
        var path = Path.Combine(ctx.WorkDir, $"attention-product-{Guid.NewGuid():N}.onnx");
        OnnxFile.Save(g.ToModel(), path);
        // As many intra-op threads as the training step uses (every logical core), not ONNX Runtime's default.
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = Environment.ProcessorCount };
        using var session = new InferenceSession(path, options);
        var rng = new Random(1);
        float[] Random(long[] shape) { var v = new float[shape.Aggregate(1L, (x, y) => x * y)]; for (var i = 0; i < v.Length; i++) v[i] = (float)rng.NextDouble(); return v; }
        using var at = OrtValue.CreateTensorValueFromMemory(Random(aShape), aShape);
        using var bt = OrtValue.CreateTensorValueFromMemory(Random(bShape), bShape);
        using var run = new RunOptions();
        using (session.Run(run, ["a", "b"], [at, bt], ["c"])) { }   // warm-up
        var bestSeconds = double.MaxValue;
        for (var rep = 0; rep < 5; rep++)
        {
            var sw = Stopwatch.StartNew();
            using (session.Run(run, ["a", "b"], [at, bt], ["c"])) { }
            bestSeconds = Math.Min(bestSeconds, sw.Elapsed.TotalSeconds);
        }
        return bestSeconds;
    }
}
