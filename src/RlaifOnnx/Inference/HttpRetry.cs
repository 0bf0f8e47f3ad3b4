using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Http.Resilience;
using Polly;
using Polly.Timeout;
using RlaifOnnx.Core;

namespace RlaifOnnx.Inference;

/// <summary>
/// How patiently an HTTP client talks to a server: each attempt may take <paramref name="Timeout"/>, the
/// whole call (attempts, backoffs and Retry-After waits) <paramref name="Deadline"/>; <paramref name="ApiKey"/>
/// is the bearer key sent, redacted from every error.
/// </summary>
internal sealed record RetryPolicy(TimeSpan Timeout, TimeSpan Deadline, int MaxRetries, TimeSpan InitialBackoff, TimeSpan MaxBackoff,
    string? ApiKeyEnvironmentVariable, string? ApiKey);

/// <summary>
/// One HTTP request with retries, as the project's HTTP clients (<see cref="OpenAIBackend"/>,
/// <see cref="RewardClient"/>) make it, on a Polly pipeline from Microsoft.Extensions.Http.Resilience:
/// a total deadline around retries (exponential backoff with jitter; 429, 408, 5xx, timeouts and
/// connection failures are retried, after Retry-After when the server sends one; one past what is left of
/// the deadline fails at once) around a per-attempt timeout. Any other failing status is a <see cref="UserError"/>
/// at once, with a hint about the API key on 401/403; running out of attempts or time is a
/// <see cref="UserError"/> that says which limit was hit. Errors never carry the key or a URL's userinfo.
/// </summary>
internal static class HttpRetry
{
    /// <summary>
    /// Sends the request <paramref name="makeRequest"/> builds (anew for every attempt) and parses a
    /// successful body with <paramref name="parse"/>; <paramref name="describeError"/> turns a failing body
    /// into the text of the error.
    /// </summary>
    public static async Task<T> SendAsync<T>(HttpClient http, Func<HttpRequestMessage> makeRequest, RetryPolicy policy,
        Func<string, T?> parse, Func<string, string> describeError, CancellationToken cancellationToken)
    {
        var attempts = 0;
        var deadlineHit = false;
        string? lastFailure = null;
        TimeSpan? askedRetryAfter = null;
        var started = DateTimeOffset.UtcNow;
        Uri? url = null;

        var builder = new ResiliencePipelineBuilder<HttpResponseMessage>()
            .AddTimeout(new HttpTimeoutStrategyOptions
            {
                Timeout = policy.Deadline,
                OnTimeout = _ => { deadlineHit = true; return default; },
            });
        if (policy.MaxRetries > 0)
            builder.AddRetry(new HttpRetryStrategyOptions
            {
                MaxRetryAttempts = policy.MaxRetries,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = policy.InitialBackoff,
                MaxDelay = policy.MaxBackoff,
                ShouldRetryAfterHeader = false,   // ours below: the same header, held against the deadline
                // A Retry-After past what is left of the deadline cannot be honoured: fail now and say so
                // rather than wait for nothing.
                ShouldHandle = args =>
                {
                    if (RetryAfter(args.Outcome.Result?.Headers.RetryAfter, DateTimeOffset.UtcNow) is { } asked
                        && asked >= policy.Deadline - (DateTimeOffset.UtcNow - started))
                    {
                        askedRetryAfter = asked;
                        return ValueTask.FromResult(false);
                    }
                    return ValueTask.FromResult(HttpClientResiliencePredicates.IsTransient(args.Outcome));
                },
                DelayGenerator = args => ValueTask.FromResult(RetryAfter(args.Outcome.Result?.Headers.RetryAfter, DateTimeOffset.UtcNow)),
            });
        var pipeline = builder.AddTimeout(new HttpTimeoutStrategyOptions { Timeout = policy.Timeout }).Build();

        HttpResponseMessage response;
        string body;
        try
        {
            response = await pipeline.ExecuteAsync(async token =>
            {
                attempts++;
                using var request = makeRequest();
                url = request.RequestUri;
                var answer = await http.SendAsync(request, token);   // buffers the body, under the attempt's timeout
                if (!answer.IsSuccessStatusCode)
                    lastFailure = $"HTTP {(int)answer.StatusCode}: {FirstLine(describeError(await answer.Content.ReadAsStringAsync(token)))}";
                return answer;
            }, cancellationToken);
        }
        catch (Exception e) when (e is TimeoutRejectedException or HttpRequestException && !cancellationToken.IsCancellationRequested)
        {
            // A deadline that ran out during a backoff surfaces as the last attempt's exception: judge by the clock too.
            deadlineHit |= DateTimeOffset.UtcNow - started >= policy.Deadline;
            var what = deadlineHit
                ? $"the total deadline of {Seconds(policy.Deadline)} ran out after {Attempts(attempts)}"
                    + (lastFailure is null ? "" : $"; last answer {lastFailure}")
                : e is TimeoutRejectedException
                    ? $"no answer within the per-attempt timeout of {Seconds(policy.Timeout)}, after {Attempts(attempts)}"
                    : $"{FirstLine(e.Message)} after {Attempts(attempts)}";
            throw new UserError(Redact($"{url}: {what}", policy.ApiKey));
        }

        using (response)
        {
            body = await response.Content.ReadAsStringAsync(cancellationToken);
            if (response.IsSuccessStatusCode)
            {
                try
                {
                    return parse(body) ?? throw new UserError(Redact($"{url}: answered with an empty body", policy.ApiKey));
                }
                catch (JsonException e)
                {
                    throw new UserError(Redact($"{url}: answered with malformed JSON: {FirstLine(e.Message)}", policy.ApiKey));
                }
            }
            var failure = $"{url}: HTTP {(int)response.StatusCode}";
            var message = FirstLine(describeError(body));
            if (askedRetryAfter is { } later)
                throw new UserError(Redact($"{failure} after {Attempts(attempts)}: the server asked to retry after {Seconds(later)}, past what is left of the total deadline of {Seconds(policy.Deadline)}: {message}", policy.ApiKey));
            if (IsRetryable(response.StatusCode))
                throw new UserError(Redact($"{failure} after {Attempts(attempts)}: {message}", policy.ApiKey));
            if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
                throw new UserError(Redact($"{failure}: {message} (the API key is read from ${policy.ApiKeyEnvironmentVariable ?? "(no variable given)"})", policy.ApiKey));
            throw new UserError(Redact($"{failure}: {message}", policy.ApiKey));
        }
    }

