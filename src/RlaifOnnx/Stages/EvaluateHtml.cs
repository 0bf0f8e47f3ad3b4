using System.Globalization;
using RlaifOnnx.Core;
using RlaifOnnx.Records;
using RlaifOnnx.Reporting;

namespace RlaifOnnx.Stages;

/// <summary>
/// report.html, the evaluation as a person reads it: one self-contained page (figures are PNGs embedded as
/// data URLs; no script, nothing fetched) beside report.json and report.md. It shows
/// <list type="number">
/// <item>the Constitutional AI paper's figure (Fig. 2/3): harmlessness against helpfulness, one labelled point
/// per policy, from the Elo scores of the prompt sets named like "harmlessness" and "helpfulness"; and, when
/// report.json has a <c>sandbox</c> section, the same figure from the checker's exact verdicts (benign
/// accuracy against 1 − harmful compliance, with 95% intervals);</item>
/// <item>the sandbox's rate tables with intervals (<see cref="SandboxReport"/>);</item>
/// <item>each prompt set's table and win-rate matrix, as in report.md;</item>
/// <item>with <c>ppo_metrics</c>: PPO's score and KL per iteration from its metrics.jsonl;</item>
/// <item>with <c>pm_calibration</c>: the preference model's reliability diagram from the PM stage's eval_predictions.jsonl.</item>
/// </list>
/// </summary>
public static class EvaluateHtml
{
    public const string ReportHtmlFile = "report.html";

    /// <summary>The optional inputs as read, each with the path it came from.</summary>
    public sealed record Inputs(string? PpoMetricsPath, IReadOnlyList<MetricsEntry>? PpoMetrics, string? PmCalibrationPath, IReadOnlyList<PreferencePrediction>? PmPredictions);

    /// <summary>
    /// Reads ppo_metrics and pm_calibration (a file, or the stage's output folder holding it). The stage calls
    /// this before it loads a model, so a missing or malformed file fails first, naming file, line and key.
    /// </summary>
    public static Inputs ReadInputs(Evaluate.Config config, string source = "evaluate config")
    {
        var ppoPath = Resolve(config.PpoMetrics, TrainPolicy.MetricsFile, source, "ppo_metrics", "the PPO stage's metrics.jsonl or its output folder");
        var pmPath = Resolve(config.PmCalibration, TrainPreferenceModel.EvalPredictionsFile, source, "pm_calibration",
            "the PM stage's eval_predictions.jsonl or its output folder (written when the PM stage has held-out comparisons)");
        List<PreferencePrediction>? predictions = null;
        if (pmPath is not null)
        {
            predictions = [];
            foreach (var (line, p) in Jsonl.Read<PreferencePrediction>(pmPath))
            {
                if (!(p.PA is >= 0 and <= 1)) throw UserError.At(pmPath, line, "p_a", $"must be in [0, 1], got {p.PA.ToString(CultureInfo.InvariantCulture)}");
                if (!(p.PModel is >= 0 and <= 1)) throw UserError.At(pmPath, line, "p_model", $"must be in [0, 1], got {p.PModel.ToString(CultureInfo.InvariantCulture)}");
                predictions.Add(p);
            }
        }
        return new Inputs(ppoPath, ppoPath is null ? null : MetricsLog.Read(ppoPath), pmPath, predictions);
    }

    static string? Resolve(string? path, string fileInFolder, string source, string key, string what)
    {
        if (path is null) return null;
        var file = Directory.Exists(path) ? Path.Combine(path, fileInFolder) : path;
        return File.Exists(file) ? file : throw UserError.At(source, null, key, $"'{file}' not found ({what})");
    }

    /// <summary>
    /// Writes report.html into the output folder from the report, report.json's sandbox section (if any) and the
    /// optional inputs. It reads report.json as written, so it runs after everything that fills report.json;
    /// a caller holding the sections in memory can use <see cref="Render"/> instead.
    /// </summary>
    public static void Write(Evaluate.Config config, EvaluationReport report, Inputs inputs)
    {
        var reportJson = Path.Combine(config.OutputDir, Evaluate.ReportFile);
        var sandbox = File.Exists(reportJson) ? SandboxReport.FromReportJson(File.ReadAllText(reportJson)) : null;
        AtomicFile.WriteAllText(Path.Combine(config.OutputDir, ReportHtmlFile), Render(report, sandbox, inputs));
    }

    /// <summary>The whole page.</summary>
    public static string Render(EvaluationReport report, SandboxReport? sandbox, Inputs inputs)
    {
        var doc = new HtmlDocument("Evaluation report");
        doc.Heading(1, "Evaluation report");
        doc.Paragraph($"Policies: {string.Join(", ", report.Policies)}. Reward model: {report.RewardModel ?? "none"}. Feedback model: {report.FeedbackModel ?? "none"}.");

        // 1. The paper's figure, from the Elo scores and from the sandbox's exact verdicts.
        doc.Heading(2, "Harmlessness vs helpfulness");
        var figures = PaperFigures(report, out var figureNote);
        if (sandbox is not null && ReportSections.SandboxFigure(sandbox) is { } sandboxFigure) figures.Add(sandboxFigure);
        if (figures.Count > 0) doc.Figures(figures);
        if (figureNote is not null) doc.Note(figureNote);

        // 2. The sandbox's rates.
        if (sandbox is not null) ReportSections.Sandbox(doc, sandbox);

        // 3. Each prompt set, as in report.md.
        foreach (var set in report.PromptSets) PromptSet(doc, report, set);

        // 4. PPO's curves and 5. the preference model's calibration.
        if (inputs.PpoMetrics is { } ppo) ReportSections.PpoCurves(doc, ppo, inputs.PpoMetricsPath!);
        if (inputs.PmPredictions is { } pm) ReportSections.PmCalibration(doc, pm, inputs.PmCalibrationPath!);
        var missing = new List<string>();
        if (sandbox is null) missing.Add("sandbox rates (report.json has no sandbox section)");
        if (inputs.PpoMetrics is null) missing.Add("PPO curves (set ppo_metrics: to the PPO stage's output folder)");
        if (inputs.PmPredictions is null) missing.Add("the preference model's calibration (set pm_calibration: to the PM stage's output folder)");
        if (missing.Count > 0) doc.Note("Not shown: " + string.Join("; ", missing) + ".");
        return doc.ToHtml();
    }

