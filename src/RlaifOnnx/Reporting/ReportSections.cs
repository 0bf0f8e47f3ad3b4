using System.Globalization;
using RlaifOnnx.Records;

namespace RlaifOnnx.Reporting;

/// <summary>
/// The parts of report.html that come from files other than the evaluation's own: the sandbox's rates
/// (report.json's <c>sandbox</c> section), PPO's curves (its metrics.jsonl) and the preference model's
/// calibration (its eval_predictions.jsonl). Each appends headings, figures and tables to a document.
/// </summary>
public static class ReportSections
{
    /// <summary>The four verdict rates in table order, with their report.json names.</summary>
    static readonly (string Name, Func<SandboxModelRates, RateEstimate?> Of)[] RateColumns =
    [
        ("harmful compliance", r => r.HarmfulCompliance),
        ("helpful refusal", r => r.HelpfulRefusal),
        ("evasive refusal", r => r.EvasiveRefusal),
        ("benign accuracy", r => r.BenignAccuracy),
    ];

    /// <summary>The PPO metrics plotted and tabulated, in this order, where the log has them.</summary>
    static readonly string[] PpoTableKeys = ["score", "rlhf_reward", "kl", "beta", "entropy", "response_length", "eos_fraction"];

    /// <summary>
    /// The sandbox version of the paper's figure: x = benign accuracy, y = 1 − harmful compliance, with 95%
    /// interval bars; null when no model has both rates.
    /// </summary>
    public static (byte[] Png, string Caption)? SandboxFigure(SandboxReport sandbox)
    {
        var points = new List<LabelledPoint>();
        foreach (var (name, rates) in sandbox.Models)
        {
            if (rates.BenignAccuracy is not { N: > 0 } benign || rates.HarmfulCompliance is not { N: > 0 } harmful) continue;
            points.Add(new LabelledPoint(name, benign.Rate!.Value, 1 - harmful.Rate!.Value,
                benign.Ci95[0], benign.Ci95[1], 1 - harmful.Ci95[1], 1 - harmful.Ci95[0]));
        }
        if (points.Count == 0) return null;
        var png = Plots.LabelledScatter("Sandbox: harmless vs helpful", "benign accuracy (helpful)", "1 − harmful compliance (harmless)",
            points, xBounds: (-0.03, 1.2), yBounds: (-0.03, 1.12));
        return (png, "Held-out sandbox requests, judged by the checker: up and to the right is better. Bars: 95% Wilson intervals.");
    }

    /// <summary>The sandbox's tables: rates per model, the unseen harm kind's rates, and the AI labels' accuracy and calibration.</summary>
    public static void Sandbox(HtmlDocument doc, SandboxReport sandbox)
    {
        doc.Heading(2, "Sandbox: verdict rates on held-out requests");
        doc.Paragraph("Each rate is count/n of the checker's verdicts on held-out sandbox requests, with its 95% Wilson interval. "
            + "Harmful requests are complied with, refused helpfully (declined with the safe alternative) or refused evasively; benign requests are answered correctly or not.");
        doc.Table(["model", .. RateColumns.Select(c => c.Name)],
            sandbox.Models.Select(m => (IReadOnlyList<string>)[m.Key, .. RateColumns.Select(c => Rate(c.Of(m.Value)))]));
        var unseen = sandbox.Models.Where(m => m.Value.UnseenKind is not null).ToList();
        if (unseen.Count > 0)
        {
            doc.Heading(3, "The harm kind no training prompt covers");
            doc.Table(["model", .. RateColumns.Select(c => c.Name)],
                unseen.Select(m => (IReadOnlyList<string>)[m.Key, .. RateColumns.Select(c => Rate(c.Of(m.Value.UnseenKind!)))]));
        }
        if (sandbox.LabelAccuracy is not { Count: > 0 } labels) return;

        doc.Heading(3, "AI feedback labels against the checker's truth");
        doc.Table(["label variant", "accuracy", "calibration bins"],
            labels.Select(l => (IReadOnlyList<string>)[l.Key, Rate(l.Value.Accuracy), l.Value.Calibration is { } c ? c.Count.ToString(CultureInfo.InvariantCulture) : "n/a"]));
        var curves = labels.Where(l => l.Value.Calibration is { Count: > 0 })
            .Select(l => new Curve(l.Key, l.Value.Calibration!.Select(b => b.Count > 0 ? b[0] : double.NaN).ToList(), l.Value.Calibration!.Select(b => b.Count > 1 ? b[1] : double.NaN).ToList()))
            .ToList();
        if (curves.Count > 0)
            doc.Figures((Plots.Reliability("AI labels: calibration against the truth", "label's p(more harmless answer)", "share where it is the more harmless", curves),
                "Per label variant: mean predicted probability against the true rate in each bin; the dashed diagonal is perfect calibration."));
    }

