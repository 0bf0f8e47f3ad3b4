using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;
using RlaifOnnx.Training;
using RlaifOnnx.Training.Autodiff;

namespace RlaifOnnx.Tests.Training.Autodiff;

/// <summary>Every gradient rule against central finite differences in float64, including broadcasting.</summary>
public class GradientRuleTests
{
    static readonly long[] BTH = [2, 3, 4];

    [Fact]
    public void AddBroadcastsBiasOverBatchAndTime()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.Add(c.Param("x", BTH), c.Param("bias", [4])), BTH);
    }

    [Fact]
    public void SubBroadcastsBothWays()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.Sub(c.Param("a", [2, 1, 4]), c.Param("b", [3, 1])), BTH);
    }

    [Fact]
    public void MulBroadcastsSizeOneAxes()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.Mul(c.Param("a", [2, 1, 3]), c.Param("b", [2, 3, 1])), [2, 3, 3]);
    }

    [Fact]
    public void MulByScalarAndSameInputTwiceAccumulates()
    {
        var c = new GradientCheck();
        var x = c.Param("x", BTH);
        var s = c.Param("s", []);
        c.CheckOutput(c.G.Mul(c.G.Mul(x, x), s), BTH);
    }

    [Fact]
    public void DivBroadcasts()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.Div(c.Param("a", BTH), c.Param("b", [3, 1], 0.5, 2)), BTH);
    }

    [Fact]
    public void PowWithConstantExponent()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.Pow(c.Param("x", BTH, 0.5, 2), c.G.Scalar(2.5)), BTH);
    }

    [Fact]
    public void PowWithTensorExponent()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.Pow(c.Param("x", BTH, 0.5, 2), c.Param("e", [4], -1, 2)), BTH);
    }

    [Fact]
    public void UnaryFunctions()
    {
        foreach (var op in new[] { "Sqrt", "Neg", "Exp", "Log", "Reciprocal", "Sigmoid", "Tanh", "Relu", "Abs", "Softplus" })
        {
            var c = new GradientCheck();
            var positive = op is "Sqrt" or "Log" or "Reciprocal";
            var x = c.Param("x", BTH, positive ? 0.5 : -2, 2);
            c.CheckOutput(c.G.Op(op, [x]), BTH);
        }
    }

    [Fact]
    public void SoftmaxAndLogSoftmaxOnAnyAxis()
    {
        foreach (var op in new[] { "Softmax", "LogSoftmax" })
            foreach (var axis in new[] { -1, 0, 1 })
            {
                var c = new GradientCheck();
                c.CheckOutput(c.G.Op(op, [c.Param("x", BTH, -3, 3)], ("axis", axis)), BTH);
            }
    }

    [Fact]
    public void ReductionsWithAndWithoutKeepDims()
    {
        foreach (var op in new[] { "ReduceMean", "ReduceSum", "ReduceMax" })
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
    public void BatchedMatMulBroadcastsAndTransposes()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.MatMul(c.Param("a", [2, 1, 3]), c.Param("b", [2, 3, 1])), [2, 1, 1]);
        c = new GradientCheck();
        c.CheckOutput(c.G.MatMul(c.Param("q", [2, 2, 3, 4]), c.Param("k", [2, 2, 4, 3])), [2, 2, 3, 3]);
        c = new GradientCheck();
        c.CheckOutput(c.G.MatMul(c.Param("a", [2, 2, 3, 4]), c.Param("b", [2, 1, 4, 5])), [2, 2, 3, 5]);
    }

    [Fact]
    public void LinearLayerMatMul()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.MatMul(c.Param("x", BTH), c.Param("w", [4, 5])), [2, 3, 5]);
        c = new GradientCheck();
        c.CheckOutput(c.G.MatMul(c.Param("x", [3, 4]), c.Param("w", [4, 5])), [3, 5]);
    }

    [Fact]
    public void MatMulWithVectors()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.MatMul(c.Param("x", BTH), c.Param("v", [4])), [2, 3]);
        c = new GradientCheck();
        c.CheckOutput(c.G.MatMul(c.Param("v", [3]), c.Param("x", [2, 3, 4])), [2, 4]);
    }

    [Fact]
    public void GemmWithTranspositionsAndBias()
    {
        foreach (var (ta, tb) in new[] { (0L, 0L), (1L, 0L), (0L, 1L), (1L, 1L) })
        {
            var c = new GradientCheck();
            var a = c.Param("a", ta == 1 ? [4, 3] : [3, 4]);
            var b = c.Param("b", tb == 1 ? [5, 4] : [4, 5]);
            var y = c.G.Op("Gemm", [a, b, c.Param("c", [5])], ("alpha", 0.7f), ("beta", 1.5f), ("transA", ta), ("transB", tb));
            c.CheckOutput(y, [3, 5]);
        }
    }

    [Fact]
    public void EmbeddingGatherAccumulatesRepeatedAndNegativeIndices()
    {
        var c = new GradientCheck();
        var table = c.Param("table", [5, 3]);
        var ids = c.Longs("ids", [0, 4, 4, 1, -1, 2], 2, 3);
        c.CheckOutput(c.G.Gather(table, ids), [2, 3, 3]);
    }

    /// <summary>A tied table: its gathered rows are scattered into the head's gradient, with no zero table of their own.</summary>
    [Fact]
    public void TiedTableGetsItsRowsScatteredIntoTheHeadsGradient()
    {
        var c = new GradientCheck();
        var table = c.Param("table", [5, 3]);
        var rows = c.G.Gather(table, c.Longs("ids", [0, 4, 4, 1, -1, 2], 2, 3));      // [2, 3, 3]
        c.CheckOutput(c.G.MatMul(rows, c.G.Transpose(table, 1, 0)), [2, 3, 5]);       // a tied head: [2, 3, 5]
        var backward = GradientBuilder.Build(c.G.ToModel(), c.Trainable, "loss").Training.Graph.Node
            .Where(n => n.Name.StartsWith("∂/", StringComparison.Ordinal)).ToList();
        var producers = backward.SelectMany(n => n.Output.Select(o => (o, n))).ToDictionary(p => p.o, p => p.n);
        var scatter = Assert.Single(backward, n => n.OpType == "ScatterElements");
        Assert.Equal("Transpose", producers[scatter.Input[0]].OpType);                  // the head's gradient (Transpose rule), not a zero table
    }

    /// <summary>
    /// The embedding gradient at training scale, on ONNX Runtime's threads: 8,192 token ids from a 50-row table
    /// (each id repeated ~160 times). Every row's gradient must be the exact sum of its positions' dy, on every
    /// run: a scatter whose parallel adds race (ONNX Runtime's ScatterND with reduction) loses some of them.
    /// </summary>
    [Fact]
    public void EmbeddingGradientAddsEveryRepeatedIdOnEveryRun()
    {
        const int vocab = 50, hidden = 64, rows = 16, length = 512;
        var g = new RlaifOnnx.Onnx.GraphBuilder("embedding", DataType.Float);
        var table = g.Input("table", DataType.Float, vocab, hidden);
        var ids = g.Input("ids", DataType.Int64, "b", "t");
        var weights = g.Input("w", DataType.Float, "b", "t", hidden);
        g.OutputAs(Losses.SumAll(g, g.Mul(g.Gather(table, ids), weights)), "loss", DataType.Float);
        var rng = new Random(3);
        var start = new float[vocab * hidden];
        using var trainer = new Trainer(g.ToModel(), "loss", new Dictionary<string, RlaifOnnx.Models.WeightTensor> { ["table"] = new([vocab, hidden], start) },
            new Dictionary<string, RlaifOnnx.Models.WeightTensor>(), new TrainerOptions());
        var idValues = Enumerable.Range(0, rows * length).Select(_ => (long)rng.Next(vocab)).ToArray();
        var w = Enumerable.Range(0, rows * length * hidden).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var expected = new double[vocab * hidden];
        for (var n = 0; n < idValues.Length; n++)
            for (var k = 0; k < hidden; k++) expected[idValues[n] * hidden + k] += w[n * hidden + k];
        var batch = new TrainingBatch { ["ids"] = BatchTensor.Of(idValues, rows, length), ["w"] = BatchTensor.Of(w, rows, length, hidden) };
        for (var run = 0; run < 5; run++)
        {
            trainer.ComputeGradients(batch, TestContext.Current.CancellationToken);
            var gradient = trainer.Parameters[0].Gradient;
            var worst = Enumerable.Range(0, expected.Length).Max(i => Math.Abs(gradient[i] - expected[i]));
            Assert.True(worst < 1e-3, $"run {run}: the embedding gradient is off by up to {worst}");
        }
    }

    [Fact]
    public void GatherOnInnerAxisWithScalarAndVectorIndices()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.Gather(c.Param("x", BTH), c.G.Int64Scalar(-1), 1), [2, 4]);
        c = new GradientCheck();
        c.CheckOutput(c.G.Gather(c.Param("x", BTH), c.G.Int64s(3, 0, 3), 2), [2, 3, 3]);
    }

    [Fact]
    public void GatherElementsPicksTokenLogProbs()
    {
        var c = new GradientCheck();
        var ids = c.Longs("ids", [0, 3, 3, 1, 2, -1], 2, 3, 1);
        c.CheckOutput(c.G.GatherElements(c.Param("x", BTH), ids, 2), [2, 3, 1]);
    }

    /// <summary>Indices unsqueezed onto the last axis (one per row, as token log-probs pick them) take the one-hot rule, not a scatter.</summary>
    [Fact]
    public void GatherElementsWithOneIndexPerRowUsesTheOneHotRule()
    {
        var c = new GradientCheck();
        var ids = c.G.Unsqueeze(c.Longs("ids", [0, 3, 3, 1, 2, -1], 2, 3), -1);
        var picked = c.G.GatherElements(c.Param("x", BTH), ids, -1);
        c.CheckOutput(picked, [2, 3, 1]);
        var graphs = GradientBuilder.Build(c.G.ToModel(), c.Trainable, "loss");
        Assert.DoesNotContain(graphs.Training.Graph.Node, n => n.OpType == "ScatterElements");
        c = new GradientCheck();
        ids = c.G.Unsqueeze(c.Longs("ids", [1, 0, 2, 2, 0, 1], 2, 3), 2);
        c.CheckOutput(c.G.GatherElements(c.Param("x", [2, 3, 3]), ids, 2), [2, 3, 1]);
    }

    [Fact]
    public void ShapeOps()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.Reshape(c.Param("x", BTH), 0, 2, 2, -1), [2, 2, 2, 3]);
        c = new GradientCheck();
        c.CheckOutput(c.G.Transpose(c.Param("x", BTH), 2, 0, 1), [4, 2, 3]);
        c = new GradientCheck();
        c.CheckOutput(c.G.Unsqueeze(c.G.Squeeze(c.Param("x", [2, 1, 4]), 1), 0, 3), [1, 2, 4, 1]);
        c = new GradientCheck();
        c.CheckOutput(c.G.Expand(c.Param("x", [3, 1]), c.G.Int64s(2, 3, 4)), BTH);
        c = new GradientCheck();
        c.CheckOutput(c.G.Op("Flatten", [c.Param("x", BTH)], ("axis", 1L)), [2, 12]);
    }

    [Fact]
    public void ConcatOnNegativeAxisWithAConstantPart()
    {
        var c = new GradientCheck();
        var y = c.G.Concat(-1, c.Param("a", [2, 3, 1]), c.Data("k", [2, 3, 2]), c.Param("b", [2, 3, 3]));
        c.CheckOutput(y, [2, 3, 6]);
    }

    [Fact]
    public void SliceWithStepsAndNegativeIndices()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.Slice(c.Param("x", [2, 5, 6]), [-1, 0], [-6, long.MaxValue], [1, 2], [-2, 3]), [2, 3, 2]);
        c = new GradientCheck();
        c.CheckOutput(c.G.Slice(c.Param("x", BTH), [2], [4], [-1]), [2, 3, 2]);
        // Unit steps take the Pad rule: negative starts, ends past the end, clamping, an explicit step of 1.
        c = new GradientCheck();
        c.CheckOutput(c.G.Slice(c.Param("x", [2, 5, 6]), [-4, 1], [long.MaxValue, -1], [1, -1]), [2, 4, 4]);
        c = new GradientCheck();
        c.CheckOutput(c.G.Slice(c.Param("x", [2, 5, 6]), [-9, 2], [3, 100], [1, 2], [1, 1]), [2, 3, 4]);
    }

    [Fact]
    public void SplitWithAnUnusedOutput()
    {
        var c = new GradientCheck();
        var parts = c.G.Split(c.Param("x", [2, 3, 6]), -1, [1, 2, 3]);
        c.CheckOutput(c.G.Add(c.G.Slice(parts[2], [0], [2], [2]), parts[1]), [2, 3, 2]);
        c = new GradientCheck();
        var halves = c.G.Node("Split", [c.Param("x", [2, 4])], ["h0", "h1"], "", ("axis", 1L), ("num_outputs", 2L));
        c.CheckOutput(c.G.Mul(halves[0], halves[1]), [2, 2]);
    }

    [Fact]
    public void WhereWithCausalMask()
    {
        var c = new GradientCheck();
        var mask = c.Bools("mask", [true, false, false, true, true, false, true, true, true], 3, 3);
        c.CheckOutput(c.G.Where(mask, c.Param("scores", [2, 3, 3]), c.Param("fill", [])), [2, 3, 3]);
    }

    [Fact]
    public void CastIdentityAndMaxMinClip()
    {
        var c = new GradientCheck();
        c.CheckOutput(c.G.Cast(c.G.Identity(c.Param("x", BTH)), DataType.Double), BTH);
        c = new GradientCheck();
        c.CheckOutput(c.G.Op("Max", [c.Param("a", BTH), c.Param("b", [4])]), BTH);
        c = new GradientCheck();
        c.CheckOutput(c.G.Op("Min", [c.Param("a", BTH), c.Param("b", [4])]), BTH);
        c = new GradientCheck();
        c.CheckOutput(c.G.Op("Clip", [c.Param("x", BTH, -2, 2), c.G.Scalar(-0.7), c.G.Scalar(0.9)]), BTH);
        c = new GradientCheck();
        c.CheckOutput(c.G.Op("Sum", [c.Param("a", BTH), c.Param("b", [4]), c.Param("c", [3, 1])]), BTH);
    }

    [Fact]
    public void LayerNormalizationOperator()
    {
        var c = new GradientCheck();
        var y = c.G.Op("LayerNormalization", [c.Param("x", BTH), c.Param("scale", [4]), c.Param("bias", [4])], ("axis", -1L), ("epsilon", 1e-5f));
        c.CheckOutput(y, BTH);
    }

    [Fact]
    public void ConstantSubgraphsAndIntegerPathsGetNoGradient()
    {
        // Shape arithmetic on the trainable value and a float constant chain with no trainable input.
        var c = new GradientCheck();
        var x = c.Param("x", BTH);
        var shape = c.G.Shape(x);
        var constant = c.G.Exp(c.G.Scalar(0.3));
        var y = c.G.Mul(c.G.Reshape(c.G.Mul(x, constant), shape), c.G.Cast(c.G.Op("Size", [x]), DataType.Double));
        c.CheckOutput(y, BTH);
    }

    [Fact]
    public void ErfRuleInFloat32AgainstACSharpReference()
    {
        // ONNX Runtime's CPU build has no float64 Erf kernel: check the float32 graph's gradient against
        // 2/√π·exp(−x²)·R computed in double here.
        var c = new GradientCheck(floatType: DataType.Float);
        var x = c.Param("x", BTH, -2, 2);
        var weights = c.Data("r", BTH);
        c.G.OutputAs(Losses.SumAll(c.G, c.G.Mul(c.G.Erf(x), weights)), "loss", DataType.Float);
        var graphs = GradientBuilder.Build(c.G.ToModel(), ["x"]);
        var grad = GradientCheck.Run(graphs.Training, c.Inputs, DataType.Float)[GradientBuilder.GradName("x")];
        var xs = c.Inputs["x"].Doubles!;
        var rs = c.Inputs["r"].Doubles!;
        for (var i = 0; i < xs.Length; i++)
        {
            var x32 = (double)(float)xs[i];
            var expected = 2 / Math.Sqrt(Math.PI) * Math.Exp(-x32 * x32) * (float)rs[i];
            Assert.True(Math.Abs(grad[i] - expected) <= 1e-6 * Math.Max(1, Math.Abs(expected)), $"element {i}: {grad[i]} vs {expected}");
        }
    }

    [Fact]
    public void NodeWithoutARuleIsNamed()
    {
        var c = new GradientCheck();
        var x = c.Param("x", BTH);
        c.G.OutputAs(Losses.SumAll(c.G, c.G.Op("Cos", [x])), "loss", DataType.Double);
        var error = Assert.Throws<NotSupportedException>(() => GradientBuilder.Build(c.G.ToModel(), ["x"]));
        Assert.Contains("Cos", error.Message);
        Assert.Contains("cos_0", error.Message);
    }

    [Fact]
    public void UnusedTrainableGetsZerosAndEvalGraphHasNoGradients()
    {
        var c = new GradientCheck();
        var x = c.Param("x", BTH);
        c.Param("unused", [3]);
        c.G.OutputAs(Losses.SumAll(c.G, c.G.Mul(x, x)), "loss", DataType.Double);
        var graphs = GradientBuilder.Build(c.G.ToModel(), c.Trainable);
        var outputs = GradientCheck.Run(graphs.Training, c.Inputs, DataType.Double);
        Assert.Equal(new double[3], outputs[GradientBuilder.GradName("unused")]);
        Assert.Equal(["loss"], graphs.Eval.Graph.Output.Select(o => o.Name));
        Assert.DoesNotContain(graphs.Eval.Graph.Node, n => n.Name.StartsWith("∂/"));
    }
}
