using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using RlaifOnnx.Core;

namespace RlaifOnnx.Inference;

/// <summary>Where an OpenAI-compatible server is and how patiently to talk to it.</summary>
public sealed record OpenAIOptions
{
    /// <summary>The server's base URL, with or without the trailing /v1 (e.g. http://127.0.0.1:8000).</summary>
    public required Uri BaseUrl { get; init; }
    /// <summary>The model name sent with each request; null asks /v1/models and takes the first.</summary>
    public string? Model { get; init; }
    /// <summary>The environment variable holding the API key; unset or empty sends no Authorization header.</summary>
    public string ApiKeyEnvironmentVariable { get; init; } = "OPENAI_API_KEY";
    /// <summary>How long one HTTP attempt may take: 60 s, or $RLAIF_HTTP_TIMEOUT seconds.</summary>
    public TimeSpan Timeout { get; init; } = HttpRetry.FromEnvironment("RLAIF_HTTP_TIMEOUT", TimeSpan.FromSeconds(60));
    /// <summary>How long one call may take in all (attempts, backoffs, Retry-After waits capped at what is left): 5 min, or $RLAIF_HTTP_DEADLINE seconds.</summary>
    public TimeSpan Deadline { get; init; } = HttpRetry.FromEnvironment("RLAIF_HTTP_DEADLINE", TimeSpan.FromMinutes(5));
    /// <summary>Retries after the first attempt on 429, 5xx, timeouts and connection failures.</summary>
    public int MaxRetries { get; init; } = 5;
    /// <summary>The first backoff; each retry doubles it (with jitter), up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(500);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Requests in flight at once (chat has no batch endpoint, so a batch becomes parallel requests).</summary>
    public int MaxConcurrency { get; init; } = 4;
    /// <summary>
    /// max_tokens for scoring requests (echo=true). 0 asks for the prompt's log-probs only; some servers
    /// insist on at least 1, and the extra generated token is ignored either way.
    /// </summary>
    public int ScoringMaxTokens { get; init; } = 1;

    /// <summary>These options with the per-attempt timeout and total deadline given in seconds (null keeps the current one).</summary>
    public OpenAIOptions WithLimits(double? timeoutSeconds, double? deadlineSeconds) => this with
    {
        Timeout = timeoutSeconds is { } t ? TimeSpan.FromSeconds(t) : Timeout,
        Deadline = deadlineSeconds is { } d ? TimeSpan.FromSeconds(d) : Deadline,
    };
}

/// <summary>
/// An OpenAI-compatible HTTP server as a generator and scorer (vLLM, llama.cpp's server, Ollama, hosted
/// APIs, or our own `rlaif serve` (Serving.OpenAIServer)). Chats go to /v1/chat/completions, raw prompts to
/// /v1/completions. Scoring sends prompt+continuation to /v1/completions with echo=true and logprobs=1
/// and sums the log-probs of the echoed tokens that reach past the prompt's end (by text_offset) — the
/// tokens that overlap the continuation, matching the local scorer's longest-common-prefix rule.
/// Failures with status 429 or 5xx, timeouts and refused connections are retried with exponential
/// backoff and jitter, honouring Retry-After. Every request of a batch carries the same seed.
/// </summary>
public sealed class OpenAIBackend : ITextGenerator, IScorer
{
    readonly HttpClient http;
    readonly string? apiKey;
    readonly OpenAIOptions options;
    readonly Uri apiBase;
    readonly SemaphoreSlim concurrency;
    string? model;

