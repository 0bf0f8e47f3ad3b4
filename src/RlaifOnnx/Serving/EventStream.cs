using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace RlaifOnnx.Serving;

/// <summary>A request refused with a status other than 400 (404 for a model not served here); the message names the field.</summary>
internal sealed class RequestError(int status, string message) : Exception(message)
{
    public int Status { get; } = status;
}

/// <summary>
/// stream=true answers as the OpenAI API and vLLM send them: server-sent events, one "data: {chunk}"
/// per token piece (text_completion chunks for /v1/completions, chat.completion.chunk deltas for chat,
/// the first delta carrying the role), a last chunk with the finish_reason, then "data: [DONE]".
/// The pieces concatenate to the whole answer's text.
/// </summary>
internal sealed class EventStream(IReadOnlyList<JsonObject> chunks) : IResult
{
    public static EventStream Completion(string id, long created, string model, IReadOnlyList<(IReadOnlyList<string> Pieces, string FinishReason)> choices)
    {
        var chunks = new List<JsonObject>();
        for (var i = 0; i < choices.Count; i++)
        {
            foreach (var piece in choices[i].Pieces)
                chunks.Add(CompletionChunk(id, created, model, new JsonObject { ["index"] = i, ["text"] = piece, ["logprobs"] = null, ["finish_reason"] = null }));
            chunks.Add(CompletionChunk(id, created, model, new JsonObject { ["index"] = i, ["text"] = "", ["logprobs"] = null, ["finish_reason"] = choices[i].FinishReason }));
        }
        return new EventStream(chunks);
    }

    public static EventStream Chat(string id, long created, string model, IReadOnlyList<string> pieces, string finishReason)
    {
        var chunks = new List<JsonObject> { ChatChunk(id, created, model, new JsonObject { ["role"] = "assistant", ["content"] = "" }, null) };
        foreach (var piece in pieces) chunks.Add(ChatChunk(id, created, model, new JsonObject { ["content"] = piece }, null));
        chunks.Add(ChatChunk(id, created, model, new JsonObject(), finishReason));
        return new EventStream(chunks);
    }

    static JsonObject CompletionChunk(string id, long created, string model, JsonObject choice) => new()
    {
        ["id"] = id, ["object"] = "text_completion", ["created"] = created, ["model"] = model, ["choices"] = new JsonArray(choice),
    };

    static JsonObject ChatChunk(string id, long created, string model, JsonObject delta, string? finishReason) => new()
    {
        ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = model,
        ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = delta, ["logprobs"] = null, ["finish_reason"] = finishReason }),
    };

    public async Task ExecuteAsync(HttpContext context)
    {
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        foreach (var chunk in chunks)
        {
            await context.Response.WriteAsync($"data: {chunk.ToJsonString()}\n\n", context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
        }
        await context.Response.WriteAsync("data: [DONE]\n\n", context.RequestAborted);
    }
}
