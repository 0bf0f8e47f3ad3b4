
namespace RlaifOnnx.Stages;

/// <summary>metrics.json of the label stage. Human-agreement figures are null when no input carried a human preference.</summary>
public sealed record LabelMetrics(
    int Comparisons,
    int WithHumanPreference,
    double? Agreement,
    double? PositionConsistency,
    double? ExpectedCalibrationError,
    IReadOnlyList<CalibrationBin>? CalibrationBins,
    int Truncated,
    int CotUnparsed,
    int LabelledThisRun,
    double LabelsPerSecond);
