using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Training;

namespace RlaifOnnx.Tests.Training.Autodiff;

/// <summary>
/// The SimplifiedLayerNormalization rule (RMSNorm as the training graphs use it) against central finite
/// differences in float64, and a negative control: the same check on the rule with its weight gradient's
/// sign flipped fails.
/// </summary>
public sealed class GradientRmsNormTests
{
    static string RmsNorm(GradientCheck c, string x, string w, double eps)
        => c.G.Op("SimplifiedLayerNormalization", [x, w], ("axis", -1L), ("epsilon", (float)eps));

    [Fact]
    public void RmsNorm_over_the_last_axis_of_2d_and_3d_inputs()
    {
        var c = new GradientCheck();
        c.CheckOutput(RmsNorm(c, c.Param("x", [2, 3, 4], -2, 2), c.Param("w", [4], 0.5, 1.5), 1e-6), [2, 3, 4]);
        c = new GradientCheck(seed: 2);
        // A large epsilon, so a rule that dropped it would fail.
        c.CheckOutput(RmsNorm(c, c.Param("x", [5, 6], -0.3, 0.3), c.Param("w", [6], -1, 1), 0.05), [5, 6]);
    }

    [Fact]
    public void RmsNorm_matches_the_six_node_form_and_a_wrong_rule_fails()
    {
        var c = new GradientCheck();
        var x = c.Param("x", [3, 4], -2, 2);
        var w = c.Param("w", [4], 0.5, 1.5);
        var fused = RmsNorm(c, x, w, 0.01);
        var meanSquare = c.G.ReduceMean(c.G.Mul(x, x), [-1]);
        var plain = c.G.Mul(c.G.Div(x, c.G.Sqrt(c.G.Add(meanSquare, c.G.Scalar((float)0.01)))), w);
        c.G.OutputAs(Losses.SumAll(c.G, c.G.Mul(fused, c.Data("loss_weights", [3, 4]))), "loss", DataType.Double);
        c.G.OutputAs(Losses.SumAll(c.G, c.G.Mul(c.G.Sub(fused, plain), c.G.Sub(fused, plain))), "gap", DataType.Double);
        var model = c.G.ToModel();
        var values = GradientCheck.Run(model, c.Inputs, DataType.Double);
        Assert.True(values["gap"].Single() < 1e-20, $"fused and plain RMSNorm differ: {values["gap"].Single():E2}");
        var (right, _) = GradientCheck.GradientError(model, c.Inputs, c.Trainable);
        Assert.True(right < 1e-6, $"the right rule: error {right:E2}");
        var (wrong, report) = GradientCheck.GradientError(model, c.Inputs, c.Trainable, corrupt: GradientCheck.WrapGradient("w", "Neg"));
        Assert.True(wrong > 1, $"a flipped sign passed: {report}");
    }
}
