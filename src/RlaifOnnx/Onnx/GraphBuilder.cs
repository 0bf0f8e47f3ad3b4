using Google.Protobuf;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace RlaifOnnx.Onnx;

/// <summary>
/// A small builder for ONNX graphs: inputs, outputs, initializers, and one helper per operator we use.
/// Helpers return the name of the value they produce, so graph code reads like the math.
/// <see cref="FloatType"/> is the element type of every float constant the helpers create: Float for
/// real graphs, Double for finite-difference gradient checks.
/// </summary>
public sealed class GraphBuilder(string name, DataType floatType = DataType.Float, int opset = GraphBuilder.DefaultOpset)
{
    /// <summary>Opset 18: Reduce* take axes as an input, Split has num_outputs, ScatterND has reduction.</summary>
    public const int DefaultOpset = 18;

    public GraphProto Graph { get; } = new() { Name = name };
    public DataType FloatType { get; } = floatType;
    public int Opset { get; } = opset;
    /// <summary>Prefix of every fresh name, so nodes appended to an existing graph cannot collide with its names.</summary>
    public string NamePrefix { get; init; } = "";
    /// <summary>
    /// Prepended to the names of the nodes added from now on (not to value names), e.g. "layer3/attention/":
    /// ONNX Runtime's profiler reports time per node name, so a profile can be summed by region.
    /// </summary>
    public string Scope { get; set; } = "";
    readonly Dictionary<string, int> _counters = new();
    readonly HashSet<string> _msDomainUsed = new();

    /// <summary>A fresh value name with the given stem ("q" → "q_3").</summary>
    public string Fresh(string stem)
    {
        _counters.TryGetValue(stem, out var n);
        _counters[stem] = n + 1;
        return $"{NamePrefix}{stem}_{n}";
    }

    // ---- graph interface -------------------------------------------------------------------

    /// <summary>Declares a graph input; each dim is a long (fixed) or a string (symbolic).</summary>
    public string Input(string name, DataType type, params object[] dims)
    {
        Graph.Input.Add(ValueInfo(name, type, dims));
        return name;
    }

    public void Output(string name, DataType type, params object[] dims) => Graph.Output.Add(ValueInfo(name, type, dims));

    /// <summary>Makes <paramref name="value"/> a graph output called <paramref name="outputName"/> (adding an Identity when the names differ).</summary>
    public void OutputAs(string value, string outputName, DataType type, params object[] dims)
    {
        if (value != outputName) Node("Identity", [value], [outputName]);
        Output(outputName, type, dims);
    }

