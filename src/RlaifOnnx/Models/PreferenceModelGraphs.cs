using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Models;

/// <summary>
/// The preference model (PM; Bai et al. 2022, "Constitutional AI", §4; Askell et al. 2021, "A General Language Assistant"): a
/// decoder without its LM head plus a scalar head. Its reward for a sequence is the final-normed hidden
/// state at the sequence's last real token times <see cref="HeadWeight"/> — Hugging Face's
/// *ForSequenceClassification with one label, which likewise reads the last non-padding token.
///
/// Both flavours take input_ids [B, S] and attention_mask [B, S] (int64, right padding: 1 on each row's
/// n real tokens, then 0) and output <see cref="RewardsOutput"/> [B]. Position ids are computed inside
/// from the mask (cumsum − 1, clamped at 0: 0 … n−1 on real tokens), so callers feed only tokens and mask.
/// - <see cref="Inference"/>: weights as initializers under their canonical names (a folder's model.onnx).
/// - <see cref="Training"/>: every weight of <see cref="Shapes"/> a graph input, float32 or float64, for
///   the gradient builder. The position and index arithmetic is integer-only, so it needs no gradient rule.
///
/// Weights: the decoder's canonical weights without the LM head (lm_head.weight of an untied model is not
/// read; <see cref="FromLanguageModel"/> drops it) plus score.weight.
/// </summary>
public static class PreferenceModelGraphs
{
    /// <summary>The scalar head [h, 1] in MatMul layout: Hugging Face's `score.weight` [1, h] transposed.</summary>
    public const string HeadWeight = "score.weight";
    /// <summary>The graph output: one reward per row, [B].</summary>
    public const string RewardsOutput = "rewards";
    /// <summary>The value graph's output: the head at every position, [B, S].</summary>
    public const string ValuesOutput = "values";

    /// <summary>The PM's weights by name and shape: the decoder's canonical weights (no lm_head.weight), then score.weight [h, 1].</summary>
    public static Dictionary<string, long[]> Shapes(ModelConfig config)
    {
        var shapes = WeightNames.Shapes(config);
        shapes.Remove("lm_head.weight");
        shapes[HeadWeight] = [config.HiddenSize, 1];
        return shapes;
    }

    /// <summary>The reward graph with the weights (incl. score.weight) as float32 initializers.</summary>
    public static ModelProto Inference(ModelConfig config, WeightSet weights)
    {
        config.Validate("model config");
        var shapes = Shapes(config);
        weights.CheckAgainst(shapes, "preference model weights");
        var g = new GraphBuilder("preference_model_inference", DataType.Float);
        foreach (var (name, shape) in Ordered(config, shapes))
            g.Initializer(OnnxFile.FloatTensorView(name, weights[name].Data, shape));   // views: no second copy of the weights
        Build(g, config);
        return g.ToModel();
    }

    /// <summary>The reward graph with every weight of <see cref="Shapes"/> a graph input of <paramref name="floatType"/> (Float or Double).</summary>
    public static ModelProto Training(ModelConfig config, DataType floatType)
    {
        config.Validate("model config");
        if (floatType is not (DataType.Float or DataType.Double))
            throw new ArgumentException($"training graphs are built in Float or Double, not {floatType}", nameof(floatType));
        var g = new GraphBuilder("preference_model_training", floatType);
        Build(g, config);
        // The weights come after input_ids and attention_mask, in the decoder's order, score.weight last.
        foreach (var (name, shape) in Ordered(config, Shapes(config)))
            g.Input(name, floatType, shape.Cast<object>().ToArray());
        return g.ToModel();
    }

    /// <summary>
    /// The value model's training graph (PPO's critic, initialised from the preference model as in
    /// Constitutional AI §4.3 and TRL, whose value model loads the reward model's weights): the same
    /// decoder and head as <see cref="Training"/>, with the same inputs and weights, but the head applied at
    /// every position — output <see cref="ValuesOutput"/> [B, S], where position t holds the value of the
    /// prefix ids[..t] (the PM's reward of that prefix scored alone). Padding positions hold finite values
    /// that nothing should read. The last real token's value equals <see cref="Training"/>'s reward.
    /// </summary>
    public static ModelProto Values(ModelConfig config, DataType floatType)
    {
        config.Validate("model config");
        if (floatType is not (DataType.Float or DataType.Double))
            throw new ArgumentException($"training graphs are built in Float or Double, not {floatType}", nameof(floatType));
        var g = new GraphBuilder("value_model_training", floatType);
        var (hidden, _) = Decoder(g, config);                                                  // [B, S, h]
        var values = g.Squeeze(g.MatMul(hidden, HeadWeight), 2);                               // [B, S, 1] → [B, S]
        g.OutputAs(values, ValuesOutput, floatType, "batch_size", "sequence_length");
        foreach (var (name, shape) in Ordered(config, Shapes(config)))
            g.Input(name, floatType, shape.Cast<object>().ToArray());
        return g.ToModel();
    }

