using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Models;

/// <summary>
/// The Llama-family inference graph (float32, KV cache in GenAI's layout) written with the fused operators
/// of ONNX Runtime's CPU build, as GenAI's own model builder emits them for CPU, so a decoder step runs
/// few nodes: at batch 1 a step is ~0.1 ms of work per weight matrix, and every extra node adds its own
/// launch overhead on top.
///
/// Same inputs, outputs, weights (canonical names) and math as <see cref="LlamaGraph"/>'s standard-op
/// flavour; only float rounding differs:
/// - RMSNorm: SimplifiedLayerNormalization; each residual Add fused into the next norm with
///   com.microsoft SkipSimplifiedLayerNormalization (output 3 is the residual sum).
/// - RoPE: com.microsoft RotaryEmbedding (rotate_half layout) on q [B, S, H·D] and k [B, S, kvH·D], reading
///   cos/sin rows computed per call from position_ids in float64 (any position, as in the standard graph);
///   the attention scale 1/√D is FusedMatMul's alpha.
/// - SiLU: com.microsoft QuickGelu with alpha 1 (x · sigmoid(x)).
/// - Tied LM head: FusedMatMul with transB reads the embedding [V, h] directly (no transposed copy).
/// Grouped-query attention stays a broadcasting MatMul over [B, kvH, group, S, T] with the additive mask
/// bias, so left-padded batches and batched suffixes after a cache (OrtScorer) keep working exactly as with
/// the standard graph (ONNX Runtime's GroupQueryAttention refuses S &gt; 1 after a cache at batch &gt; 1).
/// </summary>
static class LlamaInferenceGraph
{
    const string Ms = "com.microsoft";

    public static void Build(GraphBuilder g, ModelConfig c)
    {
        int heads = c.NumHeads, kvHeads = c.NumKvHeads, d = c.HeadDim, group = heads / kvHeads;
        var ft = g.FloatType;
        var inputIds = g.Input("input_ids", DataType.Int64, "batch_size", "sequence_length");
        var mask = g.Input("attention_mask", DataType.Int64, "batch_size", "total_sequence_length");
        var positionIds = g.Input("position_ids", DataType.Int64, "batch_size", "sequence_length");
        for (var i = 0; i < c.NumLayers; i++)
        {
            g.Input(LlamaGraph.PastKeyName(i), ft, "batch_size", kvHeads, "past_sequence_length", d);
            g.Input(LlamaGraph.PastValueName(i), ft, "batch_size", kvHeads, "past_sequence_length", d);
        }

        g.Scope = "embedding/";
        var residual = g.Gather("model.embed_tokens.weight", inputIds);        // [B, S, h]
        g.Scope = "attention/";
        var (cos, sin, rotaryIndex) = RotaryTables(g, c, positionIds);          // [B·S, D/2] each, [B, S]
        var maskBias = LlamaGraph.AttentionMaskBias(g, inputIds, mask);        // [B, 1, 1, S, T]
        var scale = 1.0 / Math.Sqrt(d);

        g.Scope = "layer0/norm/";
        var normed = g.Op("SimplifiedLayerNormalization", [residual, "model.layers.0.input_layernorm.weight"],
            ("axis", -1L), ("epsilon", (float)c.NormEps), ("stash_type", 1L));
        for (var i = 0; i < c.NumLayers; i++)
        {
            string W(string rest) => WeightNames.LlamaLayer(i, rest);
            string? Bias(string proj) => c.AttentionBias ? W($"self_attn.{proj}.bias") : null;

            // Attention block: residual + o_proj(attention(normed)).
            g.Scope = $"layer{i}/attention/";
            var q = Rotary(g, Projection(g, normed, W("self_attn.q_proj.weight"), Bias("q_proj")), rotaryIndex, cos, sin, heads);
            var k = Rotary(g, Projection(g, normed, W("self_attn.k_proj.weight"), Bias("k_proj")), rotaryIndex, cos, sin, kvHeads);
            var v = Projection(g, normed, W("self_attn.v_proj.weight"), Bias("v_proj"));
            var q5 = g.Transpose(g.Reshape(q, 0, 0, kvHeads, group, d), 0, 2, 3, 1, 4);    // [B, kvH, group, S, D]
            var k4 = g.Transpose(g.Reshape(k, 0, 0, kvHeads, d), 0, 2, 1, 3);              // [B, kvH, S, D]
            var v4 = g.Transpose(g.Reshape(v, 0, 0, kvHeads, d), 0, 2, 1, 3);              // [B, kvH, S, D]
            // The cache holds rotated keys [B, kvH, T, D]; Concat writes the outputs directly.
            k4 = g.Node("Concat", [LlamaGraph.PastKeyName(i), k4], [LlamaGraph.PresentKeyName(i)], "", ("axis", 2))[0];
            v4 = g.Node("Concat", [LlamaGraph.PastValueName(i), v4], [LlamaGraph.PresentValueName(i)], "", ("axis", 2))[0];
            g.Output(k4, ft, "batch_size", kvHeads, "total_sequence_length", d);
            g.Output(v4, ft, "batch_size", kvHeads, "total_sequence_length", d);
            var scores = g.Node("FusedMatMul", [q5, g.Unsqueeze(k4, 2)], [g.Fresh("scores")], Ms,
                ("transA", 0L), ("transB", 1L), ("alpha", (float)scale))[0];                // [B, kvH, group, S, T]
            var probs = g.Softmax(g.Add(scores, maskBias), -1);
            var attended = g.MatMul(probs, g.Unsqueeze(v4, 2));                             // [B, kvH, group, S, D]
            var merged = g.Reshape(g.Transpose(attended, 0, 3, 1, 2, 4), 0, 0, heads * d);   // [B, S, H·D]
            var attentionOut = g.MatMul(merged, W("self_attn.o_proj.weight"));

            // MLP block: residual + down(silu(gate(n)) · up(n)), n = rms_norm(residual).
            g.Scope = $"layer{i}/norm/";
            (var n2, residual) = SkipNorm(g, attentionOut, residual, W("post_attention_layernorm.weight"), c.NormEps);
            g.Scope = $"layer{i}/mlp/";
            var gate = g.MatMul(n2, W("mlp.gate_proj.weight"));
            var up = g.MatMul(n2, W("mlp.up_proj.weight"));
            var silu = g.Node("QuickGelu", [gate], [g.Fresh("silu")], Ms, ("alpha", 1.0f))[0];
            var mlpOut = g.MatMul(g.Mul(silu, up), W("mlp.down_proj.weight"));

            // The next layer's input norm (or the final norm) takes the residual Add with it.
            var last = i == c.NumLayers - 1;
            g.Scope = last ? "final_norm/" : $"layer{i + 1}/norm/";
            (normed, residual) = SkipNorm(g, mlpOut, residual,
                last ? "model.norm.weight" : WeightNames.LlamaLayer(i + 1, "input_layernorm.weight"), c.NormEps);
        }

        g.Scope = "lm_head/";
        if (c.TieEmbeddings)
            g.Node("FusedMatMul", [normed, "model.embed_tokens.weight"], ["logits"], Ms, ("transA", 0L), ("transB", 1L), ("alpha", 1.0f));
        else
            g.Node("MatMul", [normed, "lm_head.weight"], ["logits"]);
        g.Scope = "";
        g.Output("logits", ft, "batch_size", "sequence_length", c.VocabSize);
    }

