using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;

namespace RlaifOnnx.Serving;

/// <summary>
/// A preference model folder behind a reward API on 127.0.0.1 — how `rlaif serve` deploys a PM, so a
/// PPO run or an evaluation on another machine can score with it (<see cref="RewardClient"/>):
/// GET /v1/models (the model, "task": "reward"), GET /health, and POST /v1/rewards with
/// {"model": optional, "input": [text | {"messages": [{role, content}…], "response": "…"}, …]}, answered
/// with {"object": "list", "model", "data": [{"index", "reward", "truncated"}, …]} in input order.
/// Rewards are <see cref="RewardScorer"/>'s: conversations rendered by <see cref="RewardScorer.Render"/>,
/// texts longer than the context keep their end. Hosting is <see cref="OpenAIServer"/>'s: port 0 takes
/// any free port, <see cref="Port"/> tells which. Bad requests get 400 with OpenAI's error shape and the
/// field named ("input[2].response is missing"). Requests run concurrently: the scorer's session runs
/// in parallel and its tokenizer is locked (see <see cref="RewardScorer"/>).
/// </summary>
public sealed class RewardServer : IAsyncDisposable
{
    readonly WebApplication app;
    readonly RewardScorer scorer;
    readonly string modelName;
    readonly ServingOptions serving;
    readonly ServingMetrics metrics;

    /// <summary>The port Kestrel bound.</summary>
    public int Port { get; private set; }
    /// <summary>http://HOST:PORT/ — what a <see cref="RewardClient"/> on this machine points at.</summary>
    public Uri BaseUrl => HttpHost.BaseUrl(serving.Host, Port);
    /// <summary>The name /v1/models reports and requests may give.</summary>
    public string ModelName => modelName;

    RewardServer(WebApplication app, RewardScorer scorer, string modelName, ServingOptions serving, ServingMetrics metrics)
    {
        this.app = app;
        this.scorer = scorer;
        this.modelName = modelName;
        this.serving = serving;
        this.metrics = metrics;
    }

    /// <summary>Loads the preference model folder and starts listening on <paramref name="serving"/>'s host (127.0.0.1 by default) and <paramref name="port"/>.</summary>
    public static async Task<RewardServer> StartAsync(string modelDir, int port = 0, InferenceOptions? options = null, string? modelName = null,
        ServingOptions? serving = null, CancellationToken cancellationToken = default)
    {
        serving ??= new ServingOptions();
        HttpHost.Check(port, serving);
        var scorer = new RewardScorer(modelDir, options);

        var metrics = new ServingMetrics();
        WebApplication app;
        try { app = HttpHost.Create(port, serving, metrics); }
        catch { scorer.Dispose(); throw; }
        var server = new RewardServer(app, scorer, modelName ?? ModelFolder.ServedName(modelDir), serving, metrics);
        server.MapRoutes();
        server.Port = await HttpHost.StartAsync(app, port, serving.Host, server.DisposeAsync, cancellationToken);
        return server;
    }

    /// <summary>Runs until <paramref name="cancellationToken"/> is cancelled or the host is asked to stop (Ctrl+C, SIGTERM).</summary>
    public Task WaitAsync(CancellationToken cancellationToken) => HttpHost.WaitAsync(app, cancellationToken);

    void MapRoutes()
    {
        app.MapGet("/v1/models", () => Results.Json(new RewardModelList([new RewardModelEntry(modelName)]), OpenAIJson.Options));
        app.MapPost("/v1/rewards", async (HttpContext context) => await (await RewardsAsync(context)).ExecuteAsync(context)).Limit();
        // Anything else (/v1/completions, /v1/chat/completions …) is not served by a reward model: say so.
        app.MapFallback(() => Error(404, "not found: this server serves a reward model (POST /v1/rewards, GET /v1/models, GET /health, GET /metrics)", "invalid_request_error"));
    }

