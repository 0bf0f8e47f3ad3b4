using System.Diagnostics;
using RlaifOnnx.Models;
using RlaifOnnx.Reporting;

namespace RlaifOnnx.Tests.Stages;

/// <summary>
/// Resumable stages killed (SIGKILL) at seeded random points, again and again, then run to the end: nothing
/// lost or repeated, the outputs byte-identical to an uninterrupted run's, metric steps strictly increasing,
/// and no temporary folder left behind. The compiled `rlaif` runs as a process, as a user runs it.
/// </summary>
public class KillTests
{
    /// <summary>Starts `rlaif ARGS`, kills it after <paramref name="after"/> unless it finished; true when it was killed.</summary>
    /// <summary>`rlaif ARGS` started with its output drained (so a full pipe never stalls it).</summary>
    static Process StartRlaif(string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "rlaif.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    internal static bool RunAndKill(string[] args, TimeSpan after)
    {
        using var process = StartRlaif(args);
        if (process.WaitForExit(after)) return false;
        process.Kill(entireProcessTree: true);   // SIGKILL: no finally blocks, no flushes
        process.WaitForExit();
        return true;
    }

    /// <summary>
    /// Kills runs into fresh output folders at seeded random delays until <paramref name="kills"/> kills have
    /// landed; whenever a folder's run gets to the end (a fast machine), that folder is checked with
    /// <paramref name="check"/> and the next kills go to a new one. Returns how many folders were checked.
    /// </summary>
    internal static int KillRepeatedly(string root, Func<string, string[]> args, Random random, int minMs, int maxMs, Action<string> check, int kills = 10)
    {
        var landed = 0;
        var folders = 0;
        while (landed < kills)
        {
            var output = Path.Combine(root, $"killed-{folders++}");
            while (landed < kills && RunAndKill(args(output), TimeSpan.FromMilliseconds(random.Next(minMs, maxMs)))) landed++;
            var last = CliProcess.Run(args(output));   // finish (or find it finished) and check
            Assert.True(last.ExitCode == 0, last.Stderr);
            check(output);
        }
        return folders;
    }

    /// <summary>
    /// Starts `rlaif ARGS` and SIGKILLs it as soon as <paramref name="reached"/> says it has got far enough (polled
    /// every few milliseconds); false when it finished first. Killing at a point of progress rather than after a
    /// time makes every kill land in the middle of the work however fast or loaded the machine is.
    /// </summary>
    internal static bool RunAndKillWhen(string[] args, Func<bool> reached)
    {
        using var process = StartRlaif(args);
        while (!reached())
            if (process.WaitForExit(5)) return false;
        process.Kill(entireProcessTree: true);
        process.WaitForExit();
        return true;
    }

    /// <summary>
    /// Ten (or <paramref name="kills"/>) SIGKILLs at seeded random points of progress: each run is killed once
    /// <paramref name="progress"/> (records or steps written so far, out of <paramref name="total"/>) passes a
    /// random target ahead of where it was resumed from. A folder near its end is finished and checked with
    /// <paramref name="check"/>, and the next kills go to a fresh one. Returns the progress seen at each kill.
    /// </summary>
    internal static List<int> KillAtProgress(string root, Func<string, string[]> args, Func<string, int> progress, int total, Random random, Action<string> check, int kills = 10)
    {
        var seen = new List<int>();
        var folders = 0;
        while (seen.Count < kills)
        {
            var output = Path.Combine(root, $"killed-{folders++}");
            while (seen.Count < kills)
            {
                var now = progress(output);
                if (now >= total - 1) break;
                var target = Math.Min(total - 1, now + 1 + random.Next(Math.Max(1, total / 12)));
                if (!RunAndKillWhen(args(output), () => progress(output) >= target)) break;
                seen.Add(progress(output));
            }
            var last = CliProcess.Run(args(output));   // finish (or find it finished) and check
            Assert.True(last.ExitCode == 0, last.Stderr);
            check(output);
        }
        return seen;
    }

    /// <summary>Complete lines in a file now (0 when it is not there yet): records or metric steps written so far.</summary>
    internal static int LinesIn(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var count = 0;
            int b;
            while ((b = stream.ReadByte()) >= 0) if (b == '\n') count++;
            return count;
        }
        catch (IOException) { return 0; }
    }

    internal static string[] TempFolders(string root) =>
        Directory.GetDirectories(root, "*", SearchOption.AllDirectories).Where(d => Path.GetFileName(d).EndsWith(".tmp", StringComparison.Ordinal)).ToArray();

