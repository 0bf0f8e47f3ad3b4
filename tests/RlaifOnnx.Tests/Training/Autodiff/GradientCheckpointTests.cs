using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;
using RlaifOnnx.Training;
using RlaifOnnx.Training.Autodiff;

namespace RlaifOnnx.Tests.Training.Autodiff;

/// <summary>
/// Gradient checkpointing (<see cref="Recompute"/>): the PPO policy's float64 training graph over a 2-layer tiny Llama
/// (every weight trainable, a left-padded row and a right-padded one), with and without the layers' activations
/// recomputed in the backward pass.
/// </summary>
public sealed class GradientCheckpointTests
{
    const int Rows = 2, Seq = 6;
    static readonly ModelConfig Config = TinyLlama.Config("gqa-untied", vocab: 29);

    static Dictionary<string, GradTensor> Inputs(WeightSet weights)
    {
        var rng = new Random(4);
        long[] ids = [5, 9, 3, 11, 7, 0, 0, 0, 4, 8, 21, 13];
        long[] mask = [1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1];
        long[] positions = [0, 1, 2, 3, 4, 5, 0, 0, 0, 1, 2, 3];
        long[] response = [0, 0, 1, 1, 0, 0, 0, 1, 1, 1];
        var inputs = new Dictionary<string, GradTensor>
        {
            ["input_ids"] = new([Rows, Seq], Longs: ids),
            ["attention_mask"] = new([Rows, Seq], Longs: mask),
            ["position_ids"] = new([Rows, Seq], Longs: positions),
            [Ppo.OldLogProbsInput] = new([Rows, Seq - 1], Doubles: response.Select(r => r == 1 ? -3.3 + rng.NextDouble() : 0).ToArray()),
            [Ppo.AdvantagesInput] = new([Rows, Seq - 1], Doubles: response.Select(_ => rng.NextDouble() * 2 - 1).ToArray()),
            [Ppo.ResponseMaskInput] = new([Rows, Seq - 1], Longs: response),
        };
        foreach (var (name, w) in weights) inputs[name] = new GradTensor(w.Shape, Doubles: Array.ConvertAll(w.Data, v => (double)v));
        return inputs;
    }

    static TrainingGraphs Graphs(bool checkpoint)
    {
        var forward = Ppo.PolicyGraph(Config, floatType: DataType.Double, temperature: 0.7);
        return GradientBuilder.Build(forward, WeightNames.Shapes(Config).Keys.ToList(), Ppo.LossOutput, Ppo.PolicyMetrics,
            checkpoint ? DecoderGraphs.LayerInputs(forward) : null);
    }

    static Dictionary<string, NodeProto> Producers(GraphProto graph)
    {
        var producers = new Dictionary<string, NodeProto>();
        foreach (var n in graph.Node) foreach (var o in n.Output) producers[o] = n;
        return producers;
    }

    [Fact]
    public void Recomputed_activations_give_the_gradients_of_kept_ones()
    {
        var weights = TinyLlama.Weights(Config, 3);
        var kept = GradientCheck.Run(Graphs(checkpoint: false).Training, Inputs(weights), DataType.Double);
        var recomputed = GradientCheck.Run(Graphs(checkpoint: true).Training, Inputs(weights), DataType.Double);
        Assert.Equal(kept.Keys.Order(), recomputed.Keys.Order());
        var worst = 0.0;
        foreach (var (name, values) in kept)
            for (var i = 0; i < values.Length; i++)
                worst = Math.Max(worst, Math.Abs(values[i] - recomputed[name][i]) / Math.Max(1e-3, Math.Abs(values[i])));
        TestContext.Current.TestOutputHelper?.WriteLine($"largest relative difference over {kept.Count} outputs: {worst:E2}");
        // The same operators on the same values; only ONNX Runtime's fusions may differ (a forward value no longer read
        // by the backward pass can be fused), which moves float64 results by rounding, far below 1e-12.
        Assert.True(worst <= 1e-12, $"relative difference {worst:E2}");
        Assert.Contains(kept[GradientBuilder.GradName("model.layers.0.mlp.up_proj.weight")], v => v != 0);
    }

