using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;

namespace RlaifOnnx.Serving;

/// <summary>
/// An OpenAI-compatible HTTP server over a model folder, bound to 127.0.0.1: GET /v1/models,
/// POST /v1/completions (prompt string or array; logprobs = top-N alternatives; echo returns the
/// prompt's tokens and their log-probs, the first token's being null) and POST /v1/chat/completions
/// (logprobs / top_logprobs). Generation is <see cref="GenAIGenerator"/>, log-probs are
/// <see cref="OrtScorer"/> over the prompt's and the generated token ids (the model's own
/// distribution, before temperature or top-p); a folder without rlaif.json (an export we did not
/// write) is served for generation only, and log-prob requests get a 400 that says why. Port 0 takes any free port; <see cref="Port"/> tells
/// which. This is how `rlaif serve` deploys a model folder.
/// </summary>
public sealed partial class OpenAIServer : IAsyncDisposable
{
    readonly WebApplication app;
    readonly GenAIGenerator generator;
    readonly OrtScorer? scorer;
    readonly string modelName;
    readonly ServingOptions serving;
    readonly ServingMetrics metrics;
    // The server's own tokenizer, used by one request at a time: the generator's runs under its own gate.
    readonly Microsoft.ML.OnnxRuntimeGenAI.Tokenizer tokenizer;
    readonly Lock tokenizerLock = new();

    /// <summary>The port Kestrel bound.</summary>
    public int Port { get; private set; }
    /// <summary>http://HOST:PORT/ — what an <see cref="OpenAIBackend"/> on this machine points at.</summary>
    public Uri BaseUrl => HttpHost.BaseUrl(serving.Host, Port);

    OpenAIServer(WebApplication app, GenAIGenerator generator, OrtScorer? scorer, string modelName, ServingOptions serving, ServingMetrics metrics)
    {
        this.app = app;
        this.serving = serving;
        this.metrics = metrics;
        this.generator = generator;
        this.scorer = scorer;
        this.modelName = modelName;
        tokenizer = new Microsoft.ML.OnnxRuntimeGenAI.Tokenizer(generator.ModelDir);
    }

    /// <summary>Loads the model folder and starts listening on <paramref name="serving"/>'s host (127.0.0.1 by default) and <paramref name="port"/>.</summary>
    public static async Task<OpenAIServer> StartAsync(string modelDir, int port = 0, InferenceOptions? options = null, string? modelName = null,
        ServingOptions? serving = null, CancellationToken cancellationToken = default)
    {
        serving ??= new ServingOptions();
        HttpHost.Check(port, serving);
        var generator = new GenAIGenerator(modelDir, options);
        // Log-probs need our inference graph (rlaif.json says its shape); a folder GenAI runs but we did
        // not write (an exported model) is served for generation only.
        OrtScorer? scorer = null;
        if (File.Exists(Path.Combine(modelDir, Models.ModelFolder.MetadataFile)))
        {
            try { scorer = new OrtScorer(modelDir, options); }
            catch { generator.Dispose(); throw; }
        }

        var metrics = new ServingMetrics();
        WebApplication app;
        try { app = HttpHost.Create(port, serving, metrics); }
        catch { generator.Dispose(); scorer?.Dispose(); throw; }
        var server = new OpenAIServer(app, generator, scorer, modelName ?? ModelFolder.ServedName(modelDir), serving, metrics);
        server.MapRoutes();
        server.Port = await HttpHost.StartAsync(app, port, serving.Host, server.DisposeAsync, cancellationToken);
        return server;
    }

    /// <summary>
    /// Runs until <paramref name="cancellationToken"/> is cancelled or the host is asked to stop (its
    /// console lifetime turns Ctrl+C and SIGTERM into that).
    /// </summary>
    public Task WaitAsync(CancellationToken cancellationToken) => HttpHost.WaitAsync(app, cancellationToken);

    void MapRoutes()
    {
        app.MapGet("/v1/models", () => Results.Json(new ModelList([new ModelEntry(modelName)]), OpenAIJson.Options));
        app.MapPost("/v1/completions", async (HttpContext context) => await (await Handle<CompletionRequest>(context, CompletionsAsync)).ExecuteAsync(context)).Limit();
        app.MapPost("/v1/chat/completions", async (HttpContext context) => await (await Handle<ChatCompletionRequest>(context, ChatAsync)).ExecuteAsync(context)).Limit();
    }

