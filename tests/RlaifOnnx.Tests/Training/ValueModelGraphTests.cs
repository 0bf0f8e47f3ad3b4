using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;
using RlaifOnnx.Stages;
using RlaifOnnx.Tests.Models;
using RlaifOnnx.Training;

namespace RlaifOnnx.Tests.Training;

/// <summary>
/// The value model (the preference model's head at every position) and PPO's value-loss graph: values
/// against the preference model's own rewards (of the whole row and of every prefix scored alone), the
/// loss against a C# computation from the float64 reference forward, and the whole model's gradient
/// against finite differences.
/// </summary>
public sealed class ValueModelGraphTests
{
    static readonly int[][] Rows = PreferenceModelGraphTests.Rows;   // lengths 5, 2, 7 → padded to 7

    static Dictionary<string, TestTensor> Inputs(ModelConfig c, WeightSet w, IReadOnlyList<int[]> rows)
    {
        var (ids, mask, seq) = PreferenceModelGraphTests.Padded(c, rows);
        var inputs = new Dictionary<string, TestTensor>
        {
            ["input_ids"] = TestTensor.Of(ids, rows.Count, seq),
            ["attention_mask"] = TestTensor.Of(mask, rows.Count, seq),
        };
        foreach (var (name, tensor) in w) inputs[name] = TestTensor.Of(Array.ConvertAll(tensor.Data, v => (double)v), tensor.Shape);
        return inputs;
    }

    [Theory]
    [InlineData("gqa-untied")]
    [InlineData("qwen2-bias")]
    [InlineData("gpt2")]
    public void Values_are_the_rewards_of_every_prefix_and_at_the_last_token_the_rows_reward(string variant)
    {
        var c = PreferenceModelGraphTests.Config(variant);
        var w = PreferenceModelGraphTests.Weights(c);
        var valuesModel = PreferenceModelGraphs.Values(c, DataType.Double);
        // Same inputs as the reward graph, in the same order.
        Assert.Equal(PreferenceModelGraphs.Training(c, DataType.Double).Graph.Input.Select(i => i.Name), valuesModel.Graph.Input.Select(i => i.Name));
        using var valueRunner = new OrtTestRunner(valuesModel);
        using var rewardRunner = new OrtTestRunner(PreferenceModelGraphs.Training(c, DataType.Double));
        var values = valueRunner.Run(Inputs(c, w, Rows))[PreferenceModelGraphs.ValuesOutput];
        var seq = Rows.Max(r => r.Length);
        Assert.Equal([(long)Rows.Length, seq], values.Shape);
        Assert.NotNull(values.Doubles);
        var rewards = rewardRunner.Run(Inputs(c, w, Rows))[PreferenceModelGraphs.RewardsOutput];

        double worstLast = 0, worstPrefix = 0;
        for (var b = 0; b < Rows.Length; b++)
        {
            var last = values[b * seq + Rows[b].Length - 1];
            worstLast = Math.Max(worstLast, Math.Abs(last - rewards[b]));
            Assert.True(Math.Abs(last - rewards[b]) <= 1e-12, $"row {b}: value at the last token {last:R}, reward {rewards[b]:R}");
            for (var t = 0; t < Rows[b].Length; t++)
            {
                // The prefix ids[..t] scored alone (batch 1, no padding) by the reward graph.
                var prefix = rewardRunner.Run(Inputs(c, w, [Rows[b][..(t + 1)]]))[PreferenceModelGraphs.RewardsOutput][0];
                var value = values[b * seq + t];
                worstPrefix = Math.Max(worstPrefix, Math.Abs(value - prefix));
                Assert.True(Math.Abs(value - prefix) <= 1e-12, $"row {b} position {t}: value {value:R}, prefix reward {prefix:R}");
            }
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"{variant}: max |value − reward| at last tokens {worstLast:E2}, at prefixes {worstPrefix:E2}");
        // The values move along a row (a graph that broadcast one value per row would fail above, but say so here too).
        Assert.True(Math.Abs(values[0] - values[4]) > 1e-3, $"{values[0]} vs {values[4]}");
    }

