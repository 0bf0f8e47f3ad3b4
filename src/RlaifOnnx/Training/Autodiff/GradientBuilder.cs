using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Training.Autodiff;

/// <summary>
/// The two graphs a training run needs, built from one forward graph: <see cref="Training"/> outputs the
/// loss, <c>grad:NAME</c> for every trainable input (see <see cref="GradientBuilder.GradName"/>) and
/// the kept outputs; <see cref="Eval"/> outputs the loss and the kept outputs only.
/// </summary>
public sealed record TrainingGraphs(ModelProto Training, ModelProto Eval, IReadOnlyList<string> Trainable, string Loss, IReadOnlyList<string> KeptOutputs);

/// <summary>
/// Reverse-mode differentiation of an ONNX graph into standard ONNX operators (opset 18) that the
/// ordinary ONNX Runtime CPU build runs — our replacement for the retired ONNX Runtime Training.
///
/// How: values that depend on a trainable input through differentiable operators "require grad";
/// walking the nodes backwards from the scalar loss (seeded with 1), each node on that path applies its
/// gradient rule (<see cref="Differentiator"/>), emitting the backward nodes after the forward ones, and
/// contributions to a value read by several nodes are summed. Shapes stay symbolic: broadcast
/// reductions and zero tensors take their shapes from Shape at run time. Integer, boolean and
/// constant-only values (masks, position ids, shape arithmetic) never get gradients. A node on the
/// gradient path whose operator has no rule is an error naming the node and its operator.
/// </summary>
public static class GradientBuilder
{
    /// <summary>The training graph's output holding the gradient of trainable input <paramref name="input"/>.</summary>
    public static string GradName(string input) => "grad:" + input;

    /// <summary>
    /// The training and eval graphs of <paramref name="forward"/>. <paramref name="keepOutputs"/> are computed before the backward
    /// pass starts. With <paramref name="checkpoints"/> (forward values in forward order, e.g. each decoder layer's input), the
    /// activations between two of them are computed again in the backward pass instead of kept (<see cref="Recompute"/>).
    /// </summary>
    public static TrainingGraphs Build(ModelProto forward, IReadOnlyList<string> trainable, string loss = "loss", IReadOnlyList<string>? keepOutputs = null,
        IReadOnlyList<string>? checkpoints = null)
    {
        var keep = keepOutputs ?? [];
        var graph = forward.Graph;
        var lossInfo = graph.Output.FirstOrDefault(o => o.Name == loss)
            ?? throw new ArgumentException($"the forward graph has no output named '{loss}'", nameof(loss));
        var floatType = (DataType)lossInfo.Type.TensorType.ElemType;
        if (floatType is not (DataType.Float or DataType.Double))
            throw new ArgumentException($"loss '{loss}' is {floatType}; only float and double graphs are differentiated", nameof(loss));
        var inputs = graph.Input.ToDictionary(i => i.Name);
        foreach (var name in trainable)
            if (!inputs.ContainsKey(name)) throw new ArgumentException($"trainable '{name}' is not an input of the forward graph", nameof(trainable));
        foreach (var name in keep)
            if (name != loss && graph.Output.All(o => o.Name != name))
                throw new ArgumentException($"kept output '{name}' is not an output of the forward graph", nameof(keepOutputs));
        var keptInfos = keep.Where(k => k != loss).Select(k => graph.Output.First(o => o.Name == k)).ToList();

        // Eval: the forward graph reduced to the loss and the kept outputs.
        var eval = forward.Clone();
        eval.Graph.Output.Clear();
        eval.Graph.Output.Add(lossInfo.Clone());
        eval.Graph.Output.AddRange(keptInfos.Select(i => i.Clone()));
        Prune(eval.Graph);

        // Training: the forward nodes, then the backward nodes.
        var g = new GraphBuilder(graph.Name + "_training", floatType, GraphBuilder.DefaultOpset) { NamePrefix = "∂/" };
        g.Graph.Input.AddRange(graph.Input.Select(i => i.Clone()));
        g.Graph.Initializer.AddRange(graph.Initializer.Select(t => t.Clone()));
        g.Graph.Node.AddRange(graph.Node.Select(n => n.Clone()));
        g.Graph.ValueInfo.AddRange(graph.ValueInfo.Select(v => v.Clone()));
        var differentiator = new Differentiator(g, floatType);
        var grads = differentiator.Run(loss, trainable, keptInfos.Where(i => i.Type.TensorType.ElemType == (int)floatType).Select(i => i.Name).ToList());
        if (checkpoints is { Count: > 1 }) Recompute.Apply(g, graph.Node.Count, checkpoints, differentiator.SummedGradient);
        g.Graph.Output.Add(lossInfo.Clone());
        foreach (var name in trainable)
        {
            var info = inputs[name].Clone();
            info.Name = GradName(name);
            g.Node("Identity", [grads[name]], [info.Name]);
            g.Graph.Output.Add(info);
        }
        g.Graph.Output.AddRange(keptInfos.Select(i => i.Clone()));
        Prune(g.Graph);
        var training = g.ToModel();
        training.IrVersion = Math.Max(forward.IrVersion, training.IrVersion);
        return new TrainingGraphs(training, eval, trainable.ToArray(), loss, keep.ToArray());
    }

    /// <summary>The graph input that <see cref="ForCausalLm"/> adds: [B, S] int64, 1 where a token is a training target.</summary>
    public const string LossMaskInput = "loss_mask";

    /// <summary>
    /// Training and eval graphs for causal-LM fine-tuning of a canonical training graph (inputs input_ids,
    /// attention_mask, position_ids and the weights; output logits): appends the masked cross-entropy
    /// with a new <see cref="LossMaskInput"/> input and differentiates it with respect to
    /// <paramref name="trainable"/> (all canonical weights for full fine-tuning).
    /// </summary>
    public static TrainingGraphs ForCausalLm(ModelProto forward, IReadOnlyList<string> trainable, string logits = "logits", string inputIds = "input_ids")
    {
        var g = Losses.Extend(forward);
        var mask = g.Input(LossMaskInput, DataType.Int64, "batch", "sequence");
        g.OutputAs(Losses.CausalLmCrossEntropy(g, logits, inputIds, mask), "loss", g.FloatType);
        return Build(g.ToModel(), trainable, "loss");
    }

    /// <summary>Drops nodes and initializers no graph output depends on (inputs stay, so callers bind the same names).</summary>
    public static void Prune(GraphProto graph)
    {
        var needed = new HashSet<string>(graph.Output.Select(o => o.Name));
        var kept = new List<NodeProto>();
        for (var i = graph.Node.Count - 1; i >= 0; i--)
        {
            var node = graph.Node[i];
            if (!node.Output.Any(needed.Contains)) continue;
            kept.Add(node);
            foreach (var input in node.Input) needed.Add(input);
            foreach (var a in node.Attribute) if (a.G is not null) foreach (var v in OuterNames(a.G)) needed.Add(v);
        }
        kept.Reverse();
        graph.Node.Clear();
        graph.Node.AddRange(kept);
        var initializers = graph.Initializer.Where(t => needed.Contains(t.Name)).ToList();
        graph.Initializer.Clear();
        graph.Initializer.AddRange(initializers);
        var infos = graph.ValueInfo.Where(v => needed.Contains(v.Name)).ToList();
        graph.ValueInfo.Clear();
        graph.ValueInfo.AddRange(infos);
    }

    static IEnumerable<string> OuterNames(GraphProto subgraph) => subgraph.Node.SelectMany(n => n.Input);
}
