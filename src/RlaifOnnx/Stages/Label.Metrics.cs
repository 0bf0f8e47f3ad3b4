using System.Text;
using RlaifOnnx.Records;

namespace RlaifOnnx.Stages;

/// <summary>metrics.json of the label stage: computed from the comparisons, and described for the CLI.</summary>
public static partial class Label
{
    /// <summary>Agreement, position consistency and calibration over the records that carry a human preference.</summary>
    public static LabelMetrics ComputeMetrics(IReadOnlyList<ComparisonRecord> records, bool bothOrders, int bins, int labelledThisRun, double labelsPerSecond)
    {
        var human = records.Where(r => r.HumanPreferred is not null).ToList();
        var pA = human.Select(r => r.PA).ToList();
        var choseA = human.Select(r => r.HumanPreferred == "a").ToList();
        double? agreement = human.Count > 0 ? LabelMath.Agreement(pA, choseA) : null;
        Calibration? calibration = human.Count > 0 ? LabelMath.Calibrate(pA, choseA, bins) : null;
        double? consistency = null;
        if (bothOrders && records.Count > 0)
            consistency = LabelMath.PositionConsistency(
                records.Select(r => LabelMath.Ensemble(r.PerPrinciple.Select(l => l.PAOrderAb).ToList())).ToList(),
                records.Select(r => LabelMath.Ensemble(r.PerPrinciple.Select(l => l.PAOrderBa ?? l.PAOrderAb).ToList())).ToList());
        return new LabelMetrics(records.Count, human.Count, agreement, consistency, calibration?.ExpectedCalibrationError, calibration?.Bins,
            records.Count(r => r.Truncated), records.Sum(r => r.CotUnparsed), labelledThisRun, labelsPerSecond);
    }

    static IEnumerable<KeyValuePair<string, double>> MetricValues(LabelMetrics m)
    {
        yield return new("comparisons", m.Comparisons);
        if (m.Agreement is { } a) yield return new("agreement", a);
        if (m.PositionConsistency is { } c) yield return new("position_consistency", c);
        if (m.ExpectedCalibrationError is { } e) yield return new("expected_calibration_error", e);
        yield return new("truncated", m.Truncated);
        yield return new("cot_unparsed", m.CotUnparsed);
        yield return new("labels_per_second", m.LabelsPerSecond);
    }

    /// <summary>The metrics as the lines the CLI prints.</summary>
    public static string Describe(LabelMetrics m)
    {
        static string Pct(double? x) => x is { } v ? $"{100 * v:F1} %" : "n/a";
        var sb = new StringBuilder();
        sb.AppendLine($"comparisons: {m.Comparisons} ({m.LabelledThisRun} labelled this run, {m.LabelsPerSecond:F1} labels/s)");
        sb.AppendLine($"with a human preference: {m.WithHumanPreference}");
        sb.AppendLine($"agreement with people: {Pct(m.Agreement)}");
        sb.AppendLine($"position consistency: {Pct(m.PositionConsistency)}");
        sb.AppendLine($"expected calibration error: {(m.ExpectedCalibrationError is { } e ? e.ToString("F3") : "n/a")}");
        if (m.CalibrationBins is { } bins)
            foreach (var b in bins.Where(b => b.Count > 0))
                sb.AppendLine($"  p_a in [{b.Low:F1}, {b.High:F1}): n={b.Count}, mean p_a={b.MeanPredicted:F3}, people chose a={b.FractionChoseA:F3}");
        sb.AppendLine($"truncated inputs: {m.Truncated}; chain-of-thought answers not parsed: {m.CotUnparsed}");
        return sb.ToString();
    }
}
