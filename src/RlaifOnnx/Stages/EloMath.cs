namespace RlaifOnnx.Stages;

/// <summary>
/// The arithmetic of the evaluation stage (Constitutional AI paper §4.3 reports harmlessness and
/// helpfulness as Elo scores fitted to pairwise comparisons): mean and standard error, win rates with
/// ties counted half, win-count matrices, and the Bradley–Terry maximum-likelihood fit whose strengths
/// become Elo scores. Pure functions, tested with literal numbers.
/// </summary>
public static class EloMath
{
    /// <summary>The arithmetic mean; NaN for no values.</summary>
    public static double Mean(IReadOnlyList<double> values)
    {
        if (values.Count == 0) return double.NaN;
        var sum = 0.0;
        foreach (var v in values) sum += v;
        return sum / values.Count;
    }

    /// <summary>Standard error of the mean: sample standard deviation (n − 1 in the denominator) over √n; NaN for fewer than two values.</summary>
    public static double StandardError(IReadOnlyList<double> values)
    {
        if (values.Count < 2) return double.NaN;
        var mean = Mean(values);
        var squares = 0.0;
        foreach (var v in values) squares += (v - mean) * (v - mean);
        return Math.Sqrt(squares / (values.Count - 1)) / Math.Sqrt(values.Count);
    }

    /// <summary>
    /// Share of items where <paramref name="mine"/> is higher than <paramref name="theirs"/>, a tie counting
    /// half: the win rate of one policy against another by reward on the same prompts. NaN for no items.
    /// </summary>
    public static double WinRate(IReadOnlyList<double> mine, IReadOnlyList<double> theirs)
    {
        if (mine.Count != theirs.Count) throw new ArgumentException($"{mine.Count} values against {theirs.Count}");
        if (mine.Count == 0) return double.NaN;
        var wins = 0.0;
        for (var i = 0; i < mine.Count; i++) wins += Outcome(mine[i], theirs[i]);
        return wins / mine.Count;
    }

    /// <summary>1 when a beats b, 0 when it loses, ½ for a tie.</summary>
    public static double Outcome(double a, double b) => a > b ? 1.0 : a < b ? 0.0 : 0.5;

    /// <summary>
    /// wins[i, j] = how often player i beat player j, from per-item scores scoresPI[player][item] (each item
    /// compared between every two players; ties half to each). wins[i, j] + wins[j, i] = items.
    /// </summary>
    public static double[,] WinCounts(IReadOnlyList<IReadOnlyList<double>> scoresPI)
    {
        var n = scoresPI.Count;
        var wins = new double[n, n];
        for (var i = 0; i < n; i++)
            for (var j = 0; j < n; j++)
                if (i != j)
                    for (var k = 0; k < scoresPI[i].Count; k++) wins[i, j] += Outcome(scoresPI[i][k], scoresPI[j][k]);
        return wins;
    }

    /// <summary>
    /// Bradley–Terry strengths π (P(i beats j) = πᵢ / (πᵢ + πⱼ)) by maximum likelihood, with Zermelo's
    /// iteration (Hunter 2004, "MM algorithms for generalized Bradley–Terry models", eq. 3):
    /// πᵢ ← Wᵢ / Σⱼ nᵢⱼ / (πᵢ + πⱼ), Wᵢ = Σⱼ wᵢⱼ, nᵢⱼ = wᵢⱼ + wⱼᵢ; scaled so π₀ = 1. Win counts may be
    /// fractional (ties as halves, soft judgments as probabilities). <paramref name="prior"/> pseudo-wins are
    /// added to each side of every pair first. Without one, the maximum exists only when every player can
    /// be reached from every other along "beat at least once" edges (Hunter's assumption 1); otherwise
    /// (someone won or lost everything) it returns null, as some strength would be 0 or infinite.
    /// </summary>
    public static double[]? BradleyTerry(double[,] wins, double prior = 0, int maxIterations = 100_000, double tolerance = 1e-13)
    {
        var n = wins.GetLength(0);
        if (wins.GetLength(1) != n) throw new ArgumentException("the win matrix must be square");
        if (prior < 0) throw new ArgumentOutOfRangeException(nameof(prior), "must be 0 or more");
        var w = new double[n, n];
        for (var i = 0; i < n; i++)
            for (var j = 0; j < n; j++)
                w[i, j] = i == j ? 0 : wins[i, j] + prior;
        if (!StronglyConnected(w)) return null;
        if (n == 1) return [1.0]; // nothing to compare: the reference player alone

        var strengths = Enumerable.Repeat(1.0, n).ToArray();
        var next = new double[n];
        for (var iteration = 0; iteration < maxIterations; iteration++)
        {
            for (var i = 0; i < n; i++)
            {
                double won = 0, denominator = 0;
                for (var j = 0; j < n; j++)
                {
                    if (i == j) continue;
                    won += w[i, j];
                    denominator += (w[i, j] + w[j, i]) / (strengths[i] + strengths[j]);
                }
                next[i] = won / denominator;
            }
            var scale = next[0];
            var change = 0.0;
            for (var i = 0; i < n; i++)
            {
                next[i] /= scale;
                change = Math.Max(change, Math.Abs(Math.Log(next[i] / strengths[i])));
            }
            (strengths, next) = (next, strengths);
            if (change < tolerance) break;
        }
        return strengths;
    }

    /// <summary>Elo scores from Bradley–Terry strengths, relative to the first player: 400·log₁₀(πᵢ / π₀).</summary>
    public static double[] Elo(IReadOnlyList<double> strengths) =>
        strengths.Select(s => 400 * Math.Log10(s / strengths[0])).ToArray();

    /// <summary>The paper's reading of an Elo difference Δ: P(win) = 1 / (1 + 10^(−Δ/400)).</summary>
    public static double WinProbability(double eloDifference) => 1 / (1 + Math.Pow(10, -eloDifference / 400));

    /// <summary>True when every player reaches every other along edges i → j with wins[i, j] > 0 (one player counts as connected).</summary>
    static bool StronglyConnected(double[,] wins)
    {
        var n = wins.GetLength(0);
        var reach = new bool[n, n];
        for (var i = 0; i < n; i++)
            for (var j = 0; j < n; j++)
                reach[i, j] = i == j || wins[i, j] > 0;
        // Warshall's transitive closure: a handful of policies, so n³ is nothing.
        for (var k = 0; k < n; k++)
            for (var i = 0; i < n; i++)
                for (var j = 0; j < n; j++)
                    reach[i, j] |= reach[i, k] && reach[k, j];
        foreach (var r in reach) if (!r) return false;
        return true;
    }
}
