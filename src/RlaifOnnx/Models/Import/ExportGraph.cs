using Onnx;
using RlaifOnnx.Core;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Models.Import;

// ---- graph walking ------------------------------------------------------------------------

/// <summary>Producers, consumers and constant tensors of a graph, for walking it from value to value.</summary>
internal sealed class GraphIndex
{
    readonly string _path;
    readonly Dictionary<string, NodeProto> _producers = new();
    readonly Dictionary<string, List<NodeProto>> _consumers = new();
    readonly HashSet<string> _outputs;
    public IReadOnlyList<NodeProto> Nodes { get; }
    public Dictionary<string, TensorProto> Initializers { get; } = new();

    /// <summary>The family named in "not a … graph" errors ("GPT-2", "Llama-family").</summary>
    public string Family { get; set; } = "GPT-2";
    /// <summary>Weight types met while reading (float16, int4 MatMulNBits …), for the import report.</summary>
    public SortedSet<string> SourceWeightTypes { get; } = new(StringComparer.Ordinal);

    /// <param name="graph">The graph to walk.</param>
    /// <param name="path">The file it came from, for error messages.</param>
    /// <param name="outer">For a subgraph (an If branch of optimum's merged decoder): the enclosing graph, whose initializers and constants it reads by name.</param>
    public GraphIndex(GraphProto graph, string path, GraphProto? outer = null)
    {
        _path = path;
        Nodes = graph.Node;
        if (outer is not null)
        {
            foreach (var t in outer.Initializer) Initializers[t.Name] = t;
            foreach (var n in outer.Node)
                if (n.OpType == "Constant") foreach (var o in n.Output) _producers[o] = n;
        }
        foreach (var t in graph.Initializer) Initializers[t.Name] = t;
        foreach (var n in graph.Node)
        {
            foreach (var o in n.Output) if (o != "") _producers[o] = n;
            foreach (var i in n.Input)
            {
                if (i == "") continue;
                if (!_consumers.TryGetValue(i, out var list)) _consumers[i] = list = [];
                list.Add(n);
            }
            // Subgraphs (If/Loop bodies, as in optimum's merged decoders) read outer initializers by name.
            foreach (var a in n.Attribute)
                foreach (var sub in a.Graphs.Append(a.G).OfType<GraphProto>()) MarkSubgraphReads(sub);
        }
        _outputs = graph.Output.Select(o => o.Name).ToHashSet();
    }

    readonly HashSet<string> _subgraphReads = new();

    void MarkSubgraphReads(GraphProto graph)
    {
        foreach (var n in graph.Node)
        {
            foreach (var i in n.Input) if (i != "") _subgraphReads.Add(i);
            foreach (var a in n.Attribute)
                foreach (var sub in a.Graphs.Append(a.G).OfType<GraphProto>()) MarkSubgraphReads(sub);
        }
    }

    public UserError Unrecognised(string what) => UserError.At(_path, null, null, $"not a {Family} graph this importer recognises: {what}");

    public NodeProto Single(string opType)
    {
        var found = Nodes.Where(n => n.OpType == opType).ToList();
        return found.Count == 1 ? found[0] : throw Unrecognised($"{found.Count} {opType} nodes where one was expected");
    }

    public NodeProto? ConsumerOf(string value, params string[] opTypes)
    {
        if (value == "" || !_consumers.TryGetValue(value, out var list)) return null;
        var matches = list.Where(n => opTypes.Contains(n.OpType)).ToList();
        return matches.Count switch
        {
            0 => null,
            1 => matches[0],
            _ => throw Unrecognised($"{value} feeds {matches.Count} {string.Join("/", opTypes)} nodes where one was expected"),
        };
    }

    public NodeProto? ProducerOf(string value) => _producers.TryGetValue(value, out var n) ? n : null;
    public IReadOnlyList<NodeProto> ConsumersOf(string value) => _consumers.TryGetValue(value, out var list) ? list : [];

    public bool Has(NodeProto node, int input) => node.Input.Count > input && node.Input[input] != "";
    public bool IsConsumed(string value) => _consumers.ContainsKey(value) || _subgraphReads.Contains(value);
    public bool IsGraphOutput(string value) => _outputs.Contains(value);

    /// <summary>The constant behind input <paramref name="input"/> of a node: an initializer, possibly through Identity or Constant.</summary>
    public WeightTensor Tensor(NodeProto node, int input, string what)
    {
        if (!Has(node, input)) throw Unrecognised($"{node.Name} ({node.OpType}) has no {what}");
        var value = node.Input[input];
        for (var hops = 0; hops < 8; hops++)
        {
            if (Initializers.ContainsKey(value)) return Initializer(value);
            if (!_producers.TryGetValue(value, out var producer)) break;
            if (producer.OpType == "Identity") { value = producer.Input[0]; continue; }
            if (producer.OpType == "Constant" && producer.Attribute.FirstOrDefault(a => a.Name == "value")?.T is { } t) return Copy(t, value);
            break;
        }
        throw Unrecognised($"{node.Name} ({node.OpType}): {what} '{node.Input[input]}' is not a constant tensor");
    }

