using RlaifOnnx.Models;


namespace RlaifOnnx.Tests;

/// <summary>
/// An independent float64 forward pass of the Llama family in plain loops, written from Hugging Face's
/// modeling_llama.py and sharing no code with the graph builder. The parity tests hold the ONNX graphs
/// to it. Layout: one token at a time, one head at a time, no vectorisation, no cache — slow and obvious.
/// </summary>
public static class LlamaReference
{
    /// <summary>
    /// Logits [B][S][V] for token ids [B][S] with attention mask [B][S] (1 = real token, 0 = padding) and
    /// position ids [B][S]. Query s sees key j iff j ≤ s and mask[b][j] = 1; a query that sees no key
    /// (a padding position) gets zero attention output — its logits are meaningless and not compared.
    /// </summary>
    public static double[][][] Forward(ModelConfig c, WeightSet weights, long[][] inputIds, long[][] attentionMask, long[][] positionIds)
    {
        var w = weights.ToDictionary(kv => kv.Key, kv => Array.ConvertAll(kv.Value.Data, v => (double)v));
        int batch = inputIds.Length, h = c.HiddenSize, vocab = c.VocabSize;
        var hidden = FinalHidden(c, weights, inputIds, attentionMask, positionIds);
        var logits = new double[batch][][];
        for (var b = 0; b < batch; b++)
        {
            var seq = inputIds[b].Length;
            logits[b] = new double[seq][];
            for (var s = 0; s < seq; s++)
            {
                var n = hidden[b][s];
                if (c.TieEmbeddings)
                {
                    // logits[t] = embedding row t · n.
                    logits[b][s] = new double[vocab];
                    for (var t = 0; t < vocab; t++)
                    {
                        double dot = 0;
                        for (var e = 0; e < h; e++) dot += w["model.embed_tokens.weight"][t * h + e] * n[e];
                        logits[b][s][t] = dot;
                    }
                }
                else logits[b][s] = Linear(n, w["lm_head.weight"], vocab, null);
            }
        }
        return logits;
    }

    /// <summary>The final-normed hidden states [B][S][h] (what the LM head, or a preference model's scalar head, reads).</summary>
    public static double[][][] FinalHidden(ModelConfig c, WeightSet weights, long[][] inputIds, long[][] attentionMask, long[][] positionIds)
    {
        var w = weights.ToDictionary(kv => kv.Key, kv => Array.ConvertAll(kv.Value.Data, v => (double)v));
        int batch = inputIds.Length, h = c.HiddenSize, d = c.HeadDim, heads = c.NumHeads, kvHeads = c.NumKvHeads;
        int group = heads / kvHeads, inter = c.IntermediateSize;
        var hidden = new double[batch][][];
        for (var b = 0; b < batch; b++)
        {
            var seq = inputIds[b].Length;
            // x[s] = embedding row of token s.
            var x = new double[seq][];
            for (var s = 0; s < seq; s++)
                x[s] = w["model.embed_tokens.weight"].AsSpan((int)inputIds[b][s] * h, h).ToArray();

            for (var layer = 0; layer < c.NumLayers; layer++)
            {
                string W(string rest) => WeightNames.LlamaLayer(layer, rest);
                var q = new double[seq][]; var k = new double[seq][]; var v = new double[seq][];
                for (var s = 0; s < seq; s++)
                {
                    var n = RmsNorm(x[s], w[W("input_layernorm.weight")], c.NormEps);
                    q[s] = Linear(n, w[W("self_attn.q_proj.weight")], heads * d, c.AttentionBias ? w[W("self_attn.q_proj.bias")] : null);
                    k[s] = Linear(n, w[W("self_attn.k_proj.weight")], kvHeads * d, c.AttentionBias ? w[W("self_attn.k_proj.bias")] : null);
                    v[s] = Linear(n, w[W("self_attn.v_proj.weight")], kvHeads * d, c.AttentionBias ? w[W("self_attn.v_proj.bias")] : null);
                    for (var head = 0; head < heads; head++) Rotate(q[s], head * d, d, positionIds[b][s], c.RopeTheta);
                    for (var head = 0; head < kvHeads; head++) Rotate(k[s], head * d, d, positionIds[b][s], c.RopeTheta);
                }
                for (var s = 0; s < seq; s++)
                {
                    var attended = new double[heads * d];
                    for (var head = 0; head < heads; head++)
                    {
                        var kvHead = head / group; // Hugging Face's repeat_kv: query head h reads key/value head h / group
                        var scores = new List<(int Key, double Score)>();
                        for (var j = 0; j <= s; j++)
                        {
                            if (attentionMask[b][j] == 0) continue;
                            double dot = 0;
                            for (var e = 0; e < d; e++) dot += q[s][head * d + e] * k[j][kvHead * d + e];
                            scores.Add((j, dot / Math.Sqrt(d)));
                        }
                        if (scores.Count == 0) continue;
                        var max = scores.Max(t => t.Score);
                        var total = scores.Sum(t => Math.Exp(t.Score - max));
                        foreach (var (j, score) in scores)
                        {
                            var p = Math.Exp(score - max) / total;
                            for (var e = 0; e < d; e++) attended[head * d + e] += p * v[j][kvHead * d + e];
                        }
                    }
                    var o = Linear(attended, w[W("self_attn.o_proj.weight")], h, null);
                    for (var e = 0; e < h; e++) x[s][e] += o[e];

                    var n2 = RmsNorm(x[s], w[W("post_attention_layernorm.weight")], c.NormEps);
                    var gate = Linear(n2, w[W("mlp.gate_proj.weight")], inter, null);
                    var up = Linear(n2, w[W("mlp.up_proj.weight")], inter, null);
                    var act = new double[inter];
                    for (var e = 0; e < inter; e++) act[e] = gate[e] / (1 + Math.Exp(-gate[e])) * up[e];
                    var down = Linear(act, w[W("mlp.down_proj.weight")], h, null);
                    for (var e = 0; e < h; e++) x[s][e] += down[e];
                }
            }

            hidden[b] = new double[seq][];
            for (var s = 0; s < seq; s++) hidden[b][s] = RmsNorm(x[s], w["model.norm.weight"], c.NormEps);
        }
        return hidden;
    }

