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
    public void Interval_bars_reach_the_bounds_given_on_the_side_given()
    {
        // One point with an interval on one side only. The axes span the data, so a bar drawn mirrored (to the
        // other side) would be clipped at the plot's edge a few pixels from the marker.
        var right = Plots.LabelledScatter("t", "x", "y", [new("", 0.5, 0.5, XLow: 0.5, XHigh: 0.9)]);
        var down = Plots.LabelledScatter("t", "x", "y", [new("", 0.5, 0.5, YLow: 0.1, YHigh: 0.5)]);
        var (x0, x1, _, _) = ExtentOfFirstColour(right);
        var (_, _, y0, y1) = ExtentOfFirstColour(down);
        Assert.True(x1 - x0 > 150, $"the bar spans {x1 - x0} px across");
        Assert.True(y1 - y0 > 150, $"the bar spans {y1 - y0} px down");
    }

    /// <summary>The bounding box of the pixels drawn in the palette's first colour (#1f77b4).</summary>
    static (int X0, int X1, int Y0, int Y1) ExtentOfFirstColour(byte[] png)
    {
        using var bitmap = SkiaSharp.SKBitmap.Decode(png);
        int x0 = int.MaxValue, x1 = -1, y0 = int.MaxValue, y1 = -1;
        for (var y = 0; y < bitmap.Height; y++)
            for (var x = 0; x < bitmap.Width; x++)
            {
                var c = bitmap.GetPixel(x, y);
                if (Math.Abs(c.Red - 0x1f) + Math.Abs(c.Green - 0x77) + Math.Abs(c.Blue - 0xb4) > 60) continue;
                (x0, x1, y0, y1) = (Math.Min(x0, x), Math.Max(x1, x), Math.Min(y0, y), Math.Max(y1, y));
            }
        return (x0, x1, y0, y1);
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
