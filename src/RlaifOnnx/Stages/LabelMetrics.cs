using System.Text.Json.Serialization;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Text;
using RlaifOnnx.Configuration;
using RlaifOnnx.Constitution;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Records;
using RlaifOnnx.Reporting;

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
