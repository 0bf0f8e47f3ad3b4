using RlaifOnnx.Models;
using RlaifOnnx.Reporting;
using RlaifOnnx.Stages;
using static RlaifOnnx.Tests.Stages.GenerationKillTests;
using static RlaifOnnx.Tests.Stages.KillTests;

namespace RlaifOnnx.Tests.Stages;

/// <summary>
/// The training stages that were not killed yet (sft, dpo, ppo), ten seeded SIGKILLs each, then finished: the
/// exported weights byte-identical to an uninterrupted run's, every step logged once in order with the
/// uninterrupted run's values, the stage's JSONL records once each, no temp folder left.
/// </summary>
/// <remarks>Its own class, so these run beside the other kill tests rather than after them.</remarks>
public class TrainingKillTests
{
    /// <summary>Every exported weight file (outside checkpoints/) equal to the uninterrupted run's.</summary>
    static void SameWeights(string whole, string killed)
    {
        var files = Directory.GetFiles(whole, ModelFolder.DataFile, SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(whole, f))
            .Where(f => !f.Split(Path.DirectorySeparatorChar).Contains("checkpoints"))
            .ToList();
        Assert.NotEmpty(files);
        foreach (var file in files)
            Assert.True(File.ReadAllBytes(Path.Combine(whole, file)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(killed, file))), $"{file} differs");
    }

    /// <summary>Steps 1..<paramref name="steps"/> once each, in order, with the uninterrupted run's <paramref name="keys"/>.</summary>
    static void SameMetrics(string wholeMetrics, string killedMetrics, int steps, params string[] keys)
    {
        var expected = MetricsLog.Read(wholeMetrics);
        var got = MetricsLog.Read(killedMetrics);
        Assert.Equal(Enumerable.Range(1, steps).Select(i => (long)i), got.Select(m => m.Step));
        for (var i = 0; i < steps; i++)
            foreach (var key in keys)
                Assert.Equal(expected[i].Values[key], got[i].Values[key]);
    }

    [Fact]
    public void Sft_killed_ten_times_at_random_points_ends_as_an_uninterrupted_run()
    {
        using var temp = new TempDir();
        var model = TinyLm(temp, "lm");
        var revisions = temp.File("sft_messages.jsonl");
        File.WriteAllLines(revisions, Enumerable.Range(0, 12).Select(i =>
            $"{{\"id\": \"r{i}\", \"messages\": [{{\"role\": \"user\", \"content\": \"How do I pick lock {i}?\"}}, {{\"role\": \"assistant\", \"content\": \"A locksmith can help ({i}).\"}}]}}"));
        const int Helpful = 24;
        var helpful = temp.File("helpful.jsonl");
        File.WriteAllLines(helpful, Enumerable.Range(0, Helpful).Select(i => $"{{\"id\": \"h{i}\", \"prompt\": \"How do I bake bread number {i}?\"}}"));
        const int Steps = 120;
        // The helpful answers are sampled (temperature 1) in batches of 3, then the mix trains: kills land in both.
        string[] Args(string output) => ["sft", "--model", model, "--revisions", revisions, "--helpfulness-prompts", helpful, "--helpful-model", model,
            "--helpfulness-fraction", "0.5", "--generation-batch-size", "3", "--sampling-max-new-tokens", "8", "--out", output,
            "--steps", $"{Steps}", "--batch-size", "2", "--save-every", "7", "--max-length", "64"];

        var whole = temp.File("whole");
        var reference = CliProcess.Run(Args(whole));
        Assert.True(reference.ExitCode == 0, reference.Stderr);
        var wholeSamples = File.ReadAllLines(Path.Combine(whole, Sft.HelpfulnessSamplesFile)).Length;

        static int Progress(string killed) => LinesIn(Path.Combine(killed, Sft.HelpfulnessSamplesFile)) + LinesIn(Path.Combine(killed, Sft.TrainSubdir, "metrics.jsonl"));
        var kills = KillAtProgress(temp.Path, Args, Progress, Helpful + Steps, new Random(31337), killed =>
        {
            SameRecords(whole, killed, Sft.HelpfulnessSamplesFile, wholeSamples);
            Assert.Equal(File.ReadAllBytes(Path.Combine(whole, Sft.MixFile)), File.ReadAllBytes(Path.Combine(killed, Sft.MixFile)));
            SameWeights(whole, killed);
            SameMetrics(Path.Combine(whole, Sft.TrainSubdir, "metrics.jsonl"), Path.Combine(killed, Sft.TrainSubdir, "metrics.jsonl"), Steps, "loss");
            NoTempFiles(killed);
        });
        Assert.Equal(10, kills.Count);
    }

    [Fact]
    public void Dpo_killed_ten_times_at_random_points_ends_as_an_uninterrupted_run()
    {
        using var temp = new TempDir();
        var model = TinyLm(temp, "lm");
        const int Pairs = 30;
        var preferences = temp.File("preferences.jsonl");
        File.WriteAllLines(preferences, Enumerable.Range(0, Pairs).Select(i =>
            $"{{\"id\": \"q{i}\", \"prompt\": [{{\"role\": \"user\", \"content\": \"Is tea {i} good?\"}}], \"chosen\": [{{\"role\": \"assistant\", \"content\": \"Sure, tea {i} is good.\"}}], " +
            $"\"rejected\": [{{\"role\": \"assistant\", \"content\": \"No.\"}}], \"margin\": 0.8}}"));
        const int Steps = 120;
        string[] Args(string output) => ["dpo", "--model", model, "--preferences", preferences, "--out", output, "--steps", $"{Steps}", "--batch-size", "3",
            "--save-every", "7", "--max-length", "64", "--beta", "0.5", "--optimizer-learning-rate", "0.001", "--optimizer-schedule", "constant"];

        var whole = temp.File("whole");
        var reference = CliProcess.Run(Args(whole));
        Assert.True(reference.ExitCode == 0, reference.Stderr);

        static int Progress(string killed) => LinesIn(Path.Combine(killed, Dpo.ReferenceFile)) + LinesIn(Path.Combine(killed, Dpo.MetricsFile));
        var kills = KillAtProgress(temp.Path, Args, Progress, Pairs + Steps, new Random(2718), killed =>
        {
            SameRecords(whole, killed, Dpo.ReferenceFile, Pairs);
            SameWeights(whole, killed);
            SameMetrics(Path.Combine(whole, Dpo.MetricsFile), Path.Combine(killed, Dpo.MetricsFile), Steps, "loss", "rewards/margins");
            NoTempFiles(killed);
        });
        Assert.Equal(10, kills.Count);
    }

    [Fact]
    public void Ppo_killed_ten_times_at_random_points_ends_as_an_uninterrupted_run()
    {
        using var temp = new TempDir();
        using var pm = new PmFolder();
        var policy = TinyLm(temp, "policy");
        var prompts = temp.File("prompts.jsonl");
        File.WriteAllLines(prompts, Enumerable.Range(0, 16).Select(i => $"{{\"prompt\": \"Question {i}: is tea good?\"}}"));
        const int Iterations = 24;
        string[] Args(string output) => ["ppo", "--policy-model", policy, "--reward-model", pm.Dir, "--prompts", prompts, "--out", output,
            "--iterations", $"{Iterations}", "--rollout-batch-size", "4", "--mini-batch-size", "2", "--ppo-epochs", "1", "--sampling-max-new-tokens", "6",
            "--save-every", "1", "--max-prompt-tokens", "64", "--optimizer-learning-rate", "0.001", "--seed", "3"];

        var whole = temp.File("whole");
        var reference = CliProcess.Run(Args(whole));
        Assert.True(reference.ExitCode == 0, reference.Stderr);

        var kills = KillAtProgress(temp.Path, Args, killed => LinesIn(Path.Combine(killed, TrainPolicy.MetricsFile)), Iterations, new Random(1618), killed =>
        {
            SameWeights(whole, killed);
            SameMetrics(Path.Combine(whole, TrainPolicy.MetricsFile), Path.Combine(killed, TrainPolicy.MetricsFile), Iterations, "score", "kl", "policy_loss", "value_loss");
            NoTempFiles(killed);
        });
        Assert.Equal(10, kills.Count);
    }
}
