using RlaifOnnx.Core;

namespace RlaifOnnx.Inference;

// The wire format of the reward API that RewardServer answers and RewardClient sends (POST /v1/rewards,
// GET /v1/models), in OpenAI's conventions: snake_case JSON (OpenAIJson.Options), a list object with
// one entry per input in input order, errors as {"error": {"message", "type"}}. Shared by the two so
// they cannot drift apart.

/// <summary>
/// One item to score: either <see cref="Text"/> (already-rendered text, sent as a JSON string) or
/// <see cref="Messages"/> and <see cref="Response"/> (a conversation and the answer to score, sent as
/// {"messages": [...], "response": "..."} and rendered by the server with the model's chat template).
/// </summary>
public sealed record RewardInput
{
    public string? Text { get; init; }
    public IReadOnlyList<ChatMessage>? Messages { get; init; }
    public string? Response { get; init; }

    public static RewardInput OfText(string text) => new() { Text = text };
    public static RewardInput OfPair(IReadOnlyList<ChatMessage> messages, string response) => new() { Messages = messages, Response = response };
}

/// <summary>POST /v1/rewards: the model name (optional; it must match the served one when given) and the inputs.</summary>
public sealed record RewardRequest(string? Model, IReadOnlyList<RewardInput> Input);

/// <summary>
/// One reward: the index of its input, the scalar reward, and whether the input was longer than the
/// model's context and lost its start (the response at its end is always kept).
/// </summary>
public sealed record RewardEntry(int Index, double Reward, bool Truncated, string Object = "reward");

/// <summary>The answer to POST /v1/rewards: one entry per input, in input order.</summary>
public sealed record RewardResponse(string Model, List<RewardEntry> Data, string Object = "list");

/// <summary>A /v1/models entry for a reward model: "task": "reward" says it scores rather than generates.</summary>
public sealed record RewardModelEntry(string Id, string Object = "model", string OwnedBy = "rlaif", string Task = "reward");

public sealed record RewardModelList(List<RewardModelEntry> Data, string Object = "list");
