using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace RlaifOnnx.Training.Autodiff;

/// <summary>
/// One dimension as a product: an integer coefficient times named symbols (the graph inputs' dim_params),
/// e.g. 768, batch_size, or 12·batch_size·sequence_length. Two equal <see cref="Dim"/>s are equal at run time
/// for every input that fits the graph's declared shapes.
/// </summary>
readonly record struct Dim(long Coefficient, string Symbols)
{
    public static Dim Literal(long value) => new(value, "");
    public static Dim Symbol(string name) => new(1, name);

    public bool IsLiteral => Symbols.Length == 0;
    public bool IsOne => IsLiteral && Coefficient == 1;

    string[] Factors => Symbols.Length == 0 ? [] : Symbols.Split('*');

    public Dim Times(Dim other)
        => new(Coefficient * other.Coefficient, string.Join('*', Factors.Concat(other.Factors).Order(StringComparer.Ordinal)));

    /// <summary>this ÷ other when it divides exactly (coefficient and every symbol), else null.</summary>
    public Dim? DividedBy(Dim other)
    {
        if (other.Coefficient == 0 || Coefficient % other.Coefficient != 0) return null;
        var left = Factors.ToList();
        foreach (var f in other.Factors)
            if (!left.Remove(f)) return null;
        return new Dim(Coefficient / other.Coefficient, string.Join('*', left));
    }

    public override string ToString() => IsLiteral ? Coefficient.ToString() : Coefficient == 1 ? Symbols : $"{Coefficient}*{Symbols}";
}

/// <summary>
/// Symbolic shapes of a graph's values, as far as the graph fixes them: dimensions are <see cref="Dim"/>s
/// (literals and products of the inputs' dim_params) or null where a dimension depends on data. It follows
/// shape arithmetic through Shape, Concat, Squeeze, Sub, Range and Reshape, so the decoders' reshapes to
/// [B, S, heads, D] keep their symbols.
///
/// Used by the gradient rules to undo broadcasting at build time: when a value provably has its
/// gradient's shape, no reduction is emitted at all (ONNX Runtime runs a ReduceSum over no axes as a full
/// copy — about 0.2 s of a 100M model's training step), and when the broadcast axes are known, the ReduceSum
/// gets them as a constant instead of finding them at run time.
///
/// Inputs that share a dim_param are taken to have equal sizes there, which is what a dim_param means in
/// ONNX and how every graph here is fed (input_ids, attention_mask and position_ids are all [B, S]).
/// </summary>
sealed class SymbolicShapes
{
    readonly Dictionary<string, Dim?[]> _shape = new();
    readonly Dictionary<string, Dim[]> _value = new();     // values of int64 tensors of rank ≤ 1 (shapes, sizes)

    public SymbolicShapes(GraphProto graph)
    {
        foreach (var input in graph.Input)
            if (input.Type?.TensorType?.Shape is { } shape)
                _shape[input.Name] = shape.Dim.Select((d, axis) => (Dim?)(d.HasDimValue ? Dim.Literal(d.DimValue)
                    : d.HasDimParam && d.DimParam.Length > 0 ? Dim.Symbol(d.DimParam) : Dim.Symbol($"{input.Name}#{axis}"))).ToArray();
        foreach (var t in graph.Initializer) SetTensor(t.Name, t);
        foreach (var node in graph.Node)
            Infer(node);
    }

    /// <summary>The value's shape, with null for a dimension not known at build time; null when even the rank is unknown.</summary>
    public Dim?[]? Of(string value) => value.Length > 0 && _shape.TryGetValue(value, out var s) ? s : null;

    /// <summary>
    /// How to undo broadcasting from the shape <paramref name="full"/> to <paramref name="part"/>'s shape: the axes
    /// of <paramref name="full"/> to sum over (empty: the shapes are equal), or null when that is not known at build time.
    /// </summary>
    public long[]? BroadcastAxes(string part, Dim?[]? full)
    {
        if (Of(part) is not { } p || full is not { } f || p.Length > f.Length) return null;
        var axes = new List<long>();
        var offset = f.Length - p.Length;
        for (var i = 0; i < f.Length; i++)
        {
            var pd = i < offset ? Dim.Literal(1) : p[i - offset];
            if (pd is not { } known || f[i] is not { } fd) return null;
            if (known == fd) continue;
            if (known.IsOne) axes.Add(i);
            else return null;
        }
        return axes.ToArray();
    }

