using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Training.Autodiff;

/// <summary>
/// The backward pass over one graph: which values require gradients, and one gradient rule per
/// operator (the <see cref="Apply"/> switch). Each rule reads the upstream gradients of the node's
/// outputs and adds a contribution to each differentiable input; <see cref="ReduceTo(string, string, string?)"/> undoes
/// numpy-style broadcasting by summing over the broadcast axes (known from <see cref="SymbolicShapes"/> when the
/// graph fixes them, found at run time otherwise) and reshaping.
/// </summary>
sealed partial class Differentiator(GraphBuilder g, DataType floatType)
{
    readonly RankInference _ranks = new(g.Graph);
    readonly SymbolicShapes _shapes = new(g.Graph);
    readonly HashSet<string> _requiresGrad = new();
    readonly Dictionary<string, List<string>> _contributions = new();
    /// <summary>Sparse contributions: dy [.., 1] added at one index per row along the last axis (see <see cref="ContributePick"/>).</summary>
    readonly Dictionary<string, List<(string Indices, string Updates)>> _picks = new();
    /// <summary>Rows added into a value viewed as [rows, R] (an embedding's gradient, see <see cref="ContributeRows"/>).</summary>
    readonly Dictionary<string, List<(string Indices, string Updates)>> _rows = new();
    readonly Dictionary<string, string> _summed = new();
    readonly Dictionary<string, NodeProto> _producers = new();

    /// <summary>Operators whose outputs carry no gradient (integers, booleans, shapes, piecewise-constant functions).</summary>
    static readonly HashSet<string> NonDifferentiable =
    [
        "Shape", "Size", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor",
        "ArgMax", "ArgMin", "NonZero", "IsNaN", "IsInf", "ConstantOfShape", "Range", "EyeLike", "Floor", "Ceil",
        "Round", "Sign", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
    ];

    /// <summary>Emits the backward nodes; returns, per trainable input, the value holding its gradient.</summary>
    public Dictionary<string, string> Run(string loss, IReadOnlyList<string> trainable, IReadOnlyList<string>? computeFirst = null)
    {
        var nodes = g.Graph.Node.ToList();
        foreach (var n in nodes) foreach (var o in n.Output) _producers[o] = n;
        foreach (var t in trainable) _requiresGrad.Add(t);
        foreach (var n in nodes)
        {
            if (NonDifferentiable.Contains(n.OpType) || n.OpType == "Constant") continue;
            if (n.OpType == "Cast" && !IsFloat((DataType)AttrInt(n, "to", 0))) continue;
            if (n.Input.Any(_requiresGrad.Contains))
                foreach (var o in n.Output) _requiresGrad.Add(o);
        }

        var result = new Dictionary<string, string>();
        if (_requiresGrad.Contains(loss))
        {
            // d loss / d loss = 1, shaped like the loss; the backward pass starts once computeFirst are computed (the metrics:
            // else ONNX Runtime may compute them last and keep what they read, [.., V] log-probs for an entropy, alive throughout).
            var seed = ConstantOfShape(g.Shape(loss), 1.0);
            foreach (var value in computeFirst ?? []) seed = Recompute.After(g, seed, value);
            Contribute(loss, seed);
            for (var i = nodes.Count - 1; i >= 0; i--)
            {
                var n = nodes[i];
                if (!n.Output.Any(o => _requiresGrad.Contains(o) && HasGradient(o))) continue;
                // Backward nodes carry their forward node's scope (after the "∂/" prefix), so a profile sums them by region.
                g.Scope = ScopeOf(n.Name);
                if (TryLogSoftmaxOfPicks(n)) continue;
                var dys = n.Output.Select(o => HasGradient(o) ? Gradient(o) : null).ToArray();
                Apply(n, dys);
            }
        }
        g.Scope = "";
        foreach (var t in trainable)
            result[t] = HasGradient(t) ? Gradient(t) : ZerosLike(t);
        return result;
    }

