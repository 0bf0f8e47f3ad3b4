using RlaifOnnx.Core;

namespace RlaifOnnx.Records;

/// <summary>One line of helpfulness_samples.jsonl: a helpfulness prompt's turns followed by the helpful model's answer.</summary>
public sealed record HelpfulnessSample(string Id, IReadOnlyList<ChatMessage> Messages, bool Truncated = false);

/// <summary>One line of sft_mix.jsonl: a conversation whose final assistant turn is trained, and where it came from ("revision" or "helpfulness").</summary>
public sealed record SftMixExample(string Id, string Source, IReadOnlyList<ChatMessage> Messages);
