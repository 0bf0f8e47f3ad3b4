using System.Text.Json.Nodes;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Core;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Models;

/// <summary>
/// The canonical GPT-2 graph (Radford et al. 2019; Hugging Face's GPT2LMHeadModel) in two flavours built
/// from one forward: <see cref="Inference"/> carries the KV cache in the layout ONNX Runtime GenAI runs for
/// model type "gpt2" (one combined cache per layer, past_%d / present_%d of shape [2, B, N, P, D], the
/// layout of GenAI's own GPT-2 test export), and <see cref="Training"/> runs a whole sequence with every
/// canonical weight as a graph input, for the training engine to differentiate.
/// Only standard ONNX operators (opset 18): LayerNorm and GELU are spelled out in elementary ops so the
/// gradient rules stay few.
/// Shapes: B batch, S new tokens, P cached tokens, T = P + S, H hidden, N heads, D = H / N, M MLP width, V vocab.
/// </summary>
public static class Gpt2Graph
{
    /// <summary>Names of the per-layer cache inputs and outputs (printf patterns GenAI expands with the layer index).</summary>
    public const string PastNames = "past_%d";
    public const string PresentNames = "present_%d";
    public static string PastName(int i) => $"past_{i}";
    public static string PresentName(int i) => $"present_{i}";

    /// <summary>
    /// Added to the attention scores of masked key positions. Finite (unlike -inf) so a row with every key
    /// masked — a left-padding query — yields a uniform softmax instead of NaN; exp(-1e9) is exactly 0 in float32.
    /// </summary>
    public const double MaskedScore = -1e9;

