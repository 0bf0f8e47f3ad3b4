using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;
using RlaifOnnx.Training.Autodiff;

namespace RlaifOnnx.Training;

/// <summary>One training sequence: token ids and which of them are targets (1) — all for plain text, the completion for pairs.</summary>
public sealed record TokenSequence(int[] Ids, byte[] TargetMask);

/// <summary>
/// Causal-LM training pieces: the decoder's training graph with masked cross-entropy appended as "loss",
/// right-padded batches with a "loss_mask" input, and the micro-batch weight (number of target tokens)
/// that makes accumulated gradients equal the whole batch's.
/// </summary>
public static class CausalLm
{
    public const string LossMaskInput = GradientBuilder.LossMaskInput;
    public const string LossOutput = "loss";

    /// <summary>
    /// The training graph of <paramref name="config"/> (weights as inputs; see <see cref="DecoderGraphs.Training"/>),
    /// optionally with LoRA adapters, plus input loss_mask [B,T] int64 and output loss (mean cross-entropy over
    /// targets). <paramref name="keepLogits"/> keeps logits as an output too (for parity tests).
    /// </summary>
    public static ModelProto Graph(ModelConfig config, LoraOptions? lora = null, bool keepLogits = false)
    {
        var forward = DecoderGraphs.Training(config, DataType.Float);
        if (lora is not null) forward = Lora.Apply(forward, lora).Graph;
        var g = Losses.Extend(forward);
        var lossMask = g.Input(LossMaskInput, DataType.Int64, "batch_size", "sequence_length");
        var loss = Losses.CausalLmCrossEntropy(g, "logits", "input_ids", lossMask);
        if (!keepLogits)
        {
            var logits = g.Graph.Output.First(o => o.Name == "logits");
            g.Graph.Output.Remove(logits);
        }
        g.OutputAs(loss, LossOutput, DataType.Float);
        return g.ToModel();
    }

    /// <summary>Number of target tokens in a batch (targets at t ≥ 1; the first column predicts nothing).</summary>
    public static double TargetTokens(TrainingBatch batch)
    {
        var mask = batch[LossMaskInput];
        long rows = mask.Shape[0], length = mask.Shape[1], count = 0;
        for (var b = 0; b < rows; b++)
            for (var t = 1; t < length; t++) count += mask.Int64s![b * length + t];
        return count;
    }

    /// <summary>Trainer options with micro-batches weighted by their target tokens.</summary>
    public static TrainerOptions Options(TrainerOptions options) => options with { MicroBatchWeight = TargetTokens };

    /// <summary>
    /// Right-padded batch of the sequences: input_ids (pad = <paramref name="padId"/>), attention_mask (1 on
    /// real tokens), position_ids 0..T−1, loss_mask (target tokens). T = the longest sequence.
    /// </summary>
    public static TrainingBatch Batch(IReadOnlyList<TokenSequence> sequences, int padId)
    {
        var rows = sequences.Count;
        var length = sequences.Max(s => s.Ids.Length);
        var ids = new long[rows * length];
        var attention = new long[rows * length];
        var positions = new long[rows * length];
        var targets = new long[rows * length];
        for (var b = 0; b < rows; b++)
        {
            var s = sequences[b];
            for (var t = 0; t < length; t++)
            {
                var i = b * length + t;
                var real = t < s.Ids.Length;
                ids[i] = real ? s.Ids[t] : padId;
                attention[i] = real ? 1 : 0;
                positions[i] = t;
                targets[i] = real ? s.TargetMask[t] : 0;
            }
        }
        return new TrainingBatch
        {
            ["input_ids"] = BatchTensor.Of(ids, rows, length),
            ["attention_mask"] = BatchTensor.Of(attention, rows, length),
            ["position_ids"] = BatchTensor.Of(positions, rows, length),
            [LossMaskInput] = BatchTensor.Of(targets, rows, length),
        };
    }
}