    /// <summary>y = x · W (+ bias), W in MatMul layout [in, out] row-major.</summary>
    public static double[] Linear(double[] x, double[] weight, int outputs, double[]? bias)
    {
        var y = new double[outputs];
        for (var i = 0; i < x.Length; i++)
            for (var o = 0; o < outputs; o++) y[o] += x[i] * weight[i * outputs + o];
        if (bias is not null) for (var o = 0; o < outputs; o++) y[o] += bias[o];
        return y;
    }

    public static double[] RmsNorm(double[] x, double[] weight, double eps)
    {
        var meanSquare = x.Sum(v => v * v) / x.Length;
        var scale = 1 / Math.Sqrt(meanSquare + eps);
        return x.Select((v, i) => v * scale * weight[i]).ToArray();
    }

    /// <summary>Rotary embedding in place on x[offset .. offset+d): pairs (e, e + d/2) rotate by position · θ^(-2e/d).</summary>
    public static void Rotate(double[] x, int offset, int d, long position, double theta)
    {
        var half = d / 2;
        for (var e = 0; e < half; e++)
        {
            var angle = position / Math.Pow(theta, 2.0 * e / d);
            double a = x[offset + e], b = x[offset + e + half];
            x[offset + e] = a * Math.Cos(angle) - b * Math.Sin(angle);
            x[offset + e + half] = b * Math.Cos(angle) + a * Math.Sin(angle);
        }
    }
}

/// <summary>The reference's building blocks on hand-computed numbers.</summary>
public class LlamaReferenceTests
{
    [Fact]
    public void RmsNorm_divides_by_root_mean_square()
    {
        // mean(3², 4²) = 12.5; 1/sqrt(12.5) = 0.28284271…
        var y = LlamaReference.RmsNorm([3, 4], [1, 2], 0);
        Assert.Equal(0.848528137423857, y[0], 12);
        Assert.Equal(2.262741699796952, y[1], 12);
    }

    [Fact]
    public void Rotate_turns_each_half_pair_by_position_times_frequency()
    {
        // D = 4: pairs (0, 2) at frequency 1 and (1, 3) at frequency θ^(-1/2) = 0.01 for θ = 10⁴.
        double[] x = [1, 1, 0, 0];
        LlamaReference.Rotate(x, 0, 4, 2, 10000);
        Assert.Equal(Math.Cos(2), x[0], 14);
        Assert.Equal(Math.Sin(2), x[2], 14);
        Assert.Equal(Math.Cos(0.02), x[1], 14);
        Assert.Equal(Math.Sin(0.02), x[3], 14);
    }

    [Fact]
    public void Linear_uses_matmul_layout()
    {
        // x [2] · W [2, 3] + b.
        var y = LlamaReference.Linear([1, 2], [1, 2, 3, 4, 5, 6], 3, [0.5, 0, 0]);
        Assert.Equal([9.5, 12, 15], y);
    }
}
