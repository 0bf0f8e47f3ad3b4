using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Training;
using RlaifOnnx.Training.Autodiff;

namespace RlaifOnnx.Tests.Training.Autodiff;

/// <summary>
/// The token log-prob's rules: LogSoftmax whose gradient is only picks (Σ picks − softmax · Σ_row updates),
/// ReduceLogSumExp (softmax · dy over the last axis, exp(x − y) · dy elsewhere) and a one-index-per-row
/// GatherElements kept sparse and scattered into the dense gradient of the same tensor, against central
/// finite differences in float64, with negative controls on the scatter and on the softmax term.
/// </summary>
public sealed class GradientPickTests
{
    static readonly long[] BTH = [2, 3, 4];

    [Fact]
    public void ReduceLogSumExp_on_the_last_axis_and_on_others()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.Op("ReduceLogSumExp", [c.Param("x", BTH, -3, 3), c.G.Int64s(-1)], ("keepdims", 1L)), [2, 3, 1]);
        c = new GradientCheck();
        c.CheckOutput(c.G.Op("ReduceLogSumExp", [c.Param("x", BTH, -3, 3), c.G.Int64s(2)], ("keepdims", 0L)), [2, 3]);
        c = new GradientCheck();
        c.CheckOutput(c.G.Op("ReduceLogSumExp", [c.Param("x", BTH, -3, 3), c.G.Int64s(0, 2)], ("keepdims", 0L)), [3]);
        c = new GradientCheck();
        c.CheckOutput(c.G.Op("ReduceLogSumExp", [c.Param("x", BTH, -3, 3)], ("keepdims", 0L)), []);
    }

    /// <summary>log p(ids) as Losses.TokenLogProbs builds it: the pick is scattered into the softmax gradient, no one-hot.</summary>
    [Fact]
    public void Token_log_probs_scatter_the_pick_into_the_softmax_gradient()
    {
        var c = new GradientCheck();
        var logProbs = Losses.TokenLogProbs(c.G, c.Param("x", BTH, -3, 3), c.Longs("ids", [0, 3, 3, 1, 2, -1], 2, 3));
        c.CheckOutput(logProbs, [2, 3]);
        var graphs = GradientBuilder.Build(c.G.ToModel(), c.Trainable, "loss");
        Assert.DoesNotContain(graphs.Training.Graph.Node, n => n.OpType == "OneHot");
        Assert.Single(graphs.Training.Graph.Node, n => n.OpType == "ScatterElements");
    }

    /// <summary>
    /// The temperature's Mul by a scalar: its gradient is dy times the scalar, with no broadcast reduction (a ReduceSum over
    /// no axes, which ONNX Runtime runs as a copy of the whole [B,T,V] gradient); the broadcast case keeps it.
    /// </summary>
    [Fact]
    public void A_product_with_a_scalar_needs_no_broadcast_reduction()
    {
        var c = new GradientCheck();
        var logProbs = Losses.TokenLogProbs(c.G, Losses.Tempered(c.G, c.Param("x", BTH, -3, 3), 0.7), c.Longs("ids", [0, 3, 3, 1, 2, -1], 2, 3));
        c.CheckOutput(logProbs, [2, 3]);
        var graphs = GradientBuilder.Build(c.G.ToModel(), c.Trainable, "loss");
        Assert.DoesNotContain(graphs.Training.Graph.Node, n => n.OpType == "ReduceSum" && n.Name.Contains("∂/") && graphs.Training.Graph.Node.Any(
            m => m.OpType == "Mul" && m.Output.Contains(n.Input[0]) && m.Input.Any(i => graphs.Training.Graph.Initializer.Any(t => t.Name == i && t.Dims.Count == 0))));

        c = new GradientCheck();
        c.CheckOutput(c.G.Mul(c.Param("x", BTH, -3, 3), c.Param("row", [2, 3, 1], -1, 1)), BTH);
    }

    /// <summary>The entropy as a batched dot product of Softmax(log p) and log p equals −Σ exp(log p)·log p (float64), and its gradient checks.</summary>
    [Fact]
    public void Entropy_equals_minus_p_log_p_and_its_gradient_checks()
    {
        var c = new GradientCheck();
        var x = c.Param("x", BTH, -3, 3);
        var logP = c.G.LogSoftmax(x, -1);
        var reference = c.G.Neg(c.G.ReduceSum(c.G.Mul(c.G.Exp(logP), logP), [-1], keepDims: false));
        var difference = c.G.Sub(Losses.Entropy(c.G, x), reference);
        c.CheckOutput(Losses.Entropy(c.G, x), [2, 3]);
        c.G.OutputAs(difference, "difference", DataType.Double);
        var values = GradientCheck.Run(c.G.ToModel(), c.Inputs, DataType.Double)["difference"];
        Assert.Equal(6, values.Length);
        Assert.All(values, v => Assert.True(Math.Abs(v) < 1e-12, $"entropy differs by {v}"));
    }

    [Fact]
    public void Two_picks_of_one_log_softmax_become_one_softmax_and_two_scatters()
    {
        var c = new GradientCheck();
        var logProbs = c.G.LogSoftmax(c.Param("x", BTH, -3, 3), -1);
        var first = Losses.PickedLogProbs(c.G, logProbs, c.Longs("a", [0, 3, 3, 1, 2, -1], 2, 3));
        var second = Losses.PickedLogProbs(c.G, logProbs, c.Longs("b", [0, 1, 3, 2, 2, 0], 2, 3));
        c.CheckOutput(c.G.Add(first, c.G.Mul(second, c.G.Scalar(3))), [2, 3]);
        var backward = GradientBuilder.Build(c.G.ToModel(), c.Trainable, "loss").Training.Graph.Node.Where(n => n.Name.StartsWith("∂/", StringComparison.Ordinal)).ToList();
        Assert.DoesNotContain(backward, n => n.OpType is "OneHot" or "Exp" or "ReduceSum");
        Assert.Single(backward, n => n.OpType == "Softmax");
        Assert.Equal(2, backward.Count(n => n.OpType == "ScatterElements"));
    }

    [Fact]
    public void A_log_softmax_rule_with_the_softmax_term_sign_flipped_fails_the_check()
        => AssertTheTokenLogProbCheckCatches(training =>
        {
            // −softmax · Σ updates becomes +softmax · Σ updates: a sign error in the rule.
            var negation = training.Graph.Node.Single(n => n.OpType == "Neg" && n.Name.StartsWith("∂/", StringComparison.Ordinal));
            negation.OpType = "Identity";
        }, "a sign-flipped softmax term");

    [Fact]
    public void A_log_softmax_read_by_picks_and_by_the_entropy_takes_the_general_rule()
    {
        // PPO's graph: one LogSoftmax for the token log-probs and the entropy, here both in the loss.
        var c = new GradientCheck();
        var logProbs = c.G.LogSoftmax(c.Param("x", BTH, -3, 3), -1);
        var picked = Losses.PickedLogProbs(c.G, logProbs, c.Longs("ids", [0, 3, 3, 1, 2, -1], 2, 3));
        c.CheckOutput(c.G.Add(picked, Losses.EntropyOfLogProbs(c.G, logProbs)), [2, 3]);
    }

    [Fact]
    public void Two_picks_of_one_tensor_without_a_dense_part_add_up()
    {
        // The first pick becomes the one-hot product, the second is scattered into it; ids overlap on purpose.
        var c = new GradientCheck();
        var x = c.Param("x", BTH);
        var first = c.G.GatherElements(x, c.G.Unsqueeze(c.Longs("a", [0, 3, 3, 1, 2, -1], 2, 3), -1), -1);
        var second = c.G.GatherElements(x, c.G.Unsqueeze(c.Longs("b", [0, 1, 3, 2, 2, 0], 2, 3), -1), -1);
        c.CheckOutput(c.G.Add(first, c.G.Mul(second, c.G.Scalar(3))), [2, 3, 1]);
    }

    [Fact]
    public void A_scatter_that_replaces_instead_of_adding_fails_the_check()
        => AssertTheTokenLogProbCheckCatches(training =>
        {
            var scatter = training.Graph.Node.Single(n => n.OpType == "ScatterElements");
            scatter.Attribute.Single(a => a.Name == "reduction").S = Google.Protobuf.ByteString.CopyFromUtf8("none");
        }, "a replacing scatter");

    /// <summary>The token log-prob's gradient passes the check, and fails it once <paramref name="corrupt"/> breaks its rule.</summary>
    static void AssertTheTokenLogProbCheckCatches(Action<ModelProto> corrupt, string what)
    {
        var c = new GradientCheck();
        var logProbs = Losses.TokenLogProbs(c.G, c.Param("x", BTH, -3, 3), c.Longs("ids", [0, 3, 3, 1, 2, -1], 2, 3));
        c.G.OutputAs(Losses.SumAll(c.G, c.G.Mul(logProbs, c.Data("loss_weights", [2, 3]))), "loss", DataType.Double);
        var model = c.G.ToModel();
        var (right, _) = GradientCheck.GradientError(model, c.Inputs, c.Trainable);
        Assert.True(right < 1e-6, $"the right rule: error {right:E2}");
        var (wrong, report) = GradientCheck.GradientError(model, c.Inputs, c.Trainable, corrupt: corrupt);
        Assert.True(wrong > 0.05, $"{what} passed: {report}");
    }

    [Fact]
    public void The_backward_pass_takes_the_vocabulary_size_from_the_graph_not_from_the_log_probs()
    {
        // A Shape of the [.., V] log-probs in the backward pass would keep them alive until ONNX Runtime gets to it.
        var c = TinyLlama.Config("gqa-untied");
        var forward = Ppo.PolicyGraph(c, temperature: 0.7);
        var graph = GradientBuilder.Build(forward, RlaifOnnx.Models.WeightNames.Shapes(c).Keys.ToList(), Ppo.LossOutput, Ppo.PolicyMetrics).Training.Graph;
        var logProbs = graph.Node.Single(n => n.OpType == "LogSoftmax").Output[0];
        Assert.Contains(graph.Node, n => n.Name.StartsWith("∂/", StringComparison.Ordinal) && n.Input.Contains(logProbs));   // the backward reads it (its Softmax)
        Assert.DoesNotContain(graph.Node, n => n.OpType == "Shape" && n.Input.Contains(logProbs));
    }
}