    /// <summary>rms_norm(x + skip) · weight and the sum x + skip (the new residual stream).</summary>
    static (string Normed, string Sum) SkipNorm(GraphBuilder g, string x, string skip, string weight, double eps)
    {
        var normed = g.Fresh("normed");
        var sum = g.Fresh("residual");
        g.Node("SkipSimplifiedLayerNormalization", [x, skip, weight], [normed, "", "", sum], Ms, ("epsilon", (float)eps));
        return (normed, sum);
    }

    static string Projection(GraphBuilder g, string x, string weight, string? bias)
    {
        var y = g.MatMul(x, weight);
        return bias is null ? y : g.Add(y, bias);
    }

    /// <summary>RoPE (rotate_half layout) on [B, S, heads·D], token (b, s) rotated by table row index[b, s].</summary>
    static string Rotary(GraphBuilder g, string x, string index, string cos, string sin, int heads)
        => g.Node("RotaryEmbedding", [x, index, cos, sin], [g.Fresh("rotated")], Ms,
            ("interleaved", 0L), ("num_heads", (long)heads))[0];

    /// <summary>
    /// RotaryEmbedding reads cos/sin from tables indexed by its position input. Rather than a fixed table of
    /// MaxPositions rows (which would refuse the positions past it that the standard graph computes), the
    /// tables hold one row per token of this call — cos and sin of position · θ^(-2j/D), j &lt; D/2, computed in
    /// float64 as the standard graph does, then cast — and the index of token (b, s) is b·S + s.
    /// Returns the tables [B·S, D/2] and the indices [B, S]; a handful of nodes per call, shared by all layers.
    /// </summary>
    static (string Cos, string Sin, string Index) RotaryTables(GraphBuilder g, ModelConfig c, string positionIds)
    {
        var half = c.HeadDim / 2;
        var inverseFrequencies = new double[half];
        for (var j = 0; j < half; j++) inverseFrequencies[j] = 1.0 / Math.Pow(c.RopeTheta, 2.0 * j / c.HeadDim);
        var invFreq = new TensorProto { Name = g.Fresh("rope_inv_freq"), DataType = (int)DataType.Double };
        invFreq.Dims.Add(half);
        invFreq.DoubleData.AddRange(inverseFrequencies);
        var angles = g.Mul(g.Unsqueeze(g.Cast(positionIds, DataType.Double), 2), g.Initializer(invFreq));   // [B, S, D/2]
        string Table(string op) => g.Reshape(g.Cast(g.Op(op, [angles]), DataType.Float), -1, half);           // [B·S, D/2]
        var count = g.Op("Size", [positionIds]);
        var index = g.Reshape(g.Range(g.Int64Scalar(0), count, g.Int64Scalar(1)), g.Shape(positionIds)); // [B, S]
        return (Table("Cos"), Table("Sin"), index);
    }
}
