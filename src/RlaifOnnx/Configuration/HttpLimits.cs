using System.Globalization;

namespace RlaifOnnx.Configuration;

/// <summary>
/// The checks of the http_timeout_seconds and http_deadline_seconds keys of every stage that may talk to an
/// OpenAI-compatible server. The range is what the resilience pipeline accepts (10 ms to one day), the same
/// as for $RLAIF_HTTP_TIMEOUT and $RLAIF_HTTP_DEADLINE.
/// </summary>
public static class HttpLimits
{
    public const double MinSeconds = 0.01;
    public const double MaxSeconds = 86400;

    public static IEnumerable<ConfigProblem> Problems(double? timeoutSeconds, double? deadlineSeconds)
    {
        if (Problem(timeoutSeconds) is { } timeout) yield return new("http_timeout_seconds", timeout);
        if (Problem(deadlineSeconds) is { } deadline) yield return new("http_deadline_seconds", deadline);
    }

    static string? Problem(double? seconds) =>
        seconds is { } s && !(double.IsFinite(s) && s >= MinSeconds && s <= MaxSeconds)
            ? string.Create(CultureInfo.InvariantCulture, $"must be a number of seconds from {MinSeconds} to {MaxSeconds}, got {s}")
            : null;
}
