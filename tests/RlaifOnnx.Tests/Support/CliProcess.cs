using System.Diagnostics;

namespace RlaifOnnx.Tests;

/// <summary>Runs the real `rlaif` command (rlaif.dll beside the tests) in its own process: real exit code, real stdout and stderr.</summary>
public static class CliProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result Run(params string[] args) => RunWith(null, args);

    /// <summary><see cref="Run"/> with extra environment variables for the process.</summary>
    public static Result RunWith(IReadOnlyDictionary<string, string>? environment, params string[] args) => RunFor(TimeSpan.FromMinutes(2), environment, args);

    /// <summary><see cref="Run"/> for a whole pipeline: a longer limit before the process is killed.</summary>
    public static Result RunFor(TimeSpan limit, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "rlaif.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"rlaif {string.Join(' ', args)} did not finish in {limit.TotalMinutes} minutes");
        }
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary><see cref="Run"/> for tests that keep a server of their own running meanwhile.</summary>
    public static Task<Result> RunAsync(params string[] args) => Task.Run(() => Run(args));
}
