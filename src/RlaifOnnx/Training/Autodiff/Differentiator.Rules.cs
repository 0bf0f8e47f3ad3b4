using Onnx;

namespace RlaifOnnx.Training.Autodiff;

/// <summary>The gradient rules too long to stand in the Apply switch: reductions, MatMul, Gemm and LayerNormalization.</summary>
sealed partial class Differentiator
{
    string ReduceGradient(NodeProto n, string dy)
    {
        var x = n.Input[0];
        var y = n.Output[0];
        var keepDims = AttrInt(n, "keepdims", 1) != 0;
        string? axes = n.Input.Count > 1 && n.Input[1].Length > 0 ? n.Input[1] : null;
        if (axes is null && AttrInts(n, "axes") is { } attrAxes) axes = g.Int64s(attrAxes);
        if (axes is not null && AttrInt(n, "noop_with_empty_axes", 0) == 0 && _ranks.ConstantInts(axes) is { Length: 0 })
            axes = null;  // empty axes without noop: all axes
        // dy with the reduced axes restored as size-1 dims, so it broadcasts against x.
        var dyKept = keepDims || axes is null ? dy : g.Op("Unsqueeze", [dy, axes]);
        var yKept = keepDims || axes is null ? y : g.Op("Unsqueeze", [y, axes]);
        switch (n.OpType)
        {
            case "ReduceSum":
                return g.Expand(dyKept, g.Shape(x));
            case "ReduceMean":
            {
                var count = g.Op("CastLike", [g.Div(g.Op("Size", [x]), g.Op("Size", [y])), dy]);
                return g.Div(g.Expand(dyKept, g.Shape(x)), count);
            }
            case "ReduceSumSquare":
                return g.Mul(g.Mul(g.Expand(dyKept, g.Shape(x)), x), Scalar(2));
            case "ReduceLogSumExp":
            {
                // dx = dy · exp(x − y) = dy · softmax(x) over the reduced axes: over the last axis alone one
                // Softmax node (one pass over x) instead of Sub and Exp.
                var rank = RankOf(x, n);
                var lastAxisOnly = axes is not null && _ranks.ConstantInts(axes) is [var a] && (a == -1 || a == rank - 1);
                var weights = lastAxisOnly ? g.Softmax(x, -1) : g.Exp(g.Sub(x, yKept));
                return g.Mul(weights, dyKept);
            }
            default:
            {
                // Max/Min: the gradient goes to the extreme elements, shared equally among ties.
                var isExtreme = g.Op("CastLike", [g.Equal(x, yKept), dy]);
                var ties = axes is null ? g.Op("ReduceSum", [isExtreme], ("keepdims", 1)) : g.Op("ReduceSum", [isExtreme, axes], ("keepdims", 1));
                return g.Div(g.Mul(isExtreme, dyKept), ties);
            }
        }
    }

    void MatMulGradient(NodeProto n, string dy)
    {
        var a = n.Input[0];
        var b = n.Input[1];
        var rankA = RankOf(a, n);
        var rankB = RankOf(b, n);
        if (rankA == 1 || rankB == 1)
        {
            // numpy rules: a 1-D operand is promoted to a matrix and the added axis removed from the result.
            var a2 = rankA == 1 ? g.Unsqueeze(a, 0) : a;
            var b2 = rankB == 1 ? g.Unsqueeze(b, 1) : b;
            var dy2 = dy;
            if (rankA == 1) dy2 = g.Unsqueeze(dy2, rankB == 1 ? 0 : -2);
            if (rankB == 1) dy2 = g.Unsqueeze(dy2, -1);
            var ra = Math.Max(rankA, 2);
            var rb = Math.Max(rankB, 2);
            if (Needs(a)) Contribute(a, ReshapeLike(ReduceTo(g.MatMul(dy2, TransposeLast2(b2, rb)), a2), a));
            if (Needs(b)) Contribute(b, ReshapeLike(ReduceTo(g.MatMul(TransposeLast2(a2, ra), dy2), b2), b));
            return;
        }
        if (rankB == 2)
        {
            // The common linear layer [..., K] · [K, N]: fold the batch axes so both gradients are one Gemm.
            var dyFlat = Flatten2(dy);                                          // [M, N]
            if (Needs(a)) Contribute(a, g.Reshape(g.Op("Gemm", [dyFlat, b], ("transB", 1L)), g.Shape(a)));
            if (Needs(b))
            {
                var aFlat = rankA == 2 ? a : Flatten2(a);                       // [M, K]
                Contribute(b, g.Op("Gemm", [aFlat, dyFlat], ("transA", 1L)));
            }
            return;
        }
        // dy·bᵀ and aᵀ·dy have y's batch axes and a's (b's) matrix axes.
        Dim?[]? Batched(string operand) => _shapes.Of(n.Output[0]) is { } y && _shapes.Of(operand) is { Length: >= 2 } o ? [.. y[..^2], o[^2], o[^1]] : null;
        if (Needs(a)) Contribute(a, ReduceTo(g.MatMul(dy, TransposeLast2(b, rankB)), a, Batched(a)));
        if (Needs(b)) Contribute(b, ReduceTo(g.MatMul(TransposeLast2(a, rankA), dy), b, Batched(b)));
    }

