using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;

namespace RlaifOnnx.Training;

/// <summary>
/// PPO's two loss graphs for language models (Schulman et al. 2017; Ziegler et al. 2019; TRL's PPOTrainer),
/// each a forward graph ending in a scalar "loss" for <see cref="Trainer"/>: the policy (the decoder, optionally
/// with LoRA) with the clipped surrogate, and the value model (the preference model's decoder and head at
/// every position) with the clipped value loss.
///
/// Alignment: a batch is the whole rows ids [B, T] (prompt, response, padding); the per-token batch inputs
/// are [B, T−1], position t standing for the action ids[t+1] taken in the state ids[..t]:
/// - the policy's log-prob at t is log π(ids[t+1] | ids[..t]) (<see cref="Losses.ShiftedTokenLogProbs"/>);
/// - the value at t is V(ids[..t]), the value model's head on the hidden state of token t — the state
///   before token t+1 is chosen (TRL reads full_value[:, context_length − 1 : −1] for the same reason);
/// - response_mask[t] = 1 when ids[t+1] is a response token the loss counts (0 on the prompt, on padding
///   and at t = T−1's missing successor), and old_logprobs, advantages, old_values and returns at t belong
///   to that same token. The rollout's [B, T−1] arrays (from <see cref="PpoMath"/>) go in as they are.
/// Masked positions are ignored, but must stay finite: fill old_logprobs with 0 there (the ratio is then
/// ≤ 1), as TRL fills them with its INVALID_LOGPROB of 1.
/// With LoRA, Lora.Apply(DecoderGraphs.Training(config, Float), lora).Adapters lists the adapters the
/// policy graph declares (same names), for <see cref="Lora.InitialWeights"/> and <see cref="Lora.Merge"/>.
/// </summary>
public static class Ppo
{
    public const string OldLogProbsInput = "old_logprobs";
    public const string AdvantagesInput = "advantages";
    public const string ResponseMaskInput = "response_mask";
    public const string OldValuesInput = "old_values";
    public const string ReturnsInput = "returns";

    /// <summary>The rollout log-prob graph's output: log π(ids[t+1] | ids[..t]), [B, T−1].</summary>
    public const string TokenLogProbsOutput = "token_logprobs";

    public const string LossOutput = "loss";
    /// <summary>Policy: fraction of response tokens where the clip binds (TRL's pg_clipfrac; <see cref="Losses.PpoPolicyLoss"/>).</summary>
    public const string ClipFractionOutput = "clip_fraction";
    /// <summary>Policy: ½·mean((log π − log π_old)²) over response tokens (TRL's approxkl).</summary>
    public const string ApproxKlOutput = "approx_kl";
    /// <summary>Policy: mean entropy of π's next-token distribution over response tokens.</summary>
    public const string EntropyOutput = "entropy";
    /// <summary>Value: fraction of response tokens where the clipped error is the larger one (TRL's val/clipfrac).</summary>
    public const string ValueClipFractionOutput = "value_clip_fraction";

    /// <summary>TRL's default clip range for both ratio and value (cliprange, cliprange_value).</summary>
    public const double DefaultClip = 0.2;

    /// <summary>The policy graph's scalar metrics, for <see cref="TrainerOptions.MetricOutputs"/>.</summary>
    public static IReadOnlyList<string> PolicyMetrics { get; } = [ClipFractionOutput, ApproxKlOutput, EntropyOutput];
    /// <summary>The value graph's scalar metrics.</summary>
    public static IReadOnlyList<string> ValueMetrics { get; } = [ValueClipFractionOutput];

