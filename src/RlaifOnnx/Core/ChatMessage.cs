namespace RlaifOnnx.Core;

/// <summary>One chat turn: role is "system", "user" or "assistant".</summary>
public sealed record ChatMessage(string Role, string Content);
