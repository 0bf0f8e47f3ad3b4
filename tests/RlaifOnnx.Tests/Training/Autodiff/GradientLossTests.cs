using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;
using RlaifOnnx.Stages;
using RlaifOnnx.Training;

namespace RlaifOnnx.Tests.Training.Autodiff;

/// <summary>Each loss subgraph: its value against hand-computed numbers, its gradient against finite differences.</summary>
public class GradientLossTests
{
    /// <summary>Runs the graph built so far with <paramref name="value"/> as its only output.</summary>
    static double[] Evaluate(GraphBuilder g, string value, Dictionary<string, GradTensor> inputs)
    {
        g.OutputAs(value, "value", g.FloatType);
        return GradientCheck.Run(g.ToModel(), inputs, g.FloatType)["value"];
    }

    static GradTensor D(long[] shape, params double[] values) => new(shape, values);
    static GradTensor L(long[] shape, params long[] values) => new(shape, Longs: values);

    [Fact]
    public void CausalLmCrossEntropyAveragesSelectedTargets()
    {
        // Row 0: logits[0] = 0 predicts id 1 (−log ⅓), logits[1] = (ln 2, 0, 0) predicts id 0 (−log ½).
        // Row 1: only its last token is a target: logits[1] = 0 predicts id 2 (−log ⅓).
        var g = new GraphBuilder("ce", DataType.Double);
        var logits = g.Input("logits", DataType.Double, 2, 3, 3);
        var ids = g.Input("ids", DataType.Int64, 2, 3);
        var mask = g.Input("mask", DataType.Int64, 2, 3);
        var loss = Losses.CausalLmCrossEntropy(g, logits, ids, mask);
        var inputs = new Dictionary<string, GradTensor>
        {
            ["logits"] = D([2, 3, 3], 0, 0, 0, Math.Log(2), 0, 0, 9, 9, 9, /* row 1 */ 5, -5, 1, 0, 0, 0, 7, 7, 7),
            ["ids"] = L([2, 3], 2, 1, 0, /* row 1 */ 1, 1, 2),
            ["mask"] = L([2, 3], 0, 1, 1, /* row 1 */ 1, 0, 1),
        };
        var expected = (Math.Log(3) + Math.Log(2) + Math.Log(3)) / 3;
        Assert.Equal(expected, Evaluate(g, loss, inputs).Single(), 12);
    }

    [Fact]
    public void CausalLmCrossEntropyGradient()
    {
        var c = new GradientCheck();
        var logits = c.Param("logits", [2, 4, 5], -2, 2);
        var ids = c.Longs("ids", [1, 4, 0, 2, 3, 3, 1, 0], 2, 4);
        var mask = c.Longs("mask", [0, 1, 1, 1, 0, 0, 1, 1], 2, 4);
        c.CheckLoss(Losses.CausalLmCrossEntropy(c.G, logits, ids, mask));
    }

    [Fact]
    public void PreferenceLossWithSoftAndHardLabels()
    {
        // Pair 0: p = 1, margin 2 → −log σ(2) = log(1 + e⁻²). Pair 1: margin 0 → log 2 for any p.
        // Pair 2: p = 0, margin 1000 → softplus(1000) = 1000 (finite: the stable form never overflows).
        var g = new GraphBuilder("pref", DataType.Double);
        var loss = Losses.PreferenceLoss(g, g.Input("ra", DataType.Double, 3), g.Input("rb", DataType.Double, 3), g.Input("p", DataType.Double, 3));
        var inputs = new Dictionary<string, GradTensor>
        {
            ["ra"] = D([3], 2, 0.3, 1000), ["rb"] = D([3], 0, 0.3, 0), ["p"] = D([3], 1, 0.25, 0),
        };
        var expected = (Math.Log(1 + Math.Exp(-2)) + Math.Log(2) + 1000) / 3;
        Assert.Equal(expected, Evaluate(g, loss, inputs).Single(), 10);
    }

    [Fact]
    public void PreferenceLossGradient()
    {
        var c = new GradientCheck();
        var loss = Losses.PreferenceLoss(c.G, c.Param("ra", [4], -3, 3), c.Param("rb", [4], -3, 3), c.Data("p", [4], 0, 1));
        c.CheckLoss(loss);
    }

    [Fact]
    public void MaskedMseLoss()
    {
        var g = new GraphBuilder("mse", DataType.Double);
        var loss = Losses.MseLoss(g, g.Input("v", DataType.Double, 3), g.Input("t", DataType.Double, 3), g.Input("m", DataType.Int64, 3));
        var inputs = new Dictionary<string, GradTensor> { ["v"] = D([3], 1, 2, 3), ["t"] = D([3], 1, 0, 0), ["m"] = L([3], 1, 1, 0) };
        Assert.Equal(2.0, Evaluate(g, loss, inputs).Single(), 12);

        var c = new GradientCheck();
        c.CheckLoss(Losses.MseLoss(c.G, c.Param("v", [2, 3]), c.Data("t", [2, 3]), c.Longs("m", [1, 0, 1, 1, 1, 0], 2, 3)));
    }