    /// <summary>The total gradient of <paramref name="value"/> once <see cref="Run"/> has summed it (null when it has none).</summary>
    public string? SummedGradient(string value) => _summed.GetValueOrDefault(value);

    /// <summary>A node name's scope: everything up to its last '/' ("layer3/mlp/MatMul_2" → "layer3/mlp/"), without a leading "∂/".</summary>
    internal static string ScopeOf(string nodeName)
    {
        var name = nodeName.StartsWith("∂/", StringComparison.Ordinal) ? nodeName[2..] : nodeName;
        var slash = name.LastIndexOf('/');
        return slash < 0 ? "" : name[..(slash + 1)];
    }

    static bool IsFloat(DataType t) => t is DataType.Float or DataType.Double or DataType.Float16 or DataType.Bfloat16;

    static long AttrInt(NodeProto n, string name, long fallback)
        => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;

    static long[]? AttrInts(NodeProto n, string name)
        => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.Ints.ToArray() : null;

    int RankOf(string value, NodeProto n)
        => _ranks.Rank(value) ?? throw new NotSupportedException(
            $"node '{n.Name}' ({n.OpType}): the rank of '{value}' is not known statically, which its gradient rule needs");

    static string Describe(NodeProto n) => $"node '{n.Name}' ({n.OpType}, output '{n.Output.FirstOrDefault()}')";

    // ---- small emitters ---------------------------------------------------------------------

    string Scalar(double v) => g.Scalar(v);

    string ConstantOfShape(string shape, double value)
    {
        var t = new TensorProto { DataType = (int)floatType };
        t.Dims.Add(1);
        if (floatType == DataType.Double) t.DoubleData.Add(value); else t.FloatData.Add((float)value);
        return g.Op("ConstantOfShape", [shape], ("value", t));
    }

    string ZerosLike(string x) => ConstantOfShape(g.Shape(x), 0.0);

    /// <summary>The length of one axis as a 1-D int64 tensor [1].</summary>
    string AxisLength(string x, long axis)
    {
        // A constant where the graph fixes it: a Shape node would keep x (e.g. [.., V] log-probs) alive until it runs.
        if (_shapes.Of(x) is { } dims && (axis < 0 ? dims.Length + axis : axis) is var a && a >= 0 && a < dims.Length && dims[a] is { IsLiteral: true } d)
            return g.Int64s(d.Coefficient);
        return axis == -1 ? g.Op("Shape", [x], ("start", -1L)) : g.Shape(x, axis, axis + 1);
    }

    /// <summary>Sums <paramref name="dy"/> over the axes along which <paramref name="x"/> was broadcast, then reshapes to x's shape.</summary>
    string ReduceTo(string dy, string x, string? dyShapeOf = null) => ReduceTo(dy, x, dyShapeOf is null ? null : _shapes.Of(dyShapeOf));

    /// <summary><see cref="ReduceTo(string, string, string?)"/> with dy's shape given as far as it is known.</summary>
    string ReduceTo(string dy, string x, Dim?[]? dyShape)
    {
        // At build time when the shapes say which axes were broadcast: nothing at all for equal shapes, a
        // ReduceSum over constant axes otherwise (ONNX Runtime runs a ReduceSum over no axes as a full copy).
        if (_shapes.BroadcastAxes(x, dyShape) is { } staticAxes)
        {
            var reduced = staticAxes.Length == 0 ? dy : g.Op("ReduceSum", [dy, g.Int64s(staticAxes)], ("keepdims", 1L));
            return _shapes.Of(x)!.Length == dyShape!.Length ? reduced : g.Reshape(reduced, g.Shape(x));
        }
        var shapeY = g.Shape(dy);
        var shapeX = g.Shape(x);
        // Pad x's shape with leading ones to dy's rank, then reduce where the two differ.
        var ones = g.Op("ConstantOfShape", [g.Sub(g.Shape(shapeY), g.Shape(shapeX))], ("value", Int64Tensor(1)));
        var paddedX = g.Concat(0, ones, shapeX);
        var axes = g.Reshape(g.Op("NonZero", [g.Not(g.Equal(paddedX, shapeY))]), -1);
        var summed = g.Op("ReduceSum", [dy, axes], ("keepdims", 1), ("noop_with_empty_axes", 1));
        return g.Reshape(summed, shapeX);
    }

