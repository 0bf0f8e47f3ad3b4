using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace RlaifOnnx.Serving;

/// <summary>A request refused with a status other than 400 (404 for a model not served here); the message names the field.</summary>
internal sealed class RequestError(int status, string message) : Exception(message)
{
    public int Status { get; } = status;
}

/// <summary>
/// stream=true answers as the OpenAI API and vLLM send them: server-sent events, one "data: {chunk}" per
/// piece of text as it is generated (text_completion chunks for /v1/completions, chat.completion.chunk deltas
/// for chat, the first delta carrying the role), a last chunk per choice with its finish_reason, then
/// "data: [DONE]". <paramref name="produce"/> sends the chunks through the function it is given; every chunk is
/// flushed at once. A client that goes away cancels the token <paramref name="produce"/> gets, which stops
/// generation (Kestrel learns of it from a write that fails). An error once the stream has started is sent as a
/// last {"error": …} event (the status is gone).
/// </summary>
internal sealed class EventStream(Func<Func<JsonObject, Task>, CancellationToken, Task> produce) : IResult
{
    internal static JsonObject CompletionChunk(string id, long created, string model, int index, string text, string? finishReason) => new()
    {
        ["id"] = id, ["object"] = "text_completion", ["created"] = created, ["model"] = model,
        ["choices"] = new JsonArray(new JsonObject { ["index"] = index, ["text"] = text, ["logprobs"] = null, ["finish_reason"] = finishReason }),
    };

    internal static JsonObject ChatChunk(string id, long created, string model, JsonObject delta, string? finishReason) => new()
    {
        ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = model,
        ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = delta, ["logprobs"] = null, ["finish_reason"] = finishReason }),
    };

    public async Task ExecuteAsync(HttpContext context)
    {
        var aborted = context.RequestAborted;
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        async Task Send(string line)
        {
            await context.Response.WriteAsync($"{line}\n\n", aborted);
            await context.Response.Body.FlushAsync(aborted);
        }
        try
        {
            await produce(chunk => Send($"data: {chunk.ToJsonString()}"), aborted);
            await Send("data: [DONE]");
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested) { }   // the client went away: nothing to send to
        catch (Exception e) when (e is not OperationCanceledException)
        {
            var error = new JsonObject { ["error"] = new JsonObject { ["message"] = e.Message.Split('\n', 2)[0], ["type"] = e is Core.UserError ? "invalid_request_error" : "server_error" } };
            try { await Send($"data: {error.ToJsonString()}"); } catch (Exception) when (aborted.IsCancellationRequested) { }
        }
    }
}
