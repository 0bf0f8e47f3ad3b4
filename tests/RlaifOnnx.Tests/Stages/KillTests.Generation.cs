using RlaifOnnx.Stages;
using static RlaifOnnx.Tests.Stages.KillTests;

namespace RlaifOnnx.Tests.Stages;

/// <summary>
/// The stages that generate with ONNX Runtime GenAI (revise, generate, evaluate), killed ten times each at
/// seeded random points and then finished: every record once, and the files byte-identical to an uninterrupted
/// run's on this machine (both runs sample on the same CPU in the same test, so byte identity is the check).
/// </summary>
/// <remarks>Its own class, so these run beside the other kill tests rather than after them.</remarks>
public class GenerationKillTests
{
    /// <summary>Each line of <paramref name="file"/> once, and the file equal to the uninterrupted run's.</summary>
    internal static void SameRecords(string whole, string killed, string file, int expectedLines)
    {
        var lines = File.ReadAllLines(Path.Combine(killed, file));
        Assert.Equal(expectedLines, lines.Length);                // 0 lost
        Assert.Equal(expectedLines, lines.Distinct().Count());    // 0 repeated
        Assert.Equal(File.ReadAllBytes(Path.Combine(whole, file)), File.ReadAllBytes(Path.Combine(killed, file)));
    }

    internal static void NoTempFiles(string killed)
    {
        Assert.Empty(TempFolders(killed));
        Assert.Empty(Directory.GetFiles(killed, "*.tmp", SearchOption.AllDirectories));
    }

    internal static string TinyLm(TempDir temp, string name, int seed = 1)
    {
        var dir = temp.File(name);
        var made = CliProcess.Run("model", "create", "--arch", "llama", "--out", dir, "--hidden-size", "32", "--layers", "2", "--heads", "4",
            "--max-positions", "1024", "--vocab-size", "300", "--seed", $"{seed}");
        Assert.True(made.ExitCode == 0, made.Stderr);
        return dir;
    }

    [Fact]
    public void Revise_killed_ten_times_at_random_points_loses_and_repeats_no_record()
    {
        using var temp = new TempDir();
        var model = TinyLm(temp, "lm");
        const int Prompts = 48;
        var prompts = temp.File("prompts.jsonl");
        File.WriteAllLines(prompts, Enumerable.Range(0, Prompts).Select(i => $"{{\"id\": \"p{i}\", \"prompt\": \"Question {i}: how do I make tea?\"}}"));
        // Sampled (temperature 0.7) in batches of 3: a resumed run must seed and batch as the uninterrupted one did.
        string[] Args(string output) => ["revise", "--prompts", prompts, "--helpful-model", model, "--out", output, "--rounds", "1", "--few-shot", "0",
            "--batch-size", "3", "--sampling-temperature", "0.7", "--sampling-max-new-tokens", "8", "--seed", "5"];

        var whole = temp.File("whole");
        var reference = CliProcess.Run(Args(whole));
        Assert.True(reference.ExitCode == 0, reference.Stderr);

        var kills = KillAtProgress(temp.Path, Args, killed => LinesIn(Path.Combine(killed, Revise.RevisionsFile)), Prompts, new Random(4242), killed =>
        {
            SameRecords(whole, killed, Revise.RevisionsFile, Prompts);
            SameRecords(whole, killed, Revise.SftMessagesFile, Prompts);
            SameRecords(whole, killed, Revise.SftPromptCompletionFile, Prompts);
            NoTempFiles(killed);
        });
        Assert.Equal(10, kills.Count);
    }