    /// <summary>The value-loss batch: rows with prompts of 2, 1, 3 tokens, and old values / returns around the reference values.</summary>
    internal sealed record ValueBatch(int[][] Rows, long Seq, long[] ResponseMask, double[] OldValues, double[] Returns, double[][] ReferenceValues);

    internal static ValueBatch MakeValueBatch(ModelConfig c, WeightSet w, int seed)
    {
        int[] prompts = [2, 1, 3];
        var seq = Rows.Max(r => r.Length);
        var actions = seq - 1;
        var rng = new Random(seed);
        var mask = new long[Rows.Length * actions];
        var oldValues = new double[mask.Length];
        var returns = new double[mask.Length];
        var reference = new double[Rows.Length][];
        for (var b = 0; b < Rows.Length; b++)
        {
            // V(ids[..t]) at t: the reward of the prefix scored alone by the independent reference.
            reference[b] = Enumerable.Range(0, Rows[b].Length).Select(t => PreferenceModelGraphTests.ReferenceReward(c, w, Rows[b][..(t + 1)])).ToArray();
            for (var t = 0; t < actions; t++)
            {
                var i = b * actions + t;
                var response = t + 1 >= prompts[b] && t + 1 < Rows[b].Length;
                mask[i] = response ? 1 : 0;
                // Half the old values far enough off (±0.5 > ε = 0.2) that clipping matters; padding gets junk that must be ignored.
                var offset = (i % 2 == 0 ? 0.5 : 0.05) * (i % 4 < 2 ? 1 : -1);
                oldValues[i] = t < Rows[b].Length ? reference[b][t] + offset : 40;
                // Returns drawn on their own (not relative to the values), so the loss depends on the values themselves.
                returns[i] = response ? rng.NextDouble() * 4 - 2 : -40;
            }
        }
        return new ValueBatch(Rows, seq, mask, oldValues, returns, reference);
    }

    static Dictionary<string, GradTensor> GradInputs(ModelConfig c, WeightSet w, ValueBatch v)
    {
        var (ids, attention, seq) = PreferenceModelGraphTests.Padded(c, v.Rows);
        var inputs = new Dictionary<string, GradTensor>
        {
            ["input_ids"] = new([v.Rows.Length, seq], Longs: ids),
            ["attention_mask"] = new([v.Rows.Length, seq], Longs: attention),
            [Ppo.OldValuesInput] = new([v.Rows.Length, seq - 1], Doubles: v.OldValues),
            [Ppo.ReturnsInput] = new([v.Rows.Length, seq - 1], Doubles: v.Returns),
            [Ppo.ResponseMaskInput] = new([v.Rows.Length, seq - 1], Longs: v.ResponseMask),
        };
        foreach (var (name, tensor) in w) inputs[name] = new GradTensor(tensor.Shape, Doubles: Array.ConvertAll(tensor.Data, x => (double)x));
        return inputs;
    }

    [Theory]
    [InlineData("gqa-untied")]
    [InlineData("gpt2")]
    public void Value_loss_graph_in_float64_equals_the_loss_computed_from_the_reference(string variant)
    {
        var c = PreferenceModelGraphTests.Config(variant);
        var w = PreferenceModelGraphTests.Weights(c);
        var v = MakeValueBatch(c, w, seed: 4);
        const double clip = 0.2;
        var outputs = GradientCheck.Run(Ppo.ValueGraph(c, clip, DataType.Double), GradInputs(c, w, v), DataType.Double);

        // ½ · mean over response positions of max((V − R)², (V_old + clip(V − V_old, ±ε) − R)²), V = V(ids[..t]).
        double sum = 0, count = 0, clippedWins = 0;
        var actions = v.Seq - 1;
        for (var b = 0; b < v.Rows.Length; b++)
            for (var t = 0; t < actions; t++)
            {
                var i = b * actions + t;
                if (v.ResponseMask[i] == 0) continue;
                var value = v.ReferenceValues[b][t];
                var clipped = v.OldValues[i] + Math.Clamp(value - v.OldValues[i], -clip, clip);
                var error = (value - v.Returns[i]) * (value - v.Returns[i]);
                var clippedError = (clipped - v.Returns[i]) * (clipped - v.Returns[i]);
                sum += Math.Max(error, clippedError);
                clippedWins += clippedError > error ? 1 : 0;
                count++;
            }
        var expected = 0.5 * sum / count;
        var loss = outputs[Ppo.LossOutput].Single();
        TestContext.Current.TestOutputHelper?.WriteLine($"{variant}: value loss {loss:R}, reference {expected:R}, |Δ| {Math.Abs(loss - expected):E2}; clip fraction {outputs[Ppo.ValueClipFractionOutput].Single()}");
        Assert.True(Math.Abs(loss - expected) <= 1e-10, $"graph {loss:R}, reference {expected:R}");
        Assert.Equal(clippedWins / count, outputs[Ppo.ValueClipFractionOutput].Single(), 12);
        Assert.InRange(clippedWins, 1, count - 1);   // both branches of the max are exercised
        Assert.DoesNotContain(PreferenceModelGraphs.ValuesOutput, outputs.Keys);
    }

