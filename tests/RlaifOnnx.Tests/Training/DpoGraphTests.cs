using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;
using RlaifOnnx.Training;

namespace RlaifOnnx.Tests.Training;

/// <summary>
/// DPO's loss graph: the pair loss with literal numbers (hard and soft labels), the float64 graph against the
/// loss and TRL's metrics computed in C# from the float64 reference forward, and a whole-model gradient check.
/// </summary>
public sealed class DpoGraphTests
{
    [Fact]
    public void Pair_loss_with_literal_numbers()
    {
        // Chosen log-ratio 0.5, rejected −0.5, β = 0.1: z = 1, −log σ(0.1) = log(1 + e^−0.1).
        Assert.Equal(0.6443966600735709, Dpo.PairLoss(0.5, -0.5, 0.1, p: 1), 14);
        // The soft label p = 0.75: −[0.75·log σ(0.1) + 0.25·log σ(−0.1)].
        Assert.Equal(0.6693966600735709, Dpo.PairLoss(0.5, -0.5, 0.1, p: 0.75), 14);
        // The rejected answer ahead: z = −3 at β = 0.1 → −log σ(−0.3).
        Assert.Equal(0.8543552444685272, Dpo.PairLoss(-1, 2, 0.1, p: 1), 14);
        // p = ½ is symmetric in the two answers.
        Assert.Equal(Dpo.PairLoss(1, 0, 0.5, 0.5), Dpo.PairLoss(0, 1, 0.5, 0.5), 14);
    }

    // Two pairs, rows [chosen₀, rejected₀, chosen₁, rejected₁]: prompt tokens (mask 0) then completion tokens (mask 1).
    static readonly int[][] Rows = [[5, 17, 3, 44, 9], [5, 17, 30, 8], [7, 1, 22, 8, 60, 14], [7, 1, 2]];
    static readonly int[] PromptLengths = [2, 2, 2, 2];
    const int Seq = 6;
    const double Beta = 0.5;

    static ModelConfig Config() => TinyLlama.Config("gqa-untied");

    static (long[] Ids, long[] Mask, long[] Positions, long[] LossMask) Padded(ModelConfig c)
    {
        var n = Rows.Length * Seq;
        var (ids, mask, positions, loss) = (new long[n], new long[n], new long[n], new long[n]);
        for (var b = 0; b < Rows.Length; b++)
            for (var t = 0; t < Seq; t++)
            {
                var i = b * Seq + t;
                var real = t < Rows[b].Length;
                ids[i] = real ? Rows[b][t] : c.PadTokenId;
                mask[i] = real ? 1 : 0;
                positions[i] = t;
                loss[i] = real && t >= PromptLengths[b] ? 1 : 0;
            }
        return (ids, mask, positions, loss);
    }

    /// <summary>Summed completion log-probs per row from the float64 reference forward.</summary>
    static double[] SequenceLogProbs(ModelConfig c, WeightSet w)
    {
        var (ids, mask, positions, loss) = Padded(c);
        long[][] Split(long[] flat) => Enumerable.Range(0, Rows.Length).Select(b => flat.AsSpan(b * Seq, Seq).ToArray()).ToArray();
        var logits = LlamaReference.Forward(c, w, Split(ids), Split(mask), Split(positions));
        var sums = new double[Rows.Length];
        for (var b = 0; b < Rows.Length; b++)
            for (var t = 0; t + 1 < Seq; t++)
            {
                if (loss[b * Seq + t + 1] == 0) continue;
                var row = logits[b][t];
                var max = row.Max();
                sums[b] += row[ids[b * Seq + t + 1]] - (max + Math.Log(row.Sum(v => Math.Exp(v - max))));
            }
        return sums;
    }

    static Dictionary<string, GradTensor> Inputs(ModelConfig c, WeightSet w, double[] reference, double[] target)
    {
        var (ids, mask, positions, loss) = Padded(c);
        var inputs = new Dictionary<string, GradTensor>
        {
            ["input_ids"] = new([Rows.Length, Seq], Longs: ids),
            ["attention_mask"] = new([Rows.Length, Seq], Longs: mask),
            ["position_ids"] = new([Rows.Length, Seq], Longs: positions),
            [Dpo.LossMaskInput] = new([Rows.Length, Seq], Longs: loss),
            [Dpo.ReferenceLogProbsInput] = new([Rows.Length], Doubles: reference),
            [Dpo.TargetInput] = new([Rows.Length], Doubles: target),
        };
        foreach (var (name, tensor) in w) inputs[name] = new GradTensor(tensor.Shape, Doubles: Array.ConvertAll(tensor.Data, v => (double)v));
        return inputs;
    }

    [Fact]
    public void Float64_graph_equals_the_loss_and_metrics_computed_from_the_reference_forward()
    {
        var c = Config();
        var policy = TinyLlama.Weights(c, 3);
        var logps = SequenceLogProbs(c, policy);
        var reference = SequenceLogProbs(c, TinyLlama.Weights(c, 4));
        double[] target = [1, 1, 0.8, 0.8];   // pair 0 a hard label, pair 1 a soft one
        var outputs = GradientCheck.Run(Dpo.Graph(c, Beta, floatType: DataType.Double), Inputs(c, policy, reference, target), DataType.Double);

        var chosen = new[] { Beta * (logps[0] - reference[0]), Beta * (logps[2] - reference[2]) };
        var rejected = new[] { Beta * (logps[1] - reference[1]), Beta * (logps[3] - reference[3]) };
        var loss = (Dpo.PairLoss(logps[0] - reference[0], logps[1] - reference[1], Beta, 1) + Dpo.PairLoss(logps[2] - reference[2], logps[3] - reference[3], Beta, 0.8)) / 2;
        Assert.Equal(loss, outputs[Dpo.LossOutput].Single(), 10);
        Assert.Equal(chosen.Average(), outputs[Dpo.ChosenRewardOutput].Single(), 10);
        Assert.Equal(rejected.Average(), outputs[Dpo.RejectedRewardOutput].Single(), 10);
        Assert.Equal((chosen[0] > rejected[0] ? 0.5 : 0) + (chosen[1] > rejected[1] ? 0.5 : 0), outputs[Dpo.AccuracyOutput].Single(), 12);
        Assert.Equal(chosen.Average() - rejected.Average(), outputs[Dpo.MarginOutput].Single(), 10);

        // The reference pass gives the same summed log-probs.
        var reference64 = GradientCheck.Run(Dpo.SequenceLogProbGraph(c), Inputs(c, policy, reference, target), DataType.Float);
        for (var b = 0; b < Rows.Length; b++) Assert.Equal(logps[b], reference64[Dpo.SequenceLogProbsOutput][b], 4);
    }

    [Fact]
    public void Dpo_loss_gradient_of_the_whole_model_matches_finite_differences()
    {
        var c = Config();
        var w = TinyLlama.Weights(c, 3);
        var reference = SequenceLogProbs(c, TinyLlama.Weights(c, 4));
        var error = GradientCheck.CheckModel(Dpo.Graph(c, Beta, floatType: DataType.Double), Inputs(c, w, reference, [1, 1, 0.7, 0.7]),
            w.Keys.ToList(), tolerance: 1e-5);
        TestContext.Current.TestOutputHelper?.WriteLine($"max relative error {error:E2}");
        Assert.True(error < 1e-5, $"max relative error {error:E2}");
    }
}