    /// <summary>A fresh copy of an initializer's float values: de-duplicated tensors feed several canonical weights.</summary>
    public WeightTensor Initializer(string name) => Copy(Initializers[name], name);

    WeightTensor Copy(TensorProto t, string name)
    {
        var data = ExportTensors.ToFloat32(t)
            ?? throw Unrecognised($"weight {name} is {(TensorProto.Types.DataType)t.DataType}; supported weight types: float32, float16, bfloat16, MatMulNBits int4/int8");
        SourceWeightTypes.Add(((TensorProto.Types.DataType)t.DataType).ToString().ToLowerInvariant());
        var shape = t.Dims.ToArray();
        if (data.LongLength != shape.Aggregate(1L, (a, b) => a * b))
            throw Unrecognised($"weight {name} holds {data.Length} values for shape [{string.Join(",", shape)}]");
        return new WeightTensor(shape, data);
    }

    /// <summary>
    /// The lm_head of a Llama-family export: a bias-free MatMul from the final norm's output to the logits (a graph
    /// output, possibly through a Cast to float32). Adds lm_head.weight unless it is the transposed embedding; returns whether it is (tied).
    /// </summary>
    public bool ReadLmHead(string normed, WeightTensor embed, WeightSet weights)
    {
        var (logits, lm, lmBias) = Linear(normed, "the lm_head");
        if (lmBias is not null) throw Unrecognised("a bias on the lm_head");
        if (!IsGraphOutput(logits) && !(ConsumerOf(logits, "Cast") is { } cast && IsGraphOutput(cast.Output[0])))
            throw Unrecognised("the lm_head output is not a graph output");
        var tied = OnnxImport.IsTranspose(lm, embed);
        if (!tied) weights["lm_head.weight"] = lm;
        return tied;
    }

    /// <summary>MatMul(x, W) with an optional Add(·, b) after it: returns (output, W, b or null).</summary>
    public (string Output, WeightTensor Weight, WeightTensor? Bias) Linear(string x, string what)
    {
        var matMul = ConsumerOf(x, "MatMul", "MatMulNBits") ?? throw Unrecognised($"no MatMul for {what} reads {x}");
        return LinearAt(matMul, x, what);
    }

    /// <summary>The weight of a MatMul or MatMulNBits node reading <paramref name="x"/>, with an optional Add(·, b) after it.</summary>
    public (string Output, WeightTensor Weight, WeightTensor? Bias) LinearAt(NodeProto matMul, string x, string what)
    {
        if (matMul.Input[0] != x) throw Unrecognised($"{matMul.Name}: {what} multiplies from the wrong side");
        var weight = matMul.OpType == "MatMulNBits" ? Dequantized(matMul, what) : Tensor(matMul, 1, what);
        var output = matMul.Output[0];
        if (matMul.OpType == "MatMulNBits" && Has(matMul, 5)) return (output, weight, Tensor(matMul, 5, $"{what} bias"));
        if (ConsumerOf(output, "Add") is { } add && add.Input.Any(i => i != output && Initializers.ContainsKey(i)))
        {
            var bias = Tensor(add, add.Input[0] == output ? 1 : 0, $"{what} bias");
            return (add.Output[0], weight, bias);
        }
        return (output, weight, null);
    }

    /// <summary>The SkipLayerNormalization adding <paramref name="x"/> to <paramref name="residual"/>.</summary>
    public NodeProto SkipLayerNorm(string x, string residual)
    {
        var node = ConsumerOf(x, "SkipLayerNormalization") ?? throw Unrecognised($"no SkipLayerNormalization reads {x}");
        if (residual == "" || !(node.Input[0] == x && node.Input[1] == residual || node.Input[1] == x && node.Input[0] == residual))
            throw Unrecognised($"{node.Name}: does not add {x} to the residual stream");
        return node;
    }