    void SetTensor(string name, TensorProto t)
    {
        _shape[name] = t.Dims.Select(d => (Dim?)Dim.Literal(d)).ToArray();
        if ((DataType)t.DataType != DataType.Int64 || t.Dims.Count > 1) return;
        long[] ints;
        if (t.Int64Data.Count > 0) ints = t.Int64Data.ToArray();
        else if (!t.RawData.IsEmpty)
        {
            ints = new long[t.RawData.Length / 8];
            t.RawData.Span.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(ints.AsSpan()));
        }
        else if (t.Dims.Count == 1 && t.Dims[0] == 0) ints = [];
        else return;
        _value[name] = ints.Select(Dim.Literal).ToArray();
    }

    Dim[]? Value(string name) => name.Length > 0 && _value.TryGetValue(name, out var v) ? v : null;

    static long AttrInt(NodeProto n, string name, long fallback)
        => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;

    static long[]? AttrInts(NodeProto n, string name)
        => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.Ints.ToArray() : null;

    long[]? ConstantInts(string name) => Value(name) is { } v && v.All(d => d.IsLiteral) ? v.Select(d => d.Coefficient).ToArray() : null;

    long[]? Axes(NodeProto n) => AttrInts(n, "axes") ?? (n.Input.Count > 1 ? ConstantInts(n.Input[1]) : null);

    /// <summary>numpy broadcasting; a pair of dimensions that differ and neither is literally 1 is left unknown.</summary>
    static Dim?[] Broadcast(IReadOnlyList<Dim?[]> shapes)
    {
        var rank = shapes.Max(s => s.Length);
        var result = new Dim?[rank];
        for (var i = 0; i < rank; i++)
        {
            Dim? acc = Dim.Literal(1);
            foreach (var s in shapes)
            {
                var j = i - (rank - s.Length);
                if (j < 0) continue;
                var d = s[j];
                if (acc is { IsOne: true }) acc = d;
                else if (d is { IsOne: true }) { }
                else if (acc is not { } a || d is not { } b || a != b) acc = null;
            }
            result[i] = acc;
        }
        return result;
    }

    static int Normalize(long axis, int rank) => (int)(axis < 0 ? axis + rank : axis);

    void Infer(NodeProto n)
    {
        var output = n.Output.Count > 0 ? n.Output[0] : "";
        Dim?[]? S(int i) => i < n.Input.Count ? Of(n.Input[i]) : null;
        void Set(Dim?[]? shape) { if (shape is not null && output.Length > 0) _shape[output] = shape; }
        switch (n.OpType)
        {
            case "Constant":
                if (n.Attribute.FirstOrDefault(a => a.Name == "value") is { T: { } t }) SetTensor(output, t);
                else if (n.Attribute.FirstOrDefault(a => a.Name == "value_ints") is { } vi)
                {
                    _shape[output] = [Dim.Literal(vi.Ints.Count)];
                    _value[output] = vi.Ints.Select(Dim.Literal).ToArray();
                }
                else if (n.Attribute.FirstOrDefault(a => a.Name == "value_int") is { } v) { _shape[output] = []; _value[output] = [Dim.Literal(v.I)]; }
                return;
            case "Add" or "Sub" or "Mul" or "Div" or "Pow" or "Where" or "Equal" or "Less" or "Greater" or "LessOrEqual"
                or "GreaterOrEqual" or "And" or "Or" or "Xor" or "Max" or "Min" or "Sum" or "Mean" or "Mod":
            {
                var shapes = n.Input.Where(i => i.Length > 0).Select(Of).ToArray();
                if (shapes.Any(s => s is null)) return;
                Set(Broadcast(shapes!));
                // Arithmetic on scalar sizes (S = T − P and the like), when the result is a single product.
                if (n.OpType is "Add" or "Sub" or "Mul" && Value(n.Input[0]) is [var x] && Value(n.Input[1]) is [var y])
                {
                    Dim? r = n.OpType switch
                    {
                        "Mul" => x.Times(y),
                        _ when x.IsLiteral && y.IsLiteral => Dim.Literal(n.OpType == "Add" ? x.Coefficient + y.Coefficient : x.Coefficient - y.Coefficient),
                        _ when x.Symbols == y.Symbols => new Dim(n.OpType == "Add" ? x.Coefficient + y.Coefficient : x.Coefficient - y.Coefficient, x.Symbols),
                        _ => null,
                    };
                    if (r is { } known && _shape[output].Length <= 1) _value[output] = [known.Coefficient == 0 ? Dim.Literal(0) : known];
                }
                return;
            }
            case "Identity" or "Neg" or "Exp" or "Log" or "Sqrt" or "Reciprocal" or "Sigmoid" or "Tanh" or "Erf" or "Relu"
                or "Abs" or "Cast" or "CastLike" or "Softmax" or "LogSoftmax" or "Not" or "Floor" or "Ceil" or "Sign" or "IsNaN"
                or "IsInf" or "Trilu" or "Dropout" or "Clip" or "LayerNormalization" or "SimplifiedLayerNormalization" or "Softplus"
                or "ScatterND" or "ScatterElements" or "Round" or "Elu" or "LeakyRelu" or "Gelu" or "Cos" or "Sin" or "HardSigmoid"
                or "Selu" or "Celu" or "Mish" or "Shrink" or "ThresholdedRelu" or "Sinh" or "Cosh" or "Tan" or "Atan" or "Asin"
                or "Acos" or "CumSum":
                Set(S(0));
                if (n.OpType is "Identity" or "Cast" && Value(n.Input[0]) is { } same) _value[output] = same;
                return;
            case "MatMul":
            {
                if (S(0) is not { Length: >= 2 } a || S(1) is not { Length: >= 2 } b) return;
                var batch = Broadcast([a[..^2], b[..^2]]);
                Set([.. batch, a[^2], b[^1]]);
                return;
            }
            case "Gemm":
            {
                if (S(0) is not { Length: 2 } a || S(1) is not { Length: 2 } b) return;
                Set([AttrInt(n, "transA", 0) != 0 ? a[1] : a[0], AttrInt(n, "transB", 0) != 0 ? b[0] : b[1]]);
                return;
            }
            case "Transpose":
            {
                if (S(0) is not { } x) return;
                var perm = AttrInts(n, "perm") ?? Enumerable.Range(0, x.Length).Reverse().Select(i => (long)i).ToArray();
                Set(perm.Select(p => x[p]).ToArray());
                return;
            }
            case "Shape":
            {
                if (S(0) is not { } x) return;
                var start = Math.Clamp(Normalize(AttrInt(n, "start", 0), x.Length), 0, x.Length);
                var end = Math.Clamp(Normalize(AttrInt(n, "end", x.Length), x.Length), 0, x.Length);
                var part = x[start..Math.Max(start, end)];
                _shape[output] = [Dim.Literal(part.Length)];
                if (part.All(d => d is not null)) _value[output] = part.Select(d => d!.Value).ToArray();
                return;
            }
            case "Concat":
            {
                var shapes = n.Input.Select(Of).ToArray();
                if (shapes.Any(s => s is null)) return;
                var rank = shapes[0]!.Length;
                var axis = Normalize(AttrInt(n, "axis", 0), rank);
                var result = shapes[0]!.ToArray();
                Dim? length = Dim.Literal(0);
                foreach (var s in shapes)
                    length = length is { } l && s![axis] is { } d && (l.Coefficient == 0 || l.Symbols == d.Symbols) ? new Dim(l.Coefficient + d.Coefficient, d.Symbols) : null;
                result[axis] = length;
                Set(result);
                if (rank == 1 && n.Input.Select(Value).ToArray() is var values && values.All(v => v is not null))
                    _value[output] = values.SelectMany(v => v!).ToArray();
                return;
            }
            case "Unsqueeze":
            {
                if (S(0) is not { } x || Axes(n) is not { } axes) return;
                var rank = x.Length + axes.Length;
                var added = axes.Select(a => Normalize(a, rank)).ToHashSet();
                var result = new Dim?[rank];
                for (int i = 0, j = 0; i < rank; i++) result[i] = added.Contains(i) ? Dim.Literal(1) : x[j++];
                Set(result);
                if (Value(n.Input[0]) is { } v && x.Length == 0) _value[output] = v;
                return;
            }
            case "Squeeze":
            {
                if (S(0) is not { } x || Axes(n) is not { } axes) return;
                var removed = axes.Select(a => Normalize(a, x.Length)).ToHashSet();
                Set(x.Where((_, i) => !removed.Contains(i)).ToArray());
                if (Value(n.Input[0]) is [var single]) _value[output] = [single];
                return;
            }
            case "Reshape":
                if (S(0) is { } input && Value(n.Input[1]) is { } target) Set(Reshaped(input, target, AttrInt(n, "allowzero", 0) != 0));
                return;
            case "Expand":
                if (S(0) is { } e && Value(n.Input[1]) is { } to) Set(Broadcast([e, to.Select(d => (Dim?)d).ToArray()]));
                return;
            case "ConstantOfShape":
                if (Value(n.Input[0]) is { } dims) Set(dims.Select(d => (Dim?)d).ToArray());
                return;
            case "Gather":
            {
                if (S(0) is not { } data || S(1) is not { } indices) return;
                var axis = Normalize(AttrInt(n, "axis", 0), data.Length);
                Set([.. data[..axis], .. indices, .. data[(axis + 1)..]]);
                return;
            }
            case "GatherElements":
                Set(S(1));
                return;
            case "Range":
                // Range(start, limit, 1) with limit − start a known size: [limit − start].
                if (ConstantInts(n.Input[2]) is [1] && Value(n.Input[0]) is [var from] && Value(n.Input[1]) is [var to2])
                    Set([from.Coefficient == 0 ? to2 : from.Symbols == to2.Symbols ? new Dim(to2.Coefficient - from.Coefficient, to2.Symbols) : null]);
                else Set([null]);
                return;
            case "ReduceSum" or "ReduceMean" or "ReduceMax" or "ReduceMin" or "ReduceProd" or "ReduceSumSquare" or "ReduceL2" or "ReduceLogSumExp":
            {
                if (S(0) is not { } x) return;
                var axes = Axes(n);
                if (axes is null && n.Input.Count > 1 && n.Input[1].Length > 0) return;   // axes known only at run time
                var keep = AttrInt(n, "keepdims", 1) != 0;
                var reduced = axes is null || axes.Length == 0
                    ? (AttrInt(n, "noop_with_empty_axes", 0) != 0 && axes is not null ? [] : Enumerable.Range(0, x.Length).ToHashSet())
                    : axes.Select(a => Normalize(a, x.Length)).ToHashSet();
                Set(keep ? x.Select((d, i) => reduced.Contains(i) ? Dim.Literal(1) : d).ToArray()
                         : x.Where((_, i) => !reduced.Contains(i)).ToArray());
                return;
            }
        }
    }

    /// <summary>A Reshape's output shape: 0 copies the input's dimension (unless allowzero), −1 takes what is left.</summary>
    static Dim?[] Reshaped(Dim?[] input, Dim[] target, bool allowZero)
    {
        var result = new Dim?[target.Length];
        var inferred = -1;
        for (var i = 0; i < target.Length; i++)
        {
            var t = target[i];
            if (t.IsLiteral && t.Coefficient == 0 && !allowZero) result[i] = i < input.Length ? input[i] : null;
            else if (t.IsLiteral && t.Coefficient == -1) inferred = i;
            else result[i] = t;
        }
        if (inferred >= 0)
        {
            Dim? total = Dim.Literal(1);
            foreach (var d in input) total = total is { } acc && d is { } x ? acc.Times(x) : null;
            foreach (var (d, i) in result.Select((d, i) => (d, i)))
                if (i != inferred) total = total is { } acc && d is { } x ? acc.DividedBy(x) : null;
            result[inferred] = total;
        }
        return result;
    }
}