    static bool IsRetryable(HttpStatusCode status) =>
        status is HttpStatusCode.TooManyRequests or HttpStatusCode.RequestTimeout || (int)status >= 500;

    static string Attempts(int n) => n == 1 ? "1 attempt" : $"{n} attempts";

    static string Seconds(TimeSpan t) => $"{t.TotalSeconds:0.###} s";

    static string FirstLine(string text)
    {
        var line = text.ReplaceLineEndings("\n").Split('\n', 2)[0].Trim();
        return line.Length <= 300 ? line : line[..300] + "…";
    }

    /// <summary>
    /// <paramref name="text"/> without the bearer key we sent (wherever a server echoed it) and without the
    /// userinfo of any URL in it (http://user:password@host becomes http://***@host).
    /// </summary>
    internal static string Redact(string text, string? apiKey)
    {
        if (!string.IsNullOrEmpty(apiKey)) text = text.Replace(apiKey, "***", StringComparison.Ordinal);
        text = Regex.Replace(text, @"(?i)(bearer\s+)[^\s""',;]+", "$1***");
        return Regex.Replace(text, @"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@", "$1***@");
    }

    /// <summary>A duration in seconds from environment variable <paramref name="name"/>, or <paramref name="fallback"/> when it is unset.</summary>
    internal static TimeSpan FromEnvironment(string name, TimeSpan fallback)
    {
        var text = Environment.GetEnvironmentVariable(name);
        if (string.IsNullOrWhiteSpace(text)) return fallback;
        if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var seconds)
            || !double.IsFinite(seconds) || seconds < 0.01 || seconds > 86400)
            throw UserError.At($"${name}", null, null, $"must be a number of seconds from 0.01 to 86400, got \"{text}\"");
        return TimeSpan.FromSeconds(seconds);
    }

    /// <summary>Retry-After as seconds or as an HTTP date (RFC 9110 §10.2.3); never negative.</summary>
    internal static TimeSpan? RetryAfter(RetryConditionHeaderValue? header, DateTimeOffset now)
    {
        if (header?.Delta is { } delta) return delta < TimeSpan.Zero ? TimeSpan.Zero : delta;
        if (header?.Date is { } date) return date > now ? date - now : TimeSpan.Zero;
        return null;
    }
}
