using Microsoft.ML.OnnxRuntime;
using DataType = Onnx.TensorProto.Types.DataType;
// Microsoft.ML.OnnxRuntime still ships a (retired) TrainingSession type of its own.
using TrainingSession = RlaifOnnx.Training.TrainingSession;
using RlaifOnnx.Stages;
using RlaifOnnx.Training;
using RlaifOnnx.Training.Autodiff;

namespace RlaifOnnx.Tests.Training.Autodiff;

/// <summary>The training step on ONNX Runtime (buffers bound in place), AdamW and clipping with literal numbers, and overfitting.</summary>
public class GradientTrainingTests
{
    static readonly long[] Positions = [0, 1, 2, 3, 0, 1, 2, 3];
    static readonly long[] LossMask = [0, 1, 1, 1, 0, 1, 1, 1];   // the same number of targets in each row

    /// <summary>A float32 tiny Llama-style model with the causal-LM loss, its graphs and its initial weights.</summary>
    static (TrainingGraphs Graphs, Dictionary<string, float[]> Weights, GradientCheck Check) TinyModel()
    {
        var (c, logits) = GradientModelTests.Build(gpt2: false, DataType.Float);
        var mask = c.Longs("loss_mask", LossMask, 2, 4);
        c.G.OutputAs(Losses.CausalLmCrossEntropy(c.G, logits, "input_ids", mask), "loss", DataType.Float);
        c.G.OutputAs(logits, "logits", DataType.Float, "d0", "d1", GradientModelTests.Vocab);
        var graphs = GradientBuilder.Build(c.G.ToModel(), c.Trainable, "loss", ["logits"]);
        var weights = c.Trainable.ToDictionary(n => n, n => c.Inputs[n].Doubles!.Select(d => (float)d).ToArray());
        return (graphs, weights, c);
    }

    static Dictionary<string, OrtValue> Batch(int firstRow, int rows)
    {
        long[] Rows(long[] all) => all.Skip(firstRow * 4).Take(rows * 4).ToArray();
        return new()
        {
            ["input_ids"] = OrtValue.CreateTensorValueFromMemory(Rows(GradientModelTests.Ids), [rows, 4]),
            ["position_ids"] = OrtValue.CreateTensorValueFromMemory(Rows(Positions), [rows, 4]),
            ["loss_mask"] = OrtValue.CreateTensorValueFromMemory(Rows(LossMask), [rows, 4]),
        };
    }

    static void DisposeAll(Dictionary<string, OrtValue> batch) { foreach (var v in batch.Values) v.Dispose(); }

    [Fact]
    public void StepWritesGradientsIntoTheBoundBuffersAndReadsWeightsInPlace()
    {
        var (graphs, weights, c) = TinyModel();
        var reference = GradientCheck.Run(graphs.Training, c.Inputs, DataType.Float);
        using var session = new TrainingSession(graphs, weights);
        var batch = Batch(0, 2);
        try
        {
            var loss = session.Step(batch);
            Assert.Equal(reference["loss"].Single(), loss, 5);
            foreach (var p in session.Parameters)
            {
                Assert.Same(weights[p.Name], p.Weight);
                var expected = reference[GradientBuilder.GradName(p.Name)];
                for (var i = 0; i < expected.Length; i++) Assert.Equal(expected[i], p.Gradient[i], 5);
            }
            Assert.Equal([2L, 4, GradientModelTests.Vocab], session.Outputs["logits"].GetTensorTypeAndShape().Shape);
            Assert.Equal(reference["logits"][5], session.Outputs["logits"].GetTensorDataAsSpan<float>()[5], 5);

            // Changing a weight array changes the next step's loss: ONNX Runtime reads our memory.
            var embed = session.Parameters.Single(p => p.Name == "embed");
            Array.Clear(embed.Weight);
            var zeroEmbedLoss = session.Step(batch);
            Assert.NotEqual(loss, zeroEmbedLoss);
            Assert.Equal(session.Evaluate(batch), zeroEmbedLoss, 5);
        }
        finally { DisposeAll(batch); }
    }

