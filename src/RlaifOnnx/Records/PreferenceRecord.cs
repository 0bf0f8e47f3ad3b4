using RlaifOnnx.Core;

namespace RlaifOnnx.Records;

/// <summary>TRL-style preference export: the label's choice as chosen/rejected, with |2·p_a − 1| as the margin.</summary>
public sealed record PreferenceRecord(string Id, IReadOnlyList<ChatMessage> Prompt, IReadOnlyList<ChatMessage> Chosen, IReadOnlyList<ChatMessage> Rejected, double Margin);
