using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace RlaifOnnx.Serving;

/// <summary>
/// What GET /metrics reports, in Prometheus text format (as vLLM and TGI expose theirs): requests by
/// route and status, a latency histogram, prompt and generated tokens, and how many requests wait for
/// a slot and how many run. Counters only grow; the two gauges go up and down.
/// </summary>
public sealed class ServingMetrics
{
    /// <summary>Histogram bucket bounds in seconds (Prometheus' "le"), from a fast reward to a long generation.</summary>
    static readonly double[] Buckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

    readonly ConcurrentDictionary<(string Route, int Status), long> requests = new();
    readonly long[] bucketCounts = new long[Buckets.Length + 1];
    long latencyMicros, latencyCount, promptTokens, generatedTokens, queued, running;
    readonly string prefix;

    /// <param name="prefix">The metric names' prefix, e.g. "rlaif".</param>
    public ServingMetrics(string prefix = "rlaif") => this.prefix = prefix;

    /// <summary>Tokens a request read and wrote (the usage it answered with).</summary>
    public void AddTokens(long prompt, long generated)
    {
        Interlocked.Add(ref promptTokens, prompt);
        Interlocked.Add(ref generatedTokens, generated);
    }

    /// <summary>Requests waiting for a slot right now.</summary>
    public long Queued => Interlocked.Read(ref queued);

    /// <summary>Outermost middleware: times every request and counts it by route and status.</summary>
    internal async Task MeasureAsync(HttpContext context, RequestDelegate next)
    {
        var clock = Stopwatch.StartNew();
        try { await next(context); }
        finally
        {
            var route = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "unmatched";
            var status = context.RequestAborted.IsCancellationRequested && !context.Response.HasStarted ? 499 : context.Response.StatusCode;
            requests.AddOrUpdate((route, status), 1, (_, n) => n + 1);
            var seconds = clock.Elapsed.TotalSeconds;
            var bucket = 0;
            while (bucket < Buckets.Length && seconds > Buckets[bucket]) bucket++;
            Interlocked.Increment(ref bucketCounts[bucket]);
            Interlocked.Add(ref latencyMicros, (long)(seconds * 1e6));
            Interlocked.Increment(ref latencyCount);
        }
    }

    const string Started = "rlaif.started";

    /// <summary>Before the concurrency limiter: the request counts as queued until it runs or is turned away.</summary>
    internal async Task QueueAsync(HttpContext context, RequestDelegate next)
    {
        Interlocked.Increment(ref queued);
        try { await next(context); }
        finally
        {
            if (!context.Items.ContainsKey(Started)) Interlocked.Decrement(ref queued);
        }
    }

    /// <summary>After the concurrency limiter: the request has its slot.</summary>
    internal async Task RunAsync(HttpContext context, RequestDelegate next)
    {
        context.Items[Started] = true;
        Interlocked.Decrement(ref queued);
        Interlocked.Increment(ref running);
        try { await next(context); }
        finally { Interlocked.Decrement(ref running); }
    }

    /// <summary>Everything in Prometheus text exposition format 0.0.4.</summary>
    public string Render()
    {
        var s = new StringBuilder();
        var p = prefix;
        s.Append($"# HELP {p}_requests_total HTTP requests answered, by route and status.\n# TYPE {p}_requests_total counter\n");
        foreach (var ((route, status), n) in requests.OrderBy(e => e.Key.Route, StringComparer.Ordinal).ThenBy(e => e.Key.Status))
            s.Append($"{p}_requests_total{{route=\"{Escape(route)}\",status=\"{status}\"}} {n}\n");

        s.Append($"# HELP {p}_request_duration_seconds Time from a request's arrival to its last byte.\n# TYPE {p}_request_duration_seconds histogram\n");
        long cumulative = 0;
        for (var b = 0; b < Buckets.Length; b++)
        {
            cumulative += Interlocked.Read(ref bucketCounts[b]);
            s.Append($"{p}_request_duration_seconds_bucket{{le=\"{Buckets[b].ToString(CultureInfo.InvariantCulture)}\"}} {cumulative}\n");
        }
        cumulative += Interlocked.Read(ref bucketCounts[Buckets.Length]);
        s.Append($"{p}_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n");
        s.Append($"{p}_request_duration_seconds_sum {(Interlocked.Read(ref latencyMicros) / 1e6).ToString("0.######", CultureInfo.InvariantCulture)}\n");
        s.Append($"{p}_request_duration_seconds_count {Interlocked.Read(ref latencyCount)}\n");

        s.Append($"# HELP {p}_prompt_tokens_total Prompt tokens read.\n# TYPE {p}_prompt_tokens_total counter\n{p}_prompt_tokens_total {Interlocked.Read(ref promptTokens)}\n");
        s.Append($"# HELP {p}_generation_tokens_total Tokens generated.\n# TYPE {p}_generation_tokens_total counter\n{p}_generation_tokens_total {Interlocked.Read(ref generatedTokens)}\n");
        s.Append($"# HELP {p}_requests_waiting Requests waiting for a slot.\n# TYPE {p}_requests_waiting gauge\n{p}_requests_waiting {Interlocked.Read(ref queued)}\n");
        s.Append($"# HELP {p}_requests_running Requests being worked on.\n# TYPE {p}_requests_running gauge\n{p}_requests_running {Interlocked.Read(ref running)}\n");
        return s.ToString();
    }

    static string Escape(string value) => value.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");
}