    async Task<IResult> RewardsAsync(HttpContext context)
    {
        if (HttpHost.RequireJson(context) is { } wrongType) return wrongType;
        JsonDocument document;
        try { document = await JsonDocument.ParseAsync(context.Request.Body, default, context.RequestAborted); }
        catch (JsonException e) { return Error(400, $"malformed JSON: {e.Message}", "invalid_request_error"); }
        using (document)
        {
            RewardRequest request;
            try { request = ParseRequest(document.RootElement); }
            catch (BadRequest e) { return Error(400, e.Message, "invalid_request_error"); }
            if (request.Model is { } asked && asked != modelName)
                return Error(404, $"model \"{asked}\" is not served here (this server serves \"{modelName}\")", "invalid_request_error");
            try { return Results.Json(await Task.Run(() => Score(request.Input, context.RequestAborted), context.RequestAborted), OpenAIJson.Options); }
            catch (UserError e) { return Error(400, e.Message, "invalid_request_error"); }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested) { return Results.Empty; }
            catch (Exception e) { return Error(500, e.Message, "server_error"); }
        }
    }

    /// <summary>Renders and tokenizes every input, then scores them in the scorer's length-grouped batches.</summary>
    RewardResponse Score(IReadOnlyList<RewardInput> inputs, CancellationToken cancellationToken)
    {
        var sequences = new List<int[]>(inputs.Count);
        var truncated = new bool[inputs.Count];
        long total = 0;
        for (var i = 0; i < inputs.Count; i++)
        {
            var text = inputs[i].Text ?? scorer.Render(inputs[i].Messages!, inputs[i].Response!);
            var ids = scorer.Encode(text);
            if (ids.Length == 0) throw new UserError($"input[{i}] tokenizes to no tokens; a reward needs at least one");
            total += Math.Min(ids.Length, scorer.MaxTokens);
            if (total > serving.MaxBatchTokens)
                throw new UserError($"input: the request needs more than {serving.MaxBatchTokens} tokens (the server's --max-batch-tokens); send fewer inputs per request");
            truncated[i] = ids.Length > scorer.MaxTokens;
            sequences.Add(ids);
        }
        var rewards = scorer.RewardsOfTokens(sequences, cancellationToken);
        metrics.AddTokens(total, 0);
        var data = new List<RewardEntry>(inputs.Count);
        for (var i = 0; i < inputs.Count; i++) data.Add(new RewardEntry(i, rewards[i], truncated[i]));
        return new RewardResponse(modelName, data);
    }

    /// <summary>A request that does not have the documented shape; its message names the field.</summary>
    sealed class BadRequest(string message) : Exception(message);

    /// <summary>
    /// The request body as a <see cref="RewardRequest"/>, checked field by field so a 400 says which
    /// field is wrong ("input[2].messages[0].content must be a string"). Unknown keys are ignored, as
    /// OpenAI-compatible servers do.
    /// </summary>
    static RewardRequest ParseRequest(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new BadRequest("the request body must be a JSON object with \"input\"");
        string? model = null;
        if (root.TryGetProperty("model", out var m) && m.ValueKind != JsonValueKind.Null)
            model = m.ValueKind == JsonValueKind.String ? m.GetString() : throw new BadRequest("model must be a string");
        if (!root.TryGetProperty("input", out var input) || input.ValueKind == JsonValueKind.Null) throw new BadRequest("input is missing");
        if (input.ValueKind != JsonValueKind.Array) throw new BadRequest("input must be an array of strings or {\"messages\", \"response\"} objects");
        if (input.GetArrayLength() == 0) throw new BadRequest("input is empty: it must hold at least one item");

        var items = new List<RewardInput>(input.GetArrayLength());
        var i = 0;
        foreach (var item in input.EnumerateArray())
        {
            var at = $"input[{i++}]";
            items.Add(item.ValueKind switch
            {
                JsonValueKind.String => RewardInput.OfText(item.GetString()!),
                JsonValueKind.Object => RewardInput.OfPair(Messages(item, at), RequiredString(item, "response", at)),
                _ => throw new BadRequest($"{at} must be a string or an object with \"messages\" and \"response\""),
            });
        }
        return new RewardRequest(model, items);
    }

    static List<ChatMessage> Messages(JsonElement item, string at)
    {
        if (!item.TryGetProperty("messages", out var messages) || messages.ValueKind == JsonValueKind.Null) throw new BadRequest($"{at}.messages is missing");
        if (messages.ValueKind != JsonValueKind.Array) throw new BadRequest($"{at}.messages must be an array of {{\"role\", \"content\"}} objects");
        var list = new List<ChatMessage>(messages.GetArrayLength());
        var j = 0;
        foreach (var message in messages.EnumerateArray())
        {
            var here = $"{at}.messages[{j++}]";
            if (message.ValueKind != JsonValueKind.Object) throw new BadRequest($"{here} must be an object with \"role\" and \"content\"");
            list.Add(new ChatMessage(RequiredString(message, "role", here), RequiredString(message, "content", here)));
        }
        return list;
    }

    static string RequiredString(JsonElement obj, string name, string at)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) throw new BadRequest($"{at}.{name} is missing");
        return value.ValueKind == JsonValueKind.String ? value.GetString()! : throw new BadRequest($"{at}.{name} must be a string");
    }

    static IResult Error(int status, string message, string type) => HttpHost.Error(status, message, type);

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
        scorer.Dispose();
    }
}
