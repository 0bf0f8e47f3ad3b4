using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Stages;
using RlaifOnnx.Records;


namespace RlaifOnnx.Tests.Stages;

/// <summary>`rlaif run --config PIPELINE.yaml`: stages in order from their own configs, subsets, and bad input refused before anything runs.</summary>
public class PipelineTests
{
    const string Pairs =
        """
        {"id": "p1", "prompt": "How do I boil an egg?", "chosen": "Put it in boiling water for eight minutes.", "rejected": "No idea."}
        {"id": "p2", "prompt": "Is the sea salty?", "chosen": "Yes, it holds dissolved salts.", "rejected": "Ask someone else."}
        {"id": "p3", "prompt": "What is two plus two?", "chosen": "Four.", "rejected": "Five."}

        """;

    [Fact]
    public async Task LabelThenMixRunFromOnePipelineAndRerunWithoutDuplicates()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("stages"));
        Directory.CreateDirectory(dir.File("pipelines"));
        TinyModels.Folder(dir.File("tiny"));
        File.WriteAllText(dir.File("pairs.jsonl"), Pairs);
        File.WriteAllText(dir.File("stages/label.yaml"), "pairs: ../pairs.jsonl\nfeedback_model: ../tiny\noutput_dir: ../out/label\nprinciples: 1\nfew_shot: 0\n");
        File.WriteAllText(dir.File("stages/mix.yaml"), "ai_comparisons: ../out/label/comparisons.jsonl\nai_fraction: 1\noutput_dir: ../out/mix\n");
        var pipeline = dir.File("pipelines/pipeline.yaml");
        // Stage config paths resolve against the pipeline file's folder.
        File.WriteAllText(pipeline, "stages:\n  - name: ai-labels\n    stage: label\n    config: ../stages/label.yaml\n  - name: pm-mix\n    stage: mix\n    config: ../stages/mix.yaml\n");

        var run = CliProcess.Run("run", "--config", pipeline);
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Contains("== ai-labels (label)", run.Stdout);
        Assert.Contains("== pm-mix (mix)", run.Stdout);
        Assert.True(run.Stdout.IndexOf("== ai-labels", StringComparison.Ordinal) < run.Stdout.IndexOf("== pm-mix", StringComparison.Ordinal));
        Assert.Contains("== done: 2 stages (ai-labels, pm-mix)", run.Stdout);

        var comparisons = Jsonl.ReadAll<ComparisonRecord>(dir.File("out/label/comparisons.jsonl"));
        Assert.Equal(["p1", "p2", "p3"], comparisons.Select(c => c.Id).Order());
        var mix = Jsonl.ReadAll<MixedComparison>(dir.File("out/mix/pm_mix.jsonl"));
        Assert.Equal(["ai/p1", "ai/p2", "ai/p3"], mix.Select(m => m.Id).Order());
        Assert.All(mix, m => Assert.Equal("ai", m.Source));
        var labelBytes = File.ReadAllBytes(dir.File("out/label/comparisons.jsonl"));
        var mixBytes = File.ReadAllBytes(dir.File("out/mix/pm_mix.jsonl"));

        // A rerun reruns each stage; the label stage finds every comparison done, so nothing is added or changed.
        var log = new List<string>();
        var ran = await Pipeline.Run(pipeline, log.Add, TestContext.Current.CancellationToken);
        Assert.Equal(["ai-labels", "pm-mix"], ran);
        Assert.Equal(["== ai-labels (label)", "== pm-mix (mix)"], log.Where(l => l.StartsWith("==", StringComparison.Ordinal)));
        Assert.Equal(labelBytes, File.ReadAllBytes(dir.File("out/label/comparisons.jsonl")));
        Assert.Equal(mixBytes, File.ReadAllBytes(dir.File("out/mix/pm_mix.jsonl")));
    }

    /// <summary>Three cheap mix stages (human comparisons only), each writing its own folder, then the pipeline file.</summary>
    static string ThreeMixStages(TempDir dir, string selection)
    {
        File.WriteAllText(dir.File("pairs.jsonl"), Pairs);
        File.WriteAllText(dir.File("empty.jsonl"), "");
        var entries = "";
        foreach (var name in new[] { "a", "b", "c" })
        {
            File.WriteAllText(dir.File($"{name}.yaml"), $"ai_comparisons: empty.jsonl\nhuman_comparisons: pairs.jsonl\nai_fraction: 0\noutput_dir: out/{name}\n");
            entries += $"  - name: {name}\n    stage: mix\n    config: {name}.yaml\n";
        }
        var pipeline = dir.File("pipeline.yaml");
        File.WriteAllText(pipeline, "stages:\n" + entries + selection);
        return pipeline;
    }

    static string[] Written(TempDir dir) =>
        new[] { "a", "b", "c" }.Where(n => File.Exists(dir.File($"out/{n}/{PreferenceMix.OutputFile}"))).ToArray();

    [Fact]
    public async Task OnlyRunsTheNamedStages()
    {
        using var dir = new TempDir();
        var pipeline = ThreeMixStages(dir, "only: [c, a]\n");
        Assert.Equal(["a", "c"], Pipeline.Plan(pipeline).Select(p => p.Entry.Name));
        Assert.Equal(["a", "c"], await Pipeline.Run(pipeline, cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal(["a", "c"], Written(dir));
        Assert.Equal(3, Jsonl.ReadAll<MixedComparison>(dir.File("out/c/pm_mix.jsonl")).Count);
    }

    [Fact]
    public async Task FromRunsTheNamedStageAndEveryStageAfterIt()
    {
        using var dir = new TempDir();
        var pipeline = ThreeMixStages(dir, "from: b\n");
        Assert.Equal(["b", "c"], await Pipeline.Run(pipeline, cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal(["b", "c"], Written(dir));
    }

    [Fact]
    public void OnlyNamingNoStageIsRefused()
    {
        using var dir = new TempDir();
        var pipeline = ThreeMixStages(dir, "only: [bb]\n");
        var error = Assert.Throws<UserError>(() => Pipeline.Plan(pipeline));
        Assert.Equal($"{pipeline}:11: only: no stage named 'bb'; did you mean 'b'?", error.Message);
    }

    /// <summary>Runs `rlaif run` on a pipeline file and checks the exit code 2 and the one-line error.</summary>
    static void AssertRefused(string pipeline, string expectedError)
    {
        var result = CliProcess.Run("run", "--config", pipeline);
        Assert.Equal(2, result.ExitCode);
        Assert.Equal("", result.Stdout);
        Assert.Equal($"error: {expectedError}", result.Stderr.Trim());
    }

    [Fact]
    public void UnknownStageKindIsRefused()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("label.yaml"), "pairs: p.jsonl\nfeedback_model: m\noutput_dir: o\n");
        var pipeline = dir.File("pipeline.yaml");
        File.WriteAllText(pipeline, "stages:\n  - name: labels\n    stage: lable\n    config: label.yaml\n");
        AssertRefused(pipeline, $"{pipeline}:3: stages[0].stage: unknown stage kind 'lable'; did you mean 'label'?");
    }

    [Fact]
    public void DuplicateStageNameIsRefused()
    {
        using var dir = new TempDir();
        var pipeline = ThreeMixStages(dir, "  - name: b\n    stage: mix\n    config: c.yaml\n");
        AssertRefused(pipeline, $"{pipeline}:1: stages: duplicate stage name 'b' (stages[1] and stages[3])");
        Assert.Empty(Written(dir));
    }

    [Fact]
    public void MissingStageConfigIsRefused()
    {
        using var dir = new TempDir();
        var pipeline = ThreeMixStages(dir, "");
        File.Delete(dir.File("b.yaml"));
        AssertRefused(pipeline, $"{pipeline}:7: stages[1].config: config file '{dir.File("b.yaml")}' not found");
        Assert.Empty(Written(dir));
    }

    [Fact]
    public void TypoInALaterStageConfigFailsBeforeTheFirstStageRuns()
    {
        using var dir = new TempDir();
        var pipeline = ThreeMixStages(dir, "");
        File.WriteAllText(dir.File("c.yaml"), "ai_comparisons: empty.jsonl\nhuman_comparisons: pairs.jsonl\nai_fractoin: 0\noutput_dir: out/c\n");
        AssertRefused(pipeline, $"{dir.File("c.yaml")}:3: ai_fractoin: unknown key; did you mean 'ai_fraction'? (pipeline stage 'c' reads it as a mix config)");
        Assert.Empty(Written(dir));
        Assert.False(Directory.Exists(dir.File("out")));
    }

    [Fact]
    public void UnknownTopLevelKeyIsRefused()
    {
        using var dir = new TempDir();
        var pipeline = ThreeMixStages(dir, "onyl: [a]\n");
        AssertRefused(pipeline, $"{pipeline}:11: onyl: unknown key; did you mean 'only'?");
        Assert.Empty(Written(dir));
    }

    [Fact]
    public void AFailingStageStopsTheRunWithItsError()
    {
        using var dir = new TempDir();
        var pipeline = ThreeMixStages(dir, "");
        // b's config loads and its input exists, but the input is broken: found only when the stage reads it.
        File.WriteAllText(dir.File("broken.jsonl"), "{not json\n");
        File.WriteAllText(dir.File("b.yaml"), "ai_comparisons: broken.jsonl\nhuman_comparisons: pairs.jsonl\nai_fraction: 0\noutput_dir: out/b\n");
        var result = CliProcess.Run("run", "--config", pipeline);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("== a (mix)", result.Stdout);
        Assert.Contains("== b (mix)", result.Stdout);
        Assert.DoesNotContain("== c", result.Stdout);
        var error = Assert.Single(result.Stderr.Trim().Split('\n'));
        Assert.StartsWith("error: ", error);
        Assert.Contains("broken.jsonl", error);
        Assert.Equal(["a"], Written(dir));
    }

    [Fact]
    public void A_missing_input_is_found_before_the_first_stage_runs()
    {
        using var dir = new TempDir();
        var pipeline = ThreeMixStages(dir, "");
        File.WriteAllText(dir.File("c.yaml"), "ai_comparisons: missing.jsonl\nhuman_comparisons: pairs.jsonl\nai_fraction: 0\noutput_dir: out/c\n");
        var result = CliProcess.Run("run", "--config", pipeline);
        Assert.Equal(2, result.ExitCode);
        Assert.Equal("", result.Stdout);
        var error = Assert.Single(result.Stderr.Trim().Split('\n'));
        Assert.StartsWith($"error: {dir.File("c.yaml")}: ai_comparisons: {dir.File("missing.jsonl")} not found, and no stage before 'c' writes it", error);
        Assert.Empty(Written(dir));
    }

    [Fact]
    public void An_input_an_earlier_stage_writes_passes_the_check()
    {
        using var dir = new TempDir();
        var pipeline = ThreeMixStages(dir, "");
        // c reads what a writes: not there yet, but a stage before c writes into out/a.
        File.WriteAllText(dir.File("c.yaml"), "ai_comparisons: out/a/pm_mix.jsonl\nhuman_comparisons: pairs.jsonl\nai_fraction: 0\noutput_dir: out/c\n");
        Assert.Equal(3, Pipeline.Plan(pipeline).Count);
    }

    [Fact]
    public void Set_replaces_a_key_in_every_stage_that_has_it_and_refuses_a_key_none_has()
    {
        using var dir = new TempDir();
        var pipeline = ThreeMixStages(dir, "");
        var stages = Pipeline.Plan(pipeline, [("seed", "42")]);
        Assert.All(stages, s => Assert.Equal(42, ((PreferenceMix.Config)s.StageConfig).Seed));
        var e = Assert.Throws<UserError>(() => Pipeline.Plan(pipeline, [("stepz", "2")]));
        Assert.Contains("--set stepz: no stage of", e.Message);
    }

    [Fact]
    public void ShippedPipelineListsTheShippedStageConfigs()
    {
        var path = Path.Combine(Repository.Root, "configs", "stages", "pipeline.yaml");
        var stages = Pipeline.Plan(path);
        Assert.Equal(["revise", "sl-cai", "ai-labels", "pmp-data", "pmp", "pm-mix", "pm", "rl-cai", "evaluate"], stages.Select(s => s.Entry.Name));
        Assert.Equal(["revise", "sft", "label", "pmp-data", "pm", "mix", "pm", "ppo", "evaluate"], stages.Select(s => s.Kind.Name));
        // The PM fine-tuning starts from the PMP phase's model, and PPO from the SL-CAI model.
        var pmp = (TrainPreferenceModel.Config)stages.Single(s => s.Entry.Name == "pmp").StageConfig;
        var pm = (TrainPreferenceModel.Config)stages.Single(s => s.Entry.Name == "pm").StageConfig;
        Assert.Equal(Path.Combine(pmp.OutputDir, "model"), pm.Model);
        var sft = (Sft.Config)stages.Single(s => s.Entry.Name == "sl-cai").StageConfig;
        Assert.Equal(Path.Combine(sft.OutputDir, "train", "model"), ((TrainPolicy.Config)stages.Single(s => s.Entry.Name == "rl-cai").StageConfig).PolicyModel);
    }


    [Fact]
    public void HelpConfigListsTheKeysAndStageKinds()
    {
        var help = CliProcess.Run("run", "--help-config");
        Assert.Equal(0, help.ExitCode);
        foreach (var key in new[] { "stages:", "only:", "from:", "name:", "stage:", "config:" }) Assert.Contains(key, help.Stdout);
        Assert.Contains("train-lm, revise, sft, label, mix, pmp-data, pm, ppo, dpo, evaluate", help.Stdout);
    }
}
