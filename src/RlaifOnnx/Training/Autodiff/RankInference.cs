using Onnx;

namespace RlaifOnnx.Training.Autodiff;

/// <summary>
/// Static ranks of a graph's values (and the lengths of 1-D integer tensors such as shapes), enough for
/// gradient rules that need a rank at build time (MatMul's transposes). Shapes themselves stay
/// symbolic: rules compute them at run time with Shape. A value whose rank cannot be known is absent.
/// </summary>
sealed class RankInference
{
    readonly Dictionary<string, int> _rank = new();
    readonly Dictionary<string, long> _length = new();     // static length of 1-D tensors
    readonly Dictionary<string, long[]> _ints = new();     // values of constant int tensors (axes, perms)

    public RankInference(GraphProto graph)
    {
        foreach (var input in graph.Input)
            if (input.Type?.TensorType?.Shape is { } shape) Set(input.Name, shape.Dim.Count, shape.Dim.Count == 1 && shape.Dim[0].HasDimValue ? shape.Dim[0].DimValue : null);
        foreach (var t in graph.Initializer) SetTensor(t.Name, t);
        foreach (var node in graph.Node) Infer(node);
    }

    public int? Rank(string value) => _rank.TryGetValue(value, out var r) ? r : null;

    /// <summary>The values of a constant int64 tensor (initializer or Constant node), or null.</summary>
    public long[]? ConstantInts(string value) => value.Length > 0 && _ints.TryGetValue(value, out var v) ? v : null;

    void Set(string name, int rank, long? length = null)
    {
        _rank[name] = rank;
        if (rank == 1 && length is { } l && l >= 0) _length[name] = l;
    }

