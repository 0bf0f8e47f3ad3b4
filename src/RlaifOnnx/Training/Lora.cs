using RlaifOnnx.Configuration;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Training;

/// <summary>
/// LoRA settings (Hu et al. 2021): rank r, scale α/r, and which projections get adapters — short module
/// names ("q_proj", "v_proj", "c_attn" …) or "all-linear" for every MatMul whose right operand is a weight
/// input of rank 2 except the output head. <see cref="Dropout"/> (default 0, off) drops the adapter's input x
/// as PEFT's lora_dropout does; the masks are graph inputs (see <see cref="Lora.DropoutMasks"/>) so the
/// caller draws them from a seeded generator and a resumed run draws the same ones.
/// </summary>
public sealed record LoraOptions(int Rank, double Alpha, IReadOnlyList<string> Targets, double Dropout = 0)
{
    public const string AllLinear = "all-linear";
    public double Scale => Alpha / Rank;

    /// <summary>The adapters a stage's `lora:` section asks for; null when rank is 0 (every weight trains).</summary>
    public static LoraOptions? From(LoraConfig c) => c.Enabled ? new(c.Rank, c.EffectiveAlpha, c.TargetList, c.Dropout) : null;

    /// <summary>q_proj and v_proj, as the LoRA paper and PEFT's Llama default.</summary>
    public static LoraOptions Default(int rank) => new(rank, 2.0 * rank, ["q_proj", "v_proj"]);
}

/// <summary>One adapter: base weight W [in, out] (frozen) plus A [in, r] and B [r, out] (trainable), all MatMul layout.</summary>
public sealed record LoraAdapter(string Base, string A, string B, long In, long Out, int Rank);

/// <summary>
/// LoRA as a graph rewrite of a training graph: every targeted y = x·W becomes y = x·W + ((x·A)·B)·(α/r),
/// with A and B new graph inputs (named like PEFT's, e.g. model.layers.0.self_attn.q_proj.lora_A.weight) and W
/// left an input that the trainer feeds as frozen — so several models in one process can share the same
/// base arrays. B starts at zero, so the adapted model starts equal to the base.
/// </summary>
public static class Lora
{
    public static string AName(string baseWeight) => Module(baseWeight) + ".lora_A.weight";
    public static string BName(string baseWeight) => Module(baseWeight) + ".lora_B.weight";
    /// <summary>The dropout mask input of an adapter, [B, S, in]: 0 or 1/(1 − p) per element (present only when dropout &gt; 0).</summary>
    public static string DropoutMaskName(string baseWeight) => Module(baseWeight) + ".lora_dropout_mask";
    static string Module(string baseWeight) => baseWeight.EndsWith(".weight") ? baseWeight[..^".weight".Length] : baseWeight;

    /// <summary>The rewritten graph and its adapters. A target that matches no projection is an error.</summary>
    public static (ModelProto Graph, IReadOnlyList<LoraAdapter> Adapters) Apply(ModelProto forward, LoraOptions options)
    {
        var inputs = forward.Graph.Input.ToDictionary(i => i.Name);
        var floatType = (DataType)inputs.Values.First(i => i.Name.EndsWith(".weight")).Type.TensorType.ElemType;
        return Rewrite(forward, options, floatType,
            name => inputs.TryGetValue(name, out var w) && w.Type.TensorType.Shape.Dim.Count == 2
                ? [w.Type.TensorType.Shape.Dim[0].DimValue, w.Type.TensorType.Shape.Dim[1].DimValue] : null,
            adaptersAsInitializers: false, inPlace: false);
    }

    /// <summary>
    /// The same rewrite of an inference graph, whose weights are initializers: every targeted y = x·W gets the
    /// branch ((x·A)·B)·(α/r) with A and B graph inputs that also have initializers (zeros, so the graph alone is
    /// the base model). The graph is changed in place (an inference graph holds every weight: no second copy). ONNX Runtime treats such inputs as overridable initializers, and an ONNX Runtime LoRA
    /// adapter (.onnx_adapter, see <see cref="OnnxAdapterFile"/>) supplies their values per run — how ONNX
    /// Runtime GenAI's Adapters API feeds them — so the base weights in the graph never change.
    /// </summary>
    public static (ModelProto Graph, IReadOnlyList<LoraAdapter> Adapters) ApplyToInference(ModelProto inference, LoraOptions options)
    {
        var initializers = inference.Graph.Initializer.ToDictionary(t => t.Name);
        return Rewrite(inference, options, DataType.Float,
            name => initializers.TryGetValue(name, out var t) && t.Dims.Count == 2 && (DataType)t.DataType == DataType.Float ? [t.Dims[0], t.Dims[1]] : null,
            adaptersAsInitializers: true, inPlace: true);
    }