    [Fact]
    public void Train_lm_killed_ten_times_at_random_points_ends_as_an_uninterrupted_run()
    {
        using var temp = new TempDir();
        using var lm = new LlamaFolder();
        var data = temp.File("data.jsonl");
        File.WriteAllLines(data, Enumerable.Range(0, 40).Select(i => $"{{\"text\": \"Sentence number {i} is about tea, bread and cheese.\"}}"));
        const int Steps = 1200;
        string[] Args(string output) => ["train-lm", "--model", lm.Dir, "--data", data, "--out", output, "--steps", $"{Steps}", "--batch-size", "2", "--save-every", "7"];

        var whole = temp.File("whole");
        var reference = CliProcess.Run(Args(whole));
        Assert.True(reference.ExitCode == 0, reference.Stderr);

        var expected = MetricsLog.Read(Path.Combine(whole, "metrics.jsonl"));
        KillRepeatedly(temp.Path, Args, new Random(20261204), 400, 2500, killed =>
        {
            // Identical weights, every step logged once in order with the uninterrupted run's values, no orphans.
            Assert.Equal(File.ReadAllBytes(Path.Combine(whole, "model", ModelFolder.DataFile)), File.ReadAllBytes(Path.Combine(killed, "model", ModelFolder.DataFile)));
            var got = MetricsLog.Read(Path.Combine(killed, "metrics.jsonl"));
            Assert.Equal(Enumerable.Range(1, Steps).Select(i => (long)i), got.Select(m => m.Step));
            for (var i = 0; i < Steps; i++) Assert.Equal(expected[i].Values["loss"], got[i].Values["loss"]);
            Assert.Empty(TempFolders(killed));
        });
    }

    [Fact]
    public void Label_killed_ten_times_at_random_points_loses_and_repeats_no_record()
    {
        using var temp = new TempDir();
        var model = temp.File("lm");
        var made = CliProcess.Run("model", "create", "--arch", "llama", "--out", model, "--hidden-size", "32", "--layers", "2", "--heads", "4", "--max-positions", "1024", "--vocab-size", "300");
        Assert.True(made.ExitCode == 0, made.Stderr);
        const int Pairs = 400;
        var pairs = temp.File("pairs.jsonl");
        File.WriteAllLines(pairs, Enumerable.Range(0, Pairs).Select(i =>
            $"{{\"id\": \"q{i}\", \"prompt\": \"Question {i}: is tea good?\", \"response_a\": \"Yes {i}, tea is good.\", \"response_b\": \"No {i}, tea is bad.\"}}"));
        string[] Args(string output) => ["label", "--pairs", pairs, "--feedback-model", model, "--out", output];

        var whole = temp.File("whole");
        var reference = CliProcess.Run(Args(whole));
        Assert.True(reference.ExitCode == 0, reference.Stderr);

        KillRepeatedly(temp.Path, Args, new Random(1204), 700, 1400, killed =>
        {
            foreach (var file in new[] { "comparisons.jsonl", "preferences.jsonl" })
            {
                var lines = File.ReadAllLines(Path.Combine(killed, file));
                Assert.Equal(Pairs, lines.Length);                                    // 0 lost
                Assert.Equal(Pairs, lines.Distinct().Count());                        // 0 repeated
                Assert.Equal(File.ReadAllBytes(Path.Combine(whole, file)), File.ReadAllBytes(Path.Combine(killed, file)));
            }
            var steps = MetricsLog.Read(Path.Combine(killed, "metrics.jsonl")).Select(m => m.Step).ToList();
            Assert.True(steps.Zip(steps.Skip(1)).All(p => p.First < p.Second), $"metric steps not strictly increasing: {string.Join(",", steps)}");
            Assert.Empty(TempFolders(killed));
            Assert.Empty(Directory.GetFiles(killed, "*.tmp", SearchOption.AllDirectories));
        });
    }

    [Fact]
    public void Pm_killed_ten_times_at_random_points_ends_as_an_uninterrupted_run()
    {
        using var temp = new TempDir();
        using var lm = new LlamaFolder();
        var train = temp.File("comparisons.jsonl");
        File.WriteAllLines(train, Enumerable.Range(0, 60).Select(i =>
            $"{{\"id\": \"c{i}\", \"source\": \"ai\", \"messages\": [{{\"role\": \"user\", \"content\": \"Question {i}: is tea good?\"}}], \"response_a\": \"Yes {i}, tea is good.\", \"response_b\": \"No {i}, tea is bad.\", \"p_a\": 0.8}}"));
        const int Steps = 1500;
        string[] Args(string output) => ["pm", "--model", lm.Dir, "--train", train, "--out", output, "--steps", $"{Steps}", "--batch-size", "2", "--save-every", "7", "--eval-fraction", "0"];

        var whole = temp.File("whole");
        var reference = CliProcess.Run(Args(whole));
        Assert.True(reference.ExitCode == 0, reference.Stderr);
        var expected = MetricsLog.Read(Path.Combine(whole, "metrics.jsonl"));
        KillRepeatedly(temp.Path, Args, new Random(5150), 500, 1500, killed =>
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(whole, "model", ModelFolder.DataFile)), File.ReadAllBytes(Path.Combine(killed, "model", ModelFolder.DataFile)));
            var got = MetricsLog.Read(Path.Combine(killed, "metrics.jsonl"));
            Assert.Equal(Enumerable.Range(1, Steps).Select(i => (long)i), got.Select(m => m.Step));
            for (var i = 0; i < Steps; i++) Assert.Equal(expected[i].Values["loss"], got[i].Values["loss"]);
            Assert.Empty(TempFolders(killed));
        });
    }
}
