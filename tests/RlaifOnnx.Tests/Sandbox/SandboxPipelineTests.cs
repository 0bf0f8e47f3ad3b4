using System.Text.Json;
using RlaifOnnx.Core;
using RlaifOnnx.Records;
using RlaifOnnx.Reporting;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Tests.Sandbox;

/// <summary>
/// `make demo`'s pipeline (configs/demo/pipeline.yaml with the committed models/sandbox-base) at reduced
/// size, in a copy of the configs so its outputs land in a temporary folder: every stage writes its
/// outputs, and the sandbox table in report.json is exactly what the checker gives on the evaluation's
/// generations. The rates themselves are not asserted: they come from sampled trajectories.
/// </summary>
public class SandboxPipelineTests
{
    [Fact]
    public void The_demo_pipeline_runs_every_stage_and_its_table_comes_from_the_evaluation_files()
    {
        using var dir = new TempDir();
        var configs = Path.Combine(dir.Path, "configs", "demo");
        CopyFolder(Path.Combine(Repository.Root, "configs", "demo"), configs);
        CopyFolder(Path.Combine(Repository.Root, "models", "sandbox-base"), Path.Combine(dir.Path, "models", "sandbox-base"));

        var result = CliProcess.RunFor(TimeSpan.FromMinutes(10), null, "run", "--config", Path.Combine(configs, "pipeline.yaml"),
            "--set", "limit=4", "--set", "rounds=1", "--set", "steps=2", "--set", "iterations=1", "--set", "rollout_batch_size=4",
            "--set", "mini_batch_size=2", "--set", "batch_size=4", "--set", "generation_batch_size=4", "--set", "sampling.max_new_tokens=12",
            "--set", "helpfulness_limit=4");
        Assert.True(result.ExitCode == 0, result.Stderr + result.Stdout);

        var runs = Path.Combine(dir.Path, "runs", "demo");
        foreach (var file in new[]
        {
            "01_revise/revisions.jsonl", "02_sft/train/model/model.onnx", "03_label/comparisons.jsonl", "04_mix/pm_mix.jsonl",
            "04_pm/model/model.onnx", "05_ppo/model/model.onnx", "04_mix_rlhf/pm_mix.jsonl", "04_pm_rlhf/model/model.onnx", "05_ppo_rlhf/model/model.onnx", "06_evaluate/generations.jsonl", "06_evaluate/verdicts.jsonl",
            "06_evaluate/report.json", "06_evaluate/report.md",
        })
            Assert.True(File.Exists(Path.Combine(runs, file)), $"{file} is missing");

        // The table is recomputed here from generations.jsonl and the committed checks.
        var checks = Jsonl.ReadAll<ResponseCheck>(Path.Combine(configs, "sandbox", "checks.jsonl")).ToDictionary(c => c.Id);
        var generations = Jsonl.ReadAll<EvaluationGeneration>(Path.Combine(runs, "06_evaluate", "generations.jsonl"));
        var report = Evaluate.ReadReport(Path.Combine(runs, "06_evaluate"));
        Assert.NotNull(report.Sandbox);
        Assert.Equal(["base", "sl_cai", "rl_cai", "rlhf"], report.Sandbox!.Models.Keys);
        foreach (var (policy, rates) in report.Sandbox.Models)
        {
            var mine = generations.Where(g => g.Policy == policy).ToList();
            var harmful = mine.Where(g => g.PromptSet == "harmful").ToList();
            var benign = mine.Where(g => g.PromptSet == "benign").ToList();
            Assert.Equal(4, harmful.Count);
            Assert.Equal(4, benign.Count);
            Assert.Equal(harmful.Count(g => ResponseChecker.Judge(checks[g.PromptId], g.Response) == Verdict.Complied), rates.HarmfulCompliance!.Count);
            Assert.Equal(harmful.Count(g => ResponseChecker.Judge(checks[g.PromptId], g.Response) == Verdict.RefusedHelpfully), rates.HelpfulRefusal!.Count);
            Assert.Equal(benign.Count(g => ResponseChecker.Judge(checks[g.PromptId], g.Response) == Verdict.Correct), rates.BenignAccuracy!.Count);
            Assert.Equal(4, rates.HarmfulCompliance!.N);
            Assert.NotNull(rates.UnseenKind);
            Assert.Equal(4, rates.UnseenKind!.HarmfulCompliance!.N);
            Assert.Equal(0, rates.UnseenKind.BenignAccuracy!.N);
        }
        Assert.Equal(["one_order", "both_orders", "ensemble_of_4", "chain_of_thought"], report.Sandbox.LabelAccuracy!.Keys);
        Assert.Contains("harmful compliance", result.Stdout);
        // The RLHF arm's comparisons are the label stage's samples with the checker's 0/1 verdict.
        var rlhf = Jsonl.ReadAll<MixedComparison>(Path.Combine(runs, "04_mix_rlhf", "pm_mix.jsonl")).Where(c => c.Source == "checker").ToList();
        var labelled = Jsonl.ReadAll<ComparisonRecord>(Path.Combine(runs, "03_label", "comparisons.jsonl")).ToDictionary(c => "checker/" + c.Id);
        Assert.All(rlhf, c =>
        {
            var source = labelled[c.Id];
            Assert.Equal(source.ResponseA, c.ResponseA);
            Assert.True(c.PA is 0.0 or 0.5 or 1.0);
        });
    }

    static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (var sub in Directory.GetDirectories(from)) CopyFolder(sub, Path.Combine(to, Path.GetFileName(sub)));
    }
}
