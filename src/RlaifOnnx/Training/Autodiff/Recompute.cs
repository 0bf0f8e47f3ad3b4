using Onnx;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Training.Autodiff;

/// <summary>
/// Gradient checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost"; Hugging Face's
/// <c>gradient_checkpointing</c>) as a rewrite of a training graph: the forward activations between two
/// checkpoints (a decoder layer's input and the next layer's) are not kept for the backward pass; the backward
/// pass computes them again from the first checkpoint when it reaches that segment. The activations kept from the
/// forward pass are then the checkpoints alone (one [rows, hidden] tensor a layer), and one segment's recomputed
/// activations at a time, for one more forward pass of compute.
///
/// ONNX has no control edges and ONNX Runtime picks its own node order, so the order is made a data dependency:
/// a segment's recomputation reads its checkpoint through <see cref="After"/>, which waits for the gradient of the
/// segment's output — the moment the backward pass reaches the segment. The same dependency keeps ONNX Runtime's
/// common-subexpression elimination from merging the recomputed nodes back into the forward ones (their inputs
/// differ). The recomputed nodes run the same operators on the same values, so the gradients are the ones without
/// checkpointing (bit for bit in GradientCheckpointTests; ONNX Runtime may fuse forward nodes the backward pass no longer
/// reads differently, which could move a result by rounding).
/// </summary>
public static class Recompute
{
    /// <summary>
    /// <paramref name="x"/>, unchanged, as a value ONNX Runtime can only compute once <paramref name="after"/> is: x
    /// (flattened) concatenated with an empty slice of <paramref name="after"/> and shaped back. The same element type
    /// is required of both; the values of <paramref name="after"/> are never read, so NaN or Inf there cannot leak in.
    /// </summary>
    public static string After(GraphBuilder g, string x, string after)
    {
        var empty = g.Slice(g.Reshape(after, -1), [0], [0], [0]);          // [0]
        return g.Reshape(g.Concat(0, g.Reshape(x, -1), empty), g.Shape(x));
    }

    /// <summary>
    /// Rewrites the backward nodes of <paramref name="g"/> (every node from index <paramref name="forwardCount"/> on)
    /// to read recomputed activations for each segment between consecutive <paramref name="checkpoints"/> (forward
    /// values in forward order, e.g. each decoder layer's input and the final norm's input). <paramref name="gradientOf"/>
    /// names the total gradient of a value (null when it has none). Returns the number of segments recomputed: a
    /// segment is left as it was when a checkpoint or its gradient is missing, or when a backward node reads the
    /// segment before its output's gradient exists.
    /// </summary>
    public static int Apply(GraphBuilder g, int forwardCount, IReadOnlyList<string> checkpoints, Func<string, string?> gradientOf)
    {
        var nodes = g.Graph.Node;
        var producer = new Dictionary<string, int>(StringComparer.Ordinal);
        var readers = new Dictionary<string, List<int>>(StringComparer.Ordinal);
        for (var i = 0; i < forwardCount; i++)
        {
            foreach (var o in nodes[i].Output) producer[o] = i;
            foreach (var input in nodes[i].Input)
            {
                if (!readers.TryGetValue(input, out var list)) readers[input] = list = [];
                list.Add(i);
            }
        }

        // Forward indices never move (every insertion is into the backward part); backward positions are looked up again per segment.
        var done = 0;
        for (var k = checkpoints.Count - 2; k >= 0; k--)
        {
            var (start, end) = (checkpoints[k], checkpoints[k + 1]);
            if (!producer.ContainsKey(start) || !producer.TryGetValue(end, out var endProducer) || gradientOf(end) is not { } gate) continue;

            // The segment: forward nodes downstream of its start and upstream of its end.
            var downstream = new HashSet<int>();
            var frontier = new Queue<string>([start]);
            while (frontier.Count > 0)
                foreach (var i in readers.GetValueOrDefault(frontier.Dequeue()) ?? [])
                    if (downstream.Add(i)) foreach (var o in nodes[i].Output) frontier.Enqueue(o);
            var segment = Upstream([endProducer], i => downstream.Contains(i), nodes, producer);
            var values = segment.SelectMany(i => nodes[i].Output).Where(o => o.Length > 0 && o != end).ToHashSet(StringComparer.Ordinal);

            // What the backward pass reads of it, and where the gradient of the segment's output is made.
            var backwardReaders = Enumerable.Range(forwardCount, nodes.Count - forwardCount).Where(i => nodes[i].Input.Any(values.Contains)).ToList();
            var gateAt = IndexOfProducer(nodes, forwardCount, gate);
            if (backwardReaders.Count == 0 || gateAt < 0 || backwardReaders[0] <= gateAt) continue;
            var read = backwardReaders.SelectMany(i => nodes[i].Input).Where(values.Contains).ToHashSet(StringComparer.Ordinal);
            var needed = Upstream(read.Select(v => producer[v]), segment.Contains, nodes, producer);

            // The recomputation: the needed nodes again, from the start checkpoint gated on the gradient, under new names.
            var before = nodes.Count;
            var renamed = new Dictionary<string, string>(StringComparer.Ordinal) { [start] = After(g, start, gate) };
            foreach (var i in needed.Order())
            {
                var copy = nodes[i].Clone();
                copy.Name = "∂/recompute/" + nodes[i].Name;
                for (var j = 0; j < copy.Input.Count; j++)
                    if (renamed.TryGetValue(copy.Input[j], out var r)) copy.Input[j] = r;
                for (var j = 0; j < copy.Output.Count; j++)
                    if (copy.Output[j].Length > 0) copy.Output[j] = renamed[copy.Output[j]] = copy.Output[j] + "/recompute";
                nodes.Add(copy);
            }
            var added = nodes.Skip(before).ToList();
            for (var j = 0; j < added.Count; j++) nodes.RemoveAt(nodes.Count - 1);
            for (var j = 0; j < added.Count; j++) nodes.Insert(gateAt + 1 + j, added[j]);
            foreach (var i in backwardReaders)
            {
                var reader = nodes[i + added.Count];
                for (var j = 0; j < reader.Input.Count; j++)
                    if (values.Contains(reader.Input[j])) reader.Input[j] = renamed[reader.Input[j]];
            }
            done++;
        }
        return done;
    }

    /// <summary>The nodes (among those <paramref name="within"/> admits) the given nodes depend on, themselves included.</summary>
    static HashSet<int> Upstream(IEnumerable<int> from, Func<int, bool> within, IList<NodeProto> nodes, Dictionary<string, int> producer)
    {
        var found = new HashSet<int>();
        var frontier = new Stack<int>(from.Where(within));
        while (frontier.Count > 0)
        {
            var i = frontier.Pop();
            if (!found.Add(i)) continue;
            foreach (var input in nodes[i].Input)
                if (producer.TryGetValue(input, out var p) && within(p) && !found.Contains(p)) frontier.Push(p);
        }
        return found;
    }

    static int IndexOfProducer(IList<NodeProto> nodes, int from, string value)
    {
        for (var i = from; i < nodes.Count; i++)
            if (nodes[i].Output.Contains(value)) return i;
        return -1;
    }
}
