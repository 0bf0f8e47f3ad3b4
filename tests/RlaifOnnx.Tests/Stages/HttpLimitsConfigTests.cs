using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using RlaifOnnx.Tests.BadInput;

namespace RlaifOnnx.Tests.Stages;

/// <summary>
/// The http_timeout_seconds and http_deadline_seconds keys (and generate's flags of the same names) against a
/// real server on 127.0.0.1 that answers every chat request correctly, but only after a pause: short limits
/// end the run in one line naming the limit; long limits let it through even where the environment's are short
/// (the stage's keys win over $RLAIF_HTTP_TIMEOUT and $RLAIF_HTTP_DEADLINE).
/// </summary>
public class HttpLimitsConfigTests
{
    static readonly TimeSpan Pause = TimeSpan.FromSeconds(1.5);

    static Task<TestHttpServer> SlowServer() => TestHttpServer.StartAsync(async (c, _) =>
    {
        await Task.Delay(Pause, c.RequestAborted);
        c.Response.ContentType = "application/json";
        await c.Response.WriteAsync("{\"id\": \"x\", \"object\": \"chat.completion\", \"model\": \"m\", \"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": \"Tea is good.\"}, \"finish_reason\": \"stop\"}]}");
    });

    static string[] Revise(TestHttpServer server, TempDir temp, string output, params string[] extra)
    {
        var prompts = temp.File("prompts.txt");
        File.WriteAllText(prompts, "Is tea good?\n");
        return ["revise", "--prompts", prompts, "--helpful-model", server.BaseUrl.ToString(), "--helpful-server-model", "m", "--out", output,
            "--rounds", "1", "--few-shot", "0", .. extra];
    }

    [Fact]
    public async Task Short_limits_in_the_stage_config_end_the_run_in_one_line_naming_the_limit()
    {
        await using var server = await SlowServer();
        using var temp = new TempDir();
        var output = temp.File("run");
        var config = temp.File("revise.yaml");
        File.WriteAllText(config, "http_timeout_seconds: 0.3\nhttp_deadline_seconds: 2\n");
        var clock = Stopwatch.StartNew();
        var result = await Task.Run(() => CliProcess.Run([.. Revise(server, temp, output), "--config", config]));
        // The limits named are the config's (the defaults are 60 s and 300 s).
        BadInputAssert.OneLineError(result, "per-attempt timeout of 0.3 s|total deadline of 2 s ran out", output);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2 + 15), $"took {clock.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public async Task Long_limits_in_the_stage_config_win_over_short_ones_in_the_environment()
    {
        await using var server = await SlowServer();
        using var temp = new TempDir();
        var output = temp.File("run");
        var environment = new Dictionary<string, string> { ["RLAIF_HTTP_TIMEOUT"] = "0.3", ["RLAIF_HTTP_DEADLINE"] = "1" };
        // With the environment's limits alone every call fails...
        var refused = await Task.Run(() => CliProcess.RunWith(environment, Revise(server, temp, temp.File("refused"))));
        BadInputAssert.OneLineError(refused, "per-attempt timeout of 0.3 s|total deadline of 1 s ran out", temp.File("refused"));
        // ...and with the stage's keys every call is answered on its first attempt.
        var before = server.Requests;
        var result = await Task.Run(() => CliProcess.RunWith(environment, Revise(server, temp, output, "--http-timeout-seconds", "20", "--http-deadline-seconds", "60")));
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Single(File.ReadAllLines(Path.Combine(output, "revisions.jsonl")));
        Assert.Equal(3, server.Requests - before);   // answer, critique, revision: no retries
    }

    [Fact]
    public async Task Generate_takes_the_limits_as_flags()
    {
        await using var server = await SlowServer();
        using var temp = new TempDir();
        var prompts = temp.File("prompts.txt");
        File.WriteAllText(prompts, "Is tea good?\n");
        var output = temp.File("out.jsonl");
        var result = await Task.Run(() => CliProcess.Run("generate", "--model", server.BaseUrl.ToString(), "--model-name", "m", "--prompts", prompts, "--out", output,
            "--max-new-tokens", "4", "--http-timeout-seconds", "0.3", "--http-deadline-seconds", "2"));
        BadInputAssert.OneLineError(result, "per-attempt timeout of 0.3 s|total deadline of 2 s ran out", output);
    }
}
