using System.Diagnostics;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Http;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Tests.Serving;

namespace RlaifOnnx.Tests.Inference;

/// <summary>RewardClient against a real reward server equals the local scorer; it retries 429/5xx, sends the key, and `rlaif serve` deploys a PM folder.</summary>
public class RewardClientTests(RewardServerFixture fixture) : IClassFixture<RewardServerFixture>
{
    static readonly (IReadOnlyList<ChatMessage> Context, string Response)[] Pairs =
    [
        ([new("user", "Is tea good for you?")], "Yes, in moderation."),
        ([new("user", "Is tea good for you?")], "No idea."),
        ([new("system", "Be brief."), new("user", "How do I bake bread?")], "Flour, water, salt, yeast; knead, rise, bake."),
        ([new("user", "Hi!"), new("assistant", "Hello."), new("user", "Bye!")], "Goodbye."),
        ([new("user", "x")], "y"),
    ];

    static void AssertClose(double[] expected, double[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-6, $"[{i}]: expected {expected[i]}, got {actual[i]}");
    }

    [Fact]
    public async Task The_client_and_the_local_scorer_are_the_same_reward_model()
    {
        var ct = TestContext.Current.CancellationToken;
        IRewardModel local = fixture.Local;
        // Two items per request: five pairs take three requests, which must come back in order.
        using IRewardModel remote = new RewardClient(new RewardClientOptions { BaseUrl = fixture.Server.BaseUrl, MaxItemsPerRequest = 2 });
        var expected = await local.RewardsAsync(Pairs, ct);
        AssertClose(expected, await remote.RewardsAsync(Pairs, ct));
        Assert.Equal(Pairs.Length, expected.Distinct().Count());

        using var client = new RewardClient(new RewardClientOptions { BaseUrl = new Uri(fixture.Server.BaseUrl, "v1"), Model = "tiny-pm" });
        string[] texts = ["Tea is good.", "No.", string.Concat(Enumerable.Repeat("lorem ipsum dolor ", 60))];
        AssertClose(fixture.Local.Rewards(texts, TestContext.Current.CancellationToken), await client.TextRewardsAsync(texts, ct));
        var entries = await client.ScoreAsync([RewardInput.OfText(texts[2]), RewardInput.OfPair(Pairs[0].Context, Pairs[0].Response)], ct);
        Assert.Equal([true, false], entries.Select(e => e.Truncated));
        AssertClose([fixture.Local.Rewards([texts[2]], TestContext.Current.CancellationToken)[0], expected[0]], entries.Select(e => e.Reward).ToArray());
    }

    [Fact]
    public async Task An_unknown_model_is_a_user_error_without_retries()
    {
        using var client = new RewardClient(new RewardClientOptions { BaseUrl = fixture.Server.BaseUrl, Model = "other", InitialBackoff = TimeSpan.FromMilliseconds(5) });
        var e = await Assert.ThrowsAsync<UserError>(() => client.RewardsAsync(Pairs, TestContext.Current.CancellationToken));
        Assert.Contains("404", e.Message);
        Assert.Contains("\"other\" is not served here", e.Message);
    }

    [Fact]
    public async Task A_503_then_a_429_are_retried_and_the_key_is_sent()
    {
        var ct = TestContext.Current.CancellationToken;
        var variable = $"RLAIF_TEST_REWARD_KEY_{Guid.NewGuid():N}";
        Environment.SetEnvironmentVariable(variable, "secret-123");
        var seen = new List<string?>();
        using var forward = new HttpClient();
        // Fails twice, then passes the request on to the real reward server and its answer back.
        await using var proxy = await TestHttpServer.StartAsync(async (c, n) =>
        {
            lock (seen) seen.Add(c.Request.Headers.Authorization.ToString());
            if (n <= 2)
            {
                c.Response.StatusCode = n == 1 ? 503 : 429;
                if (n == 2) c.Response.Headers.RetryAfter = "0";
                await c.Response.WriteAsync("{\"error\":{\"message\":\"busy\"}}", ct);
                return;
            }
            using var reader = new StreamReader(c.Request.Body);
            using var content = new StringContent(await reader.ReadToEndAsync(ct), Encoding.UTF8, "application/json");
            using var answer = await forward.PostAsync(new Uri(fixture.Server.BaseUrl, "v1/rewards"), content, ct);
            c.Response.StatusCode = (int)answer.StatusCode;
            c.Response.ContentType = "application/json";
            await c.Response.WriteAsync(await answer.Content.ReadAsStringAsync(ct), ct);
        });
        try
        {
            using var client = new RewardClient(new RewardClientOptions
            {
                BaseUrl = proxy.BaseUrl, ApiKeyEnvironmentVariable = variable, InitialBackoff = TimeSpan.FromMilliseconds(5),
            });
            AssertClose(fixture.Local.Rewards(Pairs, TestContext.Current.CancellationToken), await client.RewardsAsync(Pairs, ct));
            Assert.Equal(3, proxy.Requests);
            Assert.All(seen, h => Assert.Equal("Bearer secret-123", h));
        }
        finally { Environment.SetEnvironmentVariable(variable, null); }
    }

    [Fact]
    public async Task Persistent_5xx_gives_up_after_the_retries()
    {
        await using var server = await TestHttpServer.StartAsync((c, n) => { c.Response.StatusCode = 500; return c.Response.WriteAsync("{\"error\":{\"message\":\"boom\"}}"); });
        using var client = new RewardClient(new RewardClientOptions { BaseUrl = server.BaseUrl, MaxRetries = 2, InitialBackoff = TimeSpan.FromMilliseconds(5) });
        var e = await Assert.ThrowsAsync<UserError>(() => client.TextRewardsAsync(["x"], TestContext.Current.CancellationToken));
        Assert.Contains("500", e.Message);
        Assert.Contains("boom", e.Message);
        Assert.Contains("HTTP 500 after 3 attempts", e.Message);
        Assert.Equal(3, server.Requests);
    }

    [Fact]
    public async Task Rlaif_serve_on_a_PM_folder_answers_rewards_as_a_process()
    {
        var ct = TestContext.Current.CancellationToken;
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "rlaif.dll"), "serve", "--model", fixture.Model.Dir, "--port", "0", "--model-name", "pm" }) start.ArgumentList.Add(a);
        using var serve = Process.Start(start)!;
        try
        {
            var first = await serve.StandardOutput.ReadLineAsync(ct);
            // stderr is read only when the server died: it stays open while the server runs.
            if (first is null) Assert.Fail($"rlaif serve printed nothing: {await serve.StandardError.ReadToEndAsync(ct)}");
            Assert.StartsWith("listening on http://127.0.0.1:", first);
            var url = new Uri(first["listening on ".Length..]);

            using var client = new RewardClient(new RewardClientOptions { BaseUrl = url, Model = "pm" });
            AssertClose(fixture.Local.Rewards(Pairs, TestContext.Current.CancellationToken), await client.RewardsAsync(Pairs, ct));
            using var http = new HttpClient();
            using var completions = await http.PostAsync(new Uri(url + "/completions"), new StringContent("{\"prompt\": \"a\"}", Encoding.UTF8, "application/json"), ct);
            Assert.Equal(HttpStatusCode.NotFound, completions.StatusCode);
        }
        finally
        {
            serve.Kill();
            await serve.WaitForExitAsync(ct);
        }
    }
}