    [Fact]
    public void The_backward_pass_reads_no_layer_activation_of_the_forward_pass_and_recomputes_after_the_gradient_arrives()
    {
        var plain = Graphs(checkpoint: false).Training.Graph;
        var graph = Graphs(checkpoint: true).Training.Graph;
        var producers = Producers(graph);
        static bool InLayer(NodeProto n) => n.Name.StartsWith("layer", StringComparison.Ordinal) || n.Name.StartsWith("lora/", StringComparison.Ordinal);
        static bool Backward(NodeProto n) => n.Name.StartsWith("∂/", StringComparison.Ordinal);
        var layerInputs = Enumerable.Range(0, Config.NumLayers + 1).Select(DecoderGraphs.LayerInput).ToHashSet();

        // Without checkpointing the backward pass reads the layers' activations; with it, only the layer inputs.
        int ReadActivations(GraphProto g, Dictionary<string, NodeProto> from) => g.Node.Where(Backward)
            .Sum(n => n.Input.Count(i => from.TryGetValue(i, out var p) && !Backward(p) && InLayer(p) && !layerInputs.Contains(i)));
        Assert.True(ReadActivations(plain, Producers(plain)) > 20);
        Assert.Equal(0, ReadActivations(graph, producers));

        // Every recomputed node waits for a gradient: among its ancestors is a backward node that is not a recomputation.
        var recomputed = graph.Node.Where(n => n.Name.StartsWith("∂/recompute/", StringComparison.Ordinal)).ToList();
        Assert.True(recomputed.Count > 20);
        Assert.Equal(Config.NumLayers, recomputed.Select(n => n.Name.Split('/')[2]).Where(s => s.StartsWith("layer")).Distinct().Count());
        foreach (var node in recomputed)
        {
            var seen = new HashSet<NodeProto>();
            var stack = new Stack<NodeProto>([node]);
            var waits = false;
            while (stack.Count > 0 && !waits)
                foreach (var input in stack.Pop().Input)
                    if (producers.TryGetValue(input, out var p) && seen.Add(p))
                    {
                        if (Backward(p) && !p.Name.StartsWith("∂/recompute/", StringComparison.Ordinal) && p.OpType != "Concat" && p.OpType != "Slice" && p.OpType != "Reshape" && p.OpType != "Shape") { waits = true; break; }
                        stack.Push(p);
                    }
            Assert.True(waits, $"{node.Name} does not wait for the backward pass");
        }
    }

    [Fact]
    public void Metrics_are_computed_before_the_backward_pass_starts()
    {
        // The entropy's [.., V] log-probs would otherwise stay alive until ONNX Runtime gets to it, possibly last.
        var graph = Graphs(checkpoint: false).Training.Graph;
        var producers = Producers(graph);
        HashSet<string> Ancestors(string value)
        {
            var found = new HashSet<string>();
            var stack = new Stack<string>([value]);
            while (stack.Count > 0)
                if (producers.TryGetValue(stack.Pop(), out var p))
                    foreach (var i in p.Input) if (found.Add(i)) stack.Push(i);
            return found;
        }
        var first = Ancestors(GradientBuilder.GradName("model.layers.0.self_attn.q_proj.weight"));
        foreach (var metric in Ppo.PolicyMetrics) Assert.Contains(metric, first);
    }

    [Fact]
    public void After_passes_its_value_through_untouched_whatever_the_other_holds()
    {
        var g = new GraphBuilder("after", DataType.Float);
        var x = g.Input("x", DataType.Float, 2, 3);
        var other = g.Input("other", DataType.Float, "n");
        g.OutputAs(Recompute.After(g, x, other), "y", DataType.Float, 2, 3);
        var y = GradientCheck.Run(g.ToModel(), new Dictionary<string, GradTensor>
        {
            ["x"] = new([2, 3], [1.5, -2, 0, 3.25, 1e-30, -7]),
            ["other"] = new([4], [double.NaN, double.PositiveInfinity, -1, 2]),
        }, DataType.Float)["y"];
        Assert.Equal([1.5, -2, 0, 3.25, (double)1e-30f, -7], y);
        Assert.Contains(g.Graph.Node, n => n.Input.Contains("other"));
    }
}
