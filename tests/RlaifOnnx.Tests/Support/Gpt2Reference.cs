using RlaifOnnx.Models;


namespace RlaifOnnx.Tests;

/// <summary>
/// An independent GPT-2 forward in plain float64 loops, written from the Hugging Face GPT2LMHeadModel
/// equations (no ONNX), for parity tests. Full sequence, no cache: input ids, attention mask and position
/// ids are all [B,S]; a query attends keys at or before it whose mask is 1. Returns logits [B,S,V].
/// </summary>
public static class Gpt2Reference
{
    public static double[,,] Forward(ModelConfig c, WeightSet w, long[,] ids, long[,] mask, long[,] positions)
    {
        int batch = ids.GetLength(0), seq = ids.GetLength(1), hidden = c.HiddenSize, vocab = c.VocabSize;
        var wte = Array.ConvertAll(w["transformer.wte.weight"].Data, v => (double)v);
        var final = FinalHidden(c, w, ids, mask, positions);
        var logits = new double[batch, seq, vocab];
        for (var b = 0; b < batch; b++)
            for (var s = 0; s < seq; s++)
            {
                var f = final[b][s];
                for (var v = 0; v < vocab; v++)
                {
                    double dot = 0;
                    for (var j = 0; j < hidden; j++) dot += f[j] * wte[v * hidden + j];
                    logits[b, s, v] = dot;
                }
            }
        return logits;
    }

    /// <summary>The hidden states after ln_f, [B][S][H] (what the LM head, or a preference model's scalar head, reads).</summary>
    public static double[][][] FinalHidden(ModelConfig c, WeightSet w, long[,] ids, long[,] mask, long[,] positions)
    {
        int batch = ids.GetLength(0), seq = ids.GetLength(1), hidden = c.HiddenSize, heads = c.NumHeads, hd = c.HeadDim;
        int inter = c.IntermediateSize;
        double[] W(string name) => Array.ConvertAll(w[name].Data, v => (double)v);
        var wte = W("transformer.wte.weight");
        var wpe = W("transformer.wpe.weight");
        var final = new double[batch][][];

        for (var b = 0; b < batch; b++)
        {
            // x[s][j]: token + position embedding.
            var x = new double[seq][];
            for (var s = 0; s < seq; s++)
            {
                x[s] = new double[hidden];
                for (var j = 0; j < hidden; j++)
                    x[s][j] = wte[ids[b, s] * hidden + j] + wpe[positions[b, s] * hidden + j];
            }

            for (var layer = 0; layer < c.NumLayers; layer++)
            {
                string P(string rest) => WeightNames.Gpt2Layer(layer, rest);
                var a = x.Select(r => LayerNorm(r, W(P("ln_1.weight")), W(P("ln_1.bias")), c.NormEps)).ToArray();
                var qkv = a.Select(r => Linear(r, W(P("attn.c_attn.weight")), W(P("attn.c_attn.bias")), 3 * hidden)).ToArray();
                var attended = new double[seq][];
                for (var s = 0; s < seq; s++) attended[s] = new double[hidden];
                for (var head = 0; head < heads; head++)
                {
                    for (var s = 0; s < seq; s++)
                    {
                        // scores over keys t ≤ s with mask 1; a query with no such key gets none (its output stays 0).
                        var scores = new List<(int t, double score)>();
                        for (var t = 0; t <= s; t++)
                        {
                            if (mask[b, t] == 0) continue;
                            double dot = 0;
                            for (var e = 0; e < hd; e++) dot += qkv[s][head * hd + e] * qkv[t][hidden + head * hd + e];
                            scores.Add((t, dot / Math.Sqrt(hd)));
                        }
                        if (scores.Count == 0) continue;
                        var max = scores.Max(p => p.score);
                        var z = scores.Sum(p => Math.Exp(p.score - max));
                        foreach (var (t, score) in scores)
                        {
                            var p = Math.Exp(score - max) / z;
                            for (var e = 0; e < hd; e++) attended[s][head * hd + e] += p * qkv[t][2 * hidden + head * hd + e];
                        }
                    }
                }
                for (var s = 0; s < seq; s++)
                {
                    var proj = Linear(attended[s], W(P("attn.c_proj.weight")), W(P("attn.c_proj.bias")), hidden);
                    for (var j = 0; j < hidden; j++) x[s][j] += proj[j];
                    var m = LayerNorm(x[s], W(P("ln_2.weight")), W(P("ln_2.bias")), c.NormEps);
                    var up = Linear(m, W(P("mlp.c_fc.weight")), W(P("mlp.c_fc.bias")), inter);
                    for (var j = 0; j < inter; j++) up[j] = c.HiddenAct == "gelu_new" ? GeluTanh(up[j]) : GeluExact(up[j]);
                    var down = Linear(up, W(P("mlp.c_proj.weight")), W(P("mlp.c_proj.bias")), hidden);
                    for (var j = 0; j < hidden; j++) x[s][j] += down[j];
                }
            }

            final[b] = x.Select(r => LayerNorm(r, W("transformer.ln_f.weight"), W("transformer.ln_f.bias"), c.NormEps)).ToArray();
        }
        return final;
    }

    /// <summary>y = x W + b with W stored [in, out].</summary>
    static double[] Linear(double[] x, double[] weight, double[] bias, int outputs)
    {
        var y = (double[])bias.Clone();
        for (var i = 0; i < x.Length; i++)
            for (var o = 0; o < outputs; o++) y[o] += x[i] * weight[i * outputs + o];
        return y;
    }

    static double[] LayerNorm(double[] x, double[] gamma, double[] beta, double eps)
    {
        var mean = x.Average();
        var variance = x.Sum(v => (v - mean) * (v - mean)) / x.Length;
        var inv = 1.0 / Math.Sqrt(variance + eps);
        return x.Select((v, j) => (v - mean) * inv * gamma[j] + beta[j]).ToArray();
    }

    public static double GeluTanh(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    public static double GeluExact(double x) => 0.5 * x * (1 + Erf(x / Math.Sqrt(2)));

    /// <summary>
    /// erf(x) = (2/√π) e^(−x²) Σₙ 2ⁿ x^(2n+1) / (2n+1)!! — every term positive, so no cancellation
    /// (Abramowitz &amp; Stegun 7.1.6); |erf(x) − sign(x)| &lt; 1e-17 beyond |x| = 6.
    /// </summary>
    public static double Erf(double x)
    {
        if (Math.Abs(x) >= 6) return Math.Sign(x);
        double term = x, sum = x;
        for (var n = 1; n < 500 && Math.Abs(term) > 1e-17 * Math.Abs(sum); n++)
        {
            term *= 2 * x * x / (2 * n + 1);
            sum += term;
        }
        return 2 / Math.Sqrt(Math.PI) * Math.Exp(-x * x) * sum;
    }
}
