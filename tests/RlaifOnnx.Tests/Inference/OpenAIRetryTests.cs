using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;

namespace RlaifOnnx.Tests.Inference;

/// <summary>The HTTP client against servers that fail on purpose.</summary>
public class OpenAIRetryTests
{
    const string Completion = """{"id":"c","object":"text_completion","created":0,"model":"m","choices":[{"index":0,"text":" fine","finish_reason":"stop"}]}""";
    static readonly SamplingOptions Greedy = new() { Temperature = 0, MaxNewTokens = 4 };

    static OpenAIBackend Client(Uri url, int maxRetries = 3) => new(new OpenAIOptions
    {
        BaseUrl = url,
        Model = "m",
        MaxRetries = maxRetries,
        InitialBackoff = TimeSpan.FromMilliseconds(10),
        MaxBackoff = TimeSpan.FromMilliseconds(50),
        Timeout = TimeSpan.FromSeconds(20),
        ApiKeyEnvironmentVariable = "RLAIF_TEST_KEY_THAT_IS_NOT_SET",
    });

    static Task Json(HttpContext c, int status, string body)
    {
        c.Response.StatusCode = status;
        c.Response.ContentType = "application/json";
        return c.Response.WriteAsync(body);
    }

    [Fact]
    public async Task A_503_is_retried_and_the_next_200_is_returned()
    {
        await using var server = await TestHttpServer.StartAsync((c, n) => n == 1 ? Json(c, 503, """{"error":{"message":"warming up"}}""") : Json(c, 200, Completion));
        using var client = Client(server.BaseUrl);
        var texts = await client.CompleteAsync(["How are you?"], Greedy, TestContext.Current.CancellationToken);
        Assert.Equal([" fine"], texts);
        Assert.Equal(2, server.Requests);
    }

    [Fact]
    public async Task A_429_waits_as_long_as_Retry_After_says()
    {
        await using var server = await TestHttpServer.StartAsync((c, n) =>
        {
            if (n > 1) return Json(c, 200, Completion);
            c.Response.Headers.RetryAfter = "1";
            return Json(c, 429, """{"error":{"message":"slow down"}}""");
        });
        using var client = Client(server.BaseUrl);
        var clock = Stopwatch.StartNew();
        Assert.Equal([" fine"], await client.CompleteAsync(["x"], Greedy, TestContext.Current.CancellationToken));
        Assert.Equal(2, server.Requests);
        // The backoff alone would wait at most 10 ms; Retry-After asked for one second.
        Assert.True(server.Times[1] - server.Times[0] >= TimeSpan.FromMilliseconds(950), $"retried after {(server.Times[1] - server.Times[0]).TotalMilliseconds} ms");
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(950));
    }

    [Fact]
    public async Task Persistent_5xx_gives_up_after_the_retries()
    {
        await using var server = await TestHttpServer.StartAsync((c, n) => Json(c, 500, """{"error":{"message":"boom"}}"""));
        using var client = Client(server.BaseUrl, maxRetries: 2);
        var e = await Assert.ThrowsAsync<UserError>(() => client.CompleteAsync(["x"], Greedy, TestContext.Current.CancellationToken));
        Assert.Contains("500", e.Message);
        Assert.Contains("HTTP 500 after 3 attempts", e.Message);
        Assert.Equal(3, server.Requests);
    }

    [Fact]
    public async Task A_400_is_not_retried_and_is_a_user_error()
    {
        await using var server = await TestHttpServer.StartAsync((c, n) => Json(c, 400, """{"error":{"message":"unknown model m"}}"""));
        using var client = Client(server.BaseUrl);
        var e = await Assert.ThrowsAsync<UserError>(() => client.CompleteAsync(["x"], Greedy, TestContext.Current.CancellationToken));
        Assert.Contains("unknown model m", e.Message);
        Assert.Equal(1, server.Requests);
    }

    [Fact]
    public async Task A_401_names_the_api_key_variable()
    {
        await using var server = await TestHttpServer.StartAsync((c, n) => Json(c, 401, """{"error":{"message":"bad key"}}"""));
        using var client = Client(server.BaseUrl);
        var e = await Assert.ThrowsAsync<UserError>(() => client.ChatAsync([[new ChatMessage("user", "hi")]], Greedy, TestContext.Current.CancellationToken));
        Assert.Contains("$RLAIF_TEST_KEY_THAT_IS_NOT_SET", e.Message);
    }

    [Fact]
    public async Task The_api_key_comes_from_the_named_environment_variable()
    {
        string? seen = null;
        await using var server = await TestHttpServer.StartAsync((c, n) => { seen = c.Request.Headers.Authorization; return Json(c, 200, Completion); });
        Environment.SetEnvironmentVariable("RLAIF_TEST_KEY_FOR_AUTH", "sk-test-123");
        using var client = new OpenAIBackend(new OpenAIOptions { BaseUrl = server.BaseUrl, Model = "m", ApiKeyEnvironmentVariable = "RLAIF_TEST_KEY_FOR_AUTH" });
        await client.CompleteAsync(["x"], Greedy, TestContext.Current.CancellationToken);
        Assert.Equal("Bearer sk-test-123", seen);
    }

    [Fact]
    public async Task A_server_without_logprobs_gives_a_clear_error()
    {
        await using var server = await TestHttpServer.StartAsync((c, n) => Json(c, 200, Completion));
        using var client = Client(server.BaseUrl);
        var e = await Assert.ThrowsAsync<UserError>(() => client.ContinuationLogProbsAsync([("Question:", " yes")], TestContext.Current.CancellationToken));
        Assert.Contains("returned no log-probs", e.Message);
        Assert.Contains("/v1/completions", e.Message);
    }

    [Fact]
    public async Task A_slow_server_times_out_and_is_retried()
    {
        await using var server = await TestHttpServer.StartAsync(async (c, n) =>
        {
            if (n == 1) await Task.Delay(3000, c.RequestAborted).ContinueWith(_ => { });
            await Json(c, 200, Completion);
        });
        using var client = new OpenAIBackend(new OpenAIOptions
        {
            BaseUrl = server.BaseUrl, Model = "m", Timeout = TimeSpan.FromMilliseconds(300), InitialBackoff = TimeSpan.FromMilliseconds(10),
        });
        Assert.Equal([" fine"], await client.CompleteAsync(["x"], Greedy, TestContext.Current.CancellationToken));
        Assert.Equal(2, server.Requests);
    }
}
