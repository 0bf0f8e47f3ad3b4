using System.Text.Json.Nodes;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Models;

/// <summary>
/// The canonical Llama-family decoder (Llama, SmolLM2, TinyLlama, Qwen2, Mistral) as an ONNX graph,
/// in the two flavours of DESIGN §2, both from the same code path and standard opset-18 operators:
///
/// - <see cref="Inference"/>: weights are initializers (canonical names), with the KV-cache inputs and
///   outputs ONNX Runtime GenAI feeds ("past_key_values.{i}.key" → "present.{i}.key").
/// - <see cref="Training"/>: no cache, every canonical weight is a graph input, so the training engine
///   can differentiate the graph and feed weights it owns; float32 or float64 (finite differences).
///
/// The math follows Hugging Face's modeling_llama.py: RMSNorm (x / sqrt(mean(x²) + eps) · w),
/// rotary embeddings with rotate_half, grouped-query attention, SwiGLU MLP (down(silu(gate) · up)).
/// </summary>
public static partial class LlamaGraph
{
    /// <summary>
    /// Added to the attention score of every key a query may not see. Finite (not -inf) so a fully
    /// masked row (a left-padding position) gives a uniform softmax instead of NaN, and small enough
    /// in magnitude that score + mask never overflows in float32 or float64.
    /// </summary>
    public const double MaskedScore = -1e9;

    /// <summary>
    /// The inference graph with the weights as initializers (views of the arrays, not copies) and a KV cache.
    /// By default in ONNX Runtime's fused CPU operators (<see cref="LlamaInferenceGraph"/>: fewer nodes per
    /// decoder step); <paramref name="fusedOperators"/> false gives the same graph in standard operators only,
    /// the training flavour's math with a cache, which any ONNX runtime can run.
    /// </summary>
    public static ModelProto Inference(ModelConfig config, WeightSet weights, bool fusedOperators = true, bool groupQueryAttention = false)
    {
        RequireLlama(config);
        config.Validate("model config");
        weights.CheckAgainst(config, "weights");
        var g = new GraphBuilder("llama_inference", DataType.Float);
        // Initializers in canonical order so model.onnx.data is laid out predictably.
        foreach (var (name, shape) in WeightNames.Shapes(config))
            g.Initializer(OnnxFile.FloatTensorView(name, weights[name].Data, shape));   // views: no second copy of the weights
        if (fusedOperators) LlamaInferenceGraph.Build(g, config, groupQueryAttention);
        else Build(g, config, withCache: true);
        return g.ToModel();
    }

    /// <summary>The training graph: no cache, every canonical weight a graph input of <paramref name="floatType"/>.</summary>
    public static ModelProto Training(ModelConfig config, DataType floatType)
    {
        RequireLlama(config);
        config.Validate("model config");
        if (floatType is not (DataType.Float or DataType.Double))
            throw new ArgumentException($"training graphs are built in Float or Double, not {floatType}", nameof(floatType));
        var g = new GraphBuilder("llama_training", floatType);
        Build(g, config, withCache: false);
        // The weights come after input_ids, attention_mask and position_ids, in canonical order.
        foreach (var (name, shape) in WeightNames.Shapes(config))
            g.Input(name, floatType, shape.Cast<object>().ToArray());
        return g.ToModel();
    }

    /// <summary>The "decoder" object of genai_config.json for this graph's inputs and outputs.</summary>
    public static JsonObject GenAIDecoderSection(ModelConfig config) => new()
    {
        ["session_options"] = new JsonObject { ["log_id"] = "onnxruntime-genai", ["provider_options"] = new JsonArray() },
        ["filename"] = ModelFolder.ModelFile,
        ["head_size"] = config.HeadDim,
        ["hidden_size"] = config.HiddenSize,
        ["num_attention_heads"] = config.NumHeads,
        ["num_key_value_heads"] = config.NumKvHeads,
        ["num_hidden_layers"] = config.NumLayers,
        ["inputs"] = new JsonObject
        {
            ["input_ids"] = "input_ids",
            ["attention_mask"] = "attention_mask",
            ["position_ids"] = "position_ids",
            ["past_key_names"] = "past_key_values.%d.key",
            ["past_value_names"] = "past_key_values.%d.value",
        },
        ["outputs"] = new JsonObject
        {
            ["logits"] = "logits",
            ["present_key_names"] = "present.%d.key",
            ["present_value_names"] = "present.%d.value",
        },
    };