    void GemmGradient(NodeProto n, string dy)
    {
        // y = alpha · op(a) · op(b) + beta · c
        var (a, b) = (n.Input[0], n.Input[1]);
        var alpha = n.Attribute.FirstOrDefault(x => x.Name == "alpha")?.F ?? 1f;
        var beta = n.Attribute.FirstOrDefault(x => x.Name == "beta")?.F ?? 1f;
        var transA = AttrInt(n, "transA", 0) != 0;
        var transB = AttrInt(n, "transB", 0) != 0;
        (string Name, object Value)[] Attrs(bool ta, bool tb) => [("alpha", alpha), ("transA", ta ? 1L : 0L), ("transB", tb ? 1L : 0L)];
        if (Needs(a))
            Contribute(a, transA
                ? g.Op("Gemm", [b, dy], Attrs(transB, true))      // da = alpha · op(b) · dyᵀ
                : g.Op("Gemm", [dy, b], Attrs(false, !transB)));  // da = alpha · dy · op(b)ᵀ
        if (Needs(b))
            Contribute(b, transB
                ? g.Op("Gemm", [dy, a], Attrs(true, transA))      // db = alpha · dyᵀ · op(a)
                : g.Op("Gemm", [a, dy], Attrs(!transA, false)));  // db = alpha · op(a)ᵀ · dy
        if (n.Input.Count > 2 && Needs(n.Input[2]))
            Contribute(n.Input[2], ReduceTo(beta == 1f ? dy : g.Mul(dy, Scalar(beta)), n.Input[2], n.Output[0]));
    }

    void RmsNormGradient(NodeProto n, string dy)
    {
        // y = x̂ · w, x̂ = x · r, r = (mean(x², last axis) + eps)^(−1/2) (ONNX Runtime's SimplifiedLayerNormalization).
        if (n.Output.Skip(1).Any(o => o.Length > 0 && _requiresGrad.Contains(o) && HasGradient(o)))
            throw new NotSupportedException($"{Describe(n)}: gradients through the InvStdDev output are not supported");
        var x = n.Input[0];
        var w = n.Input[1];
        var rank = RankOf(x, n);
        var axis = AttrInt(n, "axis", -1);
        if (axis != -1 && axis != rank - 1) throw new NotSupportedException($"{Describe(n)}: only the last axis is differentiated");
        var eps = n.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f;
        // r from one read of x (ReduceSumSquare writes only [.., 1]); the same float epsilon as the forward.
        var width = g.Op("CastLike", [AxisLength(x, -1), dy]);
        var meanSquare = g.Div(g.Op("ReduceSumSquare", [x, g.Int64s(-1)], ("keepdims", 1L)), width);
        var r = g.Reciprocal(g.Sqrt(g.Add(meanSquare, Scalar(eps))));                              // [.., 1]
        var xHat = g.Mul(x, r);
        if (Needs(x))
        {
            // dx = r · (ĝ − x̂ · mean(ĝ · x̂)), ĝ = dy · w
            var gHat = g.Mul(dy, w);
            var dot = g.Div(g.ReduceSum(g.Mul(gHat, xHat), [-1]), width);                            // [.., 1]
            Contribute(x, g.Mul(g.Sub(gHat, g.Mul(xHat, dot)), r));
        }
        if (Needs(w)) Contribute(w, ReduceTo(g.Mul(dy, xHat), w, n.Output[0]));
        if (n.Input.Count > 2 && Needs(n.Input[2])) throw new NotSupportedException($"{Describe(n)}: a bias input is not differentiated");
    }

    void LayerNormGradient(NodeProto n, string dy)
    {
        // y = x̂ · scale + bias, x̂ = (x − μ) / σ over the axes from `axis` on (ONNX LayerNormalization, opset 17).
        if (n.Output.Skip(1).Any(o => o.Length > 0 && _requiresGrad.Contains(o) && HasGradient(o)))
            throw new NotSupportedException($"{Describe(n)}: gradients through the Mean/InvStdDev outputs are not supported");
        var x = n.Input[0];
        var scale = n.Input[1];
        var axis = AttrInt(n, "axis", -1);
        var eps = n.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f;
        var rank = RankOf(x, n);
        if (axis < 0) axis += rank;
        var axes = Enumerable.Range((int)axis, rank - (int)axis).Select(i => (long)i).ToArray();
        var mean = g.ReduceMean(x, axes);
        var centered = g.Sub(x, mean);
        var variance = g.ReduceMean(g.Mul(centered, centered), axes);
        var invStd = g.Reciprocal(g.Sqrt(g.Add(variance, Scalar(eps))));
        var xHat = g.Mul(centered, invStd);
        if (Needs(x))
        {
            // dx = invStd · (g − mean(g) − x̂ · mean(g · x̂)), g = dy · scale
            var gHat = g.Mul(dy, scale);
            var dx = g.Mul(invStd, g.Sub(g.Sub(gHat, g.ReduceMean(gHat, axes)), g.Mul(xHat, g.ReduceMean(g.Mul(gHat, xHat), axes))));
            Contribute(x, dx);
        }
        if (Needs(scale)) Contribute(scale, ReduceTo(g.Mul(dy, xHat), scale, n.Output[0]));
        if (n.Input.Count > 2 && Needs(n.Input[2])) Contribute(n.Input[2], ReduceTo(dy, n.Input[2], n.Output[0]));
    }
}
