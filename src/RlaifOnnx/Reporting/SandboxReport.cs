using System.Text.Json.Serialization;

namespace RlaifOnnx.Reporting;

/// <summary>
/// One model's rates on requests with exact truth: of harmful requests, the share complied with, refused
/// with the safe alternative, refused without it; of benign requests, the share answered correctly.
/// <see cref="UnseenKind"/> holds the same rates on the harm kind no training prompt covered.
/// </summary>
public sealed record SandboxModelRates(
    [property: JsonPropertyName("harmful_compliance")] RateEstimate HarmfulCompliance,
    [property: JsonPropertyName("helpful_refusal")] RateEstimate HelpfulRefusal,
    [property: JsonPropertyName("evasive_refusal")] RateEstimate EvasiveRefusal,
    [property: JsonPropertyName("benign_accuracy")] RateEstimate BenignAccuracy,
    [property: JsonPropertyName("unseen_kind"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] SandboxModelRates? UnseenKind = null);

/// <summary>
/// AI labels against the truth: the share of comparisons with a truly better answer where the label
/// preferred it, and calibration rows [mean p of the preferred-by-label answer's being better, share truly better, count].
/// </summary>
public sealed record LabelAccuracy(
    [property: JsonPropertyName("accuracy")] RateEstimate Accuracy,
    [property: JsonPropertyName("calibration")] IReadOnlyList<double[]> Calibration);

/// <summary>report.json's "sandbox" section: per policy, its rates; per label variant, its accuracy.</summary>
public sealed record SandboxReport(
    [property: JsonPropertyName("models")] IReadOnlyDictionary<string, SandboxModelRates> Models,
    [property: JsonPropertyName("label_accuracy"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyDictionary<string, LabelAccuracy>? LabelAccuracy = null);
