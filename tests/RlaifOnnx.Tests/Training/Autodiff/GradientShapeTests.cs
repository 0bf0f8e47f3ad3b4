using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;
using RlaifOnnx.Tests.Models;
using RlaifOnnx.Training;
using RlaifOnnx.Training.Autodiff;

namespace RlaifOnnx.Tests.Training.Autodiff;

/// <summary>
/// Broadcasting undone at build time (<see cref="SymbolicShapes"/>): the shapes the graphs fix, the reductions
/// the gradient graphs then leave out, and the run-time path that remains for shapes the graph does not fix,
/// each against finite differences.
/// </summary>
public sealed class GradientShapeTests
{
    static string SymbolicParam(GradientCheck c, string name, long[] fed, params object[] declared)
    {
        c.Trainable.Add(name);
        c.Inputs[name] = new GradTensor(fed, c.RandomValues(fed.Aggregate(1L, (a, b) => a * b)));
        return c.G.Input(name, c.G.FloatType, declared);
    }

    [Fact]
    public void The_training_decoder_keeps_its_symbols_through_reshapes_and_shape_arithmetic()
    {
        var config = TinyLlama.Config("gqa-untied", vocab: 23);
        var graph = DecoderGraphs.Training(config, DataType.Float).Graph;
        var shapes = new SymbolicShapes(graph);
        string Dims(string value) => string.Join(",", shapes.Of(value)!.Select(d => d?.ToString() ?? "?"));

        Assert.Equal("batch_size,sequence_length,23", Dims("logits"));
        // The attention scores [B, kvH, group·S, T], reached through Shape, Concat, Reshape with 0 and −1, Range and Expand.
        var scores = graph.Node.First(n => n.OpType == "Softmax").Input[0];
        var (kvHeads, group) = (config.NumKvHeads, config.NumHeads / config.NumKvHeads);
        Assert.Equal($"batch_size,{kvHeads},{group}*sequence_length,sequence_length", Dims(scores));
    }

    [Fact]
    public void Dims_multiply_and_divide_as_products_of_symbols()
    {
        var n = Dim.Symbol("batch").Times(Dim.Symbol("seq"));
        var heads = n.Times(Dim.Literal(12));
        Assert.Equal("12*batch*seq", heads.ToString());
        Assert.Equal(n, heads.DividedBy(Dim.Literal(12)));
        Assert.Equal(Dim.Literal(12), heads.DividedBy(n));
        Assert.Null(heads.DividedBy(Dim.Literal(5)));
        Assert.Null(n.DividedBy(Dim.Symbol("heads")));
    }

    [Fact]
    public void The_training_graph_finds_no_broadcast_axes_at_run_time()
    {
        // Every broadcast in the decoder's gradient is known from its shapes: no Shape/NonZero machinery and
        // no ReduceSum over an empty axes list (ONNX Runtime copies the whole tensor for one). Only the loss's
        // shifted [B, T−1] values (Slice, whose S − 1 the shapes do not express) keep the run-time path.
        var config = TinyLlama.Config("gqa-untied", vocab: 23);
        var graphs = GradientBuilder.ForCausalLm(DecoderGraphs.Training(config, DataType.Float), WeightNames.Shapes(config).Keys.ToList());
        var nodes = graphs.Training.Graph.Node.Where(n => !n.Name.StartsWith("∂/loss/", StringComparison.Ordinal)).ToList();
        Assert.True(nodes.Count(n => n.Name.StartsWith("∂/layer", StringComparison.Ordinal)) > 100);
        Assert.DoesNotContain(nodes, n => n.OpType == "NonZero");
        var constants = graphs.Training.Graph.Initializer.Select(t => t.Name).ToHashSet();
        Assert.All(nodes.Where(n => n.OpType == "ReduceSum" && n.Input.Count > 1), n => Assert.Contains(n.Input[1], constants));
        Assert.DoesNotContain(nodes, n => n.OpType == "Sum");
    }

    [Fact]
    public void Broadcasts_the_graph_does_not_fix_are_undone_at_run_time()
    {
        // a [m, n] fed [3, 1] and b [k, l] fed [1, 4]: which axes broadcast is known only from the fed shapes.
        var c = new GradientCheck();
        var a = SymbolicParam(c, "a", [3, 1], "m", "n");
        var b = SymbolicParam(c, "b", [1, 4], "k", "l");
        c.CheckOutput(c.G.Add(c.G.Mul(a, b), a), [3, 4]);
        var graphs = GradientBuilder.Build(c.G.ToModel(), c.Trainable, "loss");
        Assert.Contains(graphs.Training.Graph.Node, n => n.OpType == "NonZero");
    }

    [Fact]
    public void Symbols_that_match_need_no_reduction_and_literal_ones_reduce_over_constant_axes()
    {
        var c = new GradientCheck();
        var x = SymbolicParam(c, "x", [2, 3, 4], "batch", "time", 4);
        var y = SymbolicParam(c, "y", [2, 3, 4], "batch", "time", 4);
        var bias = SymbolicParam(c, "bias", [2, 1, 4], "batch", 1, 4);
        var weights = SymbolicParam(c, "loss_weights", [2, 3, 4], "batch", "time", 4);
        c.Trainable.Remove(weights);
        c.CheckLoss(Losses.SumAll(c.G, c.G.Mul(c.G.Add(c.G.Mul(x, y), bias), weights)));
        var nodes = GradientBuilder.Build(c.G.ToModel(), c.Trainable, "loss").Training.Graph.Node;
        Assert.DoesNotContain(nodes, n => n.OpType == "NonZero");
        // One reduction: the bias's, over the time axis.
        Assert.Single(nodes, n => n.OpType == "ReduceSum" && n.Name.StartsWith("∂/", StringComparison.Ordinal) && !n.Name.Contains("loss"));
    }
}
