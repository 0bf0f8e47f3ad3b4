using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;
using RlaifOnnx.Training;

namespace RlaifOnnx.Tests.Training.Autodiff;

/// <summary>
/// Whole decoder stacks built here from the same operators the canonical graphs use, checked end to end
/// against finite differences in float64: a 2-layer Llama-style block (RMSNorm via Pow/ReduceMean/Sqrt/Div,
/// RoPE via Slice/Neg/Concat/Mul, grouped-query attention, causal mask via Where, SiLU MLP) and a
/// 2-layer GPT-2-style block (LayerNorm from primitives, learned positions, biases, tanh-GELU).
/// </summary>
public class GradientModelTests
{
    internal const int Batch = 2, Time = 4, Vocab = 11, Hidden = 8, Heads = 2, KvHeads = 1, HeadDim = 4, Inner = 12, Layers = 2;

    internal static readonly long[] Ids = [1, 5, 10, 3, 7, 0, 2, 2];

    /// <summary>Builds the tiny Llama-style forward pass; returns logits [B,T,V].</summary>
    static string TinyLlama(GradientCheck c, string ids, string positions)
    {
        var g = c.G;
        string Norm(string x, string weight)
        {
            var meanSquare = g.ReduceMean(g.Pow(x, g.Scalar(2)), [-1]);
            return g.Mul(g.Div(x, g.Sqrt(g.Add(meanSquare, g.Scalar(1e-5)))), weight);
        }
        string SplitHeads(string x, int count) => g.Transpose(g.Reshape(x, 0, 0, count, HeadDim), 0, 2, 1, 3);   // [B,h,T,D]

        // RoPE tables from the position ids: a constant subgraph (no gradient flows into it).
        var invFreq = g.Constant(Enumerable.Range(0, HeadDim / 2).Select(i => Math.Pow(10000, -2.0 * i / HeadDim)).ToArray(), HeadDim / 2);
        var freqs = g.Mul(g.Unsqueeze(g.Cast(positions, g.FloatType), -1), invFreq);                    // [B,T,D/2]
        var angles = g.Unsqueeze(g.Concat(-1, freqs, freqs), 1);                                            // [B,1,T,D]
        var cos = g.Op("Cos", [angles]);
        var sin = g.Op("Sin", [angles]);
        string Rope(string x)
        {
            var first = g.Slice(x, [0], [HeadDim / 2], [-1]);
            var second = g.Slice(x, [HeadDim / 2], [long.MaxValue], [-1]);
            return g.Add(g.Mul(x, cos), g.Mul(g.Concat(-1, g.Neg(second), first), sin));
        }
        // Causal mask [T,T] from the sequence length: position j visible from i when j ≤ i.
        var length = g.Squeeze(g.Shape(ids, 1, 2), 0);
        var steps = g.Range(g.Int64Scalar(0), length, g.Int64Scalar(1));
        var causal = g.Op("LessOrEqual", [g.Unsqueeze(steps, 0), g.Unsqueeze(steps, 1)]);

        var h = g.Gather(c.Param("embed", [Vocab, Hidden], -0.8, 0.8), ids);                                // [B,T,H]
        for (var l = 0; l < Layers; l++)
        {
            string W(string name, long[] shape) => c.Param($"l{l}.{name}", shape, -0.5, 0.5);
            var x = Norm(h, c.Param($"l{l}.input_norm", [Hidden], 0.5, 1.5));
            var q = Rope(SplitHeads(g.MatMul(x, W("q", [Hidden, Heads * HeadDim])), Heads));
            var k = Rope(SplitHeads(g.MatMul(x, W("k", [Hidden, KvHeads * HeadDim])), KvHeads));
            var v = SplitHeads(g.MatMul(x, W("v", [Hidden, KvHeads * HeadDim])), KvHeads);
            // Grouped-query attention: repeat each KV head for its query heads.
            string Repeat(string t) => g.Reshape(g.Expand(g.Unsqueeze(t, 2), g.Int64s(1, 1, Heads / KvHeads, 1, 1)), 0, Heads, -1, HeadDim);
            var scores = g.Mul(g.MatMul(q, g.Transpose(Repeat(k), 0, 1, 3, 2)), g.Scalar(1 / Math.Sqrt(HeadDim)));
            var masked = g.Where(causal, scores, g.Scalar(-1e9));
            var attention = g.MatMul(g.Softmax(masked, -1), Repeat(v));                                        // [B,h,T,D]
            var merged = g.Reshape(g.Transpose(attention, 0, 2, 1, 3), 0, 0, Heads * HeadDim);
            h = g.Add(h, g.MatMul(merged, W("o", [Heads * HeadDim, Hidden])));
            var y = Norm(h, c.Param($"l{l}.post_norm", [Hidden], 0.5, 1.5));
            var gate = g.MatMul(y, W("gate", [Hidden, Inner]));
            var mlp = g.Mul(g.Mul(gate, g.Sigmoid(gate)), g.MatMul(y, W("up", [Hidden, Inner])));
            h = g.Add(h, g.MatMul(mlp, W("down", [Inner, Hidden])));
        }
        return g.MatMul(Norm(h, c.Param("final_norm", [Hidden], 0.5, 1.5)), c.Param("lm_head", [Hidden, Vocab], -0.8, 0.8));
    }

