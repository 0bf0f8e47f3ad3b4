extern alias ScottPlot5;
using ScottPlot5::ScottPlot;
using ErrorBarPlot = ScottPlot5::ScottPlot.Plottables.ErrorBar;

namespace RlaifOnnx.Reporting;

/// <summary>A named point of a scatter figure with an optional interval on each axis (absolute bounds).</summary>
public sealed record LabelledPoint(string Label, double X, double Y, double? XLow = null, double? XHigh = null, double? YLow = null, double? YHigh = null);

/// <summary>A named curve: y against x, same lengths.</summary>
public sealed record Curve(string Name, IReadOnlyList<double> Xs, IReadOnlyList<double> Ys);

/// <summary>
/// The report's figures, drawn with ScottPlot (on SkiaSharp) and returned as PNG bytes, so the HTML report can
/// embed them and fetch nothing. Every figure has a title and labelled axes; non-finite values are left out
/// (a curve is drawn through its finite points only).
/// </summary>
public static class Plots
{
    public const int Width = 560;
    public const int Height = 420;

    /// <summary>
    /// One labelled marker per point, with interval bars where given: the CAI paper's harmlessness-vs-helpfulness
    /// figure. The axes span the data (intervals included) with room for the labels, kept inside the bounds given
    /// (e.g. a rate's [0, 1] plus label room).
    /// </summary>
    public static byte[] LabelledScatter(string title, string xLabel, string yLabel, IReadOnlyList<LabelledPoint> points, (double Min, double Max)? xBounds = null, (double Min, double Max)? yBounds = null)
    {
        var plot = NewPlot(title, xLabel, yLabel);
        var palette = new ScottPlot5::ScottPlot.Palettes.Category10();
        var shown = points.Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
        for (var i = 0; i < shown.Count; i++)
        {
            var p = shown[i];
            var color = palette.GetColor(i);
            if (p.XLow is not null || p.XHigh is not null || p.YLow is not null || p.YHigh is not null)
            {
                // Set by name: the constructor's order of the four error lists is easy to get wrong (it is not x−, x+, y−, y+).
                var bars = new ErrorBarPlot([p.X], [p.Y], null, null, null, null)
                {
                    XErrorNegative = [p.X - (p.XLow ?? p.X)], XErrorPositive = [(p.XHigh ?? p.X) - p.X],
                    YErrorNegative = [p.Y - (p.YLow ?? p.Y)], YErrorPositive = [(p.YHigh ?? p.Y) - p.Y],
                    Color = color, LineWidth = 1.5f, CapSize = 6,
                };
                plot.Add.Plottable(bars);
            }
            plot.Add.Marker(p.X, p.Y, MarkerShape.FilledCircle, 11, color);
            var text = plot.Add.Text(p.Label, p.X, p.Y);
            text.LabelFontSize = 14;
            text.LabelFontColor = color;
            text.LabelAlignment = Alignment.LowerLeft;
            text.OffsetX = 7;
            text.OffsetY = -7;
        }
        SetLimits(plot, shown.SelectMany(p => new[] { p.X, p.XLow ?? p.X, p.XHigh ?? p.X }).ToList(),
            shown.SelectMany(p => new[] { p.Y, p.YLow ?? p.Y, p.YHigh ?? p.Y }).ToList(), xBounds, yBounds);
        return Png(plot);
    }

    /// <summary>Curves against a common x axis (e.g. a metric per PPO iteration), with a legend when there is more than one.</summary>
    public static byte[] Lines(string title, string xLabel, string yLabel, IReadOnlyList<Curve> curves, bool integerX = false)
    {
        var plot = NewPlot(title, xLabel, yLabel);
        if (integerX) plot.Axes.Bottom.TickGenerator = new ScottPlot5::ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        var palette = new ScottPlot5::ScottPlot.Palettes.Category10();
        for (var i = 0; i < curves.Count; i++)
        {
            var (xs, ys) = Finite(curves[i]);
            if (xs.Length == 0) continue;
            var line = plot.Add.Scatter(xs, ys, palette.GetColor(i));
            line.LineWidth = 2;
            line.MarkerSize = xs.Length > 60 ? 0 : 5;
            // ScottPlot shows a legend once any item has text; one curve is named by the axis instead.
            if (curves.Count > 1) line.LegendText = curves[i].Name;
        }
        if (curves.Count > 1) plot.ShowLegend(Alignment.UpperLeft);
        else plot.HideLegend();
        return Png(plot);
    }

