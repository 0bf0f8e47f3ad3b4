using System.Text.Json;
using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Records;
using RlaifOnnx.Reporting;
using RlaifOnnx.Stages;
using RlaifOnnx.Tests.Reporting;

namespace RlaifOnnx.Tests.Stages;

/// <summary>
/// report.html: rendered from a hand-written report with a sandbox section, PPO metrics and PM predictions
/// (every figure there, every number of the fixture in its table), and written by a real evaluation run on tiny models.
/// </summary>
public class EvaluateHtmlTests
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Three policies on two prompt sets with hand-picked Elo scores and rewards.</summary>
    static EvaluationReport Report()
    {
        EvaluationSetResult Set(string name, double[] eloPm, double[] eloAi) => new(name, $"builtin:{name}", 24,
        [
            new("base", 24, 120.5, 0.10, 0.02, eloPm[0], eloAi[0]),
            new("sl-cai", 24, 98.25, 0.35, 0.03, eloPm[1], eloAi[1]),
            new("rl-cai", 24, 101.0, 0.52, 0.04, eloPm[2], eloAi[2]),
        ],
        [new("base", "sl-cai", 24, 0.25, 0.375), new("sl-cai", "base", 24, 0.75, 0.625)]);
        return new EvaluationReport(["base", "sl-cai", "rl-cai"], "pm", "feedback", 0.5,
            [Set("harmlessness", [0, 80, 160], [0, 60, 140]), Set("helpfulness", [0, -10, 5], [0, -20, -15])]);
    }

    static (EvaluateHtml.Inputs Inputs, List<PreferencePrediction> Predictions) Inputs(TempDir dir)
    {
        var metricsPath = dir.File("metrics.jsonl");
        using (var log = new MetricsLog(metricsPath))
            for (var step = 1; step <= 6; step++)
                log.Write(step, [new("score", -0.3 + 0.5 * step), new("kl", 0.25 * step), new("rlhf_reward", -0.3 + 0.45 * step), new("beta", 0.05)]);
        var predictions = Enumerable.Range(0, 40).Select(i => new PreferencePrediction($"c{i}", i % 2 == 0 ? "ai" : "human",
            i % 2 == 0 ? 0.5 + (i % 10) / 20.0 : i % 3 == 0 ? 1 : 0, (i % 20) / 20.0 + 0.025, 0.1 * i, -0.1 * i)).ToList();
        return (new EvaluateHtml.Inputs(metricsPath, MetricsLog.Read(metricsPath), dir.File("eval_predictions.jsonl"), predictions), predictions);
    }

    [Fact]
    public void Renders_every_figure_and_the_fixtures_numbers_self_contained()
    {
        using var dir = new TempDir();
        var sandbox = JsonSerializer.Deserialize<SandboxReport>(SandboxFixture.Json, SandboxReport.Json)!;
        var (inputs, predictions) = Inputs(dir);
        var html = EvaluateHtml.Render(Report(), sandbox, inputs);

        // 2 paper figures (Elo by feedback model, by PM) + the sandbox figure + label calibration + 2 PPO curves + PM reliability.
        var images = HtmlReportCheck.AssertSelfContained(html);
        Assert.Equal(7, images.Count);
        Assert.All(images, size => Assert.Equal((Plots.Width, Plots.Height), size));

        var rows = HtmlReportCheck.TableRows(html);
        List<string> Row(string first, string second) => rows.First(r => r[0] == first && (second.Length == 0 || r[1].StartsWith(second, StringComparison.Ordinal)));
        // Sandbox rates: models in the given order, each rate as written, n/a where the key is missing.
        var modelRows = rows.Where(r => r.Count == 5 && r[0] is "base" or "sl_cai" or "rl_cai" or "rlhf").ToList();
        Assert.Equal(["base", "sl_cai", "rl_cai", "rlhf", "base"], modelRows.Select(r => r[0]));   // the last: the unseen-kind table
        Assert.Equal(["base", "40.0% [31.0, 50.0] (40/100)", "5.0% [2.2, 11.2] (5/100)", "10.0% [5.5, 17.4] (10/100)", "90.0% [83.4, 94.2] (108/120)"], modelRows[0]);
        Assert.Equal(["rl_cai", "12.0% [7.0, 19.8] (12/100)", "55.0% [45.2, 64.4] (55/100)", "15.0% [9.3, 23.2] (15/100)", "86.7% [79.5, 91.6] (104/120)"], modelRows[2]);
        Assert.Equal(["rlhf", "10.0% [5.5, 17.4] (10/100)", "60.0% [50.2, 69.1] (60/100)", "n/a", "85.0% [77.6, 90.2] (102/120)"], modelRows[3]);
        Assert.Equal("75.0% [53.1, 88.8] (15/20)", modelRows[4][1]);
        Assert.Equal(["cot", "83.0% [77.2, 87.5] (166/200)", "2"], Row("cot", ""));
        Assert.Equal(["ensemble", "80.0% [73.9, 85.0] (160/200)", "n/a"], Row("ensemble", ""));

        // Prompt-set tables: the report's numbers.
        Assert.Equal(["rl-cai", "24", "101.0", "0.520 ± 0.040", "160.0", "140.0"], Row("rl-cai", "24"));
        Assert.Equal(["base", "–", "0.25 / 0.38"], Row("base", "–").Take(3));

        // PPO: first and last of score and KL.
        Assert.Equal(["score", "0.200", "2.700", "0.200", "2.700"], Row("score", ""));
        Assert.Equal(["kl", "0.250", "1.500", "0.250", "1.500"], Row("kl", ""));

        // PM calibration: the bins' counts add up to the predictions, and the bin table agrees with the binning.
        var (bins, ece) = SoftCalibration.Bin(predictions.Select(p => p.PModel).ToList(), predictions.Select(p => p.PA).ToList(), 10);
        var binRows = rows.Where(r => r.Count == 4 && r[0].Contains('–')).ToList();
        Assert.Equal(bins.Where(b => b.Count > 0).Select(b => b.Count.ToString()), binRows.Select(r => r[1]));
        Assert.Equal(40, binRows.Sum(r => int.Parse(r[1])));
        Assert.Contains($"Expected calibration error: {ece:F3}", html);
        Assert.DoesNotContain("Not shown", html);
    }

    [Fact]
    public void Without_sandbox_or_inputs_it_says_what_is_missing_and_how_to_add_it()
    {
        var html = EvaluateHtml.Render(Report(), null, new EvaluateHtml.Inputs(null, null, null, null));
        Assert.Equal(2, HtmlReportCheck.AssertSelfContained(html).Count);
        Assert.Contains("Not shown: sandbox rates", html);
        Assert.Contains("ppo_metrics:", html);
        Assert.Contains("pm_calibration:", html);

        // Prompt sets named otherwise: no paper figure, and a note that says why.
        var other = Report() with { PromptSets = [.. Report().PromptSets.Select((s, i) => s with { Name = $"set{i}" })] };
        var plain = EvaluateHtml.Render(other, null, new EvaluateHtml.Inputs(null, null, null, null));
        Assert.Empty(HtmlReportCheck.AssertSelfContained(plain));
        Assert.Contains("named like", plain);
    }

    [Fact]
    public async Task An_evaluation_run_on_tiny_models_writes_report_html_beside_report_json()
    {
        using var dir = new TempDir();
        var policy = TinyModels.Folder(dir.File("p1"), seed: 1);
        var other = TinyModels.Folder(dir.File("p2"), seed: 2);
        var modelConfig = ModelFolder.ReadMetadata(policy).Config;
        var pm = dir.File("pm");
        PreferenceModelFolder.Write(pm, modelConfig, PreferenceModelGraphs.FromLanguageModel(modelConfig, ModelFolder.ReadWeights(policy), 5), policy, []);
        var (inputs, predictions) = Inputs(dir);
        Jsonl.Write(inputs.PmCalibrationPath!, predictions);
        var config = new Evaluate.Config
        {
            Policies = [new() { Name = "base", Model = policy }, new() { Name = "sl-cai", Model = other }],
            PromptSets = [new() { Name = "harmlessness", Source = "builtin:red-team-eval" }, new() { Name = "helpfulness", Source = "builtin:helpful-eval" }],
            Limit = 2, RewardModel = pm, FeedbackModel = policy, Principles = 1, FewShot = 0,
            Sampling = new() { Temperature = 1.0, MaxNewTokens = 6 }, BatchSize = 2, Seed = 3,
            PpoMetrics = dir.Path,                    // a folder: its metrics.jsonl
            PmCalibration = inputs.PmCalibrationPath, // a file
            OutputDir = dir.File("eval"),
        };
        var report = await Evaluate.Run(config, cancellationToken: Ct);

        var html = File.ReadAllText(Path.Combine(config.OutputDir, EvaluateHtml.ReportHtmlFile));
        var images = HtmlReportCheck.AssertSelfContained(html);
        Assert.Equal(5, images.Count); // 2 paper figures, 2 PPO curves, the PM's reliability diagram
        var rows = HtmlReportCheck.TableRows(html);
        foreach (var set in report.PromptSets)
            foreach (var p in set.Policies)
                Assert.Contains(rows, r => r[0] == p.Policy && r.Count == 6 && r[3] == $"{ReportSections.Number(p.MeanReward)} ± {ReportSections.Number(p.RewardStandardError)}"
                    && r[4] == ReportSections.Number(p.EloByReward, "F1") && r[5] == ReportSections.Number(p.EloByFeedback, "F1"));
        Assert.Contains("Not shown: sandbox rates", html);
    }

    [Fact]
    public async Task A_missing_or_malformed_report_input_fails_before_any_model_is_loaded()
    {
        using var dir = new TempDir();
        var config = new Evaluate.Config
        {
            Policies = [new() { Name = "base", Model = TinyModels.Folder(dir.File("p1"), seed: 1) }],
            PromptSets = [new() { Name = "harmlessness", Source = "builtin:red-team-eval" }],
            PpoMetrics = dir.File("nowhere"),
            OutputDir = dir.File("eval"),
        };
        var missing = await Assert.ThrowsAsync<UserError>(() => Evaluate.Run(config, cancellationToken: Ct));
        Assert.Contains("ppo_metrics", missing.Message);
        Assert.Contains("nowhere", missing.Message);
        Assert.False(Directory.Exists(config.OutputDir));

        var predictions = dir.File("eval_predictions.jsonl");
        File.WriteAllText(predictions, """
            {"id":"a","source":"ai","p_a":0.8,"p_model":0.7,"reward_a":1,"reward_b":0}
            {"id":"b","source":"ai","p_a":0.8,"p_model":1.5,"reward_a":1,"reward_b":0}

            """);
        var bad = await Assert.ThrowsAsync<UserError>(() => Evaluate.Run(config with { PpoMetrics = null, PmCalibration = predictions }, cancellationToken: Ct));
        Assert.Equal($"{predictions}:2: p_model: must be in [0, 1], got 1.5", bad.Message);
        Assert.False(Directory.Exists(config.OutputDir));
    }
}
