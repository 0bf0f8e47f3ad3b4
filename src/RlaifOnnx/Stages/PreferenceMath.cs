namespace RlaifOnnx.Stages;

/// <summary>A preference model's figures over held-out comparisons (overall or for one source).</summary>
public sealed record PreferenceEvaluation(
    int Comparisons,
    double Accuracy,
    double Loss,
    double MeanAbsMargin,
    double? ExpectedCalibrationError);

/// <summary>
/// The arithmetic of preference-model evaluation, pure so it is tested with literal numbers: the model's
/// probability that a is preferred is σ(r_a − r_b) (Bradley–Terry), scored against the label p_a.
/// </summary>
public static class PreferenceMath
{
    /// <summary>σ(r_a − r_b), computed without overflow.</summary>
    public static double ProbabilityAPreferred(double rewardA, double rewardB)
    {
        var margin = rewardA - rewardB;
        return margin >= 0 ? 1 / (1 + Math.Exp(-margin)) : Math.Exp(margin) / (1 + Math.Exp(margin));
    }

    /// <summary>The soft-label loss of one comparison: −[p·log σ(m) + (1 − p)·log σ(−m)], m = r_a − r_b (what training minimises).</summary>
    public static double SoftLabelLoss(double rewardA, double rewardB, double pA)
    {
        var margin = rewardA - rewardB;
        return pA * Softplus(-margin) + (1 - pA) * Softplus(margin);
    }

    /// <summary>log(1 + eˣ) without overflow.</summary>
    public static double Softplus(double x) => Math.Max(x, 0) + Math.Log(1 + Math.Exp(-Math.Abs(x)));

    /// <summary>
    /// Accuracy, mean loss, mean |margin| and calibration over comparisons. Accuracy counts the comparisons
    /// whose label picks a side (p_a ≠ 0.5): right when the larger reward is on the side the label prefers; a
    /// tie of rewards counts half. Calibration bins σ(r_a − r_b) against the side the label picks.
    /// </summary>
    public static PreferenceEvaluation Evaluate(IReadOnlyList<double> rewardsA, IReadOnlyList<double> rewardsB, IReadOnlyList<double> pA, int bins = 10)
    {
        var n = pA.Count;
        if (rewardsA.Count != n || rewardsB.Count != n) throw new ArgumentException("rewards and labels differ in length");
        if (n == 0) return new PreferenceEvaluation(0, double.NaN, double.NaN, double.NaN, null);
        double right = 0, decided = 0, loss = 0, margin = 0;
        var predicted = new List<double>();
        var labelChoseA = new List<bool>();
        for (var i = 0; i < n; i++)
        {
            loss += SoftLabelLoss(rewardsA[i], rewardsB[i], pA[i]);
            margin += Math.Abs(rewardsA[i] - rewardsB[i]);
            if (pA[i] == 0.5) continue;
            decided++;
            var labelA = pA[i] > 0.5;
            right += rewardsA[i] == rewardsB[i] ? 0.5 : (rewardsA[i] > rewardsB[i]) == labelA ? 1 : 0;
            predicted.Add(ProbabilityAPreferred(rewardsA[i], rewardsB[i]));
            labelChoseA.Add(labelA);
        }
        double? ece = decided > 0 ? LabelMath.Calibrate(predicted, labelChoseA, bins).ExpectedCalibrationError : null;
        return new PreferenceEvaluation(n, decided > 0 ? right / decided : double.NaN, loss / n, margin / n, ece);
    }
}