    void SetTensor(string name, TensorProto t)
    {
        Set(name, t.Dims.Count, t.Dims.Count == 1 ? t.Dims[0] : null);
        if ((TensorProto.Types.DataType)t.DataType == TensorProto.Types.DataType.Int64)
        {
            if (t.Int64Data.Count > 0) _ints[name] = t.Int64Data.ToArray();
            else if (!t.RawData.IsEmpty)
            {
                var v = new long[t.RawData.Length / 8];
                t.RawData.Span.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan()));
                _ints[name] = v;
            }
            else if (t.Dims.Count == 1 && t.Dims[0] == 0) _ints[name] = [];
        }
    }

    long? Length(string value) => _length.TryGetValue(value, out var l) ? l : null;

    static long AttrInt(NodeProto n, string name, long fallback)
        => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;

    static long[]? AttrInts(NodeProto n, string name)
        => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.Ints.ToArray() : null;

    long[]? Axes(NodeProto n) => AttrInts(n, "axes") ?? (n.Input.Count > 1 ? ConstantInts(n.Input[1]) : null);

    void Infer(NodeProto n)
    {
        int? R(int i) => i < n.Input.Count && n.Input[i].Length > 0 ? Rank(n.Input[i]) : null;
        var output = n.Output.Count > 0 ? n.Output[0] : "";
        switch (n.OpType)
        {
            case "Constant":
                if (n.Attribute.FirstOrDefault(a => a.Name == "value") is { T: { } t }) SetTensor(output, t);
                else if (n.Attribute.FirstOrDefault(a => a.Name == "value_ints") is { } vi) { Set(output, 1, vi.Ints.Count); _ints[output] = vi.Ints.ToArray(); }
                else if (n.Attribute.FirstOrDefault(a => a.Name == "value_int") is { } v) { Set(output, 0); _ints[output] = [v.I]; }
                else if (n.Attribute.Any(a => a.Name is "value_float")) Set(output, 0);
                return;
            case "Add" or "Sub" or "Mul" or "Div" or "Pow" or "Where" or "Equal" or "Less" or "Greater" or "LessOrEqual"
                or "GreaterOrEqual" or "And" or "Or" or "Xor" or "Max" or "Min" or "Sum" or "Mean" or "Mod":
            {
                var ranks = n.Input.Where(i => i.Length > 0).Select(Rank).ToArray();
                if (ranks.Any(r => r is null)) return;
                var rank = ranks.Max(r => r!.Value);
                long? length = null;
                if (rank == 1)
                {
                    var lengths = n.Input.Where(i => i.Length > 0 && Rank(i) == 1).Select(Length).ToArray();
                    if (lengths.All(l => l is not null)) length = lengths.Max();
                }
                Set(output, rank, length);
                return;
            }
            case "Identity" or "Neg" or "Exp" or "Log" or "Sqrt" or "Reciprocal" or "Sigmoid" or "Tanh" or "Erf" or "Relu"
                or "Abs" or "Cast" or "CastLike" or "Softmax" or "LogSoftmax" or "Not" or "Floor" or "Ceil" or "Sign" or "IsNaN"
                or "IsInf" or "Trilu" or "Dropout" or "Clip" or "LayerNormalization" or "SimplifiedLayerNormalization" or "Softplus" or "ScatterND"
                or "ScatterElements" or "Round" or "Elu" or "LeakyRelu" or "Gelu" or "Cos" or "Sin" or "HardSigmoid" or "Selu"
                or "Celu" or "Mish" or "Shrink" or "ThresholdedRelu" or "Sinh" or "Cosh" or "Tan" or "Atan" or "Asin" or "Acos" or "CumSum":
                if (R(0) is { } same) Set(output, same, Length(n.Input[0]));
                return;
            case "MatMul":
                if (R(0) is { } ra && R(1) is { } rb)
                    Set(output, ra == 1 && rb == 1 ? 0 : ra == 1 ? rb - 1 : rb == 1 ? ra - 1 : Math.Max(ra, rb));
                return;
            case "Gemm":
                Set(output, 2);
                return;
            case "Transpose" or "Slice" or "Concat" or "GatherElements":
                if (n.OpType == "GatherElements") { if (R(1) is { } ri) Set(output, ri); return; }
                if (R(0) is { } r0)
                {
                    long? length = null;
                    if (r0 == 1 && n.OpType == "Concat")
                    {
                        var lengths = n.Input.Select(Length).ToArray();
                        if (lengths.All(l => l is not null)) length = lengths.Sum();
                    }
                    else if (r0 == 1 && n.OpType == "Slice" && Length(n.Input[0]) is { } len
                             && ConstantInts(n.Input[1]) is [var start] && ConstantInts(n.Input[2]) is [var end]
                             && (n.Input.Count < 5 || ConstantInts(n.Input[4]) is [1]))
                    {
                        long Clamp(long v) => Math.Clamp(v < 0 ? v + len : v, 0, len);
                        length = Math.Max(0, Clamp(end) - Clamp(start));
                    }
                    Set(output, r0, length);
                }
                return;
            case "Split":
                if (R(0) is { } rs) foreach (var o in n.Output) Set(o, rs);
                return;
            case "Shape":
                if (R(0) is { } rx)
                {
                    long Norm(long v) => Math.Clamp(v < 0 ? v + rx : v, 0, rx);
                    var start = Norm(AttrInt(n, "start", 0));
                    var end = Norm(AttrInt(n, "end", rx));
                    Set(output, 1, Math.Max(0, end - start));
                }
                else Set(output, 1);
                return;
            case "Size":
                Set(output, 0);
                return;
            case "Reshape" or "Expand" or "ConstantOfShape":
            {
                var shapeIndex = n.OpType == "ConstantOfShape" ? 0 : 1;
                if (Length(n.Input[shapeIndex]) is not { } len) return;
                var rank = n.OpType == "Expand" ? (R(0) is { } re ? Math.Max(re, (int)len) : (int?)null) : (int)len;
                if (rank is { } r) Set(output, r);
                return;
            }
            case "Unsqueeze":
                if (R(0) is { } ru && Axes(n) is { } ua) Set(output, ru + ua.Length, ru + ua.Length == 1 ? 1 : null);
                return;
            case "Squeeze":
                if (R(0) is { } rq && Axes(n) is { } qa) Set(output, rq - qa.Length);
                return;
            case "Flatten":
                Set(output, 2);
                return;
            case "Gather":
                if (R(0) is { } rd && R(1) is { } rind)
                    Set(output, rd + rind - 1, rd == 1 && rind == 1 ? Length(n.Input[1]) : null);
                return;
            case "ReduceSum" or "ReduceMean" or "ReduceMax" or "ReduceMin" or "ReduceProd" or "ReduceSumSquare" or "ReduceL2"
                or "ReduceLogSumExp" or "ArgMax" or "ArgMin":
            {
                if (R(0) is not { } r) return;
                var keep = AttrInt(n, "keepdims", 1) != 0;
                if (keep) { Set(output, r); return; }
                if (n.OpType is "ArgMax" or "ArgMin") { Set(output, r - 1); return; }
                var axes = Axes(n);
                if (axes is null && n.Input.Count > 1 && n.Input[1].Length > 0) return;  // runtime axes
                Set(output, axes is null || axes.Length == 0 ? (AttrInt(n, "noop_with_empty_axes", 0) != 0 && axes is not null ? r : 0) : r - axes.Length);
                return;
            }
            case "Range":
                Set(output, 1);
                return;
            case "NonZero":
                Set(output, 2);
                return;
        }
    }
}
