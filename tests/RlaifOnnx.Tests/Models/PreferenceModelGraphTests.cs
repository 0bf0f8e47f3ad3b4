using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Stages;
using RlaifOnnx.Training;

namespace RlaifOnnx.Tests.Models;

/// <summary>
/// The preference model's reward graphs against an independent float64 reference: each row run alone
/// through <see cref="LlamaReference"/> / <see cref="Gpt2Reference"/> (no padding, positions 0 … n−1),
/// its last token's final hidden state dotted with score.weight. Batches are right-padded to different
/// lengths, so a graph that read a padded position, or took positions from the padding, would fail.
/// </summary>
public sealed class PreferenceModelGraphTests
{
    /// <summary>Three rows of different lengths (5, 2, 7 tokens); the batch pads them to 7.</summary>
    internal static readonly int[][] Rows = [[5, 17, 3, 44, 9], [12, 30], [7, 1, 22, 8, 60, 14, 33]];

    internal static ModelConfig Config(string variant) => variant == "gpt2" ? Gpt2GraphTests.TinyConfig() : TinyLlama.Config(variant);

    internal static WeightSet Weights(ModelConfig c, int seed = 3)
    {
        var lm = c.Architecture == Architecture.Gpt2 ? Gpt2GraphTests.NoisyWeights(c, seed) : TinyLlama.Weights(c, seed);
        return PreferenceModelGraphs.FromLanguageModel(c, lm, seed + 100);
    }

    /// <summary>input_ids and attention_mask [B, S] for right-padded rows (padding: the pad id, mask 0).</summary>
    internal static (long[] Ids, long[] Mask, long Seq) Padded(ModelConfig c, IReadOnlyList<int[]> rows)
    {
        var seq = rows.Max(r => r.Length);
        var ids = new long[rows.Count * seq];
        var mask = new long[rows.Count * seq];
        for (var b = 0; b < rows.Count; b++)
            for (var t = 0; t < seq; t++)
            {
                ids[b * seq + t] = t < rows[b].Length ? rows[b][t] : c.PadTokenId;
                mask[b * seq + t] = t < rows[b].Length ? 1 : 0;
            }
        return (ids, mask, seq);
    }

    /// <summary>The final hidden states [S][h] of token rows [B][S] with a mask and positions, by the reference of the config's family.</summary>
    static double[][] ReferenceHidden(ModelConfig c, WeightSet w, long[] ids, long[] mask, long[] positions)
    {
        if (c.Architecture == Architecture.Llama) return LlamaReference.FinalHidden(c, w, [ids], [mask], [positions])[0];
        long[,] To2D(long[] row)
        {
            var a = new long[1, row.Length];
            for (var i = 0; i < row.Length; i++) a[0, i] = row[i];
            return a;
        }
        return Gpt2Reference.FinalHidden(c, w, To2D(ids), To2D(mask), To2D(positions))[0];
    }

    static double Dot(double[] hidden, WeightTensor head)
    {
        double sum = 0;
        for (var j = 0; j < hidden.Length; j++) sum += hidden[j] * head.Data[j];
        return sum;
    }

    /// <summary>The reference reward of one row alone: its last token's final hidden state · score.weight.</summary>
    internal static double ReferenceReward(ModelConfig c, WeightSet w, int[] row)
    {
        var ids = row.Select(t => (long)t).ToArray();
        var hidden = ReferenceHidden(c, w, ids, ids.Select(_ => 1L).ToArray(), Enumerable.Range(0, row.Length).Select(i => (long)i).ToArray());
        return Dot(hidden[^1], w[PreferenceModelGraphs.HeadWeight]);
    }

    static double[] RunInference(ModelConfig c, WeightSet w, IReadOnlyList<int[]> rows)
    {
        var (ids, mask, seq) = Padded(c, rows);
        using var runner = new OrtTestRunner(PreferenceModelGraphs.Inference(c, w));
        var outputs = runner.Run(new Dictionary<string, TestTensor>
        {
            ["input_ids"] = TestTensor.Of(ids, rows.Count, seq),
            ["attention_mask"] = TestTensor.Of(mask, rows.Count, seq),
        });
        var rewards = outputs[PreferenceModelGraphs.RewardsOutput];
        Assert.Equal([(long)rows.Count], rewards.Shape);
        return Enumerable.Range(0, rows.Count).Select(i => rewards[i]).ToArray();
    }

