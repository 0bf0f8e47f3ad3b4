using System.Text;
using System.Text.Json;

namespace RlaifOnnx.Bench;

/// <summary>
/// A training step's ONNX Runtime profile (SessionOptions.EnableProfiling), summed three ways so the next
/// bottleneck is named: by operator kind, by graph region (forward / backward × attention, MLP, norms,
/// embedding, LM head, loss — from the node-name scopes the graph builders write, which the gradient nodes
/// inherit behind "∂/"), and by GEMM shape with the GFLOP/s each achieved.
///
/// Only the node events inside the last <c>runs</c> "model_run" events are counted (the warm-up run
/// allocates and is slower), and every time is divided by that count: milliseconds per step.
/// </summary>
public sealed class TrainingProfile
{
    public sealed record NodeTime(string Name, string Op, double Microseconds, long[][] InputShapes, long[] OutputShape);

    public List<NodeTime> Nodes { get; } = [];
    public int Runs { get; private set; }

    /// <summary>Reads the profile; keeps the node events of the last <paramref name="runs"/> runs.</summary>
    public static TrainingProfile Read(string path, int runs)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var windows = new List<(double Start, double End)>();
        foreach (var e in doc.RootElement.EnumerateArray())
            if (e.TryGetProperty("name", out var n) && n.GetString() == "model_run")
                windows.Add((e.GetProperty("ts").GetDouble(), e.GetProperty("ts").GetDouble() + e.GetProperty("dur").GetDouble()));
        windows.Sort();
        var kept = windows.Skip(Math.Max(0, windows.Count - runs)).ToList();
        var profile = new TrainingProfile { Runs = kept.Count };
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            if (!e.TryGetProperty("cat", out var cat) || cat.GetString() != "Node") continue;
            var name = e.GetProperty("name").GetString() ?? "";
            if (!name.EndsWith("_kernel_time", StringComparison.Ordinal)) continue;
            if (!e.TryGetProperty("args", out var args) || !args.TryGetProperty("op_name", out var op)) continue;
            var ts = e.GetProperty("ts").GetDouble();
            if (!kept.Any(w => ts >= w.Start && ts <= w.End)) continue;
            profile.Nodes.Add(new NodeTime(name[..^"_kernel_time".Length], op.GetString() ?? "?", e.GetProperty("dur").GetDouble(),
                Shapes(args, "input_type_shape"), Shapes(args, "output_type_shape").FirstOrDefault() ?? []));
        }
        return profile;
    }

    static long[][] Shapes(JsonElement args, string key)
    {
        if (!args.TryGetProperty(key, out var list) || list.ValueKind != JsonValueKind.Array) return [];
        var shapes = new List<long[]>();
        foreach (var item in list.EnumerateArray())
            foreach (var p in item.EnumerateObject())
                shapes.Add(p.Value.ValueKind == JsonValueKind.Array ? p.Value.EnumerateArray().Select(d => d.GetInt64()).ToArray() : []);
        return shapes.ToArray();
    }

    double PerStepMs(IEnumerable<NodeTime> nodes) => nodes.Sum(n => n.Microseconds) / 1000.0 / Math.Max(1, Runs);

    public double TotalMs => PerStepMs(Nodes);

    /// <summary>Forward or backward ("∂/" prefix, the gradient nodes) and the layer part from the node's scope.</summary>
    public static (string Pass, string Part) Region(string nodeName)
    {
        var backward = nodeName.StartsWith("∂/", StringComparison.Ordinal);
        var name = backward ? nodeName[2..] : nodeName;
        string part;
        if (name.Contains("attention/")) part = "attention";
        else if (name.Contains("mlp/")) part = "MLP";
        else if (name.Contains("norm/")) part = "norms";
        else if (name.StartsWith("embedding/", StringComparison.Ordinal)) part = "embedding";
        else if (name.StartsWith("lm_head/", StringComparison.Ordinal)) part = "LM head";
        else if (name.StartsWith("loss/", StringComparison.Ordinal) || name.StartsWith("trainer/", StringComparison.Ordinal)) part = "loss";
        else part = "unscoped (nodes ONNX Runtime's optimizer added)";
        return (backward ? "backward" : "forward", part);
    }

    /// <summary>2 · (output elements) · K for MatMul, Gemm and FusedMatMul (K the contracted length, read from A's shape); 0 otherwise.</summary>
    public static double GemmFlops(NodeTime n, out string shape)
    {
        shape = "";
        if (n.Op is not ("MatMul" or "Gemm" or "FusedMatMul") || n.InputShapes.Length < 2 || n.OutputShape.Length < 2) return 0;
        var a = n.InputShapes[0];
        var b = n.InputShapes[1];
        if (a.Length < 2 || b.Length < 2) return 0;
        long m = n.OutputShape[^2], cols = n.OutputShape[^1];
        // A is [.., M, K] or, transposed, [.., K, M]: K is the axis that is not M (equal when K = M).
        var k = a[^2] == m ? a[^1] : a[^2];
        var batch = n.OutputShape.Take(n.OutputShape.Length - 2).Aggregate(1L, (x, y) => x * y);
        shape = $"{(batch > 1 ? $"{batch}× " : "")}{m}×{k}·{k}×{cols}";
        return 2.0 * batch * m * cols * k;
    }

    public string OperatorTable(int top)
    {
        var total = TotalMs;
        var rows = Nodes.GroupBy(n => n.Op).Select(gr => (Op: gr.Key, Ms: PerStepMs(gr), Count: gr.Count() / Math.Max(1, Runs)))
            .OrderByDescending(r => r.Ms).Take(top);
        var sb = new StringBuilder("| operator | nodes | ms per step | share |\n|---|---:|---:|---:|\n");
        foreach (var r in rows) sb.AppendLine($"| {r.Op} | {r.Count} | {r.Ms:F0} | {100 * r.Ms / total:F1}% |");
        return sb.ToString();
    }

    public string RegionTable(double optimizerMs)
    {
        var total = TotalMs;
        var byRegion = Nodes.GroupBy(n => Region(n.Name)).ToDictionary(gr => gr.Key, gr => PerStepMs(gr));
        var parts = new[] { "embedding", "attention", "MLP", "norms", "LM head", "loss", "unscoped (nodes ONNX Runtime's optimizer added)" };
        var sb = new StringBuilder("| part | forward ms | backward ms | share of node time |\n|---|---:|---:|---:|\n");
        foreach (var part in parts)
        {
            var f = byRegion.GetValueOrDefault(("forward", part));
            var b = byRegion.GetValueOrDefault(("backward", part));
            if (f + b == 0) continue;
            sb.AppendLine($"| {part} | {f:F0} | {b:F0} | {100 * (f + b) / total:F1}% |");
        }
        var fwd = byRegion.Where(kv => kv.Key.Pass == "forward").Sum(kv => kv.Value);
        var bwd = byRegion.Where(kv => kv.Key.Pass == "backward").Sum(kv => kv.Value);
        sb.AppendLine($"| **all nodes** | **{fwd:F0}** | **{bwd:F0}** | 100% |");
        sb.AppendLine($"| optimizer (clipping + AdamW in C#, outside Run) | | | {optimizerMs:F0} ms |");
        return sb.ToString();
    }

    public string GemmTable(int top, double? peakFlops)
    {
        var rows = new Dictionary<(string Op, string Shape, string Pass), (double Us, double Flops, int Count)>();
        foreach (var n in Nodes)
        {
            var flops = GemmFlops(n, out var shape);
            if (flops == 0) continue;
            var key = (n.Op, shape, Region(n.Name).Pass);
            var r = rows.GetValueOrDefault(key);
            rows[key] = (r.Us + n.Microseconds, r.Flops + flops, r.Count + 1);
        }
        var gemmMs = rows.Values.Sum(r => r.Us) / 1000.0 / Math.Max(1, Runs);
        var gemmFlops = rows.Values.Sum(r => r.Flops);
        var sb = new StringBuilder("| operator | pass | shape (batch× M×K·K×N) | nodes per step | ms per step | GFLOP/s | of GEMM peak |\n|---|---|---|---:|---:|---:|---:|\n");
        foreach (var (key, r) in rows.OrderByDescending(kv => kv.Value.Us).Take(top))
        {
            var gflops = r.Flops / (r.Us / 1e6) / 1e9;
            sb.AppendLine($"| {key.Op} | {key.Pass} | {key.Shape} | {r.Count / Math.Max(1, Runs)} | {r.Us / 1000.0 / Math.Max(1, Runs):F0} | {gflops:F1} | {Share(gflops, peakFlops)} |");
        }
        var all = gemmFlops / (gemmMs * Math.Max(1, Runs) / 1000.0) / 1e9;
        sb.AppendLine($"| **all GEMMs** | | | | **{gemmMs:F0}** ({100 * gemmMs / TotalMs:F1}% of node time) | **{all:F1}** | {Share(all, peakFlops)} |");
        return sb.ToString();
    }

    static string Share(double gflops, double? peakFlops) => peakFlops is { } p && p > 0 ? $"{100 * gflops * 1e9 / p:F0}%" : "n/a";
}