    /// <summary>
    /// Reads the JSON body, runs the handler; bad requests answer 400 (415 for a body not declared as
    /// JSON, 404 for a model not served here) with OpenAI's error shape. A handler answers with a response
    /// object (sent as JSON) or an <see cref="IResult"/> (the event stream of stream=true).
    /// </summary>
    static async Task<IResult> Handle<TRequest>(HttpContext context, Func<TRequest, CancellationToken, Task<object>> handler)
    {
        if (HttpHost.RequireJson(context) is { } wrongType) return wrongType;
        TRequest? request;
        try { request = await JsonSerializer.DeserializeAsync<TRequest>(context.Request.Body, OpenAIJson.Options, context.RequestAborted); }
        catch (JsonException e) { return Error(400, $"malformed JSON: {e.Message}", "invalid_request_error"); }
        if (request is null) return Error(400, "empty request body", "invalid_request_error");
        try
        {
            var answer = await handler(request, context.RequestAborted);
            return answer as IResult ?? Results.Json(answer, OpenAIJson.Options);
        }
        catch (RequestError e) { return Error(e.Status, e.Message, e.Status == 404 ? "not_found_error" : "invalid_request_error"); }
        catch (UserError e) { return Error(400, e.Message, "invalid_request_error"); }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested) { return Results.Empty; }
        catch (Exception e) { return Error(500, e.Message, "server_error"); }
    }

    static IResult Error(int status, string message, string type) => HttpHost.Error(status, message, type);

    async Task<object> CompletionsAsync(CompletionRequest request, CancellationToken cancellationToken)
    {
        CheckCommon(request.Model, request.N, request.Stream == true && request.Logprobs is not null);
        var prompts = request.Prompt.ValueKind switch
        {
            JsonValueKind.String => [request.Prompt.GetString()!],
            JsonValueKind.Array when request.Prompt.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) =>
                request.Prompt.EnumerateArray().Select(e => e.GetString()!).ToList(),
            _ => throw UserError.At("request", null, "prompt", "must be a string or an array of strings"),
        };
        if (prompts.Count == 0) throw UserError.At("request", null, "prompt", "is an empty array: it must hold at least one prompt");
        var maxTokens = request.MaxTokens ?? 16;   // OpenAI's default for /v1/completions
        if (maxTokens < 0) throw UserError.At("request", null, "max_tokens", $"must be 0 or more, got {maxTokens}");
        var echo = request.Echo ?? false;
        var top = request.Logprobs ?? 0;
        if (top < 0) throw UserError.At("request", null, "logprobs", $"must be 0 or more, got {top}");
        // Every prompt fits the context with its answer, and the request as a whole fits the batch limit,
        // before any work: a past-context prompt would otherwise be scored over its whole length.
        var encoded = prompts.Select(Encode).ToList();
        // Without max_tokens the default shrinks to what the context leaves, as vLLM does; given, it is held to.
        if (request.MaxTokens is null) maxTokens = DefaultMaxTokens(maxTokens, encoded.Max(e => e.Length));
        for (var i = 0; i < encoded.Count; i++) CheckContext(encoded[i].Length, maxTokens, prompts.Count == 1 ? "prompt" : $"prompt[{i}]");
        CheckBatch(encoded.Sum(e => (long)e.Length + maxTokens));
        var sampling = Sampling(maxTokens, request.Temperature, request.TopP, request.TopK, request.Seed, request.MinTokens);
        var id = $"cmpl-{Guid.NewGuid():N}";
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (request.Stream == true)
            return Streamed(prompts, maxTokens == 0 ? null : sampling, encoded.Sum(e => e.Length),
                opening: echo ? prompts.Select((p, i) => EventStream.CompletionChunk(id, created, modelName, i, p, null)).ToList() : [],
                piece: (i, text) => EventStream.CompletionChunk(id, created, modelName, i, text, null),
                finish: (i, reason) => EventStream.CompletionChunk(id, created, modelName, i, "", reason));

        // max_tokens 0 is a pure scoring request: no generation, only the echoed prompt.
        IReadOnlyList<Generation> generations = maxTokens == 0
            ? encoded.Select(ids => new Generation(ids, [], "", "length")).ToList()
            : await generator.GenerateAsync(prompts, sampling, cancellationToken);

        IReadOnlyList<TokenLogProb[]>? scored = request.Logprobs is null ? null
            : Scorer().TokenLogProbs(generations.Select(g => g.PromptIds.Concat(g.NewIds).ToArray()).ToList(), top, cancellationToken);
        var choices = new List<CompletionChoice>();
        for (var i = 0; i < generations.Count; i++)
        {
            var g = generations[i];
            var text = echo ? prompts[i] + g.Text : g.Text;
            CompletionLogprobs? logprobs = null;
            if (scored is not null)
            {
                var all = g.PromptIds.Concat(g.NewIds).ToArray();
                logprobs = WireLogprobs(all, scored[i], firstToken: echo ? 0 : g.PromptIds.Length);
            }
            choices.Add(new CompletionChoice { Index = i, Text = text, Logprobs = logprobs, FinishReason = g.FinishReason });
        }
        var usage = UsageOf(generations);
        metrics.AddTokens(usage.PromptTokens, usage.CompletionTokens);
        return new CompletionResponse { Id = id, Created = created, Model = modelName, Choices = choices, Usage = usage };
    }

    /// <summary>The roles a chat template renders; anything else is refused rather than silently dropped.</summary>
    static readonly string[] Roles = ["system", "user", "assistant"];

    async Task<object> ChatAsync(ChatCompletionRequest request, CancellationToken cancellationToken)
    {
        CheckCommon(request.Model, request.N, request.Stream == true && request.Logprobs == true);
        if (request.Messages.Count == 0) throw UserError.At("request", null, "messages", "must hold at least one message");
        for (var i = 0; i < request.Messages.Count; i++)
            if (!Roles.Contains(request.Messages[i].Role))
                throw UserError.At("request", null, $"messages[{i}].role", $"unknown role \"{request.Messages[i].Role}\" (expected system, user or assistant)");
        var messages = request.Messages.Select(m => new ChatMessage(m.Role, m.Content ?? "")).ToList();
        var prompt = generator.RenderChat(messages);
        var maxTokens = request.MaxCompletionTokens ?? request.MaxTokens ?? 128;
        if (maxTokens <= 0) throw UserError.At("request", null, "max_tokens", $"must be positive, got {maxTokens}");
        var promptTokens = Encode(prompt).Length;
        if (request.MaxCompletionTokens is null && request.MaxTokens is null) maxTokens = DefaultMaxTokens(maxTokens, promptTokens);
        CheckContext(promptTokens, maxTokens, "messages");
        CheckBatch((long)promptTokens + maxTokens);
        var sampling = Sampling(maxTokens, request.Temperature, request.TopP, request.TopK, request.Seed, request.MinTokens);
        var id = $"chatcmpl-{Guid.NewGuid():N}";
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (request.Stream == true)
            return Streamed([prompt], sampling, promptTokens,
                opening: [EventStream.ChatChunk(id, created, modelName, new() { ["role"] = "assistant", ["content"] = "" }, null)],
                piece: (_, text) => EventStream.ChatChunk(id, created, modelName, new() { ["content"] = text }, null),
                finish: (_, reason) => EventStream.ChatChunk(id, created, modelName, [], reason));
        var g = (await generator.GenerateAsync([prompt], sampling, cancellationToken))[0];

        ChatLogprobs? logprobs = null;
        if (request.Logprobs == true && g.NewIds.Length > 0)
        {
            var all = g.PromptIds.Concat(g.NewIds).ToArray();
            var scored = Scorer().TokenLogProbs([all], request.TopLogprobs ?? 0, cancellationToken)[0];
            // Token strings from decoding prefixes of the answer, so they concatenate to its text.
            var pieces = Pieces(g.NewIds, 0);
            logprobs = new ChatLogprobs(Enumerable.Range(0, g.NewIds.Length).Select(k => new ChatTokenLogprob(
                pieces[k].Text, scored[g.PromptIds.Length + k].LogProb,
                scored[g.PromptIds.Length + k].Top.Select(a => new TopLogprob(Decode([a.Id]), a.LogProb)).ToList())).ToList());
        }
        var usage = UsageOf([g]);
        metrics.AddTokens(usage.PromptTokens, usage.CompletionTokens);
        return new ChatCompletionResponse
        {
            Id = id,
            Created = created,
            Model = modelName,
            Choices = [new ChatChoice { Index = 0, Message = new WireMessage("assistant", g.Text), Logprobs = logprobs, FinishReason = g.FinishReason }],
            Usage = usage,
        };
    }

    /// <summary>What both endpoints refuse alike: another model's name (404), n other than 1, log-probs in a stream.</summary>
    void CheckCommon(string? model, int? n, bool streamWithLogprobs)
    {
        if (model is { } asked && asked != modelName)
            throw new RequestError(404, $"model: \"{asked}\" does not exist here (this server serves \"{modelName}\")");
        if (n is { } count && count != 1) throw UserError.At("request", null, "n", $"only 1 choice per prompt is served, got {count}");
        if (streamWithLogprobs) throw UserError.At("request", null, "logprobs", "log-probs are not streamed; send stream=false to get them");
    }

    /// <summary>A prompt longer than the context, or one whose answer would not fit after it, is a 400 as in vLLM.</summary>
    void CheckContext(int promptTokens, int maxTokens, string field)
    {
        var context = generator.ContextLength;
        if (context <= 0) return;
        if (promptTokens > context)
            throw UserError.At("request", null, field, $"prompt is {promptTokens} tokens; this model's context is {context}");
        if (promptTokens + maxTokens > context)
            throw UserError.At("request", null, "max_tokens", $"prompt is {promptTokens} tokens and max_tokens is {maxTokens}, {promptTokens + maxTokens} in all; this model's context is {context}");
    }

    int DefaultMaxTokens(int fallback, int longestPrompt) =>
        generator.ContextLength > 0 && longestPrompt < generator.ContextLength ? Math.Min(fallback, generator.ContextLength - longestPrompt) : fallback;

    void CheckBatch(long tokens)
    {
        if (tokens > serving.MaxBatchTokens)
            throw UserError.At("request", null, "prompt", $"the request needs {tokens} tokens (prompts plus max_tokens); the server's --max-batch-tokens is {serving.MaxBatchTokens}");
    }

    OrtScorer Scorer() => scorer ?? throw UserError.At(generator.ModelDir, null, null,
        "log-probs are unavailable: the folder has no rlaif.json (it was not written by rlaif), so only generation is served");

    int[] Encode(string text)
    {
        lock (tokenizerLock)
        {
            using var sequences = tokenizer.Encode(text);
            return sequences[0].ToArray();
        }
    }

    string Decode(ReadOnlySpan<int> ids)
    {
        lock (tokenizerLock) return tokenizer.Decode(ids);
    }

    /// <summary>
    /// Token strings for ids [first, end) and where each starts in the decoded text of those ids. They
    /// come from decoding growing prefixes, so they concatenate to the decoded text even where one
    /// character spans several byte tokens (a lone token would decode to a replacement character).
    /// </summary>
    List<(string Text, int Offset)> Pieces(int[] ids, int first)
    {
        var pieces = new List<(string, int)>(ids.Length - first);
        var baseLength = Decode(ids.AsSpan(0, first)).Length;
        var previous = baseLength;
        for (var t = first; t < ids.Length; t++)
        {
            var decoded = Decode(ids.AsSpan(0, t + 1));
            var start = Math.Min(previous, decoded.Length);
            pieces.Add((decoded[start..], start - baseLength));
            previous = decoded.Length;
        }
        return pieces;
    }

    /// <summary>OpenAI's completion log-probs for tokens [firstToken, end) of <paramref name="ids"/>; the first token of a text has none (null).</summary>
    CompletionLogprobs WireLogprobs(int[] ids, TokenLogProb[] scored, int firstToken)
    {
        var pieces = Pieces(ids, firstToken);
        var logprobs = new List<double?>();
        var tops = new List<Dictionary<string, double>?>();
        for (var t = firstToken; t < ids.Length; t++)
        {
            logprobs.Add(double.IsNaN(scored[t].LogProb) ? null : scored[t].LogProb);
            if (t == 0) { tops.Add(null); continue; }
            // Keyed by token text as OpenAI does; ids that decode alike keep the likelier entry.
            var top = new Dictionary<string, double>();
            foreach (var (id, lp) in scored[t].Top) top.TryAdd(Decode([id]), lp);
            tops.Add(top);
        }
        return new CompletionLogprobs
        {
            Tokens = pieces.Select(p => p.Text).ToList(),
            TokenLogprobs = logprobs,
            TopLogprobs = tops,
            TextOffset = pieces.Select(p => p.Offset).ToList(),
        };
    }

    static SamplingOptions Sampling(int maxTokens, double? temperature, double? topP, int? topK, int? seed, int? minTokens) => new()
    {
        MinNewTokens = minTokens ?? 0,
        MaxNewTokens = maxTokens,
        Temperature = temperature ?? 1.0,
        TopP = topP ?? 1.0,
        TopK = topK ?? 0,
        Seed = seed ?? 0,
    };

    static Usage UsageOf(IReadOnlyList<Generation> generations)
    {
        var prompt = generations.Sum(g => g.PromptIds.Length);
        var completion = generations.Sum(g => g.NewIds.Length);
        return new Usage(prompt, completion, prompt + completion);
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
        tokenizer.Dispose();
        generator.Dispose();
        scorer?.Dispose();
    }
}
