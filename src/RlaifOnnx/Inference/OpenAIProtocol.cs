using System.Text.Json;
using System.Text.Json.Serialization;

namespace RlaifOnnx.Inference;

// The OpenAI wire format for /v1/completions and /v1/chat/completions, the subset our client sends
// and our server answers (the same shapes vLLM and llama.cpp's server speak). Shared by
// OpenAIBackend and OpenAIServer so the two cannot drift apart.

public static class OpenAIJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        // Quotes and apostrophes in error messages as they are, not \u0022: JSON needs no more escaping than this.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };
}

public sealed record CompletionRequest
{
    public string? Model { get; init; }
    /// <summary>A string or an array of strings.</summary>
    public JsonElement Prompt { get; init; }
    public int? MaxTokens { get; init; }
    public double? Temperature { get; init; }
    public double? TopP { get; init; }
    /// <summary>Not in OpenAI's API; vLLM and llama.cpp accept it.</summary>
    public int? TopK { get; init; }
    public int? Seed { get; init; }
    /// <summary>Fewest tokens to generate before the end token may end the answer; not in OpenAI's API, vLLM accepts it.</summary>
    public int? MinTokens { get; init; }
    /// <summary>How many top alternatives per token to return; null = no log-probs.</summary>
    public int? Logprobs { get; init; }
    public bool? Echo { get; init; }
    /// <summary>Server-sent events: chunks of the answer, then "data: [DONE]".</summary>
    public bool? Stream { get; init; }
    /// <summary>Choices per prompt; our server answers 1 only and refuses more with 400.</summary>
    public int? N { get; init; }
}

public sealed record CompletionLogprobs
{
    public List<string> Tokens { get; init; } = [];
    /// <summary>Null for the first token of an echoed prompt (nothing predicts it).</summary>
    public List<double?> TokenLogprobs { get; init; } = [];
    public List<Dictionary<string, double>?>? TopLogprobs { get; init; }
    public List<int>? TextOffset { get; init; }
}

public sealed record CompletionChoice
{
    public int Index { get; init; }
    public string Text { get; init; } = "";
    public CompletionLogprobs? Logprobs { get; init; }
    public string? FinishReason { get; init; }
}

public sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens);

public sealed record CompletionResponse
{
    public string Id { get; init; } = "";
    public string Object { get; init; } = "text_completion";
    public long Created { get; init; }
    public string Model { get; init; } = "";
    public List<CompletionChoice> Choices { get; init; } = [];
    public Usage? Usage { get; init; }
}

public sealed record WireMessage(string Role, string? Content);

public sealed record ChatCompletionRequest
{
    public string? Model { get; init; }
    public List<WireMessage> Messages { get; init; } = [];
    public int? MaxTokens { get; init; }
    /// <summary>OpenAI's newer name for max_tokens.</summary>
    public int? MaxCompletionTokens { get; init; }
    public double? Temperature { get; init; }
    public double? TopP { get; init; }
    public int? TopK { get; init; }
    public int? Seed { get; init; }
    /// <summary>Fewest tokens to generate before the end token may end the answer; not in OpenAI's API, vLLM accepts it.</summary>
    public int? MinTokens { get; init; }
    public bool? Logprobs { get; init; }
    public int? TopLogprobs { get; init; }
    /// <summary>Server-sent events: chunks of the answer, then "data: [DONE]".</summary>
    public bool? Stream { get; init; }
    /// <summary>Choices per conversation; our server answers 1 only and refuses more with 400.</summary>
    public int? N { get; init; }
}

public sealed record TopLogprob(string Token, double Logprob);

public sealed record ChatTokenLogprob(string Token, double Logprob, List<TopLogprob> TopLogprobs);

public sealed record ChatLogprobs(List<ChatTokenLogprob> Content);

public sealed record ChatChoice
{
    public int Index { get; init; }
    public WireMessage Message { get; init; } = new("assistant", "");
    public ChatLogprobs? Logprobs { get; init; }
    public string? FinishReason { get; init; }
}

public sealed record ChatCompletionResponse
{
    public string Id { get; init; } = "";
    public string Object { get; init; } = "chat.completion";
    public long Created { get; init; }
    public string Model { get; init; } = "";
    public List<ChatChoice> Choices { get; init; } = [];
    public Usage? Usage { get; init; }
}

public sealed record ModelEntry(string Id, string Object = "model", string OwnedBy = "rlaif");

public sealed record ModelList(List<ModelEntry> Data, string Object = "list");

public sealed record ErrorBody(string Message, string Type);

public sealed record ErrorResponse(ErrorBody Error);