    public string Initializer(TensorProto tensor)
    {
        Graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    public static ValueInfoProto ValueInfo(string name, DataType type, params object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
        {
            var dim = new TensorShapeProto.Types.Dimension();
            switch (d)
            {
                case string s: dim.DimParam = s; break;
                case int i: dim.DimValue = i; break;
                case long l: dim.DimValue = l; break;
                default: throw new ArgumentException($"dimension {d} must be a string, int or long");
            }
            shape.Dim.Add(dim);
        }
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    // ---- nodes ---------------------------------------------------------------------------------

    /// <summary>Adds a node writing to the given output names; returns them.</summary>
    public string[] Node(string opType, string[] inputs, string[] outputs, string domain = "", params (string Name, object Value)[] attributes)
    {
        var node = new NodeProto { OpType = opType, Name = Fresh(Scope + opType), Domain = domain };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        foreach (var (n, v) in attributes) node.Attribute.Add(Attribute(n, v));
        if (domain == "com.microsoft") _msDomainUsed.Add(domain);
        Graph.Node.Add(node);
        return outputs;
    }

    /// <summary>Adds a single-output node and returns its (fresh) output name.</summary>
    public string Op(string opType, string[] inputs, params (string Name, object Value)[] attributes)
        => Node(opType, inputs, [Fresh(opType.ToLowerInvariant())], "", attributes)[0];

    public static AttributeProto Attribute(string name, object value)
    {
        var a = new AttributeProto { Name = name };
        switch (value)
        {
            case int i: a.Type = AttributeProto.Types.AttributeType.Int; a.I = i; break;
            case long l: a.Type = AttributeProto.Types.AttributeType.Int; a.I = l; break;
            case float f: a.Type = AttributeProto.Types.AttributeType.Float; a.F = f; break;
            case double d: a.Type = AttributeProto.Types.AttributeType.Float; a.F = (float)d; break;
            case string s: a.Type = AttributeProto.Types.AttributeType.String; a.S = ByteString.CopyFromUtf8(s); break;
            case long[] ls: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.AddRange(ls); break;
            case int[] iss: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.AddRange(iss.Select(x => (long)x)); break;
            case float[] fs: a.Type = AttributeProto.Types.AttributeType.Floats; a.Floats.AddRange(fs); break;
            case TensorProto t: a.Type = AttributeProto.Types.AttributeType.Tensor; a.T = t; break;
            case GraphProto g: a.Type = AttributeProto.Types.AttributeType.Graph; a.G = g; break;
            default: throw new ArgumentException($"attribute {name}: unsupported value type {value.GetType()}");
        }
        return a;
    }

    // ---- constants -----------------------------------------------------------------------------

    /// <summary>A float constant (of <see cref="FloatType"/>) with the given shape (scalar when no dims).</summary>
    public string Constant(double[] values, params long[] dims)
    {
        var t = new TensorProto { Name = Fresh("const"), DataType = (int)FloatType };
        t.Dims.AddRange(dims);
        if (FloatType == DataType.Double) t.DoubleData.AddRange(values);
        else if (FloatType == DataType.Float) t.FloatData.AddRange(values.Select(v => (float)v));
        else throw new InvalidOperationException($"float constants of type {FloatType} are not supported");
        return Initializer(t);
    }

    public string Scalar(double value) => Constant([value]);

    public string Int64s(params long[] values)
    {
        var t = new TensorProto { Name = Fresh("i64"), DataType = (int)DataType.Int64 };
        t.Dims.Add(values.Length);
        t.Int64Data.AddRange(values);
        return Initializer(t);
    }

    public string Int64Scalar(long value)
    {
        var t = new TensorProto { Name = Fresh("i64"), DataType = (int)DataType.Int64 };
        t.Int64Data.Add(value);
        return Initializer(t);
    }

    // ---- operators (ONNX opset 18 semantics) ---------------------------------------------------

    public string MatMul(string a, string b) => Op("MatMul", [a, b]);
    public string Add(string a, string b) => Op("Add", [a, b]);
    public string Sub(string a, string b) => Op("Sub", [a, b]);
    public string Mul(string a, string b) => Op("Mul", [a, b]);
    public string Div(string a, string b) => Op("Div", [a, b]);
    public string Pow(string a, string b) => Op("Pow", [a, b]);
    public string Sqrt(string x) => Op("Sqrt", [x]);
    public string Neg(string x) => Op("Neg", [x]);
    public string Exp(string x) => Op("Exp", [x]);
    public string Log(string x) => Op("Log", [x]);
    public string Tanh(string x) => Op("Tanh", [x]);
    public string Erf(string x) => Op("Erf", [x]);
    public string Sigmoid(string x) => Op("Sigmoid", [x]);
    public string Reciprocal(string x) => Op("Reciprocal", [x]);
    public string Identity(string x) => Op("Identity", [x]);
    public string Softmax(string x, int axis = -1) => Op("Softmax", [x], ("axis", axis));
    public string LogSoftmax(string x, int axis = -1) => Op("LogSoftmax", [x], ("axis", axis));
    public string ReduceMean(string x, long[] axes, bool keepDims = true) => Op("ReduceMean", [x, Int64s(axes)], ("keepdims", keepDims ? 1 : 0));
    public string ReduceSum(string x, long[] axes, bool keepDims = true) => Op("ReduceSum", [x, Int64s(axes)], ("keepdims", keepDims ? 1 : 0));
    public string ReduceMax(string x, long[] axes, bool keepDims = true) => Op("ReduceMax", [x, Int64s(axes)], ("keepdims", keepDims ? 1 : 0));
    public string Gather(string data, string indices, int axis = 0) => Op("Gather", [data, indices], ("axis", axis));
    public string GatherElements(string data, string indices, int axis) => Op("GatherElements", [data, indices], ("axis", axis));
    public string Reshape(string x, params long[] shape) => Op("Reshape", [x, Int64s(shape)]);
    public string Reshape(string x, string shape) => Op("Reshape", [x, shape]);
    public string Transpose(string x, params long[] perm) => Op("Transpose", [x], ("perm", perm));
    public string Concat(int axis, params string[] xs) => Op("Concat", xs, ("axis", axis));
    public string Unsqueeze(string x, params long[] axes) => Op("Unsqueeze", [x, Int64s(axes)]);
    public string Squeeze(string x, params long[] axes) => Op("Squeeze", [x, Int64s(axes)]);
    public string Expand(string x, string shape) => Op("Expand", [x, shape]);
    public string Where(string cond, string a, string b) => Op("Where", [cond, a, b]);
    public string Cast(string x, DataType to) => Op("Cast", [x], ("to", (int)to));
    public string Shape(string x) => Op("Shape", [x]);
    public string Shape(string x, long start, long end) => Op("Shape", [x], ("start", start), ("end", end));
    public string Equal(string a, string b) => Op("Equal", [a, b]);
    public string Less(string a, string b) => Op("Less", [a, b]);
    public string Greater(string a, string b) => Op("Greater", [a, b]);
    public string Not(string x) => Op("Not", [x]);
    public string And(string a, string b) => Op("And", [a, b]);
    public string Range(string start, string limit, string delta) => Op("Range", [start, limit, delta]);
    public string Trilu(string x, bool upper, string? k = null) => Op("Trilu", k is null ? [x] : [x, k], ("upper", upper ? 1 : 0));

    public string Slice(string x, long[] starts, long[] ends, long[] axes, long[]? steps = null)
        => Op("Slice", steps is null
            ? [x, Int64s(starts), Int64s(ends), Int64s(axes)]
            : [x, Int64s(starts), Int64s(ends), Int64s(axes), Int64s(steps)]);

    public string Slice(string x, string starts, string ends, string axes) => Op("Slice", [x, starts, ends, axes]);

    public string[] Split(string x, int axis, long[] sizes)
    {
        var outs = sizes.Select(_ => Fresh("split")).ToArray();
        return Node("Split", [x, Int64s(sizes)], outs, "", ("axis", axis));
    }

    // ---- model ---------------------------------------------------------------------------------

    /// <summary>Wraps the graph in a model with our producer name and the opset imports it needs.</summary>
    public ModelProto ToModel(string producer = "RlaifOnnx")
    {
        var model = new ModelProto { IrVersion = 8, ProducerName = producer, Graph = Graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        foreach (var d in _msDomainUsed) model.OpsetImport.Add(new OperatorSetIdProto { Domain = d, Version = 1 });
        return model;
    }
}