    /// <summary>
    /// A fresh scalar head [h, 1]: normal(0, σ² = 1/(h+1)), the PM head initialisation of Askell et al.
    /// 2021, so the initial rewards have unit scale over unit-RMS hidden states.
    /// </summary>
    public static WeightTensor InitialHead(ModelConfig config, int seed)
    {
        var data = new float[config.HiddenSize];
        WeightSet.FillGaussian(new Random(seed), data, Math.Sqrt(1.0 / (config.HiddenSize + 1)));
        return new WeightTensor([config.HiddenSize, 1], data);
    }

    /// <summary>
    /// A PM's starting weights from a language model's: its decoder weights (lm_head.weight dropped, as
    /// *ForSequenceClassification has none) plus <see cref="InitialHead"/>. The tensors are shared, not copied.
    /// </summary>
    public static WeightSet FromLanguageModel(ModelConfig config, WeightSet languageModel, int seed)
    {
        languageModel.CheckAgainst(config, "language model weights");
        var set = new WeightSet();
        foreach (var (name, _) in Shapes(config))
            if (name != HeadWeight) set[name] = languageModel[name];
        set[HeadWeight] = InitialHead(config, seed);
        return set;
    }

    /// <summary>Llama's canonical order, GPT-2's ordinal order (as their own graphs lay them out), score.weight last.</summary>
    static IEnumerable<KeyValuePair<string, long[]>> Ordered(ModelConfig config, Dictionary<string, long[]> shapes)
    {
        var decoder = shapes.Where(kv => kv.Key != HeadWeight);
        if (config.Architecture == Architecture.Gpt2) decoder = decoder.OrderBy(kv => kv.Key, StringComparer.Ordinal);
        return decoder.Append(new(HeadWeight, shapes[HeadWeight]));
    }

    /// <summary>Inputs, positions from the mask, the decoder, the last real token's hidden state, the head.</summary>
    static void Build(GraphBuilder g, ModelConfig c)
    {
        var (hidden, mask) = Decoder(g, c);                                                    // [B, S, h], [B, S]
        var zero = g.Int64Scalar(0);
        var one = g.Int64Scalar(1);

        // 3. Each row's last real token: index Σ mask − 1 (clamped at 0 for an all-padding row).
        var lastIndex = g.Op("Max", [g.Sub(g.Op("ReduceSum", [mask, g.Int64s(1)], ("keepdims", 0L)), one), zero]); // [B]
        var gatherShape = g.Concat(0, g.Shape(hidden, 0, 1), g.Int64s(1), g.Shape(hidden, 2, 3));               // [B, 1, h]
        var index = g.Expand(g.Reshape(lastIndex, -1, 1, 1), gatherShape);                                      // [B, 1, h]
        var last = g.GatherElements(hidden, index, 1);                                                           // [B, 1, h]

        // 4. The scalar head: [B, 1, h] · [h, 1] → [B, 1, 1] → [B].
        var rewards = g.Squeeze(g.MatMul(last, HeadWeight), 1, 2);
        g.OutputAs(rewards, RewardsOutput, g.FloatType, "batch_size");
    }

    /// <summary>The inputs input_ids and attention_mask, positions from the mask and the decoder: the final-normed hidden state [B, S, h] and the mask.</summary>
    static (string Hidden, string Mask) Decoder(GraphBuilder g, ModelConfig c)
    {
        var inputIds = g.Input("input_ids", DataType.Int64, "batch_size", "sequence_length");
        var mask = g.Input("attention_mask", DataType.Int64, "batch_size", "sequence_length");

        // 1. Position ids as Hugging Face derives them from a mask: cumsum(mask) − 1, clamped at 0 — on a
        // right-padded row 0 … n−1 on the real tokens (padding continues at n−1 and is never read).
        var zero = g.Int64Scalar(0);
        var one = g.Int64Scalar(1);
        var cumulative = g.Op("CumSum", [mask, one]);                                        // [B, S]
        var positionIds = g.Op("Max", [g.Sub(cumulative, one), zero]);                       // [B, S]

        // 2. The decoder up to its final norm.
        var hidden = DecoderGraphs.FinalHidden(g, c, inputIds, mask, positionIds);           // [B, S, h]
        return (hidden, mask);
    }
}
