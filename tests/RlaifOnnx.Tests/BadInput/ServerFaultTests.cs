using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Http;

namespace RlaifOnnx.Tests.BadInput;

/// <summary>
/// `rlaif generate --model http://…` against servers that misbehave in every way a deployment meets:
/// each ends within its deadline with one line and exit 2, and neither the bearer key nor the URL's
/// userinfo appears anywhere in the output, even when the server echoes them back.
/// </summary>
public class ServerFaultTests
{
    const string Key = "sk-secret-key-4242";
    const double DeadlineSeconds = 4;

    static CliProcess.Result Generate(Uri server, TempDir temp, out string outPath)
    {
        var prompts = temp.File("prompts.txt");
        File.WriteAllText(prompts, "Hello there\n");
        outPath = temp.File("out.jsonl");
        var url = new UriBuilder(server) { UserName = "alice", Password = "hunter2" }.Uri.ToString();
        return CliProcess.RunWith(new Dictionary<string, string>
        {
            ["OPENAI_API_KEY"] = Key, ["RLAIF_HTTP_TIMEOUT"] = "1", ["RLAIF_HTTP_DEADLINE"] = DeadlineSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
        }, "generate", "--model", url, "--model-name", "m", "--prompts", prompts, "--out", outPath, "--max-new-tokens", "4");
    }

    static void AssertFault(CliProcess.Result result, TimeSpan took, string naming)
    {
        BadInputAssert.OneLineError(result, naming);
        var all = result.Stdout + result.Stderr;
        Assert.DoesNotContain(Key, all);
        Assert.DoesNotContain("hunter2", all);
        Assert.DoesNotContain("alice", all);
        // The deadline, plus the process's own start-up.
        Assert.True(took < TimeSpan.FromSeconds(DeadlineSeconds + 15), $"took {took.TotalSeconds:0.0} s");
    }

    static async Task RunAgainst(Func<HttpContext, int, Task> handler, string naming)
    {
        await using var server = await TestHttpServer.StartAsync(handler);
        using var temp = new TempDir();
        var clock = Stopwatch.StartNew();
        var result = await Task.Run(() => Generate(server.BaseUrl, temp, out _));
        AssertFault(result, clock.Elapsed, naming);
    }

    static async Task Echo(HttpContext c, int status)
    {
        c.Response.StatusCode = status;
        // A careless server echoes the request's headers into its error body.
        await c.Response.WriteAsync($"{{\"error\":{{\"message\":\"failed; you sent Authorization: {c.Request.Headers.Authorization}\"}}}}");
    }

    [Fact]
    public Task Five_hundred_forever_runs_into_the_deadline_without_echoing_the_key() =>
        RunAgainst((c, _) => Echo(c, 500), "total deadline of 4 s ran out after|HTTP 500 after 6 attempts");

    [Fact]
    public Task Retry_After_past_the_deadline_is_capped_at_it() =>
        RunAgainst((c, _) => { c.Response.Headers.RetryAfter = "100000"; return Echo(c, 429); }, "the server asked to retry after 100000 s, past what is left of the total deadline of 4 s");

    [Fact]
    public Task A_server_that_never_answers_hits_the_per_attempt_timeout_and_then_the_deadline() =>
        RunAgainst(async (c, _) => await Task.Delay(Timeout.Infinite, c.RequestAborted).ContinueWith(_ => { }), "total deadline of 4 s ran out|per-attempt timeout of 1 s");

    [Fact]
    public Task A_reset_connection_is_retried_until_the_deadline() =>
        RunAgainst((c, _) => { c.Abort(); return Task.CompletedTask; }, "total deadline of 4 s ran out after|after 6 attempts");

    [Fact]
    public Task A_body_that_is_not_JSON_is_named() =>
        RunAgainst((c, _) => c.Response.WriteAsync("<html>oops</html>"), "malformed JSON");

    [Fact]
    public Task A_401_that_echoes_the_key_does_not_print_it() =>
        RunAgainst((c, _) => Echo(c, 401), "HTTP 401");

    [Fact]
    public void A_refused_connection_is_retried_until_the_deadline()
    {
        // A port that was free a moment ago and has nobody listening.
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        using var temp = new TempDir();
        var clock = Stopwatch.StartNew();
        var result = Generate(new Uri($"http://127.0.0.1:{port}/"), temp, out _);
        AssertFault(result, clock.Elapsed, "total deadline of 4 s ran out after|Connection refused");
    }

    [Fact]
    public async Task Label_against_a_failing_feedback_server_prints_only_the_error_and_leaves_no_output()
    {
        // The failure comes at the first batch, after validation: no "label: nothing to do" line before the
        // error, and no empty comparisons.jsonl (nor its folder) left behind.
        await using var server = await TestHttpServer.StartAsync((c, _) => Echo(c, 500));
        using var temp = new TempDir();
        var pairs = temp.File("pairs.jsonl");
        File.WriteAllText(pairs, "{\"id\": \"q1\", \"prompt\": \"Is tea good?\", \"response_a\": \"Yes\", \"response_b\": \"No\"}\n");
        var output = temp.File("run");
        var result = await Task.Run(() => CliProcess.RunWith(new Dictionary<string, string>
        {
            ["OPENAI_API_KEY"] = Key, ["RLAIF_HTTP_TIMEOUT"] = "1", ["RLAIF_HTTP_DEADLINE"] = "2",
        }, "label", "--pairs", pairs, "--feedback-model", server.BaseUrl.ToString(), "--out", output));
        BadInputAssert.OneLineError(result, "HTTP 500|total deadline of 2 s ran out", output);
        Assert.DoesNotContain(Key, result.Stdout + result.Stderr);
    }
}