    public static string PastKeyName(int layer) => $"past_key_values.{layer}.key";
    public static string PastValueName(int layer) => $"past_key_values.{layer}.value";
    public static string PresentKeyName(int layer) => $"present.{layer}.key";
    public static string PresentValueName(int layer) => $"present.{layer}.value";

    static void RequireLlama(ModelConfig config)
    {
        if (config.Architecture != Architecture.Llama)
            throw new ArgumentException($"LlamaGraph builds the Llama family, not {config.Architecture}", nameof(config));
    }

    // ---- the decoder ----------------------------------------------------------------------------

    /// <summary>
    /// Emits the decoder into <paramref name="g"/>, reading weights by canonical name (initializers or
    /// inputs, whichever the caller declared). Sequence lengths: S new tokens, P cached, T = P + S.
    /// </summary>
    static void Build(GraphBuilder g, ModelConfig c, bool withCache)
    {
        var ft = g.FloatType;
        int kvHeads = c.NumKvHeads, d = c.HeadDim;
        var inputIds = g.Input("input_ids", DataType.Int64, "batch_size", "sequence_length");
        var mask = g.Input("attention_mask", DataType.Int64, "batch_size", withCache ? "total_sequence_length" : "sequence_length");
        var positionIds = g.Input("position_ids", DataType.Int64, "batch_size", "sequence_length");
        if (withCache)
            for (var i = 0; i < c.NumLayers; i++)
            {
                g.Input(PastKeyName(i), ft, "batch_size", kvHeads, "past_sequence_length", d);
                g.Input(PastValueName(i), ft, "batch_size", kvHeads, "past_sequence_length", d);
            }

        if (!withCache) { FlatLogits(g, c, inputIds, mask, positionIds); return; }   // the training layout (LlamaTrainingDecoder.cs)
        var final = FinalHidden(g, c, inputIds, mask, positionIds, withCache);   // [B, S, h]
        g.Scope = "lm_head/";
        var head = c.TieEmbeddings ? g.Transpose("model.embed_tokens.weight", 1, 0) : "lm_head.weight"; // [h, V]
        g.Node("MatMul", [final, head], ["logits"]);                          // [B, S, V], no Identity copy
        g.Scope = "";
        g.Output("logits", ft, "batch_size", "sequence_length", c.VocabSize);
    }