    /// <summary>
    /// The policy's loss graph: <see cref="DecoderGraphs.Training"/> (inputs input_ids, attention_mask,
    /// position_ids [B, T] and the weights; with <paramref name="lora"/> the adapters too, as
    /// <see cref="CausalLm.Graph"/>), plus inputs old_logprobs and advantages [B, T−1] (float) and
    /// response_mask [B, T−1] (int64), and outputs loss (the clipped surrogate, mean over response tokens),
    /// clip_fraction, approx_kl and entropy. The logits are not an output. Log-probs and entropy are those of
    /// softmax(logits / <paramref name="temperature"/>), the distribution rollouts sample from (TRL divides the
    /// logits by the sampling temperature in the same places).
    /// </summary>
    public static ModelProto PolicyGraph(ModelConfig config, LoraOptions? lora = null, double clipEpsilon = DefaultClip, DataType floatType = DataType.Float,
        double temperature = 1.0)
    {
        CheckClip(clipEpsilon);
        var forward = DecoderGraphs.Training(config, floatType);
        if (lora is not null) forward = Lora.Apply(forward, lora).Graph;
        var g = Losses.Extend(forward, "ppo/");
        var logits = Losses.Tempered(g, "logits", temperature);                                         // [B, T, V]
        var oldLogProbs = g.Input(OldLogProbsInput, floatType, "batch_size", "action_positions");      // [B, T−1]
        var advantages = g.Input(AdvantagesInput, floatType, "batch_size", "action_positions");        // [B, T−1]
        var mask = g.Input(ResponseMaskInput, DataType.Int64, "batch_size", "action_positions");       // [B, T−1]

        // One LogSoftmax for the log-probs and the entropy: one [B, T, V] tensor, not two.
        var vocabularyLogProbs = g.LogSoftmax(logits, -1);                                              // [B, T, V]
        var logProbs = Losses.ShiftedPickedLogProbs(g, vocabularyLogProbs, "input_ids");                // [B, T−1]
        var terms = Losses.PpoPolicyLoss(g, logProbs, oldLogProbs, advantages, mask, clipEpsilon);
        // The entropy at t is that of the distribution ids[t+1] was drawn from, hence the dropped last position.
        var entropy = Losses.MaskedMean(g, Losses.ShiftLeft(g, Losses.EntropyOfLogProbs(g, vocabularyLogProbs), true), mask);

        g.Graph.Output.Remove(g.Graph.Output.First(o => o.Name == "logits"));
        g.OutputAs(terms.Loss, LossOutput, floatType);
        g.OutputAs(terms.ClipFraction, ClipFractionOutput, floatType);
        g.OutputAs(terms.ApproxKl, ApproxKlOutput, floatType);
        g.OutputAs(entropy, EntropyOutput, floatType);
        return g.ToModel();
    }

    /// <summary>
    /// The value model's loss graph: <see cref="PreferenceModelGraphs.Values"/> (inputs input_ids and
    /// attention_mask [B, T] and the preference model's weights incl. score.weight; positions come from the
    /// mask, so rows are right-padded) with its values read at positions 0 … T−2 (V(ids[..t]) at t), plus
    /// inputs old_values and returns [B, T−1] (float) and response_mask [B, T−1] (int64); outputs loss
    /// (<see cref="Losses.PpoValueLoss"/>: ½·mean of the larger squared error, clipped or not) and
    /// value_clip_fraction. The values are not an output. With <paramref name="lora"/> the decoder carries adapters
    /// (see <see cref="ValuesGraph"/>).
    /// </summary>
    public static ModelProto ValueGraph(ModelConfig config, double clipRange = DefaultClip, DataType floatType = DataType.Float, LoraOptions? lora = null)
    {
        CheckClip(clipRange);
        var g = Losses.Extend(ValuesGraph(config, lora, floatType), "ppo/");
        var oldValues = g.Input(OldValuesInput, floatType, "batch_size", "action_positions");          // [B, T−1]
        var returns = g.Input(ReturnsInput, floatType, "batch_size", "action_positions");              // [B, T−1]
        var mask = g.Input(ResponseMaskInput, DataType.Int64, "batch_size", "action_positions");       // [B, T−1]

        var values = Losses.ShiftLeft(g, PreferenceModelGraphs.ValuesOutput, true);                    // [B, T−1]
        var loss = Losses.PpoValueLoss(g, values, oldValues, returns, mask, clipRange);
        // Where the clipped value's error is the larger one, the max picks it and the value gets no gradient.
        var error = g.Sub(values, returns);
        var clippedValues = g.Add(oldValues, g.Op("Clip", [g.Sub(values, oldValues), g.Scalar(-clipRange), g.Scalar(clipRange)]));
        var clippedError = g.Sub(clippedValues, returns);
        var clippedWins = g.Cast(g.Greater(g.Mul(clippedError, clippedError), g.Mul(error, error)), floatType);
        var clipFraction = Losses.MaskedMean(g, clippedWins, mask);

        g.Graph.Output.Remove(g.Graph.Output.First(o => o.Name == PreferenceModelGraphs.ValuesOutput));
        g.OutputAs(loss, LossOutput, floatType);
        g.OutputAs(clipFraction, ValueClipFractionOutput, floatType);
        return g.ToModel();
    }

