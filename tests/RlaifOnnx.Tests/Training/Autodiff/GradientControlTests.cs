using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;
using RlaifOnnx.Training;

namespace RlaifOnnx.Tests.Training.Autodiff;

/// <summary>
/// That the finite-difference checks could fail: the same check on a deliberately wrong rule (a sign flipped,
/// a transpose missing) reports a large error. Then the rules no test checked before, each on tensors small
/// enough that every element is compared (≤ 64), and whole-model checks of the LoRA graphs.
/// </summary>
public sealed class GradientControlTests
{
    static readonly long[] BTH = [2, 3, 4];

    /// <summary>loss = Σ y·R for a fixed random R, as <see cref="GradientCheck.CheckOutput"/> builds it, returned as a model.</summary>
    static global::Onnx.ModelProto Loss(GradientCheck c, string y, long[] shape)
    {
        c.G.OutputAs(Losses.SumAll(c.G, c.G.Mul(y, c.Data("loss_weights", shape))), "loss", DataType.Double);
        return c.G.ToModel();
    }

    [Fact]
    public void A_wrong_rule_fails_the_check_that_the_right_one_passes()
    {
        var c = new GradientCheck();
        var model = Loss(c, c.G.MatMul(c.Param("x", [3, 4]), c.Param("w", [4, 4])), [3, 4]);
        var (right, _) = GradientCheck.GradientError(model, c.Inputs, c.Trainable);
        Assert.True(right < 1e-6, $"the right rule: error {right:E2}");

        // A sign flipped on the weight's gradient: off by twice the gradient, error 2.
        var (flipped, report) = GradientCheck.GradientError(model, c.Inputs, c.Trainable, corrupt: GradientCheck.WrapGradient("w", "Neg"));
        Assert.True(flipped > 1, $"a flipped sign passed: {report}");
        // A transpose missing from dW = xᵀ·dY (the square weight keeps its shape, so only the check can tell).
        var (transposed, report2) = GradientCheck.GradientError(model, c.Inputs, c.Trainable, corrupt: GradientCheck.WrapGradient("w", "Transpose"));
        Assert.True(transposed > 0.1, $"a missing transpose passed: {report2}");
        // And the check itself throws on a failure (the assertion the rule tests rely on).
        Assert.ThrowsAny<Exception>(() => Assert.True(flipped <= 1e-6, "gradient check failed"));
    }

    [Fact]
    public void ReduceMin_and_ReduceSumSquare()
    {
        foreach (var op in new[] { "ReduceMin", "ReduceSumSquare" })
        {
            var c = new GradientCheck();
            c.CheckOutput(c.G.Op(op, [c.Param("x", BTH), c.G.Int64s(-1)], ("keepdims", 1L)), [2, 3, 1]);
            c = new GradientCheck();
            c.CheckOutput(c.G.Op(op, [c.Param("x", BTH), c.G.Int64s(0, 2)], ("keepdims", 0L)), [3]);
            c = new GradientCheck();
            c.CheckOutput(c.G.Op(op, [c.Param("x", BTH)], ("keepdims", 0L)), []);
        }
    }