    [Theory]
    [InlineData("gqa-untied")]
    [InlineData("qwen2-bias")]
    [InlineData("mha-tied")]
    [InlineData("gpt2")]
    public void Inference_rewards_equal_the_reference_at_each_rows_last_real_token(string variant)
    {
        var c = Config(variant);
        var w = Weights(c);
        var rewards = RunInference(c, w, Rows);
        var worst = 0.0;
        for (var b = 0; b < Rows.Length; b++)
        {
            var expected = ReferenceReward(c, w, Rows[b]);
            worst = Math.Max(worst, Math.Abs(rewards[b] - expected));
            Assert.True(Math.Abs(rewards[b] - expected) < 1e-5, $"row {b}: graph {rewards[b]:R}, reference {expected:R}");
            // Alone (batch 1, no padding) the row scores the same as inside the padded batch.
            var alone = RunInference(c, w, [Rows[b]])[0];
            Assert.True(Math.Abs(alone - rewards[b]) < 1e-5, $"row {b}: alone {alone:R}, padded {rewards[b]:R}");
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"{variant}: rewards {string.Join(", ", rewards.Select(r => r.ToString("F4")))}; max |graph − reference| {worst:E2}");
        // The rows' rewards differ, and reading the last padded position instead would be far off: the test can tell.
        Assert.True(Math.Abs(rewards[0] - rewards[1]) > 1e-3 && Math.Abs(rewards[1] - rewards[2]) > 1e-3, string.Join(", ", rewards));
        var (ids, mask, seq) = Padded(c, Rows);
        for (var b = 0; b < 2; b++)
        {
            var rowIds = ids.AsSpan(b * (int)seq, (int)seq).ToArray();
            var rowMask = mask.AsSpan(b * (int)seq, (int)seq).ToArray();
            var positions = TinyLlama.PositionsFromMask([rowMask])[0];
            var atPadding = Dot(ReferenceHidden(c, w, rowIds, rowMask, positions)[^1], w[PreferenceModelGraphs.HeadWeight]);
            Assert.True(Math.Abs(atPadding - rewards[b]) > 1e-3, $"row {b}: the last padded position scores {atPadding:R}, the last real token {rewards[b]:R}");
        }
    }

    [Theory]
    [InlineData("gqa-untied")]
    [InlineData("qwen2-bias")]
    [InlineData("gpt2")]
    public void Training_flavour_in_float64_equals_the_reference(string variant)
    {
        var c = Config(variant);
        var w = Weights(c);
        var model = PreferenceModelGraphs.Training(c, DataType.Double);
        // Inputs: the tokens, then every PM weight (score.weight last, no lm_head).
        var inputNames = model.Graph.Input.Select(i => i.Name).ToList();
        Assert.Equal(["input_ids", "attention_mask"], inputNames[..2]);
        Assert.Equal(PreferenceModelGraphs.Shapes(c).Keys.Order(StringComparer.Ordinal), inputNames[2..].Order(StringComparer.Ordinal));
        Assert.Equal(PreferenceModelGraphs.HeadWeight, inputNames[^1]);
        Assert.DoesNotContain("lm_head.weight", inputNames);

        var (ids, mask, seq) = Padded(c, Rows);
        var inputs = new Dictionary<string, TestTensor>
        {
            ["input_ids"] = TestTensor.Of(ids, Rows.Length, seq),
            ["attention_mask"] = TestTensor.Of(mask, Rows.Length, seq),
        };
        foreach (var (name, tensor) in w) inputs[name] = TestTensor.Of(Array.ConvertAll(tensor.Data, v => (double)v), tensor.Shape);
        using var runner = new OrtTestRunner(model);
        var rewards = runner.Run(inputs)[PreferenceModelGraphs.RewardsOutput];
        Assert.NotNull(rewards.Doubles);
        for (var b = 0; b < Rows.Length; b++)
        {
            var expected = ReferenceReward(c, w, Rows[b]);
            TestContext.Current.TestOutputHelper?.WriteLine($"{variant} row {b}: |graph − reference| {Math.Abs(rewards[b] - expected):E2}");
            Assert.True(Math.Abs(rewards[b] - expected) < 1e-9, $"row {b}: graph {rewards[b]:R}, reference {expected:R}");
        }
    }

    [Theory]
    [InlineData("gqa-untied")]
    [InlineData("qwen2-bias")]
    [InlineData("gpt2")]
    public void Preference_loss_gradient_of_the_whole_model_matches_finite_differences(string variant)
    {
        var c = Config(variant);
        var w = Weights(c);
        // Rows [a0, a1, b0, b1], right-padded to different lengths; pair i compares row i with row 2 + i.
        int[][] rows = [Rows[0], Rows[1], Rows[2], [9, 4, 51]];
        const int pairs = 2;
        var g = Losses.Extend(PreferenceModelGraphs.Training(c, DataType.Double));
        var rewards = PreferenceModelGraphs.RewardsOutput;
        var rewardA = g.Slice(rewards, [0], [pairs], [0]);
        var rewardB = g.Slice(rewards, [pairs], [2 * pairs], [0]);
        var probA = g.Input("p_a", DataType.Double, pairs);
        g.OutputAs(Losses.PreferenceLoss(g, rewardA, rewardB, probA), "loss", DataType.Double);

        var (ids, mask, seq) = Padded(c, rows);
        var inputs = new Dictionary<string, GradTensor>
        {
            ["input_ids"] = new([rows.Length, seq], Longs: ids),
            ["attention_mask"] = new([rows.Length, seq], Longs: mask),
            ["p_a"] = new([pairs], Doubles: [0.9, 0.25]),
        };
        foreach (var (name, tensor) in w) inputs[name] = new GradTensor(tensor.Shape, Doubles: Array.ConvertAll(tensor.Data, v => (double)v));
        var trainable = PreferenceModelGraphs.Shapes(c).Keys.ToList();
        var error = GradientCheck.CheckModel(g.ToModel(), inputs, trainable, tolerance: 1e-5, step: 1e-5, maxElementsPerTensor: 64, seed: 11);
        TestContext.Current.TestOutputHelper?.WriteLine($"{variant}: max relative gradient error {error:E2}");
        Assert.True(error < 1e-5, $"max relative error {error:E2}");
    }

