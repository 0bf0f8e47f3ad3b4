using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;
using RlaifOnnx.Training;
using RlaifOnnx.Training.Autodiff;

namespace RlaifOnnx.Tests.Training;

/// <summary>
/// PPO's policy-loss graph: its float64 loss and diagnostics against a C# computation from the float64
/// reference forward (<see cref="LlamaReference"/>), the clip cutting the gradient of tokens whose ratio
/// left the trust region in the advantage's direction, and a few <see cref="Trainer"/> steps moving
/// log-probs the way the advantages say (whole model and LoRA).
/// </summary>
public sealed class PpoPolicyGraphTests
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Prompt + response rows (2 = end token) of lengths 6, 4, 7 with prompts of 2, 1, 3 tokens; padded to 7.</summary>
    static readonly int[][] Rows = [[5, 17, 3, 44, 9, 2], [12, 30, 8, 2], [7, 1, 22, 8, 60, 14, 33]];
    static readonly int[] Prompts = [2, 1, 3];
    const int Seq = 7, Actions = Seq - 1;
    const double Clip = 0.2;

    static ModelConfig Config() => TinyLlama.Config("gqa-untied");

    static (long[] Ids, long[] Mask, long[] Positions) Padded(ModelConfig c)
    {
        var ids = new long[Rows.Length * Seq];
        var mask = new long[ids.Length];
        var positions = new long[ids.Length];
        for (var b = 0; b < Rows.Length; b++)
            for (var t = 0; t < Seq; t++)
            {
                var i = b * Seq + t;
                ids[i] = t < Rows[b].Length ? Rows[b][t] : c.PadTokenId;
                mask[i] = t < Rows[b].Length ? 1 : 0;
                positions[i] = t;
            }
        return (ids, mask, positions);
    }

    /// <summary>response_mask [B, T−1]: 1 at t when ids[t+1] is a response token.</summary>
    static long[] ResponseMask()
    {
        var mask = new long[Rows.Length * Actions];
        for (var b = 0; b < Rows.Length; b++)
            for (var t = 0; t < Actions; t++)
                mask[b * Actions + t] = t + 1 >= Prompts[b] && t + 1 < Rows[b].Length ? 1 : 0;
        return mask;
    }

    /// <summary>log π(ids[t+1] | ids[..t]) and the entropy of π(· | ids[..t]), [B·(T−1)], from the float64 reference.</summary>
    static (double[] LogProbs, double[] Entropy) Reference(ModelConfig c, WeightSet w)
    {
        var (ids, mask, positions) = Padded(c);
        long[][] Split(long[] flat) => Enumerable.Range(0, Rows.Length).Select(b => flat.AsSpan(b * Seq, Seq).ToArray()).ToArray();
        var logits = LlamaReference.Forward(c, w, Split(ids), Split(mask), Split(positions));
        var logProbs = new double[Rows.Length * Actions];
        var entropy = new double[logProbs.Length];
        for (var b = 0; b < Rows.Length; b++)
            for (var t = 0; t < Actions; t++)
            {
                var row = logits[b][t];
                var max = row.Max();
                var logSum = max + Math.Log(row.Sum(v => Math.Exp(v - max)));
                logProbs[b * Actions + t] = row[ids[b * Seq + t + 1]] - logSum;
                entropy[b * Actions + t] = -row.Sum(v => Math.Exp(v - logSum) * (v - logSum));
            }
        return (logProbs, entropy);
    }

    static Dictionary<string, GradTensor> Inputs(ModelConfig c, WeightSet w, double[] oldLogProbs, double[] advantages)
    {
        var (ids, mask, positions) = Padded(c);
        var inputs = new Dictionary<string, GradTensor>
        {
            ["input_ids"] = new([Rows.Length, Seq], Longs: ids),
            ["attention_mask"] = new([Rows.Length, Seq], Longs: mask),
            ["position_ids"] = new([Rows.Length, Seq], Longs: positions),
            [Ppo.OldLogProbsInput] = new([Rows.Length, Actions], Doubles: oldLogProbs),
            [Ppo.AdvantagesInput] = new([Rows.Length, Actions], Doubles: advantages),
            [Ppo.ResponseMaskInput] = new([Rows.Length, Actions], Longs: ResponseMask()),
        };
        foreach (var (name, tensor) in w) inputs[name] = new GradTensor(tensor.Shape, Doubles: Array.ConvertAll(tensor.Data, v => (double)v));
        return inputs;
    }

    /// <summary>
    /// Old log-probs a little (±0.05) or well (±0.5, outside the clip range) off the current ones, random advantages;
    /// 0 on padding. Of the far tokens every other one has its advantage's sign in the direction the clip binds
    /// (A &gt; 0 with ρ &gt; 1 + ε, A &lt; 0 with ρ &lt; 1 − ε), the others the opposite sign.
    /// </summary>
    static (double[] Old, double[] Advantages) RolloutLike(double[] logProbs, int seed)
    {
        var rng = new Random(seed);
        var mask = ResponseMask();
        var old = new double[logProbs.Length];
        var advantages = new double[logProbs.Length];
        for (var i = 0; i < old.Length; i++)
        {
            if (mask[i] == 0) continue;   // old log-prob 0 on padding: the ratio there is ≤ 1, never overflows
            old[i] = logProbs[i] + (i % 3 == 0 ? 0.5 : 0.05) * (i % 2 == 0 ? 1 : -1);
            advantages[i] = rng.NextDouble() * 4 - 2;
            if (i % 3 == 0)
            {
                var ratioAboveOne = i % 2 != 0;            // old below the current log-prob
                var binds = i / 3 % 2 == 0;
                advantages[i] = Math.Abs(advantages[i]) * (ratioAboveOne == binds ? 1 : -1);
            }
        }
        return (old, advantages);
    }

    [Fact]
    public void Policy_graph_in_float64_equals_the_loss_computed_from_the_reference()
    {
        var c = Config();
        var w = TinyLlama.Weights(c, 3);
        var (logProbs, entropy) = Reference(c, w);
        var (old, advantages) = RolloutLike(logProbs, seed: 1);
        var model = Ppo.PolicyGraph(c, clipEpsilon: Clip, floatType: DataType.Double);
        Assert.Equal([Ppo.LossOutput, Ppo.ClipFractionOutput, Ppo.ApproxKlOutput, Ppo.EntropyOutput], model.Graph.Output.Select(o => o.Name));
        var outputs = GradientCheck.Run(model, Inputs(c, w, old, advantages), DataType.Double);

        // mean over response tokens of max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε)), ρ = exp(log π − log π_old).
        var mask = ResponseMask();
        double loss = 0, clipped = 0, kl = 0, ent = 0, count = 0;
        for (var i = 0; i < mask.Length; i++)
        {
            if (mask[i] == 0) continue;
            var ratio = Math.Exp(logProbs[i] - old[i]);
            loss += Math.Max(-advantages[i] * ratio, -advantages[i] * Math.Clamp(ratio, 1 - Clip, 1 + Clip));
            // TRL's pg_clipfrac: the clipped term is the larger (binding) one; its approxkl: ½·(log ρ)².
            clipped += -advantages[i] * Math.Clamp(ratio, 1 - Clip, 1 + Clip) > -advantages[i] * ratio ? 1 : 0;
            kl += 0.5 * Math.Pow(logProbs[i] - old[i], 2);
            ent += entropy[i];
            count++;
        }
        (loss, clipped, kl, ent) = (loss / count, clipped / count, kl / count, ent / count);
        var graphLoss = outputs[Ppo.LossOutput].Single();
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"policy loss {graphLoss:R} (reference {loss:R}, |Δ| {Math.Abs(graphLoss - loss):E2}); clip fraction {clipped:F4}, approx KL {kl:F6}, entropy {ent:F6}; {count} response tokens");
        Assert.True(Math.Abs(graphLoss - loss) <= 1e-10, $"graph {graphLoss:R}, reference {loss:R}");
        Assert.Equal(clipped, outputs[Ppo.ClipFractionOutput].Single(), 12);
        Assert.True(Math.Abs(outputs[Ppo.ApproxKlOutput].Single() - kl) <= 1e-10, $"approx KL {outputs[Ppo.ApproxKlOutput].Single():R} vs {kl:R}");
        Assert.True(Math.Abs(outputs[Ppo.EntropyOutput].Single() - ent) <= 1e-10, $"entropy {outputs[Ppo.EntropyOutput].Single():R} vs {ent:R}");
        Assert.True(clipped is > 0 and < 1, $"clip fraction {clipped}: both tokens the clip binds and free ones should be in the batch");
    }

    /// <summary>The gradients of the float64 policy loss w.r.t. every weight.</summary>
    static Dictionary<string, double[]> Gradients(ModelConfig c, WeightSet w, double[] old, double[] advantages)
    {
        var graphs = GradientBuilder.Build(Ppo.PolicyGraph(c, clipEpsilon: Clip, floatType: DataType.Double), w.Keys.ToList(), Ppo.LossOutput);
        var outputs = GradientCheck.Run(graphs.Training, Inputs(c, w, old, advantages), DataType.Double);
        return w.Keys.ToDictionary(n => n, n => outputs[GradientBuilder.GradName(n)]);
    }

    static double MaxDifference(Dictionary<string, double[]> a, Dictionary<string, double[]> b)
        => a.Keys.Max(n => a[n].Zip(b[n], (x, y) => Math.Abs(x - y)).Max());

    [Fact]
    public void Clip_stops_the_gradient_of_a_token_whose_ratio_left_the_range_in_its_advantages_direction()
    {
        var c = Config();
        var w = TinyLlama.Weights(c, 3);
        var (logProbs, _) = Reference(c, w);
        var mask = ResponseMask();
        var rng = new Random(2);
        var old = new double[logProbs.Length];
        var advantages = new double[logProbs.Length];
        for (var i = 0; i < old.Length; i++)
            if (mask[i] == 1) (old[i], advantages[i]) = (logProbs[i] + 0.05 * (rng.NextDouble() * 2 - 1), rng.NextDouble() * 2 - 1);
        // Row 0, t = 2: A > 0 and ρ = e^0.5 ≈ 1.65 > 1 + ε. Row 1, t = 1: A < 0 and ρ = e^−0.5 ≈ 0.61 < 1 − ε.
        // Row 2, t = 3: A > 0 and ρ = 1, inside the range (the control).
        int up = 0 * Actions + 2, down = 1 * Actions + 1, inside = 2 * Actions + 3;
        Assert.True(mask[up] == 1 && mask[down] == 1 && mask[inside] == 1);
        (old[up], advantages[up]) = (logProbs[up] - 0.5, 1.0);
        (old[down], advantages[down]) = (logProbs[down] + 0.5, -1.0);
        (old[inside], advantages[inside]) = (logProbs[inside], 1.0);

        var all = Gradients(c, w, old, advantages);
        var scale = all.Values.Max(g => g.Max(Math.Abs));
        // Removing a token's contribution (advantage 0: its term is 0, the token count unchanged) …
        double[] Without(int i)
        {
            var a = (double[])advantages.Clone();
            a[i] = 0;
            return a;
        }
        // … changes nothing for the clipped tokens, whose terms are constants of the weights there …
        var upDiff = MaxDifference(all, Gradients(c, w, old, Without(up)));
        var downDiff = MaxDifference(all, Gradients(c, w, old, Without(down)));
        // … and changes the gradient for the token inside the range.
        var insideDiff = MaxDifference(all, Gradients(c, w, old, Without(inside)));
        TestContext.Current.TestOutputHelper?.WriteLine($"max |Δ gradient| without the token: ρ > 1 + ε, A > 0: {upDiff:E2}; ρ < 1 − ε, A < 0: {downDiff:E2}; inside: {insideDiff:E2} (gradient scale {scale:E2})");
        Assert.True(upDiff <= 1e-12 * scale, $"clipped token (A > 0) still moves the gradient by {upDiff:E2}");
        Assert.True(downDiff <= 1e-12 * scale, $"clipped token (A < 0) still moves the gradient by {downDiff:E2}");
        Assert.True(insideDiff > 1e-3 * scale, $"the unclipped token changes the gradient by only {insideDiff:E2}");
    }

    [Fact]
    public void Policy_loss_gradient_of_the_whole_model_matches_finite_differences()
    {
        var c = Config();
        var w = TinyLlama.Weights(c, 3);
        var (logProbs, _) = Reference(c, w);
        var (old, advantages) = RolloutLike(logProbs, seed: 3);
        var error = GradientCheck.CheckModel(Ppo.PolicyGraph(c, clipEpsilon: Clip, floatType: DataType.Double), Inputs(c, w, old, advantages),
            w.Keys.ToList(), tolerance: 1e-5, step: 1e-5, maxElementsPerTensor: 64, seed: 17);
        TestContext.Current.TestOutputHelper?.WriteLine($"max relative gradient error {error:E2}");
        Assert.True(error < 1e-5, $"max relative error {error:E2}");
    }

    static TrainingBatch Batch(ModelConfig c, float[] old, float[] advantages)
    {
        var (ids, mask, positions) = Padded(c);
        return new TrainingBatch
        {
            ["input_ids"] = BatchTensor.Of(ids, Rows.Length, Seq),
            ["attention_mask"] = BatchTensor.Of(mask, Rows.Length, Seq),
            ["position_ids"] = BatchTensor.Of(positions, Rows.Length, Seq),
            [Ppo.OldLogProbsInput] = BatchTensor.Of(old, Rows.Length, Actions),
            [Ppo.AdvantagesInput] = BatchTensor.Of(advantages, Rows.Length, Actions),
            [Ppo.ResponseMaskInput] = BatchTensor.Of(ResponseMask(), Rows.Length, Actions),
        };
    }

    /// <summary>Advantage +1 on row 0's response, −1 on row 1's, alternating on row 2's; 0 elsewhere.</summary>
    static float[] FixedAdvantages()
    {
        var mask = ResponseMask();
        var advantages = new float[mask.Length];
        for (var i = 0; i < mask.Length; i++)
            if (mask[i] == 1) advantages[i] = (i / Actions) switch { 0 => 1, 1 => -1, _ => i % 2 == 0 ? 1 : -1 };
        return advantages;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Trainer_steps_raise_the_log_probs_of_positively_advantaged_tokens(bool lora)
    {
        var c = Config();
        var baseWeights = TinyLlama.Weights(c, 3);
        var (start, startEntropy) = Reference(c, baseWeights);
        var old = Array.ConvertAll(start, v => (float)v);
        var advantages = FixedAdvantages();
        var batch = Batch(c, old, advantages);

        var options = Ppo.PolicyOptions(new TrainerOptions { LearningRate = lora ? 1e-2 : 3e-3 });
        LoraOptions? loraOptions = lora ? new LoraOptions(4, 8, [LoraOptions.AllLinear]) : null;
        IReadOnlyList<LoraAdapter> adapters = loraOptions is null ? [] : Lora.Apply(DecoderGraphs.Training(c, DataType.Float), loraOptions).Adapters;
        var trainable = loraOptions is null
            ? baseWeights.ToDictionary(kv => kv.Key, kv => new WeightTensor(kv.Value.Shape, (float[])kv.Value.Data.Clone()), StringComparer.Ordinal)
            : Lora.InitialWeights(adapters, 1);
        var frozen = loraOptions is null ? new Dictionary<string, WeightTensor>() : baseWeights.ToDictionary(kv => kv.Key, kv => kv.Value);
        using var trainer = new Trainer(Ppo.PolicyGraph(c, loraOptions), Ppo.LossOutput, trainable, frozen, options);

        var first = trainer.Step(batch, Ct);
        // At the first step π = π_old: nothing is clipped, the KL is 0 and the entropy is the reference's.
        var mask = ResponseMask();
        var meanEntropy = Enumerable.Range(0, mask.Length).Where(i => mask[i] == 1).Average(i => startEntropy[i]);
        Assert.Equal(0.0, first.Metrics[Ppo.ClipFractionOutput]);
        Assert.InRange(first.Metrics[Ppo.ApproxKlOutput], -1e-6, 1e-6);
        Assert.Equal(meanEntropy, first.Metrics[Ppo.EntropyOutput], 1e-4);
        StepResult last = first;
        for (var step = 1; step < 8; step++) last = trainer.Step(batch, Ct);

        var trained = new WeightSet();
        if (loraOptions is null)
            foreach (var (name, tensor) in trainer.TrainableWeights()) trained[name] = tensor;
        else
            trained = Lora.Merge(baseWeights, adapters, trainer.TrainableWeights(), loraOptions.Scale);
        var (end, _) = Reference(c, trained);
        int rose = 0, fell = 0, positives = 0, negatives = 0;
        double positiveGain = 0, negativeGain = 0;
        for (var i = 0; i < mask.Length; i++)
        {
            if (advantages[i] > 0) { positives++; rose += end[i] > start[i] ? 1 : 0; positiveGain += end[i] - start[i]; }
            if (advantages[i] < 0) { negatives++; fell += end[i] < start[i] ? 1 : 0; negativeGain += end[i] - start[i]; }
        }
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"{(lora ? "LoRA" : "whole model")}: loss {first.Loss:F4} → {last.Loss:F4}; clip fraction {last.Metrics[Ppo.ClipFractionOutput]:F3}, approx KL {last.Metrics[Ppo.ApproxKlOutput]:F4}, entropy {last.Metrics[Ppo.EntropyOutput]:F4}; " +
            $"A > 0: {rose}/{positives} rose, mean Δ log π {positiveGain / positives:+0.000;-0.000}; A < 0: {fell}/{negatives} fell, mean Δ log π {negativeGain / negatives:+0.000;-0.000}");
        Assert.Equal(positives, rose);
        Assert.Equal(negatives, fell);
        Assert.True(last.Loss < first.Loss, $"loss {first.Loss} → {last.Loss}");
        Assert.True(last.Metrics[Ppo.ClipFractionOutput] > 0, "after several steps on one batch some ratios should have left the range");
    }

    [Fact]
    public void Micro_batches_weighted_by_response_tokens_equal_the_whole_batch()
    {
        var c = Config();
        var weights = TinyLlama.Weights(c, 3);
        var (start, _) = Reference(c, weights);
        var (old, advantages) = RolloutLike(start, seed: 5);
        var batch = Batch(c, Array.ConvertAll(old, v => (float)v), Array.ConvertAll(advantages, v => (float)v));
        Trainer New(int micro) => new(Ppo.PolicyGraph(c), Ppo.LossOutput,
            weights.ToDictionary(kv => kv.Key, kv => new WeightTensor(kv.Value.Shape, (float[])kv.Value.Data.Clone()), StringComparer.Ordinal),
            new Dictionary<string, WeightTensor>(), Ppo.PolicyOptions(new TrainerOptions { MicroBatchSize = micro }));
        using var whole = New(0);
        using var micro = New(1);
        var lossWhole = whole.ComputeGradients(batch, Ct);
        var lossMicro = micro.ComputeGradients(batch, Ct);
        Assert.Equal(lossWhole, lossMicro, 1e-5 * Math.Abs(lossWhole) + 1e-7);
        var worst = 0.0;
        var scale = whole.Parameters.Max(p => p.Gradient.Max(Math.Abs));
        foreach (var (a, b) in whole.Parameters.Zip(micro.Parameters))
            for (var i = 0; i < a.Gradient.Length; i++) worst = Math.Max(worst, Math.Abs(a.Gradient[i] - b.Gradient[i]));
        TestContext.Current.TestOutputHelper?.WriteLine($"loss {lossWhole:R} vs {lossMicro:R}; max |Δ gradient| {worst:E2} (scale {scale:E2})");
        Assert.True(worst <= 1e-4 * scale, $"max |Δ gradient| {worst:E2}, scale {scale:E2}");
    }
}