    /// <summary>PPO's score and KL per iteration from the PPO stage's metrics.jsonl, with the first and last values of its main metrics.</summary>
    public static void PpoCurves(HtmlDocument doc, IReadOnlyList<MetricsEntry> entries, string source)
    {
        doc.Heading(2, "PPO: reward and KL per iteration");
        doc.Note($"From {source} ({entries.Count} iterations).");
        var sorted = entries.OrderBy(e => e.Step).ToList();
        Curve? CurveOf(string key, string name)
        {
            var rows = sorted.Where(e => e.Values.ContainsKey(key)).ToList();
            return rows.Count == 0 ? null : new Curve(name, rows.Select(e => (double)e.Step).ToList(), rows.Select(e => e.Values[key]).ToList());
        }
        var rewardCurves = new[] { CurveOf("score", "PM score"), CurveOf("rlhf_reward", "score − β·KL") }.OfType<Curve>().ToList();
        var klCurve = CurveOf("kl", "KL(policy ‖ reference)");
        if (rewardCurves.Count == 0 && klCurve is null)
        {
            doc.Paragraph("The file has no 'score' or 'kl' values: is it the PPO stage's metrics.jsonl?");
            return;
        }
        var figures = new List<(byte[], string)>();
        if (rewardCurves.Count > 0)
            figures.Add((Plots.Lines("PPO: reward per iteration", "iteration", "mean reward of the rollouts", rewardCurves, integerX: true),
                "The preference model's mean score of each iteration's rollouts, and the reward PPO maximises (score less the KL penalty)."));
        if (klCurve is not null)
            figures.Add((Plots.Lines("PPO: KL from the reference", "iteration", "mean sequence KL (nats)", [klCurve], integerX: true),
                "Mean summed per-token KL between the policy and the reference (SL-CAI) model on the rollouts."));
        doc.Figures(figures);
        var keys = PpoTableKeys.Where(k => sorted.Any(e => e.Values.ContainsKey(k))).ToList();
        doc.Table(["metric", "first", "last", "min", "max"], keys.Select(k =>
        {
            var values = sorted.Where(e => e.Values.ContainsKey(k)).Select(e => e.Values[k]).ToList();
            return (IReadOnlyList<string>)[k, Number(values[0]), Number(values[^1]), Number(values.Min()), Number(values.Max())];
        }));
    }

    /// <summary>The preference model's reliability diagram on its held-out comparisons: p_model binned against the labels' p_a, overall and per source.</summary>
    public static void PmCalibration(HtmlDocument doc, IReadOnlyList<PreferencePrediction> predictions, string source, int bins = 10)
    {
        doc.Heading(2, "Preference model: calibration on held-out comparisons");
        doc.Note($"From {source} ({predictions.Count} comparisons).");
        if (predictions.Count == 0)
        {
            doc.Paragraph("The file holds no predictions.");
            return;
        }
        var (overall, ece) = SoftCalibration.Bin(predictions.Select(p => p.PModel).ToList(), predictions.Select(p => p.PA).ToList(), bins);
        var accuracy = SoftCalibration.Accuracy(predictions.Select(p => p.PModel).ToList(), predictions.Select(p => p.PA).ToList());
        var curves = new List<Curve> { new("all", overall.Select(b => b.MeanPredicted).ToList(), overall.Select(b => b.MeanTarget).ToList()) };
        var sources = predictions.GroupBy(p => p.Source).OrderBy(g => g.Key, StringComparer.Ordinal).ToList();
        if (sources.Count > 1)
            foreach (var group in sources)
            {
                var (groupBins, _) = SoftCalibration.Bin(group.Select(p => p.PModel).ToList(), group.Select(p => p.PA).ToList(), bins);
                curves.Add(new Curve(group.Key, groupBins.Select(b => b.MeanPredicted).ToList(), groupBins.Select(b => b.MeanTarget).ToList()));
            }
        doc.Paragraph($"Accuracy (labels that pick a side): {Number(accuracy)}. Expected calibration error: {Number(ece)}.");
        doc.Figures((Plots.Reliability("Preference model: reliability", "PM's p(a better) = σ(r_a − r_b)", "mean label p_a", curves),
            "Held-out comparisons binned by the PM's predicted probability; y is the mean soft label in the bin. The dashed diagonal is perfect calibration."));
        doc.Table(["bin", "comparisons", "mean PM p(a better)", "mean label p_a"], overall.Where(b => b.Count > 0).Select(b => (IReadOnlyList<string>)
            [$"{Number(b.Low, "F1")}–{Number(b.High, "F1")}", b.Count.ToString(CultureInfo.InvariantCulture), Number(b.MeanPredicted), Number(b.MeanTarget)]));
    }

    /// <summary>A rate as "12.5% [8.1, 18.8] (20/160)", or n/a when it was not measured.</summary>
    public static string Rate(RateEstimate? rate) => rate is null ? "n/a" : rate.Format();

    public static string Number(double? x, string format = "F3") =>
        x is { } v && double.IsFinite(v) ? v.ToString(format, CultureInfo.InvariantCulture) : "n/a";
}
