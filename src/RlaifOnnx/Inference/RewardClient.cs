using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;
using RlaifOnnx.Core;

namespace RlaifOnnx.Inference;

/// <summary>Where a reward server is and how patiently to talk to it.</summary>
public sealed record RewardClientOptions
{
    /// <summary>The server's base URL, with or without the trailing /v1 (e.g. http://127.0.0.1:8000).</summary>
    public required Uri BaseUrl { get; init; }
    /// <summary>The model name sent with each request; null sends none and the server uses the one it serves.</summary>
    public string? Model { get; init; }
    /// <summary>The environment variable holding a bearer key; null, unset or empty sends no Authorization header.</summary>
    public string? ApiKeyEnvironmentVariable { get; init; }
    /// <summary>How long one HTTP attempt may take: 60 s, or $RLAIF_HTTP_TIMEOUT seconds.</summary>
    public TimeSpan Timeout { get; init; } = HttpRetry.FromEnvironment("RLAIF_HTTP_TIMEOUT", TimeSpan.FromSeconds(60));
    /// <summary>How long one call may take in all (attempts, backoffs, Retry-After waits capped at what is left): 5 min, or $RLAIF_HTTP_DEADLINE seconds.</summary>
    public TimeSpan Deadline { get; init; } = HttpRetry.FromEnvironment("RLAIF_HTTP_DEADLINE", TimeSpan.FromMinutes(5));
    /// <summary>Retries after the first attempt on 429, 5xx, timeouts and connection failures.</summary>
    public int MaxRetries { get; init; } = 5;
    /// <summary>The first backoff; each retry doubles it (with jitter), up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(500);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Most inputs in one POST /v1/rewards; longer lists go as several requests, one after another.</summary>
    public int MaxItemsPerRequest { get; init; } = 256;
}

/// <summary>
/// A preference model served by `rlaif serve --model PM_DIR` (Serving.RewardServer), as an
/// <see cref="IRewardModel"/>: the same rewards as a local <see cref="RewardScorer"/> over the same folder.
/// Failures with status 429 or 5xx, timeouts and refused connections are retried with
/// <see cref="OpenAIBackend"/>'s exponential backoff and jitter, honouring Retry-After; other statuses
/// (400 bad input, 401/403, 404 unknown model) fail at once with the server's message.
/// </summary>
public sealed class RewardClient : IRewardModel
{
    readonly HttpClient http;
    readonly string? apiKey;
    readonly RewardClientOptions options;
    readonly Uri rewardsUrl;

    public RewardClient(RewardClientOptions options, HttpMessageHandler? handler = null)
    {
        if (options.MaxItemsPerRequest <= 0) throw UserError.At("reward client", null, "max_items_per_request", $"must be positive, got {options.MaxItemsPerRequest}");
        if (options.MaxRetries < 0) throw UserError.At("reward client", null, "max_retries", $"must be 0 or more, got {options.MaxRetries}");
        this.options = options;
        rewardsUrl = new Uri(OpenAIBackend.ApiBase(options.BaseUrl), "rewards");
        // Per-attempt timeouts and the deadline are the resilience pipeline's, so the client never times out by itself.
        http = new HttpClient(handler ?? new SocketsHttpHandler(), disposeHandler: true) { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
        var key = options.ApiKeyEnvironmentVariable is { } name ? Environment.GetEnvironmentVariable(name) : null;
        apiKey = string.IsNullOrEmpty(key) ? null : key;
        if (apiKey is not null) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
    }

    /// <summary>One reward per (conversation, response), in input order; the server renders each with the PM's chat template.</summary>
    public async Task<double[]> RewardsAsync(IReadOnlyList<(IReadOnlyList<ChatMessage> Context, string Response)> items, CancellationToken cancellationToken = default) =>
        (await ScoreAsync(items.Select(p => RewardInput.OfPair(p.Context, p.Response)).ToList(), cancellationToken)).Select(e => e.Reward).ToArray();

    /// <summary>One reward per already-rendered text, in input order.</summary>
    public async Task<double[]> TextRewardsAsync(IReadOnlyList<string> texts, CancellationToken cancellationToken = default) =>
        (await ScoreAsync(texts.Select(RewardInput.OfText).ToList(), cancellationToken)).Select(e => e.Reward).ToArray();

    /// <summary>The server's entries (reward and truncated flag) for any mix of inputs, in input order; index i is input i.</summary>
    public async Task<IReadOnlyList<RewardEntry>> ScoreAsync(IReadOnlyList<RewardInput> inputs, CancellationToken cancellationToken = default)
    {
        var entries = new List<RewardEntry>(inputs.Count);
        for (var start = 0; start < inputs.Count; start += options.MaxItemsPerRequest)
        {
            var count = Math.Min(options.MaxItemsPerRequest, inputs.Count - start);
            var body = RequestBody(inputs, start, count);
            var response = await SendAsync(body, cancellationToken);
            // The server answers in input order with indices 0..count-1; anything else is a broken server.
            if (response.Data.Count != count || response.Data.Where((e, k) => e.Index != k).Any())
                throw new UserError($"{HttpRetry.Redact(rewardsUrl.ToString(), null)} answered {response.Data.Count} entries for {count} inputs, or out of order");
            entries.AddRange(response.Data.Select(e => e with { Index = e.Index + start }));
        }
        return entries;
    }

    /// <summary>{"model"?, "input": [text | {"messages", "response"}, …]} for inputs [start, start + count).</summary>
    string RequestBody(IReadOnlyList<RewardInput> inputs, int start, int count)
    {
        var array = new JsonArray();
        for (var i = start; i < start + count; i++)
        {
            var input = inputs[i];
            if (input.Text is { } text) { array.Add(text); continue; }
            if (input.Messages is null || input.Response is null)
                throw UserError.At("reward input", null, $"[{i}]", "needs either Text or both Messages and Response");
            var messages = new JsonArray();
            foreach (var m in input.Messages) messages.Add(new JsonObject { ["role"] = m.Role, ["content"] = m.Content });
            array.Add(new JsonObject { ["messages"] = messages, ["response"] = input.Response });
        }
        var root = new JsonObject();
        if (options.Model is { } model) root["model"] = model;
        root["input"] = array;
        return root.ToJsonString();
    }

    /// <summary>One POST with retries (<see cref="HttpRetry"/>).</summary>
    Task<RewardResponse> SendAsync(string body, CancellationToken cancellationToken) =>
        HttpRetry.SendAsync(http,
            () => new HttpRequestMessage(HttpMethod.Post, rewardsUrl) { Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json") },
            new RetryPolicy(options.Timeout, options.Deadline, options.MaxRetries, options.InitialBackoff, options.MaxBackoff, options.ApiKeyEnvironmentVariable, apiKey),
            text => JsonSerializer.Deserialize<RewardResponse>(text, OpenAIJson.Options) is { Data: not null } parsed ? parsed
                : throw new UserError($"{HttpRetry.Redact(rewardsUrl.ToString(), null)} answered without a data list"),
            ErrorMessage, cancellationToken);

    /// <summary>The error's message from an OpenAI-shaped error body, else the body itself (shortened).</summary>
    static string ErrorMessage(string body)
    {
        try
        {
            if (JsonNode.Parse(body)?["error"]?["message"]?.GetValue<string>() is { } message) return message;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException) { }
        body = body.ReplaceLineEndings(" ");
        return body.Length <= 300 ? body : body[..300] + "…";
    }

    public void Dispose() => http.Dispose();
}
