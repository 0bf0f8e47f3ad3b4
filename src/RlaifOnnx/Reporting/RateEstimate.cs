using System.Text.Json.Serialization;

namespace RlaifOnnx.Reporting;

/// <summary>
/// A rate measured on a finite sample: <c>count</c> of <c>n</c> cases, with its 95% Wilson score interval
/// (<see cref="Of"/>). The Wilson interval stays inside [0, 1] and is sensible at 0 of n and n of n, where the
/// normal approximation collapses to a zero-width interval — the case of a harmful-compliance rate that
/// training drives to zero. Serialised as <c>{"rate":…,"count":…,"n":…,"ci95":[low,high]}</c>.
/// </summary>
public sealed record RateEstimate(
    [property: JsonPropertyName("rate")] double? Rate,
    [property: JsonPropertyName("count")] int Count,
    [property: JsonPropertyName("n")] int N,
    [property: JsonPropertyName("ci95")] IReadOnlyList<double> Ci95)
{
    /// <summary>The two-sided 95% normal quantile.</summary>
    public const double Z95 = 1.959963984540054;

    /// <summary>count of n as a rate with its 95% Wilson interval; n = 0 gives rate null (not measured) and the interval [0, 1].</summary>
    public static RateEstimate Of(int count, int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if (count < 0 || count > n) throw new ArgumentOutOfRangeException(nameof(count), $"count {count} is outside 0..{n}");
        if (n == 0) return new RateEstimate(null, 0, 0, [0, 1]);
        var (low, high) = WilsonInterval(count, n, Z95);
        return new RateEstimate((double)count / n, count, n, [low, high]);
    }

    /// <summary>The Wilson score interval of count successes in n trials at normal quantile z.</summary>
    public static (double Low, double High) WilsonInterval(int count, int n, double z)
    {
        double p = (double)count / n, z2 = z * z;
        double centre = (p + z2 / (2 * n)) / (1 + z2 / n);
        double half = z / (1 + z2 / n) * Math.Sqrt(p * (1 - p) / n + z2 / (4.0 * n * n));
        // At 0 of n and n of n the bound is exactly 0 or 1; rounding would leave 1e-18.
        return (count == 0 ? 0 : Math.Max(0, centre - half), count == n ? 1 : Math.Min(1, centre + half));
    }

    /// <summary>"12.5% [8.1, 18.8] (20/160)" for tables.</summary>
    public string Format() => N == 0
        ? "n/a (0/0)"
        : FormattableString.Invariant($"{Rate * 100:0.0}% [{Ci95[0] * 100:0.0}, {Ci95[1] * 100:0.0}] ({Count}/{N})");
}