    static TensorProto Int64Tensor(long v)
    {
        var t = new TensorProto { DataType = (int)DataType.Int64 };
        t.Dims.Add(1);
        t.Int64Data.Add(v);
        return t;
    }

    string ReshapeLike(string dy, string x) => g.Reshape(dy, g.Shape(x));

    /// <summary>Transposes the last two axes of a value of rank <paramref name="rank"/>.</summary>
    string TransposeLast2(string x, int rank)
    {
        var perm = Enumerable.Range(0, rank).Select(i => (long)i).ToArray();
        (perm[rank - 2], perm[rank - 1]) = (perm[rank - 1], perm[rank - 2]);
        return g.Transpose(x, perm);
    }

    /// <summary>Reshapes to 2-D [-1, last axis].</summary>
    string Flatten2(string x) => g.Reshape(x, g.Concat(0, g.Int64s(-1), AxisLength(x, -1)));

    // ---- the rules ----------------------------------------------------------------------------

    void Apply(NodeProto n, string?[] dys)
    {
        string In(int i) => n.Input[i];
        string Out(int i) => n.Output[i];
        string Dy(int i) => dys[i] ?? ZerosLike(n.Output[i]);
        void To(int i, Func<string> grad) { if (i < n.Input.Count && Needs(In(i))) Contribute(In(i), grad()); }

        switch (n.OpType)
        {
            case "Identity":
                To(0, () => Dy(0));
                break;
            case "Add":
                To(0, () => ReduceTo(Dy(0), In(0), Out(0)));
                To(1, () => ReduceTo(Dy(0), In(1), Out(0)));
                break;
            case "Sub":
                To(0, () => ReduceTo(Dy(0), In(0), Out(0)));
                To(1, () => ReduceTo(g.Neg(Dy(0)), In(1), Out(0)));
                break;
            case "Sum":
                for (var i = 0; i < n.Input.Count; i++) { var k = i; To(k, () => ReduceTo(Dy(0), In(k), Out(0))); }
                break;
            case "Mul":
                To(0, () => ReduceTo(g.Mul(Dy(0), In(1)), In(0), Out(0)));
                To(1, () => ReduceTo(g.Mul(Dy(0), In(0)), In(1), Out(0)));
                break;
            case "Div":
                // y = a / b: da = dy / b, db = -dy · y / b
                To(0, () => ReduceTo(g.Div(Dy(0), In(1)), In(0), Out(0)));
                To(1, () => ReduceTo(g.Neg(g.Div(g.Mul(Dy(0), Out(0)), In(1))), In(1), Out(0)));
                break;
            case "Pow":
            {
                // y = a^b: da = dy · b · a^(b-1), db = dy · y · ln a
                var b = g.Op("CastLike", [In(1), In(0)]);
                To(0, () => ReduceTo(g.Mul(Dy(0), g.Mul(b, g.Pow(In(0), g.Sub(b, Scalar(1))))), In(0), Out(0)));
                To(1, () => ReduceTo(g.Mul(Dy(0), g.Mul(Out(0), g.Log(In(0)))), In(1), Out(0)));
                break;
            }
            case "Neg":
                To(0, () => g.Neg(Dy(0)));
                break;
            case "Exp":
                To(0, () => g.Mul(Dy(0), Out(0)));
                break;
            case "Log":
                To(0, () => g.Div(Dy(0), In(0)));
                break;
            case "Sqrt":
                To(0, () => g.Div(g.Mul(Dy(0), Scalar(0.5)), Out(0)));
                break;
            case "Reciprocal":
                To(0, () => g.Neg(g.Mul(Dy(0), g.Mul(Out(0), Out(0)))));
                break;
            case "Sigmoid":
                To(0, () => g.Mul(Dy(0), g.Mul(Out(0), g.Sub(Scalar(1), Out(0)))));
                break;
            case "Tanh":
                To(0, () => g.Mul(Dy(0), g.Sub(Scalar(1), g.Mul(Out(0), Out(0)))));
                break;
            case "Erf":
                // d erf(x)/dx = 2/√π · exp(-x²)
                To(0, () => g.Mul(Dy(0), g.Mul(Scalar(2 / Math.Sqrt(Math.PI)), g.Exp(g.Neg(g.Mul(In(0), In(0)))))));
                break;
            case "Relu":
                To(0, () => g.Where(g.Greater(In(0), Scalar(0)), Dy(0), Scalar(0)));
                break;
            case "Abs":
                To(0, () => g.Mul(Dy(0), g.Op("Sign", [In(0)])));
                break;
            case "Softplus":
                To(0, () => g.Mul(Dy(0), g.Sigmoid(In(0))));
                break;
            case "Clip":
            {
                if ((n.Input.Count > 1 && Needs(In(1))) || (n.Input.Count > 2 && Needs(In(2))))
                    throw new NotSupportedException($"{Describe(n)}: gradients through Clip's bounds are not supported");
                To(0, () =>
                {
                    string? inside = null;
                    if (n.Input.Count > 1 && In(1).Length > 0) inside = g.Op("GreaterOrEqual", [In(0), In(1)]);
                    if (n.Input.Count > 2 && In(2).Length > 0)
                    {
                        var below = g.Op("LessOrEqual", [In(0), In(2)]);
                        inside = inside is null ? below : g.And(inside, below);
                    }
                    return inside is null ? Dy(0) : g.Where(inside, Dy(0), Scalar(0));
                });
                break;
            }
            case "Max" or "Min":
            {
                if (n.Input.Count != 2) throw new NotSupportedException($"{Describe(n)}: only two-input {n.OpType} is differentiated");
                // Ties send the gradient to the first input.
                var firstWins = g.Op(n.OpType == "Max" ? "GreaterOrEqual" : "LessOrEqual", [In(0), In(1)]);
                To(0, () => ReduceTo(g.Where(firstWins, Dy(0), Scalar(0)), In(0), Out(0)));
                To(1, () => ReduceTo(g.Where(firstWins, Scalar(0), Dy(0)), In(1), Out(0)));
                break;
            }
            case "Where":
                To(1, () => ReduceTo(g.Where(In(0), Dy(0), Scalar(0)), In(1), Out(0)));
                To(2, () => ReduceTo(g.Where(In(0), Scalar(0), Dy(0)), In(2), Out(0)));
                break;
            case "Cast" or "CastLike":
                To(0, () => g.Op("CastLike", [Dy(0), In(0)]));
                break;
            case "Softmax":
            {
                // dx = y · (dy − Σ_axis dy·y)
                var axis = AttrInt(n, "axis", -1);
                To(0, () => g.Mul(Out(0), g.Sub(Dy(0), g.ReduceSum(g.Mul(Dy(0), Out(0)), [axis]))));
                break;
            }
            case "LogSoftmax":
            {
                // dx = dy − softmax(x) · Σ_axis dy
                var axis = AttrInt(n, "axis", -1);
                To(0, () => g.Sub(Dy(0), g.Mul(g.Exp(Out(0)), g.ReduceSum(Dy(0), [axis]))));
                break;
            }
            case "ReduceSum" or "ReduceMean" or "ReduceMax" or "ReduceMin" or "ReduceSumSquare" or "ReduceLogSumExp":
                To(0, () => ReduceGradient(n, Dy(0)));
                break;
            case "MatMul":
                MatMulGradient(n, Dy(0));
                break;
            case "Gemm":
                GemmGradient(n, Dy(0));
                break;
            case "Transpose":
            {
                var perm = AttrInts(n, "perm");
                if (perm is null) { To(0, () => g.Op("Transpose", [Dy(0)])); break; }
                var inverse = new long[perm.Length];
                for (var i = 0; i < perm.Length; i++) inverse[perm[i]] = i;
                To(0, () => g.Transpose(Dy(0), inverse));
                break;
            }
            case "Reshape" or "Squeeze" or "Unsqueeze" or "Flatten":
                To(0, () => ReshapeLike(Dy(0), In(0)));
                break;
            case "Expand":
                To(0, () => ReduceTo(Dy(0), In(0), Out(0)));
                break;
            case "Concat":
            {
                var axis = AttrInt(n, "axis", 0);
                var start = g.Int64s(0);
                for (var i = 0; i < n.Input.Count; i++)
                {
                    var length = AxisLength(In(i), axis);
                    var end = g.Add(start, length);
                    var (s, e, k) = (start, end, i);
                    To(k, () => g.Slice(Dy(0), s, e, g.Int64s(axis)));
                    start = end;
                }
                break;
            }
            case "Split":
            {
                var axis = (int)AttrInt(n, "axis", 0);
                To(0, () => g.Concat(axis, Enumerable.Range(0, n.Output.Count).Select(Dy).ToArray()));
                break;
            }
            case "Slice":
                To(0, () =>
                {
                    if (UnitStepPads(n) is { } pads)
                        return g.Op("Pad", [Dy(0), pads, "", In(3)]);
                    // Slice the flat positions of x with the node's own starts/ends/axes/steps, then scatter dy there:
                    // exact for negative indices, clamping and negative steps because Slice itself computes them.
                    var positions = g.Op("Slice", [PositionsOf(In(0)), .. n.Input.Skip(1)]);
                    return ScatterFlat(In(0), positions, Dy(0), reduce: false);
                });
                break;
            case "Gather":
            {
                var axis = AttrInt(n, "axis", 0);
                if (axis == 0)
                {
                    if (Needs(In(0)))
                    {
                        // Embedding rows: dy's rows added into the rows they were read from, as ScatterElements with
                        // reduction="add" over data viewed as [rows, R] (indices made non-negative first). Not ScatterND:
                        // ONNX Runtime runs ScatterND's reduction on several threads without atomics, so repeated ids
                        // (every batch has them) lose updates at random (microsoft/onnxruntime#23396); its
                        // ScatterElements adds in index order on one thread, exact and the same on every run.
                        var shape = g.Shape(In(0));
                        var rows = g.Gather(shape, g.Int64Scalar(0));
                        var idx = g.Op("Cast", [In(1)], ("to", (int)DataType.Int64));
                        idx = g.Where(g.Less(idx, g.Int64Scalar(0)), g.Add(idx, rows), idx);
                        var rowLength = g.Op("ReduceProd", [g.Op("Shape", [In(0)], ("start", 1L))], ("keepdims", 1L));   // [1]: R
                        var updates = g.Reshape(Dy(0), g.Concat(0, g.Int64s(-1), rowLength));               // [N, R]
                        var indices = g.Expand(g.Reshape(idx, -1, 1), g.Shape(updates));                     // [N, R]
                        ContributeRows(In(0), indices, updates);
                    }
                }
                else
                    To(0, () =>
                    {
                        var positions = g.Op("Gather", [PositionsOf(In(0)), In(1)], ("axis", axis));
                        return ScatterFlat(In(0), positions, Dy(0), reduce: true);
                    });
                break;
            }
            case "GatherElements":
            {
                var axis = AttrInt(n, "axis", 0);
                if (OneIndexAlongLastAxis(n))
                {
                    // One index per row along the last axis (a token's log-prob picked from its vocabulary row): dx is
                    // dy at the picked position and zero elsewhere, kept sparse (see ContributePick).
                    if (Needs(In(0)))
                    {
                        var length = AxisLength(In(0), -1);                                                 // [1]
                        var idx = g.Op("Cast", [In(1)], ("to", (int)DataType.Int64));                       // [.., 1]
                        idx = g.Where(g.Less(idx, g.Int64Scalar(0)), g.Add(idx, length), idx);
                        ContributePick(In(0), idx, Dy(0));
                    }
                }
                else
                    To(0, () => g.Op("ScatterElements", [ZerosLike(In(0)), In(1), Dy(0)], ("axis", axis), ("reduction", "add")));
                break;
            }
            case "Trilu":
                To(0, () => g.Op("Trilu", [Dy(0), .. n.Input.Skip(1)], ("upper", AttrInt(n, "upper", 1))));
                break;
            case "LayerNormalization":
                LayerNormGradient(n, Dy(0));
                break;
            case "SimplifiedLayerNormalization":
                RmsNormGradient(n, Dy(0));
                break;
            default:
                throw new NotSupportedException($"{Describe(n)} lies on the gradient path but operator {n.OpType} has no gradient rule");
        }
    }

