using RlaifOnnx.Core;

namespace RlaifOnnx.Records;

/// <summary>One critique → revision round: which principle, what it asked, what the model answered.</summary>
public sealed record RevisionRound(string PrincipleId, string CritiqueRequest, string Critique, string RevisionRequest, string Revision);

/// <summary>One line of revisions.jsonl: a prompt, the helpful model's first answer, every round, the final answer.</summary>
public sealed record RevisionRecord(
    string Id,
    string Prompt,
    IReadOnlyList<ChatMessage> Messages,
    string InitialResponse,
    IReadOnlyList<RevisionRound> Rounds,
    string FinalResponse,
    bool Truncated = false);

/// <summary>SFT export, TRL's conversational prompt/completion form.</summary>
public sealed record SftPromptCompletion(string Id, IReadOnlyList<ChatMessage> Prompt, IReadOnlyList<ChatMessage> Completion);

/// <summary>SFT export, TRL's conversational "messages" form (the prompt turns plus the revised answer).</summary>
public sealed record SftMessages(string Id, IReadOnlyList<ChatMessage> Messages);
