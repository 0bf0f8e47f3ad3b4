using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Models;

/// <summary>
/// The decoder of the graphs without a KV cache (training, the preference model), laid out for the speed of
/// the training step. Same math as the cached flavour, in other layouts:
///
/// - The residual stream is 2-D, [N = B·S, h]: every projection and the LM head is one 2-D product, which
///   ONNX Runtime runs as one large GEMM (a [B, S, h] · [h, n] MatMul ran at a third of that rate), and
///   whose gradients are Gemm nodes with no reshapes around them.
/// - The tied LM head is a Gemm with transB over the embedding [V, h]: no Transpose of the 98 MB table.
/// - Attention folds each key/value head's group of query heads into the rows, [B, kvH, group·S, D], so
///   both attention products are plain batched MatMuls (no broadcast over the group axis), and the keys
///   are laid out [B, kvH, D, S] by the same Transpose that splits the heads.
/// - RMSNorm is one SimplifiedLayerNormalization node with its own gradient rule.
/// - rotate_half is a product with a constant signed permutation [D, D] (exact: every term is ±x or 0),
///   one node instead of Split, Neg and Concat and their gradients.
/// </summary>
public static partial class LlamaGraph
{
    /// <summary>
    /// The decoder stack up to the final RMSNorm as [N = B·S, h] (rows in batch-major order), for graphs
    /// without a cache. Reads the weights by canonical name.
    /// </summary>
    static string FlatFinalHidden(GraphBuilder g, ModelConfig c, string inputIds, string mask, string positionIds)
    {
        int heads = c.NumHeads, kvHeads = c.NumKvHeads, d = c.HeadDim, group = heads / kvHeads;
        g.Scope = "embedding/";
        // The residual stream between layers carries fixed names (DecoderGraphs.LayerInput): gradient checkpointing's checkpoints.
        var x = g.Node("Gather", ["model.embed_tokens.weight", g.Reshape(inputIds, -1)], [DecoderGraphs.LayerInput(0)])[0];   // [N, h]
        g.Scope = "attention/";
        var (cos, sin) = FlatRotaryCosSin(g, positionIds, d, c.RopeTheta, 1.0);                   // [N, 1, D] each
        var (qCos, qSin) = FlatRotaryCosSin(g, positionIds, d, c.RopeTheta, 1.0 / Math.Sqrt(d));  // 1/sqrt(D) folded in (see FinalHidden)
        var rotateHalf = RotateHalfMatrix(g, d);                                                  // [D, D]
        // The mask bias [B, 1, 1, S, T] repeated over the group and folded like the queries: [B, 1, group·S, T].
        var bias = AttentionMaskBias(g, inputIds, mask);
        var biasRows = g.Reshape(g.Expand(bias, g.Int64s(1, 1, group, 1, 1)), g.Concat(0, g.Int64s(0, 1, -1), g.Shape(mask, 1, 2)));
        var batchSeq = g.Shape(inputIds);                                                         // [B, S]
        var qHeads = g.Concat(0, batchSeq, g.Int64s(kvHeads, group, d));                          // [B, S, kvH, group, D]
        var kHeads = g.Concat(0, batchSeq, g.Int64s(kvHeads, d));                                 // [B, S, kvH, D]

        for (var i = 0; i < c.NumLayers; i++)
        {
            string W(string rest) => WeightNames.LlamaLayer(i, rest);

            g.Scope = $"layer{i}/norm/";
            var normed = FusedRmsNorm(g, x, W("input_layernorm.weight"), c.NormEps);
            g.Scope = $"layer{i}/attention/";
            var q = Projection(g, normed, W("self_attn.q_proj.weight"), c.AttentionBias ? W("self_attn.q_proj.bias") : null);   // [N, H·D]
            var k = Projection(g, normed, W("self_attn.k_proj.weight"), c.AttentionBias ? W("self_attn.k_proj.bias") : null);   // [N, kvH·D]
            var v = Projection(g, normed, W("self_attn.v_proj.weight"), c.AttentionBias ? W("self_attn.v_proj.bias") : null);   // [N, kvH·D]
            q = FlatRotary(g, q, heads, d, qCos, qSin, rotateHalf);                                                             // [N, H, D]
            k = FlatRotary(g, k, kvHeads, d, cos, sin, rotateHalf);                                                             // [N, kvH, D]
            var qRows = g.Reshape(g.Transpose(g.Reshape(q, qHeads), 0, 2, 3, 1, 4), 0, 0, -1, d);  // [B, kvH, group·S, D]
            var kT = g.Transpose(g.Reshape(k, kHeads), 0, 2, 3, 1);                                // [B, kvH, D, T]
            var v4 = g.Transpose(g.Reshape(v, kHeads), 0, 2, 1, 3);                                // [B, kvH, T, D]
            var probs = g.Softmax(g.Add(g.MatMul(qRows, kT), biasRows), -1);                       // [B, kvH, group·S, T]
            var attended = g.Reshape(g.MatMul(probs, v4), 0, 0, group, -1, d);                     // [B, kvH, group, S, D]
            var merged = g.Reshape(g.Transpose(attended, 0, 3, 1, 2, 4), -1, heads * d);           // [N, H·D]
            x = g.Add(x, g.MatMul(merged, W("self_attn.o_proj.weight")));

            g.Scope = $"layer{i}/norm/";
            var n2 = FusedRmsNorm(g, x, W("post_attention_layernorm.weight"), c.NormEps);
            g.Scope = $"layer{i}/mlp/";
            x = g.Node("Add", [x, SwiGluMlp(g, n2, i)], [DecoderGraphs.LayerInput(i + 1)])[0];
        }

        g.Scope = "final_norm/";
        var final = FusedRmsNorm(g, x, "model.norm.weight", c.NormEps);
        g.Scope = "";
        return final;
    }

