using System.Text.Json.Serialization;
using RlaifOnnx.Core;

namespace RlaifOnnx.Records;

/// <summary>One preference-model training comparison: p_a is the soft label (AI) or 1/0 (human).</summary>
public sealed record MixedComparison(
    string Id,
    string Source,
    IReadOnlyList<ChatMessage> Messages,
    string ResponseA,
    string ResponseB,
    [property: JsonPropertyName("p_a")] double PA);