    /// <summary>
    /// The decoder stack up to and including the final RMSNorm: the hidden state [B, S, h] that the LM
    /// head (logits) or a scalar head (a preference model's rewards) reads. The caller declares the token
    /// inputs (and, with <paramref name="withCache"/>, the past key/value inputs) and the weights.
    /// </summary>
    internal static string FinalHidden(GraphBuilder g, ModelConfig c, string inputIds, string mask, string positionIds, bool withCache = false)
    {
        RequireLlama(c);
        if (!withCache) return Unflatten(g, FlatFinalHidden(g, c, inputIds, mask, positionIds), inputIds, c.HiddenSize);
        var ft = g.FloatType;
        int heads = c.NumHeads, kvHeads = c.NumKvHeads, d = c.HeadDim;
        // Node scopes ("embedding/", "layer3/attention/", "layer3/mlp/", "layer3/norm/" …) name the regions a
        // training profile is summed by; the gradient nodes inherit them.
        g.Scope = "embedding/";
        var x = g.Gather("model.embed_tokens.weight", inputIds);            // [B, S, h]
        g.Scope = "attention/";
        // Queries are rotated with cos and sin pre-scaled by 1/sqrt(D), which applies attention's
        // scaling for free. It also keeps a scalar Mul away from the score MatMul: ONNX Runtime fuses
        // that pair into FusedMatMul whose alpha is a float attribute, which would cost float64 graphs
        // their precision (~1e-9 relative) and the finite-difference checks with it.
        var (cos, sin) = RotaryCosSin(g, positionIds, d, c.RopeTheta, 1.0);              // [B, 1, 1, S, D] each
        var (qCos, qSin) = RotaryCosSin(g, positionIds, d, c.RopeTheta, 1.0 / Math.Sqrt(d));
        var maskBias = AttentionMaskBias(g, inputIds, mask);                 // [B, 1, 1, S, T]

        for (var i = 0; i < c.NumLayers; i++)
        {
            string W(string rest) => WeightNames.LlamaLayer(i, rest);

            // Attention block: x + o_proj(attention(rms_norm(x))).
            g.Scope = $"layer{i}/norm/";
            var normed = RmsNorm(g, x, W("input_layernorm.weight"), c.NormEps);
            g.Scope = $"layer{i}/attention/";
            var q = Projection(g, normed, W("self_attn.q_proj.weight"), c.AttentionBias ? W("self_attn.q_proj.bias") : null);
            var k = Projection(g, normed, W("self_attn.k_proj.weight"), c.AttentionBias ? W("self_attn.k_proj.bias") : null);
            var v = Projection(g, normed, W("self_attn.v_proj.weight"), c.AttentionBias ? W("self_attn.v_proj.bias") : null);
            // Heads as [B, kvH, group, S, D]: the `group` query heads sharing one key/value head sit on
            // their own axis, so grouped-query attention is a broadcasting MatMul (no repeated K/V).
            var group = heads / kvHeads;
            var q5 = g.Transpose(g.Reshape(q, 0, 0, kvHeads, group, d), 0, 2, 3, 1, 4); // [B, kvH, group, S, D]
            var k4 = g.Transpose(g.Reshape(k, 0, 0, kvHeads, d), 0, 2, 1, 3);                    // [B, kvH, S, D]
            var v4 = g.Transpose(g.Reshape(v, 0, 0, kvHeads, d), 0, 2, 1, 3);                    // [B, kvH, S, D]
            q5 = ApplyRotary(g, q5, qCos, qSin, d);                                            // includes 1/sqrt(D)
            k4 = g.Squeeze(ApplyRotary(g, g.Unsqueeze(k4, 2), cos, sin, d), 2);
            if (withCache)
            {
                // The cache holds rotated keys, as in Hugging Face and GenAI: [B, kvH, T, D]. Concat
                // writes the outputs directly (an Identity to rename them would copy the whole cache).
                k4 = g.Node("Concat", [PastKeyName(i), k4], [PresentKeyName(i)], "", ("axis", 2))[0];
                v4 = g.Node("Concat", [PastValueName(i), v4], [PresentValueName(i)], "", ("axis", 2))[0];
                g.Output(k4, ft, "batch_size", kvHeads, "total_sequence_length", d);
                g.Output(v4, ft, "batch_size", kvHeads, "total_sequence_length", d);
            }
            var k5 = g.Unsqueeze(k4, 2);                                                        // [B, kvH, 1, T, D]
            var v5 = g.Unsqueeze(v4, 2);                                                        // [B, kvH, 1, T, D]
            var scores = g.MatMul(q5, g.Transpose(k5, 0, 1, 2, 4, 3));                          // [B, kvH, group, S, T]
            var probs = g.Softmax(g.Add(scores, maskBias), -1);
            var attended = g.MatMul(probs, v5);                                                 // [B, kvH, group, S, D]
            var merged = g.Reshape(g.Transpose(attended, 0, 3, 1, 2, 4), 0, 0, heads * d);        // [B, S, H·D]
            x = g.Add(x, g.MatMul(merged, W("self_attn.o_proj.weight")));

            // MLP block: x + down(silu(gate(n)) · up(n)), n = rms_norm(x).
            g.Scope = $"layer{i}/norm/";
            var n2 = RmsNorm(g, x, W("post_attention_layernorm.weight"), c.NormEps);
            g.Scope = $"layer{i}/mlp/";
            x = g.Add(x, SwiGluMlp(g, n2, i));
        }

        g.Scope = "final_norm/";
        var final = RmsNorm(g, x, "model.norm.weight", c.NormEps);
        g.Scope = "";
        return final;
    }

    /// <summary>Layer <paramref name="layer"/>'s SwiGLU MLP of the normed input: down(silu(gate(n)) · up(n)).</summary>
    static string SwiGluMlp(GraphBuilder g, string n, int layer)
    {
        string W(string rest) => WeightNames.LlamaLayer(layer, rest);
        var gate = g.MatMul(n, W("mlp.gate_proj.weight"));
        var up = g.MatMul(n, W("mlp.up_proj.weight"));
        var silu = g.Mul(gate, g.Sigmoid(gate));
        return g.MatMul(g.Mul(silu, up), W("mlp.down_proj.weight"));
    }