    /// <summary>
    /// True when a GatherElements reads along the last axis with indices that have length 1 there, known from
    /// the graph: the indices are an Unsqueeze onto that axis (as <c>Losses.TokenLogProbs</c> builds them).
    /// </summary>
    bool OneIndexAlongLastAxis(NodeProto n)
    {
        if (_ranks.Rank(n.Input[0]) is not { } rank) return false;
        var axis = AttrInt(n, "axis", 0);
        if (axis != -1 && axis != rank - 1) return false;
        if (!_producers.TryGetValue(n.Input[1], out var producer) || producer.OpType != "Unsqueeze") return false;
        var axes = producer.Input.Count > 1 ? _ranks.ConstantInts(producer.Input[1]) : AttrInts(producer, "axes");
        return axes is [var a] && (a == -1 || a == rank - 1);
    }

    /// <summary>
    /// For a Slice with explicit axes and unit steps: Pad's pads (zeros before and after the kept range on
    /// each sliced axis) computed at run time with Slice's own clamping rules, so dy is padded back to x's
    /// shape in one copy. Null when steps other than 1 may occur (the general scatter rule handles those).
    /// </summary>
    string? UnitStepPads(NodeProto n)
    {
        if (n.Input.Count < 4 || n.Input[3].Length == 0) return null;
        if (n.Input.Count > 4 && n.Input[4].Length > 0 && (_ranks.ConstantInts(n.Input[4]) is not { } steps || steps.Any(s => s != 1)))
            return null;
        var dims = g.Gather(g.Shape(n.Input[0]), n.Input[3]);                  // sliced axes' sizes
        var zero = g.Int64Scalar(0);
        string Clamp(string bound)
        {
            // Min first, so an "until the end" bound (INT64_MAX) is never added to anything.
            var capped = g.Op("Min", [bound, dims]);
            return g.Op("Max", [g.Where(g.Less(capped, zero), g.Add(capped, dims), capped), zero]);
        }
        var begin = Clamp(n.Input[1]);
        var end = g.Op("Max", [Clamp(n.Input[2]), begin]);
        return g.Concat(0, begin, g.Sub(dims, end));
    }

    /// <summary>int64 tensor shaped like x holding 0 … size(x)−1 (its row-major flat positions).</summary>
    string PositionsOf(string x)
        => g.Reshape(g.Range(g.Int64Scalar(0), g.Op("Size", [x]), g.Int64Scalar(1)), g.Shape(x));

    /// <summary>A tensor shaped like x, zero except dy added at the given flat positions.</summary>
    string ScatterFlat(string x, string positions, string dy, bool reduce)
    {
        var size = g.Reshape(g.Op("Size", [x]), 1);
        var zeros = ConstantOfShape(size, 0.0);
        var flatPositions = g.Reshape(positions, -1);
        var flatDy = g.Reshape(dy, -1);
        var scattered = reduce
            ? g.Op("ScatterElements", [zeros, flatPositions, flatDy], ("axis", 0L), ("reduction", "add"))
            : g.Op("ScatterElements", [zeros, flatPositions, flatDy], ("axis", 0L));
        return g.Reshape(scattered, g.Shape(x));
    }
}