    /// <summary>
    /// <see cref="PreferenceModelGraphs.Values"/>, with <paramref name="lora"/> adapters on the decoder when given
    /// (the value model as adapters and a head over the preference model's frozen base, which then serves the
    /// reward too: one copy of the PM's weights).
    /// </summary>
    public static ModelProto ValuesGraph(ModelConfig config, LoraOptions? lora, DataType floatType = DataType.Float)
    {
        var values = PreferenceModelGraphs.Values(config, floatType);
        return lora is null ? values : Lora.Apply(values, lora).Graph;
    }

    /// <summary>Σ response_mask: the number of tokens a micro-batch's mean runs over (its share of the batch).</summary>
    public static double ResponseTokens(TrainingBatch batch)
    {
        var mask = batch[ResponseMaskInput].Int64s ?? throw new ArgumentException($"{ResponseMaskInput} must be int64 (the graphs declare it so)");
        double count = 0;
        foreach (var m in mask) count += m;
        return count;
    }

    /// <summary>Trainer options for <see cref="PolicyGraph"/>: micro-batches weighted by response tokens, the policy metrics reported.</summary>
    public static TrainerOptions PolicyOptions(TrainerOptions options)
        => options with { MicroBatchWeight = ResponseTokens, MetricOutputs = PolicyMetrics };

    /// <summary>Trainer options for <see cref="ValueGraph"/>: micro-batches weighted by response tokens, the value metrics reported.</summary>
    public static TrainerOptions ValueOptions(TrainerOptions options)
        => options with { MicroBatchWeight = ResponseTokens, MetricOutputs = ValueMetrics };

    static void CheckClip(double clip)
    {
        if (!(clip > 0)) throw new ArgumentOutOfRangeException(nameof(clip), clip, "the PPO clip range must be positive");
    }

    /// <summary>
    /// The log-prob graph of the rollout: the decoder (with the policy's LoRA adapters when given) and
    /// <see cref="Losses.ShiftedTokenLogProbs"/>, output token_logprobs [B, T−1] — the same operators the policy
    /// loss graph runs, so the first update's ratio is 1 — at the same <paramref name="temperature"/>, for the
    /// policy and the reference alike (the KL penalty is then between the distributions rollouts sample from).
    /// </summary>
    public static ModelProto RolloutLogProbGraph(ModelConfig config, LoraOptions? lora, double temperature = 1.0)
    {
        var forward = DecoderGraphs.Training(config, DataType.Float);
        if (lora is not null) forward = Lora.Apply(forward, lora).Graph;
        var g = Losses.Extend(forward, "rollout/");
        var logProbs = Losses.ShiftedTokenLogProbs(g, Losses.Tempered(g, "logits", temperature), "input_ids");    // [B, T−1]
        g.Graph.Output.Remove(g.Graph.Output.First(o => o.Name == "logits"));
        g.OutputAs(logProbs, TokenLogProbsOutput, DataType.Float);
        return g.ToModel();
    }
}
