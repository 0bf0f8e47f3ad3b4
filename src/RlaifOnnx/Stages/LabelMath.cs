namespace RlaifOnnx.Stages;

/// <summary>One bin of a reliability diagram: predictions whose p_a fell in [Low, High).</summary>
public sealed record CalibrationBin(double Low, double High, int Count, double MeanPredicted, double FractionChoseA);

/// <summary>Expected calibration error and the bins it was computed from.</summary>
public sealed record Calibration(double ExpectedCalibrationError, IReadOnlyList<CalibrationBin> Bins);

/// <summary>
/// The arithmetic of AI feedback labels (paper §4.1), as small pure functions. Probabilities are always
/// "the probability that response a is the better one" (p_a), whatever order the options were shown in.
/// </summary>
public static class LabelMath
{
    /// <summary>
    /// The normalised probability of answer (A) against (B): the softmax of the two answer log-probs,
    /// 1 / (1 + exp(logProbB − logProbA)). Only the difference matters, so tokens shared by both answers
    /// (" (" and ")") cancel out.
    /// </summary>
    public static double ProbabilityOfFirst(double logProbA, double logProbB)
    {
        if (double.IsNegativeInfinity(logProbA) && double.IsNegativeInfinity(logProbB)) return 0.5;
        return 1.0 / (1.0 + Math.Exp(logProbB - logProbA));
    }

    /// <summary>
    /// Order averaging: <paramref name="pFirstWhenAFirst"/> is P("(A)") when response a is shown as (A);
    /// <paramref name="pFirstWhenBFirst"/> is P("(A)") when the order is swapped, so response a is (B) and
    /// its probability is 1 − that. The mean of the two removes a constant preference for a position.
    /// </summary>
    public static double AverageOrders(double pFirstWhenAFirst, double pFirstWhenBFirst) =>
        (pFirstWhenAFirst + (1.0 - pFirstWhenBFirst)) / 2.0;

    /// <summary>p_a read from the swapped order alone: response a was option (B).</summary>
    public static double FromSwappedOrder(double pFirstWhenBFirst) => 1.0 - pFirstWhenBFirst;

    /// <summary>Ensembling over principles: the mean of the per-principle probabilities (paper §4.1).</summary>
    public static double Ensemble(IReadOnlyList<double> perPrinciple)
    {
        if (perPrinciple.Count == 0) throw new ArgumentException("no probabilities to ensemble", nameof(perPrinciple));
        var sum = 0.0;
        foreach (var p in perPrinciple) sum += p;
        return sum / perPrinciple.Count;
    }

    /// <summary>
    /// Chain-of-thought labels are over-confident (nearly 0 or 1); the paper clamps them to 40–60 %
    /// (§4.2, "clamped CoT"), which made the preference model more robust.
    /// </summary>
    public static double Clamp(double p, double low = 0.4, double high = 0.6) => Math.Clamp(p, low, high);

    /// <summary>Which response a probability chooses: +1 for a, −1 for b, 0 for an exact tie.</summary>
    public static int Choice(double pA) => pA > 0.5 ? 1 : pA < 0.5 ? -1 : 0;

    /// <summary>
    /// Agreement with people: the fraction of comparisons where the label's choice matches the human
    /// choice (<paramref name="humanChoseA"/>). An exact tie counts half.
    /// </summary>
    public static double Agreement(IReadOnlyList<double> pA, IReadOnlyList<bool> humanChoseA)
    {
        Check(pA.Count, humanChoseA.Count);
        if (pA.Count == 0) return double.NaN;
        var score = 0.0;
        for (var i = 0; i < pA.Count; i++)
        {
            var c = Choice(pA[i]);
            score += c == 0 ? 0.5 : (c > 0) == humanChoseA[i] ? 1.0 : 0.0;
        }
        return score / pA.Count;
    }

    /// <summary>
    /// Position consistency: the fraction of comparisons where both orders choose the same response.
    /// Arguments are p_a as read from each order (the swapped one already converted with
    /// <see cref="FromSwappedOrder"/>). A tie in either order is not consistent.
    /// </summary>
    public static double PositionConsistency(IReadOnlyList<double> pAFromAFirst, IReadOnlyList<double> pAFromBFirst)
    {
        Check(pAFromAFirst.Count, pAFromBFirst.Count);
        if (pAFromAFirst.Count == 0) return double.NaN;
        var same = 0;
        for (var i = 0; i < pAFromAFirst.Count; i++)
        {
            var a = Choice(pAFromAFirst[i]);
            if (a != 0 && a == Choice(pAFromBFirst[i])) same++;
        }
        return (double)same / pAFromAFirst.Count;
    }

    /// <summary>
    /// Calibration against people: <paramref name="bins"/> equal-width bins of p_a over [0, 1] (p_a = 1 goes
    /// in the last bin); in each, the mean predicted p_a and the fraction of comparisons where people chose
    /// a. The expected calibration error is Σ_b (n_b / N) · |mean_b − fraction_b|. A perfectly calibrated
    /// labeller has points on the diagonal and ECE 0.
    /// </summary>
    public static Calibration Calibrate(IReadOnlyList<double> pA, IReadOnlyList<bool> humanChoseA, int bins = 10)
    {
        Check(pA.Count, humanChoseA.Count);
        if (bins < 1) throw new ArgumentOutOfRangeException(nameof(bins));
        var count = new int[bins];
        var sumP = new double[bins];
        var sumA = new double[bins];
        for (var i = 0; i < pA.Count; i++)
        {
            var b = Math.Min(bins - 1, Math.Max(0, (int)Math.Floor(pA[i] * bins)));
            count[b]++;
            sumP[b] += pA[i];
            if (humanChoseA[i]) sumA[b] += 1;
        }
        var result = new List<CalibrationBin>(bins);
        var ece = 0.0;
        for (var b = 0; b < bins; b++)
        {
            var mean = count[b] > 0 ? sumP[b] / count[b] : double.NaN;
            var fraction = count[b] > 0 ? sumA[b] / count[b] : double.NaN;
            result.Add(new CalibrationBin((double)b / bins, (double)(b + 1) / bins, count[b], mean, fraction));
            if (count[b] > 0) ece += (double)count[b] / pA.Count * Math.Abs(mean - fraction);
        }
        return new Calibration(pA.Count == 0 ? double.NaN : ece, result);
    }

    static void Check(int a, int b)
    {
        if (a != b) throw new ArgumentException($"lengths differ ({a} vs {b})");
    }
}
