
namespace RlaifOnnx.Inference;

/// <summary>Log-probabilities from a logits row, in float64.</summary>
public sealed partial class OrtScorer
{
    /// <summary>log softmax(row)[token], in float64: row[token] − logsumexp(row).</summary>
    internal static double LogSoftmaxAt(ReadOnlySpan<float> row, int token) => row[token] - LogSumExp(row);

    internal static double LogSumExp(ReadOnlySpan<float> row)
    {
        double max = double.NegativeInfinity;
        foreach (var x in row) if (x > max) max = x;
        double sum = 0;
        foreach (var x in row) sum += Math.Exp(x - max);
        return max + Math.Log(sum);
    }

    /// <summary>The <paramref name="k"/> largest log-probabilities of a logits row, most likely first (ties: lower id first).</summary>
    internal static IReadOnlyList<(int Id, double LogProb)> TopLogProbs(ReadOnlySpan<float> row, int k)
    {
        if (k <= 0) return [];
        var lse = LogSumExp(row);
        var best = new List<(int Id, double LogProb)>(k + 1);
        for (var v = 0; v < row.Length; v++)
        {
            var lp = row[v] - lse;
            if (best.Count == k && lp <= best[^1].LogProb) continue;
            var at = best.FindIndex(e => lp > e.LogProb);
            best.Insert(at < 0 ? best.Count : at, (v, lp));
            if (best.Count > k) best.RemoveAt(k);
        }
        return best;
    }
}