    public OpenAIBackend(OpenAIOptions options, HttpMessageHandler? handler = null)
    {
        this.options = options;
        if (options.MaxConcurrency <= 0) throw UserError.At("openai", null, "max_concurrency", $"must be positive, got {options.MaxConcurrency}");
        apiBase = ApiBase(options.BaseUrl);
        // Per-attempt timeouts and the deadline are the resilience pipeline's, so the client never times out by itself.
        http = new HttpClient(handler ?? new SocketsHttpHandler(), disposeHandler: true) { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
        var key = Environment.GetEnvironmentVariable(options.ApiKeyEnvironmentVariable);
        apiKey = string.IsNullOrEmpty(key) ? null : key;
        if (apiKey is not null) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        concurrency = new SemaphoreSlim(options.MaxConcurrency, options.MaxConcurrency);
        model = options.Model;
    }

    /// <summary>"http://host:8000", "http://host:8000/" and "http://host:8000/v1" all become "http://host:8000/v1/".</summary>
    internal static Uri ApiBase(Uri baseUrl)
    {
        var text = baseUrl.ToString().TrimEnd('/');
        if (!text.EndsWith("/v1", StringComparison.Ordinal)) text += "/v1";
        return new Uri(text + "/");
    }

    public async Task<IReadOnlyList<string>> ChatAsync(IReadOnlyList<IReadOnlyList<ChatMessage>> chats, SamplingOptions sampling, CancellationToken cancellationToken = default)
    {
        var name = await ModelNameAsync(cancellationToken);
        return await Task.WhenAll(chats.Select(async chat =>
        {
            var request = new ChatCompletionRequest
            {
                Model = name,
                Messages = chat.Select(m => new WireMessage(m.Role, m.Content)).ToList(),
                MaxTokens = sampling.MaxNewTokens,
                Temperature = sampling.Temperature,
                TopP = sampling.TopP,
                TopK = sampling.TopK > 0 ? sampling.TopK : null,
                Seed = sampling.Seed,
            };
            var response = await PostAsync<ChatCompletionRequest, ChatCompletionResponse>("chat/completions", request, cancellationToken);
            return FirstChoice(response.Choices, "chat/completions").Message.Content ?? "";
        }));
    }

    public async Task<IReadOnlyList<string>> CompleteAsync(IReadOnlyList<string> prompts, SamplingOptions sampling, CancellationToken cancellationToken = default)
    {
        var name = await ModelNameAsync(cancellationToken);
        return await Task.WhenAll(prompts.Select(async prompt =>
        {
            var request = new CompletionRequest
            {
                Model = name,
                Prompt = JsonSerializer.SerializeToElement(prompt),
                MaxTokens = sampling.MaxNewTokens,
                Temperature = sampling.Temperature,
                TopP = sampling.TopP,
                TopK = sampling.TopK > 0 ? sampling.TopK : null,
                Seed = sampling.Seed,
            };
            var response = await PostAsync<CompletionRequest, CompletionResponse>("completions", request, cancellationToken);
            return FirstChoice(response.Choices, "completions").Text;
        }));
    }

    /// <summary>
    /// One /v1/chat/completions request as given (logprobs, top_logprobs …), with retries; the model
    /// name is filled in when the request has none.
    /// </summary>
    public async Task<ChatCompletionResponse> ChatCompletionAsync(ChatCompletionRequest request, CancellationToken cancellationToken = default) =>
        await PostAsync<ChatCompletionRequest, ChatCompletionResponse>("chat/completions",
            request with { Model = request.Model ?? await ModelNameAsync(cancellationToken) }, cancellationToken);

    /// <summary>One /v1/completions request as given (logprobs, echo …), with retries.</summary>
    public async Task<CompletionResponse> CompletionAsync(CompletionRequest request, CancellationToken cancellationToken = default) =>
        await PostAsync<CompletionRequest, CompletionResponse>("completions",
            request with { Model = request.Model ?? await ModelNameAsync(cancellationToken) }, cancellationToken);

    public async Task<IReadOnlyList<double>> ContinuationLogProbsAsync(IReadOnlyList<(string Prompt, string Continuation)> pairs, CancellationToken cancellationToken = default)
    {
        var name = await ModelNameAsync(cancellationToken);
        return await Task.WhenAll(pairs.Select(p => ScoreAsync(name, p.Prompt, p.Continuation, cancellationToken)));
    }

    /// <summary>Each (prompt, candidate) is one echo request; a server with prefix caching shares the prompt's work.</summary>
    public async Task<IReadOnlyList<double[]>> CandidateLogProbsAsync(IReadOnlyList<string> prompts, IReadOnlyList<string> candidates, CancellationToken cancellationToken = default)
    {
        var name = await ModelNameAsync(cancellationToken);
        return await Task.WhenAll(prompts.Select(prompt =>
            Task.WhenAll(candidates.Select(c => ScoreAsync(name, prompt, c, cancellationToken)))));
    }

    async Task<double> ScoreAsync(string name, string prompt, string continuation, CancellationToken cancellationToken)
    {
        var text = prompt + continuation;
        var request = new CompletionRequest
        {
            Model = name,
            Prompt = JsonSerializer.SerializeToElement(text),
            MaxTokens = options.ScoringMaxTokens,
            Temperature = 0,
            Logprobs = 1,
            Echo = true,
        };
        var response = await PostAsync<CompletionRequest, CompletionResponse>("completions", request, cancellationToken);
        var logprobs = FirstChoice(response.Choices, "completions").Logprobs;
        if (logprobs is null || logprobs.TokenLogprobs.Count == 0 || logprobs.Tokens.Count != logprobs.TokenLogprobs.Count)
            throw new UserError($"{HttpRetry.Redact(apiBase.ToString(), null)}completions returned no log-probs for an echo=true, logprobs=1 request; scoring needs a server that returns prompt log-probs (vLLM, llama.cpp's server, `rlaif serve`)");
        return SumContinuation(logprobs, prompt.Length, text.Length, new Uri(HttpRetry.Redact(apiBase.ToString(), null)));
    }

    /// <summary>
    /// Sums the log-probs of echoed tokens that end after the prompt (they overlap the continuation) and
    /// start inside the text (not the generated extra token). Offsets come from text_offset, or from the
    /// running length of the token strings when a server omits it.
    /// </summary>
    internal static double SumContinuation(CompletionLogprobs logprobs, int promptLength, int textLength, Uri source)
    {
        var offsets = logprobs.TextOffset;
        if (offsets is null || offsets.Count != logprobs.Tokens.Count)
        {
            offsets = new List<int>(logprobs.Tokens.Count);
            var running = 0;
            foreach (var token in logprobs.Tokens) { offsets.Add(running); running += token.Length; }
        }
        double sum = 0;
        var counted = 0;
        for (var i = 0; i < logprobs.Tokens.Count; i++)
        {
            var start = offsets[i];
            var end = i + 1 < offsets.Count ? offsets[i + 1] : start + logprobs.Tokens[i].Length;
            if (start >= textLength || end <= promptLength) continue;
            var lp = logprobs.TokenLogprobs[i]
                ?? throw new UserError($"{source}completions returned no log-prob for continuation token {i} (\"{logprobs.Tokens[i]}\"); the prompt must come before the continuation");
            sum += lp;
            counted++;
        }
        if (counted == 0) throw new UserError($"{source}completions echoed no token after the prompt; is the continuation empty?");
        return sum;
    }

    static T FirstChoice<T>(List<T> choices, string endpoint) =>
        choices.Count > 0 ? choices[0] : throw new UserError($"/v1/{endpoint} answered with no choices");

    async Task<string> ModelNameAsync(CancellationToken cancellationToken)
    {
        if (model is not null) return model;
        var list = await SendAsync<ModelList>(() => new HttpRequestMessage(HttpMethod.Get, new Uri(apiBase, "models")), cancellationToken);
        model = list.Data.FirstOrDefault()?.Id ?? throw new UserError($"{HttpRetry.Redact(apiBase.ToString(), null)}models lists no model; name one with --model-name");
        return model;
    }

    Task<TResponse> PostAsync<TRequest, TResponse>(string endpoint, TRequest body, CancellationToken cancellationToken) =>
        SendAsync<TResponse>(() => new HttpRequestMessage(HttpMethod.Post, new Uri(apiBase, endpoint))
        {
            Content = JsonContent.Create(body, options: OpenAIJson.Options),
        }, cancellationToken);

    /// <summary>One request with retries (<see cref="HttpRetry"/>), at most as many at once as the options allow.</summary>
    async Task<TResponse> SendAsync<TResponse>(Func<HttpRequestMessage> makeRequest, CancellationToken cancellationToken)
    {
        await concurrency.WaitAsync(cancellationToken);
        try
        {
            return await HttpRetry.SendAsync(http, makeRequest,
                new RetryPolicy(options.Timeout, options.Deadline, options.MaxRetries, options.InitialBackoff, options.MaxBackoff, options.ApiKeyEnvironmentVariable, apiKey),
                body => JsonSerializer.Deserialize<TResponse>(body, OpenAIJson.Options), Shorten, cancellationToken);
        }
        finally
        {
            concurrency.Release();
        }
    }

    static string Shorten(string s)
    {
        s = s.ReplaceLineEndings(" ");
        return s.Length <= 300 ? s : s[..300] + "…";
    }

    public void Dispose()
    {
        http.Dispose();
        concurrency.Dispose();
    }
}