    [Fact]
    public void AccumulatedMicroBatchesEqualOneBatch()
    {
        var (graphs, weights, _) = TinyModel();
        using var session = new TrainingSession(graphs, weights);
        var whole = Batch(0, 2);
        var first = Batch(0, 1);
        var second = Batch(1, 1);
        try
        {
            var wholeLoss = session.Step(whole);
            var expected = session.Parameters.Select(p => p.Gradient.ToArray()).ToArray();
            session.ZeroGradients();
            var microLoss = session.Step(first, accumulate: true) + session.Step(second, accumulate: true);
            // Each row has three targets, so the batch mean is the mean of the two micro-batch means.
            Assert.Equal(wholeLoss, microLoss / 2, 5);
            var scale = expected.Max(g => g.Max(Math.Abs));
            for (var k = 0; k < expected.Length; k++)
                for (var i = 0; i < expected[k].Length; i++)
                    Assert.True(Math.Abs(expected[k][i] - session.Parameters[k].Gradient[i] / 2) <= 1e-5 * scale,
                        $"{session.Parameters[k].Name}[{i}]: {expected[k][i]} vs {session.Parameters[k].Gradient[i] / 2}");
        }
        finally { DisposeAll(whole); DisposeAll(first); DisposeAll(second); }
    }

    [Fact]
    public void AdamWMatchesHandComputedSteps()
    {
        var p = new Parameter("w", [2], [1f, -2f]);
        var adam = new AdamW([p], new AdamWOptions(WeightDecay: 0.01));
        // Step 1, g = (0.5, −0.1): m̂ = g, v̂ = g², so w ← w(1 − 0.1·0.01) − 0.1·g/(|g| + 1e-8).
        p.Gradient[0] = 0.5f; p.Gradient[1] = -0.1f;
        adam.Step(0.1);
        Assert.Equal(0.999 - 0.1 * (0.5 / (0.5 + 1e-8)), p.Weight[0], 6);
        Assert.Equal(-1.998 + 0.1 * (0.1 / (0.1 + 1e-8)), p.Weight[1], 6);
        // Step 2, g = (−0.5, 0.3): m = 0.9·0.05 − 0.05 = −0.005, m̂ = −0.005/0.19; v = 0.999·0.00025 + 0.001·0.25,
        // v̂ = v / (1 − 0.999²) = 0.25 → w₀ ← 0.899·0.999 − 0.1·(−0.0263158/0.5).
        p.Gradient[0] = -0.5f; p.Gradient[1] = 0.3f;
        adam.Step(0.1);
        Assert.Equal(0.899000002 * 0.999 + 0.1 * (0.005 / 0.19) / 0.5, p.Weight[0], 5);
        // w₁: m = 0.9·(−0.01) + 0.03 = 0.021, m̂ = 0.021/0.19; v = 0.999·1e-5 + 0.001·0.09 = 9.999e-5, v̂ = 9.999e-5/0.001999.
        var w1 = -1.898000001 * 0.999 - 0.1 * (0.021 / 0.19) / Math.Sqrt(9.999e-5 / 0.001999);
        Assert.Equal(w1, p.Weight[1], 5);
        Assert.Equal(2, adam.StepCount);
    }

    [Fact]
    public void AdamWVectorAndTailLanesMatchAPlainLoop()
    {
        // 37 elements: whole SIMD vectors plus a scalar tail; three steps against a double-precision loop.
        var rng = new Random(4);
        var w0 = Enumerable.Range(0, 37).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        var p = new Parameter("w", [37], w0.Select(x => (float)x).ToArray());
        var adam = new AdamW([p], new AdamWOptions(Beta1: 0.8, Beta2: 0.99, Epsilon: 1e-6, WeightDecay: 0.1));
        var (w, m, v) = (w0.ToArray(), new double[37], new double[37]);
        for (var t = 1; t <= 3; t++)
        {
            var g = Enumerable.Range(0, 37).Select(_ => (double)(float)(rng.NextDouble() - 0.5)).ToArray();
            for (var i = 0; i < 37; i++) p.Gradient[i] = (float)g[i];
            adam.Step(0.05);
            for (var i = 0; i < 37; i++)
            {
                w[i] *= 1 - 0.05 * 0.1;
                m[i] = 0.8 * m[i] + 0.2 * g[i];
                v[i] = 0.99 * v[i] + 0.01 * g[i] * g[i];
                w[i] -= 0.05 / (1 - Math.Pow(0.8, t)) * m[i] / (Math.Sqrt(v[i]) / Math.Sqrt(1 - Math.Pow(0.99, t)) + 1e-6);
            }
        }
        for (var i = 0; i < 37; i++) Assert.True(Math.Abs(w[i] - p.Weight[i]) < 2e-6, $"element {i}: {w[i]} vs {p.Weight[i]}");
    }