    [Fact]
    public void Transpose_without_perm_reverses_the_axes()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.Op("Transpose", [c.Param("x", BTH)]), [4, 3, 2]);
    }

    [Fact]
    public void Trilu_on_the_gradient_path()
    {
        foreach (var (upper, k) in new[] { (0L, 0L), (1L, 0L), (0L, -1L), (1L, 1L) })
        {
            var c = new GradientCheck();
            c.CheckOutput(c.G.Op("Trilu", [c.Param("x", [2, 3, 3]), c.G.Int64s(k)], ("upper", upper)), [2, 3, 3]);
        }
    }

    [Fact]
    public void Cast_between_widths()
    {
        // float64 → float32 → float64: the gradient passes through unchanged (and back to float64). Float32
        // rounding makes central differences noisy at small steps, so the step and tolerance are larger.
        var c = new GradientCheck();
        var y = c.G.Cast(c.G.Mul(c.G.Cast(c.Param("x", BTH), DataType.Float), c.G.Cast(c.Param("s", [4]), DataType.Float)), DataType.Double);
        c.G.OutputAs(Losses.SumAll(c.G, c.G.Mul(y, c.Data("loss_weights", BTH))), "loss", DataType.Double);
        GradientCheck.CheckModel(c.G.ToModel(), c.Inputs, c.Trainable, tolerance: 1e-3, step: 1e-3);
    }

    [Fact]
    public void LayerNormalization_over_the_last_two_axes()
    {
        var c = new GradientCheck();
        var y = c.G.Op("LayerNormalization", [c.Param("x", BTH), c.Param("scale", [3, 4]), c.Param("bias", [3, 4])], ("axis", 1L), ("epsilon", 1e-5f));
        c.CheckOutput(y, BTH);
    }

    [Fact]
    public void Gemm_with_a_two_dimensional_c()
    {
        foreach (var cShape in new long[][] { [3, 5], [3, 1], [1, 5] })
        {
            var c = new GradientCheck();
            var y = c.G.Op("Gemm", [c.Param("a", [3, 4]), c.Param("b", [5, 4]), c.Param("c", cShape)], ("alpha", 0.7f), ("beta", 1.5f), ("transB", 1L));
            c.CheckOutput(y, [3, 5]);
        }
    }

    [Fact]
    public void Lora_graphs_of_the_whole_model()
    {
        var config = TinyLlama.Config("gqa-untied");
        var weights = TinyLlama.Weights(config, 3);
        var lora = new LoraOptions(2, 4, [LoraOptions.AllLinear]);
        long[][] ids = [[5, 17, 3, 44, 9], [12, 30, 8, 2, 6]];
        long[] flat = ids.SelectMany(r => r).ToArray();

        // The causal LM's cross-entropy with adapters on every projection; B starts non-zero so A gets a gradient too.
        var (graph, adapters) = Lora.Apply(DecoderGraphs.Training(config, DataType.Double), lora);
        var g = Losses.Extend(graph);
        var lossMask = g.Input(CausalLm.LossMaskInput, DataType.Int64, 2, 5);
        g.OutputAs(Losses.CausalLmCrossEntropy(g, "logits", "input_ids", lossMask), "loss", DataType.Double);
        g.Graph.Output.Remove(g.Graph.Output.First(o => o.Name == "logits"));
        var random = new Random(5);
        var inputs = new Dictionary<string, GradTensor>
        {
            ["input_ids"] = new([2, 5], Longs: flat),
            ["attention_mask"] = new([2, 5], Longs: Enumerable.Repeat(1L, 10).ToArray()),
            ["position_ids"] = new([2, 5], Longs: [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]),
            [CausalLm.LossMaskInput] = new([2, 5], Longs: [0, 1, 1, 1, 1, 0, 0, 1, 1, 1]),
        };
        foreach (var (name, tensor) in weights) inputs[name] = new GradTensor(tensor.Shape, Doubles: Array.ConvertAll(tensor.Data, v => (double)v));
        var trainable = new List<string>();
        foreach (var a in adapters)
        {
            inputs[a.A] = new GradTensor([a.In, a.Rank], Doubles: Enumerable.Range(0, (int)(a.In * a.Rank)).Select(_ => random.NextDouble() - 0.5).ToArray());
            inputs[a.B] = new GradTensor([a.Rank, a.Out], Doubles: Enumerable.Range(0, (int)(a.Rank * a.Out)).Select(_ => random.NextDouble() - 0.5).ToArray());
            trainable.AddRange([a.A, a.B]);
        }
        var error = GradientCheck.CheckModel(g.ToModel(), inputs, trainable, tolerance: 1e-5, maxElementsPerTensor: 64);
        TestContext.Current.TestOutputHelper?.WriteLine($"LoRA causal LM: max relative error {error:E2} over {trainable.Count} adapter tensors");

        // The PPO policy graph with the same adapters.
        var ppo = Ppo.PolicyGraph(config, lora, floatType: DataType.Double, temperature: 0.7);
        var actions = new long[] { 0, 1, 1, 1, 0, 0, 1, 1 };
        var ppoInputs = new Dictionary<string, GradTensor>(inputs)
        {
            [Ppo.OldLogProbsInput] = new([2, 4], Doubles: Enumerable.Range(0, 8).Select(i => -3.0 - 0.1 * i).ToArray()),
            [Ppo.AdvantagesInput] = new([2, 4], Doubles: Enumerable.Range(0, 8).Select(i => i % 2 == 0 ? 0.7 : -0.4).ToArray()),
            [Ppo.ResponseMaskInput] = new([2, 4], Longs: actions),
        };
        ppoInputs.Remove(CausalLm.LossMaskInput);
        var ppoError = GradientCheck.CheckModel(ppo, ppoInputs, trainable, tolerance: 1e-5, maxElementsPerTensor: 64);
        TestContext.Current.TestOutputHelper?.WriteLine($"LoRA PPO policy: max relative error {ppoError:E2}");
    }
}