    /// <summary>
    /// A reliability diagram: each curve's (mean predicted probability, observed rate) per bin over the
    /// diagonal a perfectly calibrated predictor lies on; both axes [0, 1].
    /// </summary>
    public static byte[] Reliability(string title, string xLabel, string yLabel, IReadOnlyList<Curve> curves)
    {
        var plot = NewPlot(title, xLabel, yLabel);
        var diagonal = plot.Add.Line(0, 0, 1, 1);
        diagonal.LinePattern = LinePattern.Dashed;
        diagonal.Color = Colors.Gray;
        diagonal.LegendText = "perfect calibration";
        var palette = new ScottPlot5::ScottPlot.Palettes.Category10();
        for (var i = 0; i < curves.Count; i++)
        {
            var (xs, ys) = Finite(curves[i]);
            if (xs.Length == 0) continue;
            var line = plot.Add.Scatter(xs, ys, palette.GetColor(i));
            line.LineWidth = 2;
            line.MarkerSize = 8;
            line.LegendText = curves[i].Name;
        }
        plot.ShowLegend(Alignment.UpperLeft);
        plot.Axes.SetLimits(-0.02, 1.02, -0.02, 1.02);
        return Png(plot);
    }

    static Plot NewPlot(string title, string xLabel, string yLabel)
    {
        var plot = new Plot();
        plot.Font.Set(FontName);
        plot.Title(title, size: 16);
        plot.XLabel(xLabel, size: 14);
        plot.YLabel(yLabel, size: 14);
        return plot;
    }

    /// <summary>DejaVu Sans where installed (Debian's default), else ScottPlot's sans-serif choice.</summary>
    static readonly string FontName = SkiaSharp.SKFontManager.Default.GetFontFamilies().Contains("DejaVu Sans") ? "DejaVu Sans" : Fonts.Sans;

    static (double[] Xs, double[] Ys) Finite(Curve curve)
    {
        if (curve.Xs.Count != curve.Ys.Count) throw new ArgumentException($"curve '{curve.Name}' has {curve.Xs.Count} x and {curve.Ys.Count} y values");
        var keep = Enumerable.Range(0, curve.Xs.Count).Where(i => double.IsFinite(curve.Xs[i]) && double.IsFinite(curve.Ys[i])).ToList();
        return (keep.Select(i => curve.Xs[i]).ToArray(), keep.Select(i => curve.Ys[i]).ToArray());
    }

    /// <summary>The data's range with a margin (room for the labels), never zero-wide, then kept inside the given bounds.</summary>
    static void SetLimits(Plot plot, IReadOnlyList<double> xs, IReadOnlyList<double> ys, (double Min, double Max)? xBounds, (double Min, double Max)? yBounds)
    {
        var (x0, x1) = Padded(xs, rightExtra: 0.35);
        var (y0, y1) = Padded(ys, rightExtra: 0.18);
        if (xBounds is { } xb) (x0, x1) = (Math.Max(x0, xb.Min), Math.Min(x1, xb.Max));
        if (yBounds is { } yb) (y0, y1) = (Math.Max(y0, yb.Min), Math.Min(y1, yb.Max));
        plot.Axes.SetLimits(x0, x1, y0, y1);
    }

    static (double, double) Padded(IReadOnlyList<double> values, double rightExtra)
    {
        var finite = values.Where(double.IsFinite).ToList();
        if (finite.Count == 0) return (-1, 1);
        double min = finite.Min(), max = finite.Max();
        var span = max - min;
        if (span < 1e-9) span = Math.Max(1, Math.Abs(max));
        return (min - 0.12 * span, max + rightExtra * span);
    }

    static byte[] Png(Plot plot) => plot.GetImageBytes(Width, Height, ImageFormat.Png);
}