    /// <summary>RMSNorm: x / sqrt(mean(x², last axis) + eps) · weight.</summary>
    static string RmsNorm(GraphBuilder g, string x, string weight, double eps)
    {
        var meanSquare = g.ReduceMean(g.Mul(x, x), [-1]);
        return g.Mul(g.Div(x, g.Sqrt(g.Add(meanSquare, g.Scalar(eps)))), weight);
    }

    static string Projection(GraphBuilder g, string x, string weight, string? bias)
    {
        var y = g.MatMul(x, weight);
        return bias is null ? y : g.Add(y, bias);
    }

    /// <summary>
    /// cos and sin of the rotary angles position · θ^(-2j/D), duplicated over both halves of the head
    /// (Hugging Face's emb = cat(freqs, freqs)), times <paramref name="scale"/>. Computed in float64
    /// whatever the graph's float type so long positions keep their precision, then cast.
    /// Returns [B, 1, 1, S, D] to broadcast over heads.
    /// </summary>
    static (string Cos, string Sin) RotaryCosSin(GraphBuilder g, string positionIds, int headDim, double theta, double scale)
    {
        var half = headDim / 2;
        var inverseFrequencies = new double[headDim];
        for (var j = 0; j < half; j++)
            inverseFrequencies[j] = inverseFrequencies[j + half] = 1.0 / Math.Pow(theta, 2.0 * j / headDim);
        var invFreq = g.Initializer(DoubleTensor(g.Fresh("rope_inv_freq"), inverseFrequencies, headDim));
        var positions = g.Unsqueeze(g.Cast(positionIds, DataType.Double), 1, 2, 4);     // [B, 1, 1, S, 1]
        var angles = g.Mul(positions, invFreq);                                           // [B, 1, 1, S, D]
        string ToGraphType(string v)
        {
            if (scale != 1.0) v = g.Mul(v, g.Initializer(DoubleTensor(g.Fresh("rope_scale"), [scale])));
            return g.FloatType == DataType.Double ? v : g.Cast(v, g.FloatType);
        }
        return (ToGraphType(g.Op("Cos", [angles])), ToGraphType(g.Op("Sin", [angles])));
    }

    /// <summary>x · cos + rotate_half(x) · sin, rotate_half(x) = cat(-x₂, x₁) over the last axis (x = [.., D]).</summary>
    static string ApplyRotary(GraphBuilder g, string x, string cos, string sin, int headDim)
    {
        var halves = g.Split(x, -1, [headDim / 2, headDim / 2]);
        var rotated = g.Concat(-1, g.Neg(halves[1]), halves[0]);
        return g.Add(g.Mul(x, cos), g.Mul(rotated, sin));
    }

    /// <summary>
    /// The additive attention bias [B, 1, 1, S, T]: 0 where query i (absolute position P + i, P = T − S)
    /// may see key j — j ≤ P + i and attention_mask[b, j] = 1 — and <see cref="MaskedScore"/> elsewhere.
    /// </summary>
    internal static string AttentionMaskBias(GraphBuilder g, string inputIds, string mask)
    {
        var total = g.Squeeze(g.Shape(mask, 1, 2), 0);                    // T (scalar)
        var fresh = g.Squeeze(g.Shape(inputIds, 1, 2), 0);                // S (scalar)
        var one = g.Int64Scalar(1);
        var keyPositions = g.Range(g.Int64Scalar(0), total, one);        // [T]
        var queryPositions = g.Range(g.Sub(total, fresh), total, one);   // [S]: P .. T-1
        var causal = g.Op("LessOrEqual", [keyPositions, g.Unsqueeze(queryPositions, 1)]); // [S, T]
        var notPadding = g.Unsqueeze(g.Cast(mask, DataType.Bool), 1, 2, 3);               // [B, 1, 1, 1, T]
        var visible = g.And(causal, notPadding);                                           // [B, 1, 1, S, T]
        // (1 − visible) · MaskedScore: the same 0 / MaskedScore values as Where(visible, 0, MaskedScore), whose
        // broadcast of two scalars ONNX Runtime runs ~15× slower than Not, Cast and Mul (15 ms a training step).
        return g.Mul(g.Cast(g.Not(visible), g.FloatType), g.Scalar(MaskedScore));
    }

    static TensorProto DoubleTensor(string name, double[] values, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)DataType.Double };
        t.Dims.AddRange(dims);
        t.DoubleData.AddRange(values);
        return t;
    }
}
