using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using RlaifOnnx.Core;

namespace RlaifOnnx.Inference;

/// <summary>How patiently an HTTP client talks to a server: per-attempt timeout, retries and their backoff.</summary>
internal sealed record RetryPolicy(TimeSpan Timeout, int MaxRetries, TimeSpan InitialBackoff, TimeSpan MaxBackoff, string? ApiKeyEnvironmentVariable);

/// <summary>
/// One HTTP request with retries, as the project's HTTP clients (<see cref="OpenAIBackend"/>,
/// <see cref="RewardClient"/>) make it: 429 and 5xx answers, timeouts and connection failures back off and
/// try again (after Retry-After when the server sends one); any other failing status is a
/// <see cref="UserError"/> at once, with a hint about the API key on 401/403.
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
        for (var attempt = 0; ; attempt++)
        {
            using var request = makeRequest();
            using var attemptTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            attemptTimeout.CancelAfter(policy.Timeout);
            string failure;
            TimeSpan? retryAfter = null;
            try
            {
                using var response = await http.SendAsync(request, attemptTimeout.Token);
                var body = await response.Content.ReadAsStringAsync(attemptTimeout.Token);
                if (response.IsSuccessStatusCode)
                {
                    try
                    {
                        return parse(body) ?? throw new HttpRequestException($"{request.RequestUri} answered with an empty body");
                    }
                    catch (JsonException e)
                    {
                        throw new HttpRequestException($"{request.RequestUri} answered with malformed JSON: {e.Message}");
                    }
                }
                failure = $"{request.RequestUri} answered {(int)response.StatusCode} {response.ReasonPhrase}: {describeError(body)}";
                if (!IsRetryable(response.StatusCode))
                {
                    if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
                        throw new UserError($"{failure} (the API key is read from ${policy.ApiKeyEnvironmentVariable ?? "(no variable given)"})");
                    throw new UserError(failure);
                }
                retryAfter = RetryAfter(response.Headers.RetryAfter, DateTimeOffset.UtcNow);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                failure = $"{request.RequestUri} did not answer within {policy.Timeout.TotalSeconds:0.#} s";
            }
            catch (HttpRequestException e) when (e.StatusCode is null && e.InnerException is not null)
            {
                failure = $"{request.RequestUri}: {e.Message}";   // connection refused, reset, DNS
            }
            if (attempt >= policy.MaxRetries)
                throw new HttpRequestException($"{failure} (gave up after {attempt + 1} attempts)");
            var delay = retryAfter ?? Backoff(attempt, policy.InitialBackoff, policy.MaxBackoff, Random.Shared.NextDouble());
            await Task.Delay(delay, cancellationToken);
        }
    }

    static bool IsRetryable(HttpStatusCode status) => status == HttpStatusCode.TooManyRequests || (int)status >= 500;

    /// <summary>
    /// Exponential backoff with "equal jitter": the capped delay initial·2^attempt, of which half is
    /// fixed and half random (<paramref name="random01"/> in [0, 1)), so retries of many clients spread out.
    /// </summary>
    internal static TimeSpan Backoff(int attempt, TimeSpan initial, TimeSpan max, double random01)
    {
        var capped = Math.Min(max.TotalMilliseconds, initial.TotalMilliseconds * Math.Pow(2, attempt));
        return TimeSpan.FromMilliseconds(capped / 2 + capped / 2 * random01);
    }

    /// <summary>Retry-After as seconds or as an HTTP date (RFC 9110 §10.2.3); never negative.</summary>
    internal static TimeSpan? RetryAfter(RetryConditionHeaderValue? header, DateTimeOffset now)
    {
        if (header?.Delta is { } delta) return delta < TimeSpan.Zero ? TimeSpan.Zero : delta;
        if (header?.Date is { } date) return date > now ? date - now : TimeSpan.Zero;
        return null;
    }
}