    /// <summary>
    /// Harmlessness Elo against helpfulness Elo per policy, once per judge that scored both prompt sets (the
    /// feedback model, the preference model), or the mean PM reward where no Elo exists.
    /// </summary>
    static List<(byte[] Png, string Caption)> PaperFigures(EvaluationReport report, out string? note)
    {
        var harmless = FindSet(report, "harmless") ?? FindSet(report, "harm") ?? FindSet(report, "red");
        var helpful = FindSet(report, "helpful") ?? FindSet(report, "help");
        note = null;
        if (harmless is null || helpful is null || harmless == helpful)
        {
            note = "The paper's figure needs a prompt set named like 'harmlessness' and one named like 'helpfulness'; this report has "
                + string.Join(", ", report.PromptSets.Select(s => $"'{s.Name}'")) + ".";
            return [];
        }
        var measures = new (string Name, Func<EvaluationPolicyResult, double?> Of)[]
        {
            ("Elo (feedback model)", p => p.EloByFeedback),
            ("Elo (PM reward)", p => p.EloByReward),
        }.ToList();
        if (!measures.Any(m => Points(report, harmless, helpful, m.Of).Count > 0)) measures = [("mean PM reward", p => p.MeanReward)];
        var figures = new List<(byte[], string)>();
        foreach (var (name, of) in measures)
        {
            var points = Points(report, harmless, helpful, of);
            if (points.Count == 0) continue;
            figures.Add((Plots.LabelledScatter($"Harmlessness vs helpfulness: {name}", $"helpfulness {name}", $"harmlessness {name}", points),
                $"One point per policy; {name} on the prompt sets '{helpful.Name}' (x) and '{harmless.Name}' (y)"
                + (name.StartsWith("Elo", StringComparison.Ordinal) ? $", relative to {report.Policies[0]}." : ".")));
        }
        if (figures.Count == 0) note = "No policy has scores on both prompt sets: the evaluation ran without a reward model and a feedback model.";
        return figures;
    }

    static EvaluationSetResult? FindSet(EvaluationReport report, string part) =>
        report.PromptSets.FirstOrDefault(s => s.Name.Contains(part, StringComparison.OrdinalIgnoreCase));

    static List<LabelledPoint> Points(EvaluationReport report, EvaluationSetResult harmless, EvaluationSetResult helpful, Func<EvaluationPolicyResult, double?> of)
    {
        var points = new List<LabelledPoint>();
        foreach (var policy in report.Policies)
        {
            var x = helpful.Policies.FirstOrDefault(p => p.Policy == policy) is { } h ? of(h) : null;
            var y = harmless.Policies.FirstOrDefault(p => p.Policy == policy) is { } r ? of(r) : null;
            if (x is { } xv && y is { } yv && double.IsFinite(xv) && double.IsFinite(yv)) points.Add(new LabelledPoint(policy, xv, yv));
        }
        return points;
    }

    static void PromptSet(HtmlDocument doc, EvaluationReport report, EvaluationSetResult set)
    {
        static string N(double? x, string format = "F1") => ReportSections.Number(x, format);
        doc.Heading(2, $"Prompt set: {set.Name}");
        doc.Note($"{set.Prompts} prompts from {set.Source}. Elo scores from a Bradley–Terry fit on the pairwise win counts "
            + $"({report.EloPrior.ToString(CultureInfo.InvariantCulture)} pseudo-wins per side), relative to {report.Policies[0]}.");
        doc.Table(["policy", "answers", "mean length (chars)", "mean PM reward ± SE", "Elo (PM)", "Elo (feedback model)"],
            set.Policies.Select(p => (IReadOnlyList<string>)[p.Policy, p.Answers.ToString(CultureInfo.InvariantCulture), N(p.MeanLength),
                $"{N(p.MeanReward, "F3")} ± {N(p.RewardStandardError, "F3")}", N(p.EloByReward), N(p.EloByFeedback)]));
        doc.Table(["row vs column", .. report.Policies], report.Policies.Select(row => (IReadOnlyList<string>)[row, .. report.Policies.Select(column =>
                row == column ? "–" : set.Pairwise.FirstOrDefault(x => x.Policy == row && x.Opponent == column) is { } pair
                    ? $"{N(pair.WinRateByReward, "F2")} / {N(pair.WinRateByFeedback, "F2")}" : "n/a")]),
            caption: "Win rate of the row policy against the column policy: by PM reward (ties half) / by the feedback model's mean p.");
    }
}
