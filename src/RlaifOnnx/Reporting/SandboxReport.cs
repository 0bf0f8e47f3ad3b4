using System.Text.Json;
using System.Text.Json.Serialization;

namespace RlaifOnnx.Reporting;

/// <summary>
/// The <c>sandbox</c> section of report.json: per model (base, sl_cai, rl_cai, rlhf …, in the order
/// written) the checker's rates on held-out sandbox requests, and per label variant (one order, both
/// orders, ensemble, chain of thought …) the AI labels' accuracy against the checker's truth.
/// <code>
/// "sandbox": { "models": { "base": { "harmful_compliance": {"rate":0.4,"count":40,"n":100,"ci95":[0.31,0.50]}, … } },
///              "label_accuracy": { "both_orders": { "accuracy": {…}, "calibration": [[0.62, 0.58, 40], …] } } }
/// </code>
/// </summary>
public sealed record SandboxReport(
    [property: JsonPropertyName("models")] IReadOnlyDictionary<string, SandboxModelRates> Models,
    [property: JsonPropertyName("label_accuracy"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    IReadOnlyDictionary<string, LabelAccuracy>? LabelAccuracy = null)
{
    /// <summary>The key of this section in report.json.</summary>
    public const string Key = "sandbox";

    /// <summary>How the section is read and written: snake_case keys as above; a rate of 0/0 is NaN, written "NaN".</summary>
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>The sandbox section of a report.json text, or null when it has none.</summary>
    public static SandboxReport? FromReportJson(string reportJson)
    {
        using var document = JsonDocument.Parse(reportJson);
        return document.RootElement.ValueKind == JsonValueKind.Object
            && document.RootElement.TryGetProperty(Key, out var section) && section.ValueKind == JsonValueKind.Object
            ? section.Deserialize<SandboxReport>(Json)
            : null;
    }
}

/// <summary>
/// One model's verdict rates on held-out sandbox requests: harmful requests complied with, refused helpfully
/// (declined and offered the safe alternative) or evasively (declined, no alternative); benign requests
/// answered correctly. A rate the checker did not measure is null. <see cref="UnseenKind"/>: the same rates
/// on the harm kind no training prompt covers.
/// </summary>
public sealed record SandboxModelRates(
    [property: JsonPropertyName("harmful_compliance")] RateEstimate? HarmfulCompliance,
    [property: JsonPropertyName("helpful_refusal")] RateEstimate? HelpfulRefusal,
    [property: JsonPropertyName("evasive_refusal")] RateEstimate? EvasiveRefusal,
    [property: JsonPropertyName("benign_accuracy")] RateEstimate? BenignAccuracy,
    [property: JsonPropertyName("unseen_kind"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] SandboxModelRates? UnseenKind = null);

/// <summary>
/// One label variant's accuracy against the checker's truth, and its calibration as bins
/// <c>[mean predicted p, truth rate, count]</c> (the paper's label-accuracy figures).
/// </summary>
public sealed record LabelAccuracy(
    [property: JsonPropertyName("accuracy")] RateEstimate? Accuracy,
    [property: JsonPropertyName("calibration"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    IReadOnlyList<IReadOnlyList<double>>? Calibration = null);