    [Fact]
    public void Generate_killed_ten_times_at_random_points_writes_the_uninterrupted_file_or_nothing()
    {
        using var temp = new TempDir();
        var model = TinyLm(temp, "lm");
        const int Prompts = 200;
        var prompts = temp.File("prompts.jsonl");
        File.WriteAllLines(prompts, Enumerable.Range(0, Prompts).Select(i => $"{{\"prompt\": \"Question {i}: how do I make tea?\"}}"));
        string[] Args(string output) => ["generate", "--model", model, "--prompts", prompts, "--out", Path.Combine(output, "answers.jsonl"),
            "--max-new-tokens", "16", "--temperature", "0.7", "--seed", "3", "--batch-size", "4"];

        var whole = temp.File("whole");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var reference = CliProcess.Run(Args(whole));
        Assert.True(reference.ExitCode == 0, reference.Stderr);
        // Kill points spread over the uninterrupted run's own duration, so they land on a fast machine as on a slow one.
        var duration = (int)Math.Max(200, clock.Elapsed.TotalMilliseconds);

        var landed = 0;
        var random = new Random(777);
        var killed = temp.File("killed");
        for (var attempt = 0; landed < 10; attempt++)
        {
            Assert.True(attempt < 200, $"only {landed} of 10 kills landed in 200 runs of about {duration} ms");
            if (!RunAndKill(Args(killed), TimeSpan.FromMilliseconds(random.Next(duration / 20, duration * 9 / 10)))) continue;   // finished first: kill again
            landed++;
            // Written once everything is generated, atomically: after a kill the file is absent or whole.
            var path = Path.Combine(killed, "answers.jsonl");
            if (File.Exists(path)) Assert.Equal(File.ReadAllBytes(Path.Combine(whole, "answers.jsonl")), File.ReadAllBytes(path));
        }
        var last = CliProcess.Run(Args(killed));
        Assert.True(last.ExitCode == 0, last.Stderr);
        SameRecords(whole, killed, "answers.jsonl", Prompts);
        NoTempFiles(killed);
    }

    [Fact]
    public void Evaluate_killed_ten_times_at_random_points_ends_as_an_uninterrupted_run()
    {
        using var temp = new TempDir();
        using var pm = new PmFolder();
        var first = TinyLm(temp, "a", seed: 1);
        var second = TinyLm(temp, "b", seed: 2);
        const int Prompts = 16;
        var prompts = temp.File("prompts.jsonl");
        File.WriteAllLines(prompts, Enumerable.Range(0, Prompts).Select(i => $"{{\"id\": \"p{i}\", \"prompt\": \"Question {i}: is tea good?\"}}"));
        string[] Args(string output)
        {
            var config = Path.Combine(temp.Path, $"{Path.GetFileName(output)}.yaml");
            File.WriteAllText(config, $"""
                policies:
                  - {"{"}name: a, model: {first}{"}"}
                  - {"{"}name: b, model: {second}{"}"}
                prompt_sets:
                  - {"{"}name: tea, source: {prompts}{"}"}
                reward_model: {pm.Dir}
                feedback_model: {first}
                principles: 2
                batch_size: 3
                seed: 9
                sampling:
                  temperature: 0.7
                  max_new_tokens: 8
                output_dir: {output}
                """);
            return ["evaluate", "--config", config];
        }

        var whole = temp.File("whole");
        var reference = CliProcess.Run(Args(whole));
        Assert.True(reference.ExitCode == 0, reference.Stderr);

        // Progress over the three resumable files, so kills land in answering, rewarding and judging.
        static int Progress(string killed) => LinesIn(Path.Combine(killed, Evaluate.GenerationsFile)) + LinesIn(Path.Combine(killed, Evaluate.RewardsFile))
            + LinesIn(Path.Combine(killed, Evaluate.JudgmentsFile));
        var kills = KillAtProgress(temp.Path, Args, Progress, 5 * Prompts, new Random(99), killed =>
        {
            SameRecords(whole, killed, Evaluate.GenerationsFile, 2 * Prompts);
            SameRecords(whole, killed, Evaluate.RewardsFile, 2 * Prompts);
            SameRecords(whole, killed, Evaluate.JudgmentsFile, Prompts);
            Assert.Equal(File.ReadAllBytes(Path.Combine(whole, Evaluate.ReportFile)), File.ReadAllBytes(Path.Combine(killed, Evaluate.ReportFile)));
            NoTempFiles(killed);
        });
        Assert.Equal(10, kills.Count);
    }
}
