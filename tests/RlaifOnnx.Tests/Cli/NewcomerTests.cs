using System.Diagnostics;

namespace RlaifOnnx.Tests.Cli;

/// <summary>
/// README's commands in order, from a fresh clone with nothing beside it (tests/newcomer/newcomer.sh):
/// `make install` puts `rlaif` on the PATH, the first pipeline runs end to end at its smallest size, and
/// every command README shows in a code block parses. The clone is of the committed HEAD.
/// </summary>
public sealed class NewcomerTests
{
    [Fact]
    public async Task Readme_commands_work_from_a_fresh_clone()
    {
        var script = Path.Combine(Repository.Root, "tests", "newcomer", "newcomer.sh");
        var start = new ProcessStartInfo("bash", [script, Repository.Root])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Repository.Root,
        };
        using var process = Process.Start(start)!;
        var ct = TestContext.Current.CancellationToken;
        var stderr = process.StandardError.ReadToEndAsync(ct);
        var stdout = await process.StandardOutput.ReadToEndAsync(ct);
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(TimeSpan.FromMinutes(10));
        await process.WaitForExitAsync(limit.Token);
        Assert.True(process.ExitCode == 0, $"newcomer.sh exited {process.ExitCode}\n{stdout}\n{await stderr}");
        Assert.Contains("newcomer: ok", stdout);
    }
}
