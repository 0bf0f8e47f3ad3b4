using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace RlaifOnnx.Training.Autodiff;

/// <summary>
/// How the contributions to a value become its gradient: dense contributions summed once (a chain of Adds),
/// embedding rows and picked entries scattered into that sum rather than into zero tensors of their own,
/// and a LogSoftmax whose gradient is only picks differentiated without a dense gradient of its output.
/// </summary>
sealed partial class Differentiator
{
    bool Needs(string input) => input.Length > 0 && _requiresGrad.Contains(input);

    void Contribute(string value, string grad)
    {
        if (_summed.ContainsKey(value)) throw new InvalidOperationException($"gradient of '{value}' was read before all its contributions arrived");
        if (!_contributions.TryGetValue(value, out var list)) _contributions[value] = list = [];
        list.Add(grad);
    }

    bool HasGradient(string value) => _contributions.ContainsKey(value) || _picks.ContainsKey(value) || _rows.ContainsKey(value);

    /// <summary>
    /// A contribution that adds <paramref name="updates"/> [N, R] into the rows <paramref name="indices"/> [N, R]
    /// (non-negative, each row's index repeated along R) of the value viewed as [rows, R]: an embedding's
    /// gradient. Kept until the gradient is summed, where it is scattered into the other contributions (a tied
    /// LM head's) instead of into a zero tensor of the table's size that is then added to them.
    /// </summary>
    void ContributeRows(string value, string indices, string updates) => Defer(_rows, value, (indices, updates));

    /// <summary>
    /// A contribution that is zero except <paramref name="updates"/> [.., 1] at <paramref name="indices"/> [.., 1]
    /// (non-negative) along the last axis: a picked token's log-prob. Kept sparse until the gradient is summed,
    /// where it is added into the dense sum by ScatterElements (one update per row) instead of a one-hot
    /// tensor of the value's size and a Sum over it.
    /// </summary>
    void ContributePick(string value, string indices, string updates) => Defer(_picks, value, (indices, updates));

    /// <summary>Keeps a sparse contribution (pick or rows) until the value's gradient is summed.</summary>
    void Defer(Dictionary<string, List<(string Indices, string Updates)>> kept, string value, (string Indices, string Updates) contribution)
    {
        if (_summed.ContainsKey(value)) throw new InvalidOperationException($"gradient of '{value}' was read before all its contributions arrived");
        if (!kept.TryGetValue(value, out var list)) kept[value] = list = [];
        list.Add(contribution);
    }

    /// <summary>
    /// Σ of dense contributions as a chain of Adds, not one Sum: ONNX Runtime runs Add with its parallel element-wise
    /// kernel and Sum with a generic variadic one, ~10× slower (3 × [2048, 768]: 0.4 ms a pair against 5–15 ms).
    /// </summary>
    string AddAll(IReadOnlyList<string> terms) => terms.Skip(1).Aggregate(terms[0], (sum, next) => g.Add(sum, next));

    /// <summary>The total gradient of a value: its dense contributions summed once, its rows and then its picks scattered in.</summary>
    string Gradient(string value)
    {
        if (_summed.TryGetValue(value, out var s)) return s;
        var dense = _contributions.GetValueOrDefault(value) ?? [];
        var picks = _picks.GetValueOrDefault(value) ?? [];
        if (_rows.TryGetValue(value, out var rows))
        {
            // ONNX Runtime's ScatterElements adds in index order on one thread: exact, the same on every run.
            var others = dense.Count == 0 ? ZerosLike(value) : AddAll(dense);
            // A 2-D table (an embedding) is already [rows, R]: no Reshape, whose copy into the bound gradient
            // buffer ONNX Runtime would otherwise have to make (a graph output cannot alias an intermediate).
            var flat = _ranks.Rank(value) == 2;
            var table = flat ? others : g.Reshape(others, 0, -1);                                           // [rows, R]
            foreach (var (indices, updates) in rows)
                table = g.Op("ScatterElements", [table, indices, updates], ("axis", 0L), ("reduction", "add"));
            dense = [flat ? table : g.Reshape(table, g.Shape(value))];
        }
        var total = dense.Count switch
        {
            0 => OneHotTimes(value, picks[0].Indices, picks[0].Updates),
            1 => dense[0],
            _ => AddAll(dense),
        };
        foreach (var (indices, updates) in dense.Count == 0 ? picks.Skip(1) : picks)
            // ONNX Runtime's ScatterElements adds in index order on one thread: exact, and O(rows) here.
            total = g.Op("ScatterElements", [total, indices, updates], ("axis", -1L), ("reduction", "add"));
        _summed[value] = total;
        return total;
    }

    /// <summary>
    /// updates at the indices along the last axis, zero elsewhere, as one-hot · updates — element-wise and
    /// parallel, instead of a zero tensor plus ONNX Runtime's single-threaded ScatterElements over it. (OneHot
    /// and Mul: ONNX Runtime's Where broadcasting a [.., 1] operand, and Cast from bool, ran several times slower.)
    /// </summary>
    string OneHotTimes(string value, string indices, string updates)
    {
        // OneHot in float32 (ONNX Runtime has no float64 kernel), cast only in float64 graphs: ONNX
        // Runtime runs a float-to-float CastLike as a full copy of the [.., V] tensor.
        var offOn = new TensorProto { Name = g.Fresh("off_on"), DataType = (int)DataType.Float };
        offOn.Dims.Add(2);
        offOn.FloatData.Add([0f, 1f]);
        var oneHot = g.Op("OneHot", [g.Squeeze(indices, -1), AxisLength(value, -1), g.Initializer(offOn)], ("axis", -1L)); // [.., V]
        if (floatType != DataType.Float) oneHot = g.Op("CastLike", [oneHot, updates]);
        return g.Mul(oneHot, updates);
    }

    /// <summary>
    /// A LogSoftmax over the last axis whose output's gradient is only picks (a token's log-prob read per
    /// row, the causal-LM loss and PPO without an entropy term): dx = Σ picks − softmax(x) · Σ_row updates,
    /// with no dense one-hot gradient of the [.., V] output built first. softmax(x) is computed as
    /// Softmax of the output itself (log-softmax is softmax(x) shifted by a per-row constant, which Softmax
    /// cancels), so x — the logits — need not be kept for the backward pass.
    /// </summary>
    bool TryLogSoftmaxOfPicks(NodeProto n)
    {
        if (n.OpType != "LogSoftmax" || !Needs(n.Input[0])) return false;
        var y = n.Output[0];
        if (_contributions.ContainsKey(y) || !_picks.TryGetValue(y, out var picks)) return false;
        if (_ranks.Rank(y) is not { } rank || AttrInt(n, "axis", -1) is var axis && axis != -1 && axis != rank - 1) return false;
        var rowTotal = picks.Select(p => p.Updates).Aggregate((a, b) => g.Add(a, b));                 // [.., 1]
        var dx = g.Mul(g.Softmax(y, -1), g.Neg(rowTotal));                                            // [.., V]
        foreach (var (indices, updates) in picks)
            dx = g.Op("ScatterElements", [dx, indices, updates], ("axis", -1L), ("reduction", "add"));
        _summed[y] = dx;   // the output's gradient is consumed here; nothing else may read it
        Contribute(n.Input[0], dx);
        return true;
    }
}
