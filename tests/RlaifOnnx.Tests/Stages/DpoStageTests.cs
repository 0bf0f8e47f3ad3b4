using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Reporting;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Tests.Stages;

/// <summary>
/// The dpo stage on a tiny model: it learns a hand-built preference (fixed pairs, so nothing sampled decides
/// it), resumes to the same numbers and bytes, refuses bad lines naming them, and runs in a pipeline after the
/// label stage, reading its preferences.jsonl.
/// </summary>
public sealed class DpoStageTests
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Six prompts, each with a helpful answer preferred to a curt refusal (the label stage's TRL export shape).</summary>
    static string Preferences(TempDir dir)
    {
        string[] prompts = ["Is tea good?", "How do I boil an egg?", "What is rain?", "Name a colour.", "Say hello.", "Count to three."];
        var lines = prompts.Select((p, i) =>
            $"{{\"id\": \"q{i}\", \"prompt\": [{{\"role\": \"user\", \"content\": \"{p}\"}}], \"chosen\": [{{\"role\": \"assistant\", \"content\": \"Sure, here it is.\"}}], " +
            $"\"rejected\": [{{\"role\": \"assistant\", \"content\": \"No.\"}}], \"margin\": 0.8}}");
        var path = dir.File("preferences.jsonl");
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return path;
    }

    static Dpo.Config Config(string model, string preferences, string output) => new()
    {
        Model = model, Preferences = preferences, OutputDir = output, Beta = 0.5, Steps = 8, BatchSize = 3, MicroBatchSize = 0, MaxLength = 128,
        Optimizer = new() { LearningRate = 5e-3, Schedule = "constant" }, SaveEvery = 2, Seed = 4,
    };

    [Theory]
    [InlineData(Dpo.DpoLoss.Sigmoid, 0)]
    [InlineData(Dpo.DpoLoss.Soft, 0)]
    [InlineData(Dpo.DpoLoss.Sigmoid, 4)]
    public void Learns_a_hand_built_preference(Dpo.DpoLoss loss, int loraRank)
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("sl-cai"));
        var config = Config(model, Preferences(dir), dir.File("out")) with
        {
            Loss = loss, Lora = new() { Rank = loraRank, Targets = "all-linear" },
            Optimizer = new() { LearningRate = loraRank > 0 ? 2e-2 : 5e-3, Schedule = "constant" },
        };
        var exported = Dpo.Run(config, null, Ct);

        var metrics = MetricsLog.Read(Path.Combine(config.OutputDir, Dpo.MetricsFile));
        Assert.Equal([1L, 2, 3, 4, 5, 6, 7, 8], metrics.Select(m => m.Step));
        // The first step starts at the reference: every log-ratio is 0, so are the rewards, and the loss is
        // −log σ(0) = log 2 (the soft label's cross-entropy at z = 0 is log 2 too).
        Assert.Equal(0, metrics[0].Values["rewards/chosen"], 5);
        Assert.Equal(0, metrics[0].Values["rewards/margins"], 5);
        Assert.Equal(Math.Log(2), metrics[0].Values["loss"], 5);
        // Trained on fixed pairs the chosen answers pull ahead of the rejected ones.
        Assert.True(metrics[^1].Values["rewards/margins"] > 0.1, $"margin {metrics[^1].Values["rewards/margins"]}");
        Assert.Equal(1, metrics[^1].Values["rewards/accuracies"]);
        Assert.True(metrics[^1].Values["loss"] < Math.Log(2));

        Assert.Equal("dpo", ModelFolder.ReadMetadata(exported).Lineage[^1].Step);
        Assert.NotEqual(ModelFolder.ReadWeights(model)["model.layers.0.mlp.up_proj.weight"].Data, ModelFolder.ReadWeights(exported)["model.layers.0.mlp.up_proj.weight"].Data);
        Assert.Equal(6, Jsonl.ReadAll<Dpo.ReferenceLogProbs>(Path.Combine(config.OutputDir, Dpo.ReferenceFile)).Count);
    }

    [Fact]
    public void A_resumed_run_reproduces_the_uninterrupted_one()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("sl-cai"));
        var config = Config(model, Preferences(dir), dir.File("out")) with { Steps = 4 };
        var exported = Dpo.Run(config, null, Ct);
        var bytes = File.ReadAllBytes(Path.Combine(exported, ModelFolder.DataFile));
        var reference = File.ReadAllText(Path.Combine(config.OutputDir, Dpo.ReferenceFile));

        // A crash after step 2: the step-4 checkpoint and the export never happened.
        Directory.Delete(Path.Combine(config.OutputDir, "checkpoints", "step-00000004"), recursive: true);
        Directory.Delete(exported, recursive: true);
        var log = new List<string>();
        Dpo.Run(config, log.Add, Ct);
        Assert.Contains(log, l => l.StartsWith("resuming from", StringComparison.Ordinal));
        var metrics = MetricsLog.Read(Path.Combine(config.OutputDir, Dpo.MetricsFile));
        var byStep = metrics.GroupBy(m => m.Step).ToDictionary(g => g.Key, g => g.Select(m => m.Values["loss"]).ToList());
        Assert.Equal(byStep[3][0], byStep[3][^1]);
        Assert.Equal(byStep[4][0], byStep[4][^1]);
        Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(exported, ModelFolder.DataFile)));
        Assert.Equal(reference, File.ReadAllText(Path.Combine(config.OutputDir, Dpo.ReferenceFile)));   // computed once, kept
    }

    [Fact]
    public void Bad_lines_and_keys_are_refused_naming_them()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("sl-cai"));
        var bad = dir.File("bad.jsonl");
        File.WriteAllText(bad, "{\"prompt\": \"Hi\", \"chosen\": \"Hello.\", \"rejected\": \"No.\"}\n{\"prompt\": \"Hi\", \"chosen\": \"Hello.\"}\n");
        var e = Assert.Throws<UserError>(() => Dpo.Run(Config(model, bad, dir.File("out")), null, Ct));
        Assert.Equal($"{bad}:2: rejected: is missing", e.Message);
        Assert.False(Directory.Exists(dir.File("out")));

        const string required = "model: m\npreferences: p.jsonl\noutput_dir: o\n";
        Assert.Contains("beta: must be positive", Assert.Throws<UserError>(() => StageConfig.Parse<Dpo.Config>(required + "beta: 0\n", "dpo.yaml")).Message);
        Assert.Contains("expected one of sigmoid, soft", Assert.Throws<UserError>(() => StageConfig.Parse<Dpo.Config>(required + "loss: ipo\n", "dpo.yaml")).Message);
    }

    [Fact]
    public void Runs_after_the_label_stage_in_a_pipeline_on_its_preferences()
    {
        using var dir = new TempDir();
        TinyModels.Folder(dir.File("tiny"));
        File.WriteAllText(dir.File("pairs.jsonl"),
            "{\"id\": \"p1\", \"prompt\": \"Is tea good?\", \"chosen\": \"Yes, in moderation.\", \"rejected\": \"No idea.\"}\n" +
            "{\"id\": \"p2\", \"prompt\": \"What is two plus two?\", \"chosen\": \"Four.\", \"rejected\": \"Five.\"}\n");
        File.WriteAllText(dir.File("label.yaml"), "pairs: pairs.jsonl\nfeedback_model: tiny\noutput_dir: out/label\nprinciples: 1\nfew_shot: 0\n");
        File.WriteAllText(dir.File("dpo.yaml"), "model: tiny\npreferences: out/label/preferences.jsonl\noutput_dir: out/dpo\nloss: soft\nsteps: 2\nbatch_size: 2\nmax_length: 128\n");
        var pipeline = dir.File("pipeline.yaml");
        File.WriteAllText(pipeline, "stages:\n  - name: ai-labels\n    stage: label\n    config: label.yaml\n  - name: dpo\n    stage: dpo\n    config: dpo.yaml\n");

        var run = CliProcess.Run("run", "--config", pipeline);
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Contains("== dpo (dpo)", run.Stdout);
        Assert.Contains("== done: 2 stages (ai-labels, dpo)", run.Stdout);
        Assert.True(ModelFolder.ReadMetadata(dir.File("out/dpo/model")).Lineage[^1].Step == "dpo");
        Assert.Equal(2, MetricsLog.Read(dir.File("out/dpo/metrics.jsonl")).Count);
    }
}