    [Fact]
    public void Float32_training_graph_learns_a_few_pairs_with_the_trainer()
    {
        var c = Config("gqa-untied");
        var w = Weights(c);
        // Interleaved rows: pair i is rows (2i, 2i+1), the first preferred with probability p_a (fed per row; the B rows' value unused).
        var g = Losses.Extend(PreferenceModelGraphs.Training(c, DataType.Float));
        var byPair = g.Reshape(PreferenceModelGraphs.RewardsOutput, -1, 2);                     // [P, 2]
        var rewardA = g.Squeeze(g.Slice(byPair, [0], [1], [1]), 1);                             // [P]
        var rewardB = g.Squeeze(g.Slice(byPair, [1], [2], [1]), 1);                             // [P]
        var probA = g.Slice(g.Input("p_a_rows", DataType.Float, "rows"), [0], [long.MaxValue], [0], [2]); // [P]
        g.OutputAs(Losses.PreferenceLoss(g, rewardA, rewardB, probA), "loss", DataType.Float);

        int[][] rows = [Rows[0], Rows[1], Rows[2], [9, 4, 51], [33, 2, 8, 19], [6, 6, 6, 6, 6, 6], [40], [11, 29, 3]];
        float[] pRows = [1, 0, 0, 0, 1, 0, 0, 0];
        var (ids, mask, seq) = Padded(c, rows);
        var batch = new RlaifOnnx.Training.TrainingBatch
        {
            ["input_ids"] = RlaifOnnx.Training.BatchTensor.Of(ids, rows.Length, seq),
            ["attention_mask"] = RlaifOnnx.Training.BatchTensor.Of(mask, rows.Length, seq),
            ["p_a_rows"] = RlaifOnnx.Training.BatchTensor.Of(pRows, rows.Length),
        };
        using var trainer = new Trainer(g.ToModel(), "loss", w, new Dictionary<string, WeightTensor>(), new TrainerOptions { LearningRate = 3e-3 });
        var first = trainer.Evaluate(batch, TestContext.Current.CancellationToken);
        for (var step = 0; step < 20; step++) trainer.Step(batch, TestContext.Current.CancellationToken);
        var last = trainer.Evaluate(batch, TestContext.Current.CancellationToken);
        TestContext.Current.TestOutputHelper?.WriteLine($"preference loss {first:F4} → {last:F4} after 20 steps");
        Assert.True(last < 0.5 * first && last < 0.2, $"preference loss {first:F4} → {last:F4}");
    }

    [Fact]
    public void Shapes_are_the_decoder_without_its_lm_head_plus_the_scalar_head()
    {
        var c = TinyLlama.Config("gqa-untied");
        var shapes = PreferenceModelGraphs.Shapes(c);
        Assert.Equal([32L, 1L], shapes[PreferenceModelGraphs.HeadWeight]);
        Assert.False(shapes.ContainsKey("lm_head.weight"));
        Assert.Equal(WeightNames.Shapes(c).Count, shapes.Count); // lm_head out, score.weight in
        // A PM weight set is checked against these shapes; against the LM's it is refused, naming score.weight.
        var w = Weights(c);
        w.CheckAgainst(shapes, "pm");
        var e = Assert.Throws<UserError>(() => w.CheckAgainst(c, "lm"));
        Assert.Contains("lm_head.weight", e.Message);
    }

    [Fact]
    public void Initial_head_is_seeded_normal_with_variance_one_over_h_plus_one()
    {
        var c = TinyLlama.Config("gqa-untied") with { HiddenSize = 4096, NumHeads = 32, NumKvHeads = 8 };
        var head = PreferenceModelGraphs.InitialHead(c, seed: 1);
        Assert.Equal([4096L, 1L], head.Shape);
        Assert.Equal(head.Data, PreferenceModelGraphs.InitialHead(c, seed: 1).Data);
        Assert.NotEqual(head.Data, PreferenceModelGraphs.InitialHead(c, seed: 2).Data);
        var mean = head.Data.Average(v => (double)v);
        var variance = head.Data.Average(v => (v - mean) * (v - mean));
        // 1/4097 = 2.44e-4; the sample variance of 4096 draws has a relative standard error of √(2/4096) ≈ 2.2 %.
        Assert.InRange(variance * 4097, 0.9, 1.1);
        Assert.InRange(mean, -3 * Math.Sqrt(1.0 / 4097 / 4096), 3 * Math.Sqrt(1.0 / 4097 / 4096));
    }
}
