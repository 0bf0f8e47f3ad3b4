using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Reporting;
using RlaifOnnx.Stages;
using RlaifOnnx.Records;


namespace RlaifOnnx.Tests.Stages;

/// <summary>
/// The pm stage end to end on a tiny model: it learns a preference the data holds, exports a
/// preference-model folder that scores like the training graph, resumes exactly, continues from its own
/// output (pretraining, then fine-tuning), and refuses bad input with file:line.
/// </summary>
public class PreferenceModelStageTests
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// Comparisons whose better answer is the polite one. Which answer is a, and whether the label is hard
    /// or soft, varies, so neither position nor a constant reward can score well.
    /// </summary>
    static List<MixedComparison> PoliteComparisons(int count, int seed)
    {
        string[] questions = ["How do I boil an egg?", "What is the capital of France?", "Can you help me write a poem?", "Where is my order?",
            "How far is the moon?", "What time is it in Tokyo?", "Which bus goes downtown?", "How do plants grow?"];
        string[] polite = ["Happy to help, here is how.", "Glad you asked, thank you.", "Of course, here you go.", "Sure, with pleasure."];
        string[] rude = ["Figure it out yourself.", "Not my problem.", "Stop asking me.", "Go look it up."];
        var rng = new Random(seed);
        var rows = new List<MixedComparison>();
        for (var i = 0; i < count; i++)
        {
            var good = polite[rng.Next(polite.Length)];
            var bad = rude[rng.Next(rude.Length)];
            var aIsGood = rng.Next(2) == 0;
            var confidence = rng.Next(2) == 0 ? 1.0 : 0.8;
            rows.Add(new MixedComparison($"c{seed}-{i}", i % 2 == 0 ? "ai" : "human", [new ChatMessage("user", questions[rng.Next(questions.Length)])],
                aIsGood ? good : bad, aIsGood ? bad : good, aIsGood ? confidence : 1 - confidence));
        }
        return rows;
    }

    static (string Model, string Train, string Eval) Inputs(TempDir temp)
    {
        var model = TinyModels.Folder(temp.File("base"), seed: 3);
        var train = temp.File("train.jsonl");
        var eval = temp.File("eval.jsonl");
        Jsonl.Write(train, PoliteComparisons(48, seed: 1));
        Jsonl.Write(eval, PoliteComparisons(24, seed: 2));
        return (model, train, eval);
    }

    static TrainPreferenceModel.Config Config(string model, string train, string? eval, string output) => new()
    {
        Model = model, Train = train, Eval = eval, OutputDir = output, Steps = 40, BatchSize = 8,
        MicroBatchSize = 4, MaxLength = 64, Optimizer = new() { LearningRate = 3e-3, Warmup = 2, Schedule = "constant" }, SaveEvery = 10, Seed = 5,
    };

    [Fact]
    public void Learns_the_preference_in_the_data_and_exports_a_model_that_scores_like_training()
    {
        using var temp = new TempDir();
        var (model, train, eval) = Inputs(temp);
        var output = temp.File("pm");
        var before = TrainPreferenceModel.Evaluate(ExportUntrained(model, temp.File("untrained")), TrainPreferenceModel.ReadComparisons(eval), 64, 10, Ct);

        var exported = TrainPreferenceModel.Run(Config(model, train, eval, output), null, Ct);

        Assert.True(PreferenceModelFolder.IsPreferenceModel(exported));
        var metrics = MetricsLog.Read(Path.Combine(output, "metrics.jsonl"));
        Assert.Equal(40, metrics.Count);
        Assert.True(metrics.TakeLast(5).Average(m => m.Values["loss"]) < 0.6 * metrics.Take(5).Average(m => m.Values["loss"]), "the training loss falls");
        var report = TrainPreferenceModel.ReadEvaluation(output);
        Assert.Equal(24, report.Overall.Comparisons);
        Assert.True(report.Overall.Accuracy >= 0.95, $"held-out accuracy {report.Overall.Accuracy} (untrained: {before.Overall.Accuracy})");
        Assert.True(report.Overall.Loss < before.Overall.Loss, $"held-out loss {report.Overall.Loss} vs {before.Overall.Loss} untrained");
        Assert.Equal(["ai", "human"], report.PerSource.Keys.Order());
        Assert.Equal(24, report.PerSource.Values.Sum(e => e.Comparisons));

        // The served model's rewards give the training graph's loss on the same comparisons.
        var comparisons = TrainPreferenceModel.ReadComparisons(eval);
        using var scorer = new RewardScorer(exported);
        var rewards = scorer.Rewards(comparisons.SelectMany(c => new[] { (c.Messages, c.ResponseA), (c.Messages, c.ResponseB) }).ToList(), Ct);
        var lossFromScorer = comparisons.Select((c, i) => PreferenceMath.SoftLabelLoss(rewards[2 * i], rewards[2 * i + 1], c.PA)).Average();
        Assert.Equal(report.Overall.Loss, lossFromScorer, 12);

        // eval_predictions.jsonl: every held-out comparison once, in order, with the served model's rewards and σ(r_a − r_b).
        var predictions = Jsonl.ReadAll<PreferencePrediction>(Path.Combine(output, TrainPreferenceModel.EvalPredictionsFile));
        Assert.Equal(comparisons.Select(c => (c.Id, c.Source, c.PA)), predictions.Select(p => (p.Id, p.Source, p.PA)));
        for (var i = 0; i < comparisons.Count; i++)
        {
            Assert.Equal(rewards[2 * i], predictions[i].RewardA, 9);
            Assert.Equal(rewards[2 * i + 1], predictions[i].RewardB, 9);
            Assert.Equal(PreferenceMath.ProbabilityAPreferred(predictions[i].RewardA, predictions[i].RewardB), predictions[i].PModel, 12);
        }
        Assert.Equal(report.Overall.Accuracy, RlaifOnnx.Reporting.SoftCalibration.Accuracy(predictions.Select(p => p.PModel).ToList(), predictions.Select(p => p.PA).ToList()), 12);
        using (var line = System.Text.Json.JsonDocument.Parse(File.ReadLines(Path.Combine(output, TrainPreferenceModel.EvalPredictionsFile)).First()))
            Assert.Equal(["id", "source", "p_a", "p_model", "reward_a", "reward_b"], line.RootElement.EnumerateObject().Select(p => p.Name));
    }

    /// <summary>The base model with the initial head, exported as a preference model: the "before training" reference.</summary>
    static string ExportUntrained(string model, string dir)
    {
        var config = ModelFolder.ReadMetadata(model).Config;
        PreferenceModelFolder.Write(dir, config, PreferenceModelGraphs.FromLanguageModel(config, ModelFolder.ReadWeights(model), 5), model, []);
        return dir;
    }

    [Fact]
    public void Resumes_after_a_crash_exactly_and_refuses_changed_settings()
    {
        using var temp = new TempDir();
        var (model, train, _) = Inputs(temp);
        var output = temp.File("pm");
        var config = Config(model, train, null, output) with { Steps = 20 };
        var exported = TrainPreferenceModel.Run(config, null, Ct);
        var exportedBytes = File.ReadAllBytes(Path.Combine(exported, ModelFolder.DataFile));
        var firstRun = MetricsLog.Read(Path.Combine(output, "metrics.jsonl"));

        // A crash after step 10: the step-20 checkpoint and the export never happened.
        Directory.Delete(Path.Combine(output, "checkpoints", "step-00000020"), recursive: true);
        Directory.Delete(exported, recursive: true);
        var log = new List<string>();
        TrainPreferenceModel.Run(config, log.Add, Ct);
        Assert.Contains(log, l => l.StartsWith("resuming from", StringComparison.Ordinal));
        var all = MetricsLog.Read(Path.Combine(output, "metrics.jsonl"));
        // Steps 11–20 are logged again in place of the crashed run's rows: 20 rows, steps never going back.
        Assert.Equal(Enumerable.Range(1, 20).Select(i => (long)i), all.Select(m => m.Step));
        for (var i = 10; i < 20; i++) Assert.Equal(firstRun[i].Values["loss"], all[i].Values["loss"]);
        Assert.Equal(exportedBytes, File.ReadAllBytes(Path.Combine(exported, ModelFolder.DataFile)));

        var e = Assert.Throws<UserError>(() => TrainPreferenceModel.Run(config with { Seed = 6 }, null, Ct));
        Assert.Contains("settings", e.Message);
    }

    [Fact]
    public void Fine_tuning_continues_from_the_pretrained_preference_model_with_its_head()
    {
        using var temp = new TempDir();
        var (model, train, eval) = Inputs(temp);
        var pretrained = TrainPreferenceModel.Run(Config(model, train, null, temp.File("pmp")) with { Steps = 30 }, null, Ct);
        var pmpFirstLoss = MetricsLog.Read(Path.Combine(temp.File("pmp"), "metrics.jsonl"))[0].Values["loss"];

        var finetuned = TrainPreferenceModel.Run(Config(pretrained, eval, null, temp.File("finetune")) with { Steps = 5, Lora = new() { Rank = 2 }, Optimizer = new() { LearningRate = 1e-3 } }, null, Ct);

        // It started from the learned head (a fresh head would start near log 2), and LoRA merged into the export.
        var firstLoss = MetricsLog.Read(Path.Combine(temp.File("finetune"), "metrics.jsonl"))[0].Values["loss"];
        Assert.True(firstLoss < 0.7 * pmpFirstLoss, $"fine-tuning starts at {firstLoss}, pretraining started at {pmpFirstLoss}");
        var lineage = ModelFolder.ReadMetadata(finetuned).Lineage;
        Assert.Equal(["pm (new head)", "pm"], lineage.TakeLast(2).Select(l => l.Step));
        var pmpWeights = PreferenceModelFolder.ReadWeights(pretrained);
        var finetunedWeights = PreferenceModelFolder.ReadWeights(finetuned);
        Assert.NotEqual(pmpWeights["model.layers.0.self_attn.q_proj.weight"].Data, finetunedWeights["model.layers.0.self_attn.q_proj.weight"].Data);
        Assert.NotEqual(pmpWeights[PreferenceModelGraphs.HeadWeight].Data, finetunedWeights[PreferenceModelGraphs.HeadWeight].Data);
        Assert.Equal(pmpWeights["model.layers.0.mlp.up_proj.weight"].Data, finetunedWeights["model.layers.0.mlp.up_proj.weight"].Data);   // no adapter there
    }

    [Fact]
    public void Holds_out_eval_fraction_by_id()
    {
        using var temp = new TempDir();
        var (model, train, _) = Inputs(temp);
        var config = Config(model, train, null, temp.File("pm")) with { Steps = 2, EvalFraction = 0.25 };
        TrainPreferenceModel.Run(config, null, Ct);
        var held = TrainPreferenceModel.ReadEvaluation(temp.File("pm")).Overall.Comparisons;
        Assert.InRange(held, 4, 24);   // about 12 of 48
        Assert.Throws<UserError>(() => TrainPreferenceModel.Run(config with { Eval = train, OutputDir = temp.File("both") }, null, Ct));
    }

    [Theory]
    [InlineData("""{"id":"x","source":"ai","messages":[{"role":"user","content":"q"}],"response_a":"a","response_b":"b","p_a":1.5}""", "p_a")]
    [InlineData("""{"id":"x","source":"ai","messages":[{"role":"user","content":"q"}],"response_a":"","response_b":"b","p_a":1}""", "response_a")]
    [InlineData("""{"id":"x","source":"ai","messages":[],"response_a":"a","response_b":"b","p_a":1}""", "messages")]
    [InlineData("""{"id":"x","source":"ai","messages":[{"role":"user","content":"q"}],"response_a":"a","response_b":"b","p_a":1""", null)]
    public void Bad_comparisons_are_refused_with_file_and_line(string badLine, string? field)
    {
        using var temp = new TempDir();
        var (model, train, _) = Inputs(temp);
        File.AppendAllText(train, badLine + "\n");
        var output = temp.File("pm");
        var e = Assert.Throws<UserError>(() => TrainPreferenceModel.Run(Config(model, train, null, output), null, Ct));
        Assert.Contains($"{train}:49", e.Message);
        if (field is not null) Assert.Contains(field, e.Message);
        Assert.False(Directory.Exists(Path.Combine(output, "model")));
    }

    [Fact]
    public void Cli_trains_from_a_config_and_exits_2_on_an_unknown_key()
    {
        using var temp = new TempDir();
        var (model, train, eval) = Inputs(temp);
        var yaml = temp.File("pm.yaml");
        File.WriteAllText(yaml, $"model: {model}\ntrain: {train}\neval: {eval}\noutput_dir: {temp.File("out")}\nsteps: 3\nbatch_size: 4\noptimizer: {{learning_rate: 0.001}}\nmax_length: 48\n");
        var run = CliProcess.Run(["pm", "--config", yaml]);
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Contains("held-out: 24 comparisons", run.Stderr);
        Assert.True(PreferenceModelFolder.IsPreferenceModel(temp.File("out/model")));

        File.AppendAllText(yaml, "learning_rat: 0.1\n");
        var bad = CliProcess.Run(["pm", "--config", yaml]);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("learning_rate", bad.Stderr);
        Assert.Single(bad.Stderr.Trim().Split('\n'));
    }
}