    [Fact]
    public void GlobalNormClippingScalesAllGradientsTogether()
    {
        var a = new Parameter("a", [2], new float[2]);
        var b = new Parameter("b", [1], new float[1]);
        a.Gradient[0] = 3; a.Gradient[1] = 4; b.Gradient[0] = 12;   // global norm 13
        Assert.Equal(13, GradientClipping.ClipByGlobalNorm([a, b], 100), 6);
        Assert.Equal(12f, b.Gradient[0]);
        Assert.Equal(13, GradientClipping.ClipByGlobalNorm([a, b], 6.5), 6);
        Assert.Equal(1.5, a.Gradient[0], 5);
        Assert.Equal(2.0, a.Gradient[1], 5);
        Assert.Equal(6.0, b.Gradient[0], 5);
        Assert.Equal(6.5, GradientClipping.GlobalNorm([a, b]), 5);
    }

    [Fact]
    public void TinyModelOverfitsASmallBatch()
    {
        var (graphs, weights, _) = TinyModel();
        using var session = new TrainingSession(graphs, weights);
        var adam = new AdamW(session.Parameters, new AdamWOptions(WeightDecay: 0.01));
        var batch = Batch(0, 2);
        try
        {
            var first = session.Step(batch);
            var last = first;
            for (var step = 0; step < 300 && last > 0.05 * first; step++)
            {
                GradientClipping.ClipByGlobalNorm(session.Parameters, 1.0);
                adam.Step(0.03);
                last = session.Step(batch);
            }
            Assert.True(float.IsFinite(last));
            Assert.True(last < 0.05 * first, $"loss {first} → {last} after {adam.StepCount} steps");
        }
        finally { DisposeAll(batch); }
    }

    [Fact]
    public void TrainingGraphUsesOnlyStandardOperators()
    {
        var (graphs, _, _) = TinyModel();
        Assert.All(graphs.Training.Graph.Node, n => Assert.Equal("", n.Domain));
        Assert.Equal(18, graphs.Training.OpsetImport.Single().Version);
        Assert.Contains(graphs.Training.Graph.Node, n => n.OpType == "ScatterElements");   // embedding rows (ScatterND's reduction races in ONNX Runtime)
        Assert.DoesNotContain(graphs.Training.Graph.Node, n => n.OpType == "ScatterND");
        Assert.Contains(graphs.Training.Graph.Node, n => n.OpType == "Pad");          // unit-step Slice rule
        // The loss's token pick is scattered into the dense softmax gradient (one update per row along the last
        // axis), with no one-hot tensor of the logits' size.
        Assert.DoesNotContain(graphs.Training.Graph.Node, n => n.OpType == "OneHot");
        Assert.Single(graphs.Training.Graph.Node, n => n.OpType == "ScatterElements" && n.Attribute.Any(a => a.Name == "axis" && a.I == -1));
    }

    [Fact]
    public void FrozenInputsAreBoundOnceAndGetNoGradient()
    {
        var (c, logits) = GradientModelTests.Build(gpt2: false, DataType.Float);
        c.G.OutputAs(Losses.CausalLmCrossEntropy(c.G, logits, "input_ids", c.Longs("loss_mask", LossMask, 2, 4)), "loss", DataType.Float);
        var trainable = c.Trainable.Where(n => n.StartsWith("l1.")).ToList();
        var graphs = GradientBuilder.Build(c.G.ToModel(), trainable, "loss");
        var all = GradientBuilder.Build(c.G.ToModel(), c.Trainable, "loss");
        var reference = GradientCheck.Run(all.Training, c.Inputs, DataType.Float);

        using var session = new TrainingSession(graphs, trainable.ToDictionary(n => n, n => c.Inputs[n].Doubles!.Select(d => (float)d).ToArray()));
        var frozen = c.Trainable.Except(trainable).ToDictionary(n => n, n =>
            OrtValue.CreateTensorValueFromMemory(c.Inputs[n].Doubles!.Select(d => (float)d).ToArray(), c.Inputs[n].Shape));
        var batch = Batch(0, 2);
        try
        {
            foreach (var (name, value) in frozen) session.BindFixedInput(name, value);
            Assert.Equal(reference["loss"].Single(), session.Step(batch), 5);
            Assert.Equal(reference["loss"].Single(), session.Evaluate(batch), 5);
            Assert.Equal(trainable.Count, session.Parameters.Count);
            var q = session.Parameters.Single(p => p.Name == "l1.q");
            var expected = reference[GradientBuilder.GradName("l1.q")];
            for (var i = 0; i < expected.Length; i++) Assert.Equal(expected[i], q.Gradient[i], 5);
            Assert.Throws<ArgumentException>(() => session.BindFixedInput("l1.q", frozen["embed"]));
        }
        finally
        {
            DisposeAll(batch);
            foreach (var v in frozen.Values) v.Dispose();
        }
    }
}