    static (ModelProto Graph, IReadOnlyList<LoraAdapter> Adapters) Rewrite(ModelProto forward, LoraOptions options, DataType floatType,
        Func<string, long[]?> weightShape, bool adaptersAsInitializers, bool inPlace)
    {
        if (options.Rank <= 0) throw new ArgumentException($"LoRA rank must be positive, got {options.Rank}");
        if (options.Dropout is < 0 or >= 1) throw new ArgumentException($"LoRA dropout must be in [0, 1), got {options.Dropout}");
        var model = inPlace ? forward : forward.Clone();
        var graph = model.Graph;
        var g = new GraphBuilder(graph.Name, floatType) { NamePrefix = "lora/" };
        var adapters = new List<LoraAdapter>();
        var nodes = graph.Node.ToList();
        graph.Node.Clear();
        var matched = new HashSet<string>();
        foreach (var node in nodes)
        {
            var dims = node.OpType == "MatMul" ? weightShape(node.Input[1]) : null;
            var target = dims is null ? null : TargetOf(node.Input[1], options.Targets);
            if (target is null) { graph.Node.Add(node); continue; }
            matched.Add(target);
            var weight = node.Input[1];
            var adapter = new LoraAdapter(weight, AName(weight), BName(weight), dims![0], dims[1], options.Rank);
            adapters.Add(adapter);
            graph.Input.Add(GraphBuilder.ValueInfo(adapter.A, floatType, adapter.In, (long)adapter.Rank));
            graph.Input.Add(GraphBuilder.ValueInfo(adapter.B, floatType, (long)adapter.Rank, adapter.Out));
            if (adaptersAsInitializers)
            {
                graph.Initializer.Add(OnnxFile.FloatTensor(adapter.A, new float[adapter.In * adapter.Rank], adapter.In, adapter.Rank));
                graph.Initializer.Add(OnnxFile.FloatTensor(adapter.B, new float[adapter.Rank * adapter.Out], adapter.Rank, adapter.Out));
            }
            // y = x·W + ((x·A)·B)·scale, the original node writing x·W under a new name.
            var output = node.Output[0];
            var baseOut = g.Fresh("base");
            node.Output[0] = baseOut;
            graph.Node.Add(node);
            g.Graph.Node.Clear();
            var x = node.Input[0];
            if (options.Dropout > 0 && !adaptersAsInitializers)
            {
                var mask = DropoutMaskName(weight);
                graph.Input.Add(GraphBuilder.ValueInfo(mask, floatType, "batch_size", "sequence_length", adapter.In));
                x = g.Mul(x, g.Reshape(mask, g.Shape(x)));   // [B, S, in] onto x's rows, 3-D or 2-D [B·S, in]
            }
            var low = g.MatMul(g.MatMul(x, adapter.A), adapter.B);
            var scaled = g.Mul(low, g.Scalar(options.Scale));
            g.Node("Add", [baseOut, scaled], [output]);
            graph.Node.AddRange(g.Graph.Node);
        }
        graph.Initializer.AddRange(g.Graph.Initializer);
        foreach (var t in options.Targets)
            if (t != LoraOptions.AllLinear && !matched.Contains(t))
                throw UserError.At("lora", null, "targets", $"'{t}' matches no projection of this model");
        if (adapters.Count == 0) throw UserError.At("lora", null, "targets", "no projection matched");
        return (model, adapters);
    }

    static string? TargetOf(string weight, IReadOnlyList<string> targets)
    {
        foreach (var t in targets)
        {
            if (t == LoraOptions.AllLinear)
                return weight.EndsWith(".weight") && !weight.StartsWith("lm_head") && !weight.Contains("embed") && !weight.Contains("wte") ? t : null;
            if (weight.EndsWith($".{t}.weight")) return t;
        }
        return null;
    }

    /// <summary>
    /// Dropout masks for every adapter for a batch of [rows, length] tokens: each element 1/(1 − p) with
    /// probability 1 − p and 0 otherwise, drawn from <paramref name="random"/>; all ones (no dropout, for
    /// evaluation) when <paramref name="random"/> is null. Empty when the options have no dropout.
    /// </summary>
    public static Dictionary<string, BatchTensor> DropoutMasks(IReadOnlyList<LoraAdapter> adapters, LoraOptions options, int rows, int length, Random? random)
    {
        var masks = new Dictionary<string, BatchTensor>(StringComparer.Ordinal);
        if (options.Dropout <= 0) return masks;
        var keep = (float)(1 / (1 - options.Dropout));
        foreach (var a in adapters)
        {
            var values = new float[rows * length * a.In];
            for (var i = 0; i < values.Length; i++)
                values[i] = random is null ? 1f : random.NextDouble() >= options.Dropout ? keep : 0f;
            masks[DropoutMaskName(a.Base)] = BatchTensor.Of(values, rows, length, a.In);
        }
        return masks;
    }

    /// <summary>
    /// Initial adapter values as PEFT: A ~ U(−1/√in, 1/√in) (kaiming_uniform with a = √5), B = 0.
    /// </summary>
    public static Dictionary<string, WeightTensor> InitialWeights(IReadOnlyList<LoraAdapter> adapters, int seed)
    {
        var rng = new Random(seed);
        var result = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        foreach (var a in adapters)
        {
            var bound = 1.0 / Math.Sqrt(a.In);
            var values = new float[a.In * a.Rank];
            for (var i = 0; i < values.Length; i++) values[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
            result[a.A] = new WeightTensor([a.In, a.Rank], values);
            result[a.B] = new WeightTensor([a.Rank, a.Out], new float[a.Rank * a.Out]);
        }
        return result;
    }

    /// <summary>A new weight set: the base with W + (α/r)·A·B for every adapter (the base arrays are not changed).</summary>
    public static WeightSet Merge(IReadOnlyDictionary<string, WeightTensor> baseWeights, IReadOnlyList<LoraAdapter> adapters,
        IReadOnlyDictionary<string, WeightTensor> adapterWeights, double scale)
    {
        var merged = new WeightSet();
        foreach (var (name, w) in baseWeights) merged[name] = w;
        foreach (var a in adapters)
        {
            var w = baseWeights[a.Base];
            var data = (float[])w.Data.Clone();
            var A = adapterWeights[a.A].Data;
            var B = adapterWeights[a.B].Data;
            int n = (int)a.In, m = (int)a.Out, r = a.Rank;
            for (var i = 0; i < n; i++)
            {
                var row = data.AsSpan(i * m, m);
                for (var k = 0; k < r; k++)
                    System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(B.AsSpan(k * m, m), (float)(scale * A[i * r + k]), row, row);
            }
            merged[a.Base] = new WeightTensor(w.Shape, data);
        }
        return merged;
    }
}