    /// <summary>A com.microsoft MatMulNBits weight as a float32 MatMul weight [K, N].</summary>
    WeightTensor Dequantized(NodeProto node, string what)
    {
        int k = (int)IntAttribute(node, "K", 0), n = (int)IntAttribute(node, "N", 0);
        int bits = (int)IntAttribute(node, "bits", 4), blockSize = (int)IntAttribute(node, "block_size", 0);
        if (bits is not (4 or 8)) throw Unrecognised($"{node.Name}: {bits}-bit MatMulNBits (supported: 4, 8)");
        if (k <= 0 || n <= 0 || blockSize < 16 || (blockSize & (blockSize - 1)) != 0) throw Unrecognised($"{node.Name}: MatMulNBits with K={k}, N={n}, block_size={blockSize}");
        if (Has(node, 4)) throw Unrecognised($"{node.Name}: MatMulNBits with g_idx (act-order) is not supported");
        var packed = Constant(node, 1, $"{what} (packed)");
        var scales = Constant(node, 2, $"{what} scales");
        byte[]? zeroPoints = null;
        if (Has(node, 3))
        {
            var zp = Constant(node, 3, $"{what} zero points");
            if ((TensorProto.Types.DataType)zp.DataType != TensorProto.Types.DataType.Uint8)
                throw Unrecognised($"{node.Name}: MatMulNBits zero points of type {(TensorProto.Types.DataType)zp.DataType} (supported: packed uint8)");
            zeroPoints = ExportTensors.Bytes(zp);
        }
        if ((TensorProto.Types.DataType)packed.DataType != TensorProto.Types.DataType.Uint8) throw Unrecognised($"{node.Name}: packed weight is not uint8");
        var scaleValues = ExportTensors.ToFloat32(scales) ?? throw Unrecognised($"{node.Name}: scales of type {(TensorProto.Types.DataType)scales.DataType}");
        try
        {
            var data = ExportTensors.DequantizeNBits(ExportTensors.Bytes(packed), scaleValues, zeroPoints, k, n, bits, blockSize);
            SourceWeightTypes.Add($"int{bits} MatMulNBits (block {blockSize}, dequantised)");
            return new WeightTensor([k, n], data);
        }
        catch (ArgumentException e)
        {
            throw Unrecognised($"{node.Name}: {e.Message}");
        }
    }

    /// <summary>The TensorProto behind a node input (initializer, through Identity, or Constant), not converted.</summary>
    public TensorProto Constant(NodeProto node, int input, string what)
    {
        if (!Has(node, input)) throw Unrecognised($"{node.Name} ({node.OpType}) has no {what}");
        var value = node.Input[input];
        for (var hops = 0; hops < 8; hops++)
        {
            if (Initializers.TryGetValue(value, out var init)) return init;
            if (!_producers.TryGetValue(value, out var producer)) break;
            if (producer.OpType == "Identity") { value = producer.Input[0]; continue; }
            if (producer.OpType == "Constant" && producer.Attribute.FirstOrDefault(a => a.Name == "value")?.T is { } t) return t;
            break;
        }
        throw Unrecognised($"{node.Name} ({node.OpType}): {what} '{node.Input[input]}' is not a constant tensor");
    }

    /// <summary>Whether a value is a constant: an initializer, possibly through Identity, or a Constant node's output.</summary>
    public bool IsConstant(string value)
    {
        for (var hops = 0; hops < 8; hops++)
        {
            if (Initializers.ContainsKey(value)) return true;
            if (!_producers.TryGetValue(value, out var producer)) return false;
            if (producer.OpType == "Constant") return true;
            if (producer.OpType != "Identity") return false;
            value = producer.Input[0];
        }
        return false;
    }

    /// <summary>The values of a constant float or integer tensor as float32 (small constants: exponents, scales, frequencies).</summary>
    public float[] ConstantValues(string value)
    {
        var node = new NodeProto { Name = value, OpType = "(constant)" };
        node.Input.Add(value);
        var t = Constant(node, 0, "constant");
        if ((TensorProto.Types.DataType)t.DataType == TensorProto.Types.DataType.Double)
            return (t.RawData.IsEmpty ? t.DoubleData.ToArray() : System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(t.RawData.Span).ToArray()).Select(v => (float)v).ToArray();
        return ExportTensors.ToFloat32(t) ?? Ints(node, 0).Select(v => (float)v).ToArray();
    }

    /// <summary>Whether a constant holds floating-point values (as opposed to shapes, axes and indices).</summary>
    public bool IsFloatConstant(string value)
    {
        var node = new NodeProto { Name = value, OpType = "(constant)" };
        node.Input.Add(value);
        return (TensorProto.Types.DataType)Constant(node, 0, "constant").DataType is TensorProto.Types.DataType.Float
            or TensorProto.Types.DataType.Float16 or TensorProto.Types.DataType.Bfloat16 or TensorProto.Types.DataType.Double;
    }

    /// <summary>The values of a constant int64/int32 tensor behind a node input (Slice starts, Reshape shapes, axes).</summary>
    public long[] Ints(NodeProto node, int input)
    {
        var t = Constant(node, input, "integer constant");
        switch ((TensorProto.Types.DataType)t.DataType)
        {
            case TensorProto.Types.DataType.Int64:
                if (t.RawData.IsEmpty) return t.Int64Data.ToArray();
                return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(t.RawData.Span).ToArray();
            case TensorProto.Types.DataType.Int32:
                if (t.RawData.IsEmpty) return t.Int32Data.Select(v => (long)v).ToArray();
                return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(t.RawData.Span).ToArray().Select(v => (long)v).ToArray();
            default:
                throw Unrecognised($"{node.Name} ({node.OpType}): input {input} is {(TensorProto.Types.DataType)t.DataType}, not an integer constant");
        }
    }

    public long IntAttribute(NodeProto node, string name, long fallback) =>
        node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;

    public float FloatAttribute(NodeProto node, string name, float fallback) =>
        node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.F : fallback;
}