    /// <summary>
    /// RMSNorm over the last axis as ONNX Runtime's SimplifiedLayerNormalization (a CPU kernel in the ONNX
    /// domain, float and double): one pass instead of six nodes, and one gradient rule
    /// (Differentiator's SimplifiedLayerNormalization) instead of the element-wise rules of those six.
    /// </summary>
    static string FusedRmsNorm(GraphBuilder g, string x, string weight, double eps)
        => g.Op("SimplifiedLayerNormalization", [x, weight], ("axis", -1L), ("epsilon", (float)eps));

    /// <summary>[N, h] rows back to [B, S, h], the shape of <paramref name="inputIds"/> plus the last axis.</summary>
    static string Unflatten(GraphBuilder g, string rows, string inputIds, long last)
        => g.Reshape(rows, g.Concat(0, g.Shape(inputIds), g.Int64s(last)));

    /// <summary>The training flavour's logits [B, S, V]: the LM head as one 2-D product over the rows (transB over a tied embedding).</summary>
    static void FlatLogits(GraphBuilder g, ModelConfig c, string inputIds, string mask, string positionIds)
    {
        var final = FlatFinalHidden(g, c, inputIds, mask, positionIds);                   // [N, h]
        g.Scope = "lm_head/";
        var logits = c.TieEmbeddings
            ? g.Op("Gemm", [final, "model.embed_tokens.weight"], ("transB", 1L))          // [N, h] · [V, h]ᵀ
            : g.MatMul(final, "lm_head.weight");                                          // [N, h] · [h, V]
        g.Node("Reshape", [logits, g.Concat(0, g.Shape(inputIds), g.Int64s(c.VocabSize))], ["logits"]);
        g.Scope = "";
        g.Output("logits", g.FloatType, "batch_size", "sequence_length", c.VocabSize);
    }

    /// <summary>cos and sin tables as <see cref="RotaryCosSin"/>, one row per token: [N, 1, D] to broadcast over heads.</summary>
    static (string Cos, string Sin) FlatRotaryCosSin(GraphBuilder g, string positionIds, int headDim, double theta, double scale)
    {
        var half = headDim / 2;
        var inverseFrequencies = new double[headDim];
        for (var j = 0; j < half; j++)
            inverseFrequencies[j] = inverseFrequencies[j + half] = 1.0 / Math.Pow(theta, 2.0 * j / headDim);
        var invFreq = g.Initializer(DoubleTensor(g.Fresh("rope_inv_freq"), inverseFrequencies, headDim));
        var positions = g.Reshape(g.Cast(positionIds, DataType.Double), -1, 1, 1);        // [N, 1, 1]
        var angles = g.Mul(positions, invFreq);                                            // [N, 1, D]
        string ToGraphType(string v)
        {
            if (scale != 1.0) v = g.Mul(v, g.Initializer(DoubleTensor(g.Fresh("rope_scale"), [scale])));
            return g.FloatType == DataType.Double ? v : g.Cast(v, g.FloatType);
        }
        return (ToGraphType(g.Op("Cos", [angles])), ToGraphType(g.Op("Sin", [angles])));
    }

    /// <summary>R [D, D] with x · R = rotate_half(x) = cat(−x₂, x₁) for a row x of length D.</summary>
    static string RotateHalfMatrix(GraphBuilder g, int headDim)
    {
        var half = headDim / 2;
        var r = new double[headDim * headDim];
        for (var j = 0; j < half; j++)
        {
            r[(j + half) * headDim + j] = -1;   // output j      = −x[j + half]
            r[j * headDim + j + half] = 1;      // output j+half =  x[j]
        }
        return g.Constant(r, headDim, headDim);
    }

    /// <summary>Rotary embedding of projections [N, heads·D]: x · cos + rotate_half(x) · sin, as [N, heads, D].</summary>
    static string FlatRotary(GraphBuilder g, string x, int heads, int headDim, string cos, string sin, string rotateHalf)
    {
        var rotated = g.Reshape(g.MatMul(g.Reshape(x, -1, headDim), rotateHalf), -1, heads, headDim);
        return g.Add(g.Mul(g.Reshape(x, -1, heads, headDim), cos), g.Mul(rotated, sin));
    }
}
