using System.Text.Json.Serialization;
using RlaifOnnx.Core;

namespace RlaifOnnx.Records;

/// <summary>One principle's label: p_a from each order shown (a first, b first) and their combination.</summary>
public sealed record PrincipleLabel(
    string PrincipleId,
    [property: JsonPropertyName("p_a")] double PA,
    [property: JsonPropertyName("p_a_order_ab")] double PAOrderAb,
    [property: JsonPropertyName("p_a_order_ba")] double? PAOrderBa = null,
    string? ReasoningAb = null,
    string? ReasoningBa = null);

/// <summary>One line of comparisons.jsonl: a conversation, two answers, and the feedback model's soft label p_a.</summary>
public sealed record ComparisonRecord(
    string Id,
    string Prompt,
    IReadOnlyList<ChatMessage> Messages,
    string ResponseA,
    string ResponseB,
    [property: JsonPropertyName("p_a")] double PA,
    IReadOnlyList<string> PrincipleIds,
    IReadOnlyList<PrincipleLabel> PerPrinciple,
    bool Truncated,
    int CotUnparsed,
    string? HumanPreferred = null);
