using System.Text.Json.Serialization;

namespace RlaifOnnx.Records;

/// <summary>
/// One line of the PM stage's eval_predictions.jsonl: a held-out comparison (the id of its
/// <see cref="MixedComparison"/>), its soft label p_a, the trained model's rewards of both answers and its
/// prediction p_model = σ(reward_a − reward_b). The evaluate stage bins these into the preference model's
/// reliability diagram (<c>pm_calibration:</c>).
/// </summary>
public sealed record PreferencePrediction(
    string Id,
    string Source,
    [property: JsonPropertyName("p_a")] double PA,
    [property: JsonPropertyName("p_model")] double PModel,
    double RewardA,
    double RewardB);