    [Fact]
    public void TokenLogProbsAndEntropy()
    {
        var g = new GraphBuilder("lp", DataType.Double);
        var logits = g.Input("logits", DataType.Double, 1, 2, 4);
        var actions = g.Input("a", DataType.Int64, 1, 2);
        var both = g.Concat(0, g.Reshape(Losses.TokenLogProbs(g, logits, actions), -1), g.Reshape(Losses.Entropy(g, logits), -1));
        var inputs = new Dictionary<string, GradTensor>
        {
            // Position 0 uniform over 4; position 1 puts e^0:e^(ln 3) = 1:3 on two tokens and ~0 elsewhere.
            ["logits"] = D([1, 2, 4], 0, 0, 0, 0, 0, Math.Log(3), -800, -800),
            ["a"] = L([1, 2], 3, 1),
        };
        var values = Evaluate(g, both, inputs);
        Assert.Equal(-Math.Log(4), values[0], 12);
        Assert.Equal(Math.Log(0.75), values[1], 12);
        Assert.Equal(Math.Log(4), values[2], 12);
        Assert.Equal(-(0.25 * Math.Log(0.25) + 0.75 * Math.Log(0.75)), values[3], 12);

        var c = new GradientCheck();
        var x = c.Param("logits", [2, 3, 5], -2, 2);
        var lp = Losses.TokenLogProbs(c.G, x, c.Longs("a", [0, 4, 2, 1, 1, 3], 2, 3));
        c.CheckLoss(c.G.Add(Losses.MaskedMean(c.G, lp, c.Data("w", [2, 3])), Losses.Mean(c.G, Losses.Entropy(c.G, x))));
    }

    [Fact]
    public void PpoClippedSurrogate()
    {
        // Token 0: ρ = 1.5, A = 1 → max(−1.5, −1.2) = −1.2. Token 1: ρ = 0.5, A = −1 → max(0.5, 0.8) = 0.8.
        // Token 2 is masked out. The clip binds on both (the clipped term is the larger); approx KL = ½·mean((log ρ)²).
        var g = new GraphBuilder("ppo", DataType.Double);
        var terms = Losses.PpoPolicyLoss(g, g.Input("lp", DataType.Double, 3), g.Input("old", DataType.Double, 3),
            g.Input("adv", DataType.Double, 3), g.Input("m", DataType.Double, 3), 0.2);
        var all = g.Concat(0, g.Reshape(terms.Loss, 1), g.Reshape(terms.ClipFraction, 1), g.Reshape(terms.ApproxKl, 1));
        var inputs = new Dictionary<string, GradTensor>
        {
            ["lp"] = D([3], Math.Log(1.5) - 1, Math.Log(0.5) - 2, 7), ["old"] = D([3], -1, -2, 0),
            ["adv"] = D([3], 1, -1, 5), ["m"] = D([3], 1, 1, 0),
        };
        var values = Evaluate(g, all, inputs);
        Assert.Equal(-0.2, values[0], 12);
        Assert.Equal(1.0, values[1], 12);
        Assert.Equal(0.5 * (Math.Pow(Math.Log(1.5), 2) + Math.Pow(Math.Log(0.5), 2)) / 2, values[2], 12);

        var c = new GradientCheck();
        var logProbs = c.Param("lp", [2, 4], -0.5, 0.5);
        var policy = Losses.PpoPolicyLoss(c.G, logProbs, c.Data("old", [2, 4], -0.5, 0.5), c.Data("adv", [2, 4], -2, 2), c.Longs("m", [1, 1, 1, 0, 1, 1, 0, 0], 2, 4), 0.2);
        c.CheckLoss(policy.Loss);
    }

    [Fact]
    public void PpoClippedValueLoss()
    {
        // v = 1 (old 0.5, clipped to 0.7), R = 2 → max(1, 1.69); v = 2 (old 2), R = 0 → 4. ½·mean = 1.4225.
        var g = new GraphBuilder("vf", DataType.Double);
        var loss = Losses.PpoValueLoss(g, g.Input("v", DataType.Double, 2), g.Input("old", DataType.Double, 2),
            g.Input("r", DataType.Double, 2), g.Input("m", DataType.Double, 2), 0.2);
        var inputs = new Dictionary<string, GradTensor>
        {
            ["v"] = D([2], 1, 2), ["old"] = D([2], 0.5, 2), ["r"] = D([2], 2, 0), ["m"] = D([2], 1, 1),
        };
        Assert.Equal(1.4225, Evaluate(g, loss, inputs).Single(), 12);

        var c = new GradientCheck();
        c.CheckLoss(Losses.PpoValueLoss(c.G, c.Param("v", [2, 3]), c.Data("old", [2, 3]), c.Data("r", [2, 3]), c.Longs("m", [1, 1, 0, 1, 1, 1], 2, 3), 0.2));
    }

    [Fact]
    public void Softplus_gradient_is_the_sigmoid_even_at_zero()
    {
        // d/dx softplus(x) = σ(x): ½ at exactly 0, where a Relu + Abs form gives 0 (both subgradients 0 there).
        var g = new GraphBuilder("softplus", DataType.Double);
        var x = g.Input("x", DataType.Double, 4);
        g.OutputAs(Losses.SumAll(g, Losses.Softplus(g, x)), "loss", DataType.Double);
        var graphs = RlaifOnnx.Training.Autodiff.GradientBuilder.Build(g.ToModel(), ["x"], "loss");
        var outputs = GradientCheck.Run(graphs.Training, new() { ["x"] = D([4], -1, 0, 2, -800) }, DataType.Double);
        var gradient = outputs[graphs.Training.Graph.Output.Single(o => o.Name != "loss").Name];
        Assert.Equal(new[] { 1 / (1 + Math.E), 0.5, 1 / (1 + Math.Exp(-2)), 0 }.Select(v => Math.Round(v, 12)), gradient.Select(v => Math.Round(v, 12)));
        // The preference loss at r_a = r_b (a DPO run's first step): −½ for a hard label.
        var c = new GradientCheck();
        var ra = c.Param("ra", [3], 0, 0);
        c.CheckLoss(Losses.PreferenceLoss(c.G, ra, c.Data("rb", [3], 0, 0), c.Data("p", [3], 1, 1)));
    }
}
