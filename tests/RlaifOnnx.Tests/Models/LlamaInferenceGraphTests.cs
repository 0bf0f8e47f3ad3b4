using RlaifOnnx.Models;

namespace RlaifOnnx.Tests.Models;

/// <summary>
/// The inference graph in ONNX Runtime's fused CPU operators (what ModelWriter writes and GenAI and the
/// scorers run) against the same weights in the standard-operator graph: the fused operators change float
/// rounding only. Its parity with the float64 reference is in <see cref="LlamaGraphTests"/>, which builds the
/// default (fused) graph.
/// </summary>
public class LlamaInferenceGraphTests
{
    static readonly long[][] Ids = [[5, 17, 42, 3, 88, 61, 7, 29], [0, 0, 0, 11, 2, 96, 40, 13]];
    static readonly long[][] Mask = [[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1]];

    static long[][] Take(long[][] rows, int start, int count) => rows.Select(r => r[start..(start + count)]).ToArray();

    [Theory]
    [InlineData("mha-tied", false)]
    [InlineData("gqa-untied", false)]
    [InlineData("qwen2-bias", false)]
    [InlineData("mha-tied", true)]
    [InlineData("gqa-untied", true)]
    [InlineData("qwen2-bias", true)]
    [InlineData("gqa-untied", true, true)]
    public void Fused_graph_equals_standard_graph_within_float_rounding(string variant, bool groupQueryAttention, bool swappedBackForScoring = false)
    {
        var config = TinyLlama.Config(variant);
        var weights = TinyLlama.Weights(config);
        var positions = TinyLlama.PositionsFromMask(Mask);
        var graph = LlamaGraph.Inference(config, weights, groupQueryAttention: groupQueryAttention);
        if (swappedBackForScoring)
        {
            // The GroupQueryAttention nodes swapped back to MatMul attention (how a scorer would run such a graph).
            graph = LlamaInferenceGraph.WithMatMulAttention(graph);
            Assert.DoesNotContain(graph.Graph.Node, n => n.OpType == "GroupQueryAttention");
            groupQueryAttention = false;
        }
        using var fused = new OrtTestRunner(graph);
        using var standard = new OrtTestRunner(LlamaGraph.Inference(config, weights, fusedOperators: false));

        // A left-padded batch: prefill 6 tokens, then 2 decode steps through each graph's own cache.
        Dictionary<string, TestTensor>? fusedOut = null, standardOut = null;
        var largest = 0.0;
        foreach (var (start, count) in new[] { (0, 6), (6, 1), (7, 1) })
        {
            fusedOut = fused.Run(TinyLlama.InferenceInputs(config, Take(Ids, start, count), Take(Mask, 0, start + count), Take(positions, start, count), fusedOut));
            standardOut = standard.Run(TinyLlama.InferenceInputs(config, Take(Ids, start, count), Take(Mask, 0, start + count), Take(positions, start, count), standardOut));
            for (var b = 0; b < 2; b++)
                for (var s = 0; s < count; s++)
                {
                    if (Mask[b][start + s] == 0) continue;   // padding positions' logits are never read
                    var f = TinyLlama.Row(fusedOut["logits"], b, s);
                    var r = TinyLlama.Row(standardOut["logits"], b, s);
                    largest = Math.Max(largest, TinyLlama.MaxAbsDiff(f, r));
                    Assert.Equal(Array.IndexOf(r, r.Max()), Array.IndexOf(f, f.Max()));   // the greedy token
                }
            // The caches hold the same rotated keys and values. The MatMul attention also agrees at padding positions
            // (masked later); GroupQueryAttention averages a fully masked query row over the keys up to it rather
            // than over all keys, so with it only the positions a real token sits at are compared.
            for (var i = 0; i < config.NumLayers; i++)
                foreach (var name in new[] { LlamaGraph.PresentKeyName(i), LlamaGraph.PresentValueName(i) })
                {
                    Assert.Equal(standardOut[name].Shape, fusedOut[name].Shape);
                    var shape = fusedOut[name].Shape;   // [B, kvH, T, D]
                    var cacheDiff = 0.0;
                    for (var e = 0; e < fusedOut[name].Floats!.Length; e++)
                    {
                        var (b, t) = (e / (int)(shape[1] * shape[2] * shape[3]), e / (int)shape[3] % (int)shape[2]);
                        if (groupQueryAttention && Mask[b][t] == 0) continue;
                        cacheDiff = Math.Max(cacheDiff, Math.Abs(fusedOut[name].Floats![e] - standardOut[name].Floats![e]));
                    }
                    Assert.True(cacheDiff < 1e-5, $"{name}: {cacheDiff}");
                }
        }
        // Logits span several units here (TinyLlama.Weights), so 1e-5 is float rounding, not a different formula.
        TestContext.Current.TestOutputHelper?.WriteLine($"{variant}{(groupQueryAttention ? " GroupQueryAttention" : "")}{(swappedBackForScoring ? " GroupQueryAttention swapped back" : "")}: largest |Δlogit| fused vs standard {largest:E2}");
        Assert.True(largest < 1e-5, $"largest |Δlogit| fused vs standard: {largest:E2}");
    }

    [Fact]
    public void Fused_graph_runs_fewer_nodes_with_the_listed_contrib_operators()
    {
        var config = TinyLlama.Config("qwen2-bias") with { NumLayers = 4 };
        var weights = TinyLlama.Weights(config);
        var fused = LlamaGraph.Inference(config, weights);
        var standard = LlamaGraph.Inference(config, weights, fusedOperators: false);

        string[] contrib = ["FusedMatMul", "QuickGelu", "RotaryEmbedding", "SkipSimplifiedLayerNormalization"];
        Assert.Equal(contrib, fused.Graph.Node.Where(n => n.Domain == "com.microsoft").Select(n => n.OpType).Distinct().Order().ToArray());
        Assert.Contains(fused.Graph.Node, n => n.OpType == "SimplifiedLayerNormalization" && n.Domain == "");
        // Per layer: 2 norms, 3 projections (+3 bias Adds), 2 rotations, attention, o_proj, SwiGLU: about half the standard count.
        var perLayerFused = fused.Graph.Node.Count / (double)config.NumLayers;
        var perLayerStandard = standard.Graph.Node.Count / (double)config.NumLayers;
        Assert.True(perLayerFused < 0.6 * perLayerStandard, $"{perLayerFused} vs {perLayerStandard} nodes per layer");
        // Same interface: GenAI, OrtScorer, RewardScorer and RolloutPolicy feed either graph the same way.
        Assert.Equal(standard.Graph.Input.Select(i => i.Name), fused.Graph.Input.Select(i => i.Name));
        Assert.Equal(standard.Graph.Output.Select(o => o.Name), fused.Graph.Output.Select(o => o.Name));

        // The GroupQueryAttention flavour: attention in one node per layer, the same interface again.
        var written = LlamaGraph.Inference(config, weights, groupQueryAttention: true);
        Assert.Equal(config.NumLayers, written.Graph.Node.Count(n => n.OpType == "GroupQueryAttention" && n.Domain == "com.microsoft"));
        // About half the nodes a layer; the mask, rotary-table and sequence-length nodes are shared by all 4 layers.
        Assert.True(written.Graph.Node.Count < 0.7 * fused.Graph.Node.Count, $"{written.Graph.Node.Count} vs {fused.Graph.Node.Count} nodes");
        Assert.Equal(standard.Graph.Input.Select(i => i.Name), written.Graph.Input.Select(i => i.Name));
        Assert.Equal(standard.Graph.Output.Select(o => o.Name), written.Graph.Output.Select(o => o.Name));
    }
}