    /// <summary>
    /// The inference graph: initializers are the canonical weights (float32).
    /// Inputs input_ids [B,S], attention_mask [B,T], position_ids [B,S] (int64) and past_i [2,B,N,P,D];
    /// outputs logits [B,S,V] and present_i [2,B,N,T,D].
    /// </summary>
    public static ModelProto Inference(ModelConfig config, WeightSet weights)
    {
        Require(config);
        weights.CheckAgainst(config, "GPT-2 weights");
        var g = new GraphBuilder("gpt2_inference");
        foreach (var (name, w) in weights.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            g.Initializer(OnnxFile.FloatTensorView(name, w.Data, w.Shape));
        Build(g, config, withCache: true);
        return g.ToModel();
    }

    /// <summary>
    /// The training graph in <paramref name="floatType"/> (Float, or Double for finite-difference checks):
    /// inputs input_ids, attention_mask, position_ids [B,S] (int64) and every canonical weight by its name;
    /// output logits [B,S,V]. No cache.
    /// </summary>
    public static ModelProto Training(ModelConfig config, DataType floatType)
    {
        Require(config);
        if (floatType is not (DataType.Float or DataType.Double))
            throw new ArgumentException($"training graphs are built in Float or Double, not {floatType}", nameof(floatType));
        var g = new GraphBuilder("gpt2_training", floatType);
        var shapes = WeightNames.Shapes(config);
        Build(g, config, withCache: false);
        // Weight inputs come after the token inputs, in canonical order.
        foreach (var (name, shape) in shapes.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            g.Input(name, floatType, shape.Cast<object>().ToArray());
        return g.ToModel();
    }

    /// <summary>The "decoder" object of genai_config.json for the inference graph saved as model.onnx.</summary>
    public static JsonObject GenAIDecoderSection(ModelConfig config)
    {
        Require(config);
        return new JsonObject
        {
            ["session_options"] = new JsonObject
            {
                ["log_id"] = "onnxruntime-genai",
                ["provider_options"] = new JsonArray(),
            },
            ["filename"] = ModelFolder.ModelFile,
            ["head_size"] = config.HeadDim,
            ["hidden_size"] = config.HiddenSize,
            ["num_attention_heads"] = config.NumHeads,
            ["num_key_value_heads"] = config.NumHeads,
            ["num_hidden_layers"] = config.NumLayers,
            ["inputs"] = new JsonObject
            {
                ["input_ids"] = "input_ids",
                ["attention_mask"] = "attention_mask",
                ["position_ids"] = "position_ids",
                ["past_names"] = PastNames,
            },
            ["outputs"] = new JsonObject
            {
                ["logits"] = "logits",
                ["present_names"] = PresentNames,
            },
        };
    }

    static void Require(ModelConfig config)
    {
        if (config.Architecture != Architecture.Gpt2)
            throw new ArgumentException($"Gpt2Graph builds GPT-2 models, not {config.Architecture}", nameof(config));
        if (config.HiddenAct is not ("gelu_new" or "gelu"))
            throw UserError.At("model config", null, "hidden_act", $"GPT-2 supports \"gelu_new\" and \"gelu\", not \"{config.HiddenAct}\"");
    }

    /// <summary>The forward both flavours share; weights are referenced by their canonical names (initializers or inputs).</summary>
    static void Build(GraphBuilder g, ModelConfig c, bool withCache)
    {
        var ft = g.FloatType;
        var inputIds = g.Input("input_ids", DataType.Int64, "batch_size", "sequence_length");
        var attentionMask = g.Input("attention_mask", DataType.Int64, "batch_size", withCache ? "total_sequence_length" : "sequence_length");
        var positionIds = g.Input("position_ids", DataType.Int64, "batch_size", "sequence_length");

        // The decoder up to ln_f, then the tied output projection: logits = ln_f(x) wteᵀ. [B,S,V]
        // In the inference graph wte is an initializer, so ONNX Runtime folds the Transpose once at load.
        var final = FinalHidden(g, c, inputIds, attentionMask, positionIds, withCache);
        var logits = g.MatMul(final, g.Transpose("transformer.wte.weight", 1, 0));
        g.OutputAs(logits, "logits", ft, "batch_size", "sequence_length", c.VocabSize);
    }

    /// <summary>
    /// The decoder stack up to and including ln_f: the hidden state [B,S,H] that the LM head (logits) or a
    /// scalar head (a preference model's rewards) reads. The caller declares the token inputs and the
    /// weights; with <paramref name="withCache"/> the past_i inputs and present_i outputs are added here.
    /// </summary>
    internal static string FinalHidden(GraphBuilder g, ModelConfig c, string inputIds, string attentionMask, string positionIds, bool withCache = false)
    {
        Require(c);
        long h = c.HiddenSize, n = c.NumHeads, d = c.HeadDim;
        var ft = g.FloatType;

        // Embeddings: token + learned position. [B,S,H]
        var x = g.Add(g.Gather("transformer.wte.weight", inputIds), g.Gather("transformer.wpe.weight", positionIds));

        var bias = AttentionBias(g, inputIds, attentionMask); // [B,1,S,T]
        // 1/√D as a [D] vector on the query, not a scalar on the scores: ONNX Runtime fuses a scalar Mul
        // into FusedMatMul, whose alpha is a float32 attribute, and float64 graphs would lose precision.
        var scale = g.Constant(Enumerable.Repeat(1.0 / Math.Sqrt(d), (int)d).ToArray(), d);
        var zero = g.Int64Scalar(0);
        var one = g.Int64Scalar(1);

        for (var i = 0; i < c.NumLayers; i++)
        {
            string W(string rest) => WeightNames.Gpt2Layer(i, rest);

            // 1. attention: qkv = ln_1(x) c_attn, split and arranged per head. [B,N,S,D]
            var a = LayerNorm(g, x, W("ln_1.weight"), W("ln_1.bias"), c.NormEps);
            var qkv = g.Add(g.MatMul(a, W("attn.c_attn.weight")), W("attn.c_attn.bias")); // [B,S,3H]
            var parts = g.Split(qkv, 2, [h, h, h]);
            string Heads(string t) => g.Transpose(g.Reshape(t, 0, 0, n, d), 0, 2, 1, 3);
            var q = Heads(parts[0]);
            var k = Heads(parts[1]);
            var v = Heads(parts[2]);

            // 2. cache: keys and values of all T tokens; present_i = stack(k, v). [B,N,T,D]
            if (withCache)
            {
                var past = g.Input(PastName(i), ft, 2, "batch_size", n, "past_sequence_length", d);
                k = g.Concat(2, g.Gather(past, zero), k);
                v = g.Concat(2, g.Gather(past, one), v);
                g.OutputAs(g.Concat(0, g.Unsqueeze(k, 0), g.Unsqueeze(v, 0)), PresentName(i), ft, 2, "batch_size", n, "total_sequence_length", d);
            }

            // 3. scaled dot-product attention with causal + padding bias. [B,N,S,T] → [B,S,H]
            var scores = g.Add(g.MatMul(g.Mul(q, scale), g.Transpose(k, 0, 1, 3, 2)), bias);
            var context = g.MatMul(g.Softmax(scores, -1), v); // [B,N,S,D]
            var merged = g.Reshape(g.Transpose(context, 0, 2, 1, 3), 0, 0, h);
            x = g.Add(x, g.Add(g.MatMul(merged, W("attn.c_proj.weight")), W("attn.c_proj.bias")));

            // 4. MLP: x + c_proj(gelu(c_fc(ln_2(x)))). [B,S,H]
            var m = LayerNorm(g, x, W("ln_2.weight"), W("ln_2.bias"), c.NormEps);
            var up = g.Add(g.MatMul(m, W("mlp.c_fc.weight")), W("mlp.c_fc.bias")); // [B,S,M]
            var act = c.HiddenAct == "gelu_new" ? GeluTanh(g, up) : GeluErf(g, up);
            x = g.Add(x, g.Add(g.MatMul(act, W("mlp.c_proj.weight")), W("mlp.c_proj.bias")));
        }

        return LayerNorm(g, x, "transformer.ln_f.weight", "transformer.ln_f.bias", c.NormEps);
    }

    /// <summary>
    /// 0 where query s may attend key t, <see cref="MaskedScore"/> elsewhere: causal by position in the
    /// (past + new) sequence, and only to keys whose attention_mask is 1. [B,1,S,T]
    /// </summary>
    static string AttentionBias(GraphBuilder g, string inputIds, string attentionMask)
    {
        var s = g.Squeeze(g.Shape(inputIds, 1, 2), 0);      // scalar S
        var t = g.Squeeze(g.Shape(attentionMask, 1, 2), 0); // scalar T
        var one = g.Int64Scalar(1);
        var queryPos = g.Range(g.Sub(t, s), t, one);         // [S]: P … T-1
        var keyPos = g.Range(g.Int64Scalar(0), t, one);      // [T]
        var causal = g.Op("LessOrEqual", [g.Unsqueeze(keyPos, 0), g.Unsqueeze(queryPos, 1)]); // [S,T]
        var keyKept = g.Unsqueeze(g.Cast(attentionMask, DataType.Bool), 1, 2);                // [B,1,1,T]
        return g.Where(g.And(causal, keyKept), g.Scalar(0.0), g.Scalar(MaskedScore));
    }

    /// <summary>LayerNorm over the last axis with biased variance, as torch.nn.LayerNorm: (x − μ)/√(σ² + ε)·γ + β.</summary>
    static string LayerNorm(GraphBuilder g, string x, string gamma, string beta, double eps)
    {
        var centred = g.Sub(x, g.ReduceMean(x, [-1]));
        var variance = g.ReduceMean(g.Mul(centred, centred), [-1]);
        var normed = g.Div(centred, g.Sqrt(g.Add(variance, g.Scalar(eps))));
        return g.Add(g.Mul(normed, gamma), beta);
    }

    /// <summary>GELU, tanh approximation ("gelu_new", HF NewGELUActivation, ORT FastGelu): ½x(1 + tanh(√(2/π)(x + 0.044715x³))).</summary>
    static string GeluTanh(GraphBuilder g, string x)
    {
        var cube = g.Mul(g.Mul(x, x), x);
        var inner = g.Mul(g.Add(x, g.Mul(cube, g.Scalar(0.044715))), g.Scalar(Math.Sqrt(2.0 / Math.PI)));
        return g.Mul(g.Mul(x, g.Scalar(0.5)), g.Add(g.Tanh(inner), g.Scalar(1.0)));
    }

    /// <summary>Exact GELU ("gelu"): ½x(1 + erf(x/√2)). Float only at run time: ONNX Runtime's CPU Erf has no float64 kernel.</summary>
    static string GeluErf(GraphBuilder g, string x)
    {
        var erf = g.Erf(g.Mul(x, g.Scalar(1.0 / Math.Sqrt(2.0))));
        return g.Mul(g.Mul(x, g.Scalar(0.5)), g.Add(erf, g.Scalar(1.0)));
    }
}
