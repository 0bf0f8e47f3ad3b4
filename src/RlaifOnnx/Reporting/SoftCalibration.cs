namespace RlaifOnnx.Reporting;

/// <summary>One bin of a reliability diagram: predictions in [Low, High), their mean, and the mean of their targets (NaN when empty).</summary>
public sealed record SoftCalibrationBin(double Low, double High, int Count, double MeanPredicted, double MeanTarget);

/// <summary>
/// Calibration against soft targets: a preference model's p(a better) against the label's p_a, which is a
/// probability itself (AI feedback) or 0/1 (people). Equal-width bins over [0, 1] (1 goes in the last);
/// the expected calibration error is Σ_b (n_b / N) · |mean predicted_b − mean target_b|. With 0/1 targets
/// this is the usual reliability diagram and ECE.
/// </summary>
public static class SoftCalibration
{
    public static (IReadOnlyList<SoftCalibrationBin> Bins, double ExpectedCalibrationError) Bin(IReadOnlyList<double> predicted, IReadOnlyList<double> target, int bins = 10)
    {
        if (predicted.Count != target.Count) throw new ArgumentException($"lengths differ ({predicted.Count} predictions, {target.Count} targets)");
        if (bins < 1) throw new ArgumentOutOfRangeException(nameof(bins));
        var count = new int[bins];
        var sumPredicted = new double[bins];
        var sumTarget = new double[bins];
        for (var i = 0; i < predicted.Count; i++)
        {
            var b = Math.Min(bins - 1, Math.Max(0, (int)Math.Floor(predicted[i] * bins)));
            count[b]++;
            sumPredicted[b] += predicted[i];
            sumTarget[b] += target[i];
        }
        var result = new List<SoftCalibrationBin>(bins);
        var ece = 0.0;
        for (var b = 0; b < bins; b++)
        {
            var meanPredicted = count[b] > 0 ? sumPredicted[b] / count[b] : double.NaN;
            var meanTarget = count[b] > 0 ? sumTarget[b] / count[b] : double.NaN;
            result.Add(new SoftCalibrationBin((double)b / bins, (double)(b + 1) / bins, count[b], meanPredicted, meanTarget));
            if (count[b] > 0) ece += (double)count[b] / predicted.Count * Math.Abs(meanPredicted - meanTarget);
        }
        return (result, predicted.Count == 0 ? double.NaN : ece);
    }

    /// <summary>
    /// The share of comparisons whose label picks a side (p_a ≠ 0.5) where the prediction picks the same side;
    /// a prediction of exactly 0.5 counts half. NaN when no label picks a side.
    /// </summary>
    public static double Accuracy(IReadOnlyList<double> predicted, IReadOnlyList<double> target)
    {
        if (predicted.Count != target.Count) throw new ArgumentException($"lengths differ ({predicted.Count} predictions, {target.Count} targets)");
        double right = 0, decided = 0;
        for (var i = 0; i < predicted.Count; i++)
        {
            if (target[i] == 0.5) continue;
            decided++;
            right += predicted[i] == 0.5 ? 0.5 : (predicted[i] > 0.5) == (target[i] > 0.5) ? 1 : 0;
        }
        return decided > 0 ? right / decided : double.NaN;
    }
}
