using RlaifOnnx.Reporting;

namespace RlaifOnnx.Tests.Reporting;

public class RateEstimateTests
{
    [Fact]
    public void Wilson_interval_matches_published_values()
    {
        // Newcombe (1998), Table I: 81 of 263 → 0.2553 to 0.3662; 15 of 148 → 0.0624 to 0.1605.
        var a = RateEstimate.Of(81, 263);
        Assert.Equal(0.2553, a.Ci95[0], 4);
        Assert.Equal(0.3662, a.Ci95[1], 4);
        var b = RateEstimate.Of(15, 148);
        Assert.Equal(0.0624, b.Ci95[0], 4);
        Assert.Equal(0.1605, b.Ci95[1], 4);
    }

    [Fact]
    public void Zero_and_all_keep_a_nonzero_width_inside_the_unit_interval()
    {
        var none = RateEstimate.Of(0, 100);
        Assert.Equal(0, none.Rate);
        Assert.Equal(0, none.Ci95[0]);
        Assert.Equal(0.0370, none.Ci95[1], 4);
        var all = RateEstimate.Of(100, 100);
        Assert.Equal(1, all.Ci95[1]);
        Assert.Equal(0.9630, all.Ci95[0], 4);
    }

    [Fact]
    public void Empty_samples_and_impossible_counts()
    {
        var empty = RateEstimate.Of(0, 0);
        Assert.Null(empty.Rate);
        Assert.Equal([0.0, 1.0], empty.Ci95);
        Assert.Throws<ArgumentOutOfRangeException>(() => RateEstimate.Of(3, 2));
        Assert.Equal("25.0% [11.2, 46.9] (5/20)", RateEstimate.Of(5, 20).Format());
    }
}
