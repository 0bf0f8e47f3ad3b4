using RlaifOnnx.Reporting;

namespace RlaifOnnx.Tests.Reporting;

/// <summary>Every figure renders on this machine (ScottPlot on SkiaSharp's native library) to a PNG of the documented size.</summary>
public class PlotsTests
{
    [Fact]
    public void Every_figure_is_a_decodable_png_of_the_documented_size()
    {
        var scatter = Plots.LabelledScatter("t", "x", "y",
            [new("base", 0.9, 0.6, 0.83, 0.94, 0.5, 0.69), new("rl-cai", 0.87, 0.88), new("broken", double.NaN, 1)]);
        var lines = Plots.Lines("t", "step", "value", [new("score", [1, 2, 3], [0.1, double.PositiveInfinity, 0.4]), new("kl", [1, 2, 3], [0, 0.2, 0.5])]);
        var reliability = Plots.Reliability("t", "p", "rate", [new("all", [0.05, double.NaN, 0.6], [0.1, double.NaN, 0.5])]);
        var empty = Plots.Lines("t", "step", "value", []);
        foreach (var png in new[] { scatter, lines, reliability, empty })
            Assert.Equal((Plots.Width, Plots.Height), HtmlReportCheck.AssertPng(png));
    }

    [Fact]
    public void A_figure_draws_its_points()
    {
        // Two different point sets give different pictures: the data reach the image.
        var a = Plots.LabelledScatter("t", "x", "y", [new("a", 0, 0), new("b", 1, 1)]);
        var b = Plots.LabelledScatter("t", "x", "y", [new("a", 0, 1), new("b", 1, 0)]);
        Assert.NotEqual(a, b);
        Assert.Throws<ArgumentException>(() => Plots.Lines("t", "x", "y", [new("bad", [1, 2], [1])]));
    }
}
