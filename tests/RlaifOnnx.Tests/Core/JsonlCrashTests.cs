using System.Diagnostics;
using RlaifOnnx.Core;

namespace RlaifOnnx.Tests.Core;

/// <summary>
/// A real crash: a child process appends records until it is killed (SIGKILL, no cleanup), then the
/// file is reopened and the run finished. Every line the child left must be whole, and the finished
/// file must hold each record once, in order.
/// </summary>
public class JsonlCrashTests
{
    const string ChildFileVariable = "RLAIF_TEST_CRASH_CHILD_FILE";

    public sealed record Item(string Id, int Value, string Text);

    static Item Make(int i) => new($"item-{i}", i, new string((char)('a' + i % 26), 3000 + i * 37 % 6000));

    /// <summary>
    /// The child's body. The parent starts this test executable with the variable set; the module
    /// initializer runs before the test runner and never returns, so the child is nothing but this loop.
    /// </summary>
    [System.Runtime.CompilerServices.ModuleInitializer]
    internal static void ChildAppendsUntilKilled()
    {
        var path = Environment.GetEnvironmentVariable(ChildFileVariable);
        if (path is null) return;
        using var writer = ResumableJsonlWriter<Item>.Open(path, r => r.Id);
        for (var i = writer.Count; ; i++) writer.Append(Make(i));
    }

    [Fact]
    public void KilledWriterProcess_ResumesWithNoLossAndNoDuplicate()
    {
        using var dir = new TempDir();
        var path = dir.File("out.jsonl");
        var apphost = Path.Combine(AppContext.BaseDirectory, OperatingSystem.IsWindows() ? "RlaifOnnx.Tests.exe" : "RlaifOnnx.Tests");
        var start = new ProcessStartInfo(File.Exists(apphost) ? apphost : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (!File.Exists(apphost)) start.ArgumentList.Add(typeof(JsonlCrashTests).Assembly.Location);
        start.Environment[ChildFileVariable] = path;

        using (var child = Process.Start(start)!)
        {
            child.OutputDataReceived += (_, _) => { };
            child.ErrorDataReceived += (_, _) => { };
            child.BeginOutputReadLine();
            child.BeginErrorReadLine();
            var deadline = Stopwatch.StartNew();
            while ((!File.Exists(path) || new FileInfo(path).Length < 2_000_000) && !child.HasExited && deadline.Elapsed < TimeSpan.FromSeconds(60))
                Thread.Sleep(20);
            Assert.False(child.HasExited, $"the child exited on its own with code {(child.HasExited ? child.ExitCode : 0)}");
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
        }

        var bytes = File.ReadAllBytes(path);
        var completeLines = bytes.Count(b => b == (byte)'\n');
        Assert.True(completeLines > 100, $"only {completeLines} lines were written before the kill");

        const int extra = 50;
        int total;
        using (var writer = ResumableJsonlWriter<Item>.Open(path, r => r.Id))
        {
            // Everything the child finished is kept; only a torn tail (if the kill hit a write) is dropped.
            Assert.Equal(completeLines, writer.ResumedCount);
            total = completeLines + extra;
            for (var i = 0; i < total; i++)
                if (!writer.IsDone(Make(i).Id)) writer.Append(Make(i));
            Assert.Equal(total, writer.Count);
        }
        var records = Jsonl.ReadAll<Item>(path);
        Assert.Equal(total, records.Count);
        for (var i = 0; i < total; i++) Assert.Equal(Make(i), records[i]);
    }
}
