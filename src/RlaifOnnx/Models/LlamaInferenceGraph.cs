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
/// <c>groupQueryAttention</c> writes attention as com.microsoft GroupQueryAttention instead (205 instead of
/// 377 nodes for the 100M bench model) with the same mask as its attention bias. ModelWriter does not use it:
/// run by GenAI on 2 idle cores its decoder step was no faster (9.47 against 9.08 ms, interleaved), while
/// scoring would need <see cref="WithMatMulAttention"/>.
/// </summary>
static class LlamaInferenceGraph
{
    const string Ms = "com.microsoft";

    public static void Build(GraphBuilder g, ModelConfig c, bool groupQueryAttention = false)
    {
        int heads = c.NumHeads, kvHeads = c.NumKvHeads, d = c.HeadDim;
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
        var gqa = groupQueryAttention ? GroupQueryAttentionInputs(g, mask, maskBias) : default;

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
            // GroupQueryAttention takes the cache and writes the presents itself; the MatMul form builds them.
            var merged = groupQueryAttention
                ? g.Node("GroupQueryAttention",
                    [q, k, v, LlamaGraph.PastKeyName(i), LlamaGraph.PastValueName(i), gqa.SeqLens, gqa.Total, "", "", "", gqa.Bias],
                    [g.Fresh("attended"), LlamaGraph.PresentKeyName(i), LlamaGraph.PresentValueName(i)], Ms,
                    ("num_heads", (long)heads), ("kv_num_heads", (long)kvHeads), ("scale", (float)scale), ("do_rotary", 0L))[0]
                : MatMulAttention(g, q, k, v, LlamaGraph.PastKeyName(i), LlamaGraph.PastValueName(i),
                    LlamaGraph.PresentKeyName(i), LlamaGraph.PresentValueName(i), maskBias, heads, kvHeads, d, scale);
            g.Output(LlamaGraph.PresentKeyName(i), ft, "batch_size", kvHeads, "total_sequence_length", d);
            g.Output(LlamaGraph.PresentValueName(i), ft, "batch_size", kvHeads, "total_sequence_length", d);
            var attentionOut = g.MatMul(merged, W("self_attn.o_proj.weight"));

            // MLP block: residual + down(silu(gate(n)) · up(n)), n = rms_norm(residual).
            g.Scope = $"layer{i}/norm/";
            (var n2, residual) = SkipNorm(g, attentionOut, residual, W("post_attention_layernorm.weight"), c.NormEps);
            g.Scope = $"layer{i}/mlp/";
            var mlpOut = Mlp(g, n2, W);

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

    /// <summary>
    /// Grouped-query attention as a broadcasting MatMul over [B, kvH, group, S, T] with the additive mask bias
    /// [B, 1, 1, S, T]: q [B, S, H·D] and k, v [B, S, kvH·D] (q and k rotated), the caches [B, kvH, T, D] written
    /// by Concat straight into the present outputs. Returns the attended values [B, S, H·D].
    /// </summary>
    static string MatMulAttention(GraphBuilder g, string q, string k, string v, string pastKey, string pastValue,
        string presentKey, string presentValue, string maskBias, int heads, int kvHeads, int d, double scale)
    {
        var group = heads / kvHeads;
        var q5 = g.Transpose(g.Reshape(q, 0, 0, kvHeads, group, d), 0, 2, 3, 1, 4);    // [B, kvH, group, S, D]
        var k4 = g.Transpose(g.Reshape(k, 0, 0, kvHeads, d), 0, 2, 1, 3);              // [B, kvH, S, D]
        var v4 = g.Transpose(g.Reshape(v, 0, 0, kvHeads, d), 0, 2, 1, 3);              // [B, kvH, S, D]
        k4 = g.Node("Concat", [pastKey, k4], [presentKey], "", ("axis", 2))[0];
        v4 = g.Node("Concat", [pastValue, v4], [presentValue], "", ("axis", 2))[0];
        var scores = g.Node("FusedMatMul", [q5, g.Unsqueeze(k4, 2)], [g.Fresh("scores")], Ms,
            ("transA", 0L), ("transB", 1L), ("alpha", (float)scale))[0];                // [B, kvH, group, S, T]
        var probs = g.Softmax(g.Add(scores, maskBias), -1);
        var attended = g.MatMul(probs, g.Unsqueeze(v4, 2));                             // [B, kvH, group, S, D]
        return g.Reshape(g.Transpose(attended, 0, 3, 1, 2, 4), 0, 0, heads * d);        // [B, S, H·D]
    }

    /// <summary>
    /// The same model with each GroupQueryAttention node <see cref="Build"/> writes (no rotary inside, an attention
    /// bias given) replaced by <see cref="MatMulAttention"/>: identical results at real tokens, and it takes what
    /// ONNX Runtime's GroupQueryAttention refuses, a suffix of several tokens after a cache at batch &gt; 1 (OrtScorer's
    /// shared prompt prefixes). Other graphs come back unchanged (the same object).
    /// </summary>
    public static ModelProto WithMatMulAttention(ModelProto model)
    {
        bool Ours(NodeProto n) => n.OpType == "GroupQueryAttention" && n.Domain == Ms && n.Input.Count >= 11 && n.Input[10] != ""
            && n.Attribute.All(a => a.Name != "do_rotary" || a.I == 0);
        if (!model.Graph.Node.Any(Ours)) return model;
        var result = model.Clone();
        var graph = result.Graph;
        var g = new GraphBuilder("matmul_attention") { NamePrefix = "matmul_attention/" };
        var nodes = new List<NodeProto>();
        var bias5 = new Dictionary<string, string>();   // each [B, 1, S, T] bias unsqueezed once
        foreach (var n in graph.Node)
        {
            if (!Ours(n)) { nodes.Add(n); continue; }
            long Attr(string name) => n.Attribute.First(a => a.Name == name).I;
            var scaleAttr = n.Attribute.FirstOrDefault(a => a.Name == "scale");
            int heads = (int)Attr("num_heads"), kvHeads = (int)Attr("kv_num_heads");
            var first = g.Graph.Node.Count;
            if (!bias5.TryGetValue(n.Input[10], out var bias)) bias5[n.Input[10]] = bias = g.Unsqueeze(n.Input[10], 1);
            // Head size from the query width is only known at run time; the cache's last dim is fixed in our graphs.
            var pastKeyInfo = graph.Input.First(i => i.Name == n.Input[3]);
            var d = (int)pastKeyInfo.Type.TensorType.Shape.Dim[3].DimValue;
            var scale = scaleAttr is null || scaleAttr.F == 0 ? 1.0 / Math.Sqrt(d) : scaleAttr.F;
            g.Scope = n.Name + "/";
            var merged = MatMulAttention(g, n.Input[0], n.Input[1], n.Input[2], n.Input[3], n.Input[4], n.Output[1], n.Output[2],
                bias, heads, kvHeads, d, scale);
            g.Node("Identity", [merged], [n.Output[0]]);
            nodes.AddRange(g.Graph.Node.Skip(first));
        }
        graph.Node.Clear();
        graph.Node.AddRange(nodes);
        graph.Initializer.AddRange(g.Graph.Initializer);
        return result;
    }

    /// <summary>down(silu(gate(n)) · up(n)).</summary>
    static string Mlp(GraphBuilder g, string n, Func<string, string> w)
    {
        var gate = g.MatMul(n, w("mlp.gate_proj.weight"));
        var up = g.MatMul(n, w("mlp.up_proj.weight"));
        var silu = g.Node("QuickGelu", [gate], [g.Fresh("silu")], Ms, ("alpha", 1.0f))[0];
        return g.MatMul(g.Mul(silu, up), w("mlp.down_proj.weight"));
    }

    /// <summary>
    /// GroupQueryAttention's bookkeeping inputs, shared by all layers. seqlens_k is T − 1 for every row (the
    /// cache holds left padding too; the mask bias, not seqlens_k, hides it), total_sequence_length is T, and
    /// the additive bias is the same [B, 1, S, T] padding-and-causal bias the MatMul attention adds.
    /// </summary>
    static (string SeqLens, string Total, string Bias) GroupQueryAttentionInputs(GraphBuilder g, string mask, string maskBias)
    {
        var total = g.Squeeze(g.Shape(mask, 1, 2), 0);                                    // T (int64 scalar)
        var lastIndex = g.Sub(total, g.Int64Scalar(1));
        var seqLens = g.Cast(g.Expand(lastIndex, g.Shape(mask, 0, 1)), DataType.Int32);   // [B]
        return (seqLens, g.Cast(total, DataType.Int32), g.Squeeze(maskBias, 1));          // bias [B, 1, S, T]
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