    /// <summary>Builds the tiny GPT-2-style forward pass; returns logits [B,T,V] (tied embeddings).</summary>
    static string TinyGpt2(GradientCheck c, string ids, string positions)
    {
        var g = c.G;
        string LayerNorm(string x, string name)
        {
            var centered = g.Sub(x, g.ReduceMean(x, [-1]));
            var variance = g.ReduceMean(g.Mul(centered, centered), [-1]);
            var normed = g.Div(centered, g.Sqrt(g.Add(variance, g.Scalar(1e-5))));
            return g.Add(g.Mul(normed, c.Param(name + ".weight", [Hidden], 0.5, 1.5)), c.Param(name + ".bias", [Hidden], -0.3, 0.3));
        }
        string Linear(string x, string name, long inputs, long outputs)
            => g.Add(g.MatMul(x, c.Param(name + ".weight", [inputs, outputs], -0.5, 0.5)), c.Param(name + ".bias", [outputs], -0.3, 0.3));
        string SplitHeads(string x) => g.Transpose(g.Reshape(x, 0, 0, Heads, HeadDim), 0, 2, 1, 3);
        string GeluTanh(string x)
        {
            // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
            var cube = g.Mul(g.Mul(x, x), x);
            var inner = g.Mul(g.Scalar(Math.Sqrt(2 / Math.PI)), g.Add(x, g.Mul(g.Scalar(0.044715), cube)));
            return g.Mul(g.Mul(g.Scalar(0.5), x), g.Add(g.Scalar(1), g.Tanh(inner)));
        }
        var ones = g.Op("ConstantOfShape", [g.Concat(0, g.Shape(ids, 1, 2), g.Shape(ids, 1, 2))], ("value", OnnxFile.FloatTensor("one", [1f], 1)));
        var causal = g.Cast(g.Trilu(ones, upper: false), DataType.Bool);
        var wte = c.Param("wte", [Vocab, Hidden], -0.8, 0.8);
        var h = g.Add(g.Gather(wte, ids), g.Gather(c.Param("wpe", [Time, Hidden], -0.5, 0.5), positions));
        for (var l = 0; l < Layers; l++)
        {
            var qkv = Linear(LayerNorm(h, $"h{l}.ln_1"), $"h{l}.c_attn", Hidden, 3 * Hidden);
            var parts = g.Split(qkv, -1, [Hidden, Hidden, Hidden]);
            var (q, k, v) = (SplitHeads(parts[0]), SplitHeads(parts[1]), SplitHeads(parts[2]));
            var scores = g.Div(g.MatMul(q, g.Transpose(k, 0, 1, 3, 2)), g.Scalar(Math.Sqrt(HeadDim)));
            var attention = g.MatMul(g.Softmax(g.Where(causal, scores, g.Scalar(-1e9)), -1), v);
            var merged = g.Reshape(g.Transpose(attention, 0, 2, 1, 3), 0, 0, Hidden);
            h = g.Add(h, Linear(merged, $"h{l}.c_proj", Hidden, Hidden));
            var mlp = Linear(GeluTanh(Linear(LayerNorm(h, $"h{l}.ln_2"), $"h{l}.c_fc", Hidden, Inner)), $"h{l}.mlp_proj", Inner, Hidden);
            h = g.Add(h, mlp);
        }
        return g.MatMul(LayerNorm(h, "ln_f"), g.Transpose(wte, 1, 0));
    }

    internal static (GradientCheck Check, string Logits) Build(bool gpt2, DataType floatType = DataType.Double)
    {
        var c = new GradientCheck(seed: 7, floatType) { SymbolicIntDims = true };
        var ids = c.Longs("input_ids", Ids, Batch, Time);
        var positions = c.Longs("position_ids", [0, 1, 2, 3, 0, 1, 2, 3], Batch, Time);
        return (c, gpt2 ? TinyGpt2(c, ids, positions) : TinyLlama(c, ids, positions));
    }

    /// <summary>A scalar reward per sequence: the last position's logits projected by a trainable head. → ([1], [1]) for the pair (row 0, row 1).</summary>
    static (string A, string B) PairRewards(GradientCheck c, string logits)
    {
        var g = c.G;
        var last = g.Gather(logits, g.Int64Scalar(-1), 1);                                                 // [B,V]
        var rewards = g.Squeeze(g.MatMul(last, c.Param("score_head", [Vocab, 1], -0.5, 0.5)), -1);        // [B]
        return (g.Gather(rewards, g.Int64s(0)), g.Gather(rewards, g.Int64s(1)));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void CrossEntropyGradientOfWholeModel(bool gpt2)
    {
        var (c, logits) = Build(gpt2);
        var mask = c.Longs("loss_mask", [0, 0, 1, 1, 0, 1, 1, 1], Batch, Time);
        var error = c.CheckLoss(Losses.CausalLmCrossEntropy(c.G, logits, "input_ids", mask), tolerance: 1e-4, maxElementsPerTensor: 1000);
        Assert.True(error < 1e-6, $"max relative error {error:E2}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PreferenceGradientOfWholeModelWithScalarHead(bool gpt2)
    {
        var (c, logits) = Build(gpt2);
        var (a, b) = PairRewards(c, logits);
        var loss = Losses.PreferenceLoss(c.G, a, b, c.Data("p", [1], 0.2, 0.8));
        c.CheckLoss(loss, tolerance: 1e-4, maxElementsPerTensor: 1000);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ValueRegressionGradientOfWholeModel(bool gpt2)
    {
        var (c, logits) = Build(gpt2);
        var values = c.G.Squeeze(c.G.MatMul(logits, c.Param("value_head", [Vocab, 1], -0.5, 0.5)), -1);    // [B,T]
        var loss = Losses.MseLoss(c.G, values, c.Data("returns", [Batch, Time]), c.Longs("m", [1, 1, 1, 0, 1, 1, 1, 1], Batch, Time));
        c.CheckLoss(loss, tolerance: 1e-4, maxElementsPerTensor: 1000);
    }
}