    [Theory]
    [InlineData("gqa-untied")]
    [InlineData("qwen2-bias")]
    [InlineData("gpt2")]
    public void Value_loss_gradient_of_the_whole_model_matches_finite_differences(string variant)
    {
        var c = PreferenceModelGraphTests.Config(variant);
        var w = PreferenceModelGraphTests.Weights(c);
        var v = MakeValueBatch(c, w, seed: 9);
        var trainable = PreferenceModelGraphs.Shapes(c).Keys.ToList();
        var error = GradientCheck.CheckModel(Ppo.ValueGraph(c, 0.2, DataType.Double), GradInputs(c, w, v), trainable,
            tolerance: 1e-5, step: 1e-5, maxElementsPerTensor: 12, seed: 13);
        TestContext.Current.TestOutputHelper?.WriteLine($"{variant}: max relative gradient error {error:E2}");
        Assert.True(error < 1e-5, $"max relative error {error:E2}");
    }
    [Fact]
    public void Trainer_steps_on_the_float32_value_graph_lower_the_value_loss()
    {
        var c = PreferenceModelGraphTests.Config("gqa-untied");
        var w = PreferenceModelGraphTests.Weights(c);
        var v = MakeValueBatch(c, w, seed: 4);
        var (ids, attention, seq) = PreferenceModelGraphTests.Padded(c, v.Rows);
        var batch = new TrainingBatch
        {
            ["input_ids"] = BatchTensor.Of(ids, v.Rows.Length, seq),
            ["attention_mask"] = BatchTensor.Of(attention, v.Rows.Length, seq),
            [Ppo.OldValuesInput] = BatchTensor.Of(Array.ConvertAll(v.OldValues, x => (float)x), v.Rows.Length, seq - 1),
            [Ppo.ReturnsInput] = BatchTensor.Of(Array.ConvertAll(v.Returns, x => (float)x), v.Rows.Length, seq - 1),
            [Ppo.ResponseMaskInput] = BatchTensor.Of(v.ResponseMask, v.Rows.Length, seq - 1),
        };
        using var trainer = new Trainer(Ppo.ValueGraph(c), Ppo.LossOutput, w, new Dictionary<string, WeightTensor>(),
            Ppo.ValueOptions(new TrainerOptions { LearningRate = 3e-3 }));
        var first = trainer.Step(batch, TestContext.Current.CancellationToken);
        var last = first;
        for (var step = 1; step < 10; step++) last = trainer.Step(batch, TestContext.Current.CancellationToken);
        var after = trainer.Evaluate(batch, TestContext.Current.CancellationToken);
        TestContext.Current.TestOutputHelper?.WriteLine($"value loss {first.Loss:F4} → {after:F4} after 10 steps; clip fraction {first.Metrics[Ppo.ValueClipFractionOutput]:F3} → {last.Metrics[Ppo.ValueClipFractionOutput]:F3}");
        Assert.True(after < 0.8 * first.Loss, $"value loss {first.Loss:F4} → {after:F4}");
        Assert.True(double.IsFinite(last.Metrics[Ppo.ValueClipFractionOutput]));
    }
}
