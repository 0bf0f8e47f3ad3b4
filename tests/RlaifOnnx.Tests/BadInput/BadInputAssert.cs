namespace RlaifOnnx.Tests.BadInput;

/// <summary>What every refused input must look like from outside: exit 2, one line on stderr naming the problem, no stack trace, nothing written.</summary>
public static class BadInputAssert
{
    public static void OneLineError(CliProcess.Result result, string naming, params string[] mustNotExist)
    {
        var all = result.Stdout + result.Stderr;
        Assert.False(all.Contains("   at ", StringComparison.Ordinal) || all.Contains("Unhandled exception", StringComparison.Ordinal), $"a stack trace:\n{all}");
        Assert.True(result.ExitCode == 2, $"exit {result.ExitCode}, stderr:\n{result.Stderr}");
        var lines = result.Stderr.TrimEnd('\n', '\r').Split('\n');
        Assert.True(lines.Length == 1, $"{lines.Length} lines on stderr:\n{result.Stderr}");
        Assert.StartsWith("error: ", lines[0]);
        // "a|b": either wording names the problem (e.g. a deadline or the attempts running out first).
        Assert.True(naming.Split('|').Any(n => lines[0].Contains(n, StringComparison.Ordinal)), $"\"{naming}\" not in: {lines[0]}");
        foreach (var path in mustNotExist)
            Assert.False(File.Exists(path) || Directory.Exists(path), $"{path} was left behind");
    }
}
