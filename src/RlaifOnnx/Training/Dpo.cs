using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Training;

/// <summary>
/// Direct preference optimisation (Rafailov et al. 2023) as ONNX graphs for <see cref="Trainer"/>. A batch
/// holds the two completions of each pair as interleaved rows [a₀, b₀, a₁, b₁, …] (a = chosen), with
/// loss_mask [2n, T] marking the completion tokens, the reference model's summed completion log-probs
/// ref_logps [2n] (computed once, before training) and target [2n], the probability that a is preferred
/// (read at even rows). With z = (log π(a) − log π_ref(a)) − (log π(b) − log π_ref(b)) the loss is
/// −[p·log σ(β·z) + (1 − p)·log σ(−β·z)]: TRL's sigmoid loss for p = 1, and for a soft label p (the
/// Constitutional AI feedback model's normalised (A)/(B) probability) the cross-entropy against it, the
/// loss TRL calls label smoothing ("robust" conservative DPO, Mitchell 2023) with ε = 1 − p per pair.
/// </summary>
public static class Dpo
{
    public const string LossMaskInput = CausalLm.LossMaskInput;
    public const string ReferenceLogProbsInput = "ref_logps";
    public const string TargetInput = "target";
    public const string LossOutput = "loss";
    /// <summary>Summed completion log-probs per row [rows] (the reference graph's output).</summary>
    public const string SequenceLogProbsOutput = "logps";

    // TRL's DPOTrainer metric names.
    public const string ChosenRewardOutput = "rewards/chosen";
    public const string RejectedRewardOutput = "rewards/rejected";
    public const string AccuracyOutput = "rewards/accuracies";
    public const string MarginOutput = "rewards/margins";

    public static IReadOnlyList<string> Metrics { get; } = [ChosenRewardOutput, RejectedRewardOutput, AccuracyOutput, MarginOutput];

    /// <summary>Σ over completion tokens of log π(ids[t+1] | ids[..t]) per row: [B].</summary>
    static string SequenceLogProbs(GraphBuilder g, string lossMask)
    {
        var tokenLogProbs = Losses.ShiftedTokenLogProbs(g, "logits", "input_ids");                    // [B, T−1]
        var targets = g.Cast(Losses.ShiftLeft(g, lossMask, false), g.FloatType);                      // [B, T−1]
        return g.ReduceSum(g.Mul(tokenLogProbs, targets), [1], keepDims: false);                       // [B]
    }

    /// <summary>
    /// The training graph: the decoder (with LoRA adapters when given), the rows' summed completion
    /// log-probs, and the DPO loss at <paramref name="beta"/>, plus TRL's metrics rewards/chosen,
    /// rewards/rejected (β·log-ratio means), rewards/accuracies (share of pairs with the chosen reward
    /// higher) and rewards/margins.
    /// </summary>
    public static ModelProto Graph(ModelConfig config, double beta, LoraOptions? lora = null, DataType floatType = DataType.Float)
    {
        if (!(beta > 0) || double.IsInfinity(beta)) throw new ArgumentOutOfRangeException(nameof(beta), beta, "β must be positive");
        var forward = DecoderGraphs.Training(config, floatType);
        if (lora is not null) forward = Lora.Apply(forward, lora).Graph;
        var g = Losses.Extend(forward, "dpo/");
        var lossMask = g.Input(LossMaskInput, DataType.Int64, "rows", "sequence_length");
        var reference = g.Input(ReferenceLogProbsInput, floatType, "rows");
        var target = g.Input(TargetInput, floatType, "rows");

        var logRatios = g.Sub(SequenceLogProbs(g, lossMask), reference);                              // [2n]
        var byPair = g.Reshape(g.Mul(logRatios, g.Scalar(beta)), -1, 2);                             // [n, 2]
        var chosen = g.Reshape(g.Gather(byPair, g.Int64s(0), 1), -1);                                // [n] β·log-ratio of a
        var rejected = g.Reshape(g.Gather(byPair, g.Int64s(1), 1), -1);                              // [n]
        var p = g.Reshape(g.Gather(g.Reshape(target, -1, 2), g.Int64s(0), 1), -1);                   // [n]
        g.OutputAs(Losses.PreferenceLoss(g, chosen, rejected, p), LossOutput, floatType);

        g.OutputAs(Losses.Mean(g, chosen), ChosenRewardOutput, floatType);
        g.OutputAs(Losses.Mean(g, rejected), RejectedRewardOutput, floatType);
        g.OutputAs(Losses.Mean(g, g.Cast(g.Greater(chosen, rejected), floatType)), AccuracyOutput, floatType);
        g.OutputAs(Losses.Mean(g, g.Sub(chosen, rejected)), MarginOutput, floatType);
        g.Graph.Output.Remove(g.Graph.Output.First(o => o.Name == "logits"));
        return g.ToModel();
    }

    /// <summary>The reference pass: the decoder and each row's summed completion log-probs, output logps [rows, 1].</summary>
    public static ModelProto SequenceLogProbGraph(ModelConfig config, LoraOptions? lora = null)
    {
        var forward = DecoderGraphs.Training(config, DataType.Float);
        if (lora is not null) forward = Lora.Apply(forward, lora).Graph;
        var g = Losses.Extend(forward, "logps/");
        var lossMask = g.Input(LossMaskInput, DataType.Int64, "rows", "sequence_length");
        g.OutputAs(g.Reshape(SequenceLogProbs(g, lossMask), -1, 1), SequenceLogProbsOutput, DataType.Float);   // [rows, 1]
        g.Graph.Output.Remove(g.Graph.Output.First(o => o.Name == "logits"));
        return g.ToModel();
    }

    /// <summary>
    /// The DPO loss of one pair in float64, for tests and reports: −[p·log σ(β·z) + (1 − p)·log σ(−β·z)] with
    /// z the difference of the chosen and rejected log-ratios.
    /// </summary>
    public static double PairLoss(double chosenLogRatio, double rejectedLogRatio, double beta, double p)
    {
        var x = beta * (chosenLogRatio - rejectedLogRatio);
        return -(p * LogSigmoid(x) + (1 - p) * LogSigmoid(-x));
    }

    /// <summary>log σ(x), stable for large |x|.</summary>
    public static double LogSigmoid(double x) => x >= 0 ? -Math.Log(1 + Math.Exp(-x)) : x - Math.Log(1 + Math.Exp(x));

    /// <summary>Trainer options for <see cref="Graph"/>: TRL's metrics reported; micro-batches must hold whole pairs.</summary>
    public static TrainerOptions Options(TrainerOptions options) => options with { MetricOutputs = Metrics };
}
