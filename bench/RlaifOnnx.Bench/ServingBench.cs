using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using RlaifOnnx.Models;
using RlaifOnnx.Serving;

namespace RlaifOnnx.Bench;

/// <summary>
/// Load on `rlaif serve`'s two servers as deployed (default limits: 4 requests at once, 64 waiting):
/// 200 requests sent at once to the reward server and to the completion server over a small model. Every
/// request must be answered 200, or 429 with Retry-After when the queue is full; none may be dropped.
/// Reports throughput of the answered-200 requests, p50/p99 latency of all, and the process's resident
/// memory before and after against a stated bound.
/// </summary>
public static class ServingBench
{
    const int Requests = 200;
    /// <summary>The bound resident memory may grow by over one burst of 200 requests.</summary>
    const double MemoryBoundMb = 300;

    static ModelConfig Small() => new()
    {
        Architecture = Architecture.Llama, ModelType = "llama", VocabSize = 512, HiddenSize = 128, NumLayers = 4,
        NumHeads = 4, NumKvHeads = 4, IntermediateSize = 352, MaxPositions = 512, TieEmbeddings = true,
        BosTokenId = TinyTokenizer.EndOfTextId, EosTokenId = TinyTokenizer.ImEndId, PadTokenId = TinyTokenizer.EndOfTextId,
    };

    public static string Run(BenchContext ctx)
    {
        var load = Machine.LoadNote();
        var config = Small();
        var lmDir = Path.Combine(ctx.WorkDir, "serving-lm");
        var pmDir = Path.Combine(ctx.WorkDir, "serving-pm");
        var tokenizer = TinyTokenizer.Train(config.VocabSize);
        if (!Directory.Exists(lmDir)) ModelWriter.Write(lmDir, config, WeightSet.Random(config, seed: 1), tokenizer, "base", []);
        if (!Directory.Exists(pmDir))
            PreferenceModelFolder.Write(pmDir, config, PreferenceModelGraphs.FromLanguageModel(config, WeightSet.Random(config, seed: 2), 2), tokenizer, []);

        var rows = new List<string>();
        var verdicts = new List<string>();
        {
            var rewards = RewardServer.StartAsync(pmDir, port: 0).GetAwaiter().GetResult();
            var body = """{"input": [{"messages": [{"role": "user", "content": "Is tea good for you?"}], "response": "Yes, in moderation it is."}]}""";
            var (row, verdict) = Burst("reward server, POST /v1/rewards (1 pair)", rewards.BaseUrl, "v1/rewards", body);
            rows.Add(row);
            verdicts.Add(verdict);
            rewards.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        {
            var completions = OpenAIServer.StartAsync(lmDir, port: 0).GetAwaiter().GetResult();
            var body = """{"prompt": "Tell me about tea.", "max_tokens": 16, "temperature": 0}""";
            var (row, verdict) = Burst("completion server, POST /v1/completions (16 new tokens)", completions.BaseUrl, "v1/completions", body);
            rows.Add(row);
            verdicts.Add(verdict);
            completions.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        return $"""
            ## Serving under load (`rlaif serve`, default limits: 4 running, 64 waiting)

            {Requests} requests sent at once to each server over a {config.ParameterCount / 1e6:F1}M-parameter Llama-style model
            (hidden {config.HiddenSize}, {config.NumLayers} layers, CPU). Throughput counts 200 answers over the burst's wall time;
            latency is over every request. Resident memory is this process's, before and after the burst (bound: +{MemoryBoundMb} MB).
            Other processes' work disturbs these times; {load}.

            | server | 200 | 429 + Retry-After | other / dropped | answered/s | p50 ms | p99 ms | RSS before → after MB |
            |---|---|---|---|---|---|---|---|
            {string.Join("\n", rows)}

            {string.Join("\n", verdicts)}

            """;
    }

    /// <summary>Fires <see cref="Requests"/> POSTs at once; a table row and a one-line verdict.</summary>
    static (string Row, string Verdict) Burst(string name, Uri baseUrl, string path, string body)
    {
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = Requests }) { BaseAddress = baseUrl, Timeout = TimeSpan.FromMinutes(5) };
        // Warm-up: one request loads kernels and arenas.
        http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json")).GetAwaiter().GetResult().EnsureSuccessStatusCode();
        GC.Collect();
        var rssBefore = Process.GetCurrentProcess().WorkingSet64 / 1048576.0;

        var latencies = new ConcurrentBag<double>();
        var statuses = new ConcurrentDictionary<string, int>();
        var clock = Stopwatch.StartNew();
        var tasks = Enumerable.Range(0, Requests).Select(async _ =>
        {
            var started = clock.Elapsed;
            string outcome;
            try
            {
                using var response = await http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
                await response.Content.ReadAsByteArrayAsync();
                outcome = response.StatusCode switch
                {
                    HttpStatusCode.OK => "200",
                    HttpStatusCode.TooManyRequests when response.Headers.RetryAfter is not null => "429",
                    var other => $"other {(int)other}",
                };
            }
            catch (HttpRequestException e) { outcome = $"dropped ({e.Message})"; }
            latencies.Add((clock.Elapsed - started).TotalMilliseconds);
            statuses.AddOrUpdate(outcome, 1, (_, n) => n + 1);
        }).ToArray();
        Task.WaitAll(tasks);
        var wall = clock.Elapsed.TotalSeconds;
        GC.Collect();
        var rssAfter = Process.GetCurrentProcess().WorkingSet64 / 1048576.0;

        var sorted = latencies.OrderBy(x => x).ToArray();
        double Percentile(double p) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];
        var ok = statuses.GetValueOrDefault("200");
        var busy = statuses.GetValueOrDefault("429");
        var other = Requests - ok - busy;
        var row = $"| {name} | {ok} | {busy} | {other} | {ok / wall:F1} | {Percentile(0.5):F0} | {Percentile(0.99):F0} | {rssBefore:F0} → {rssAfter:F0} |";
        var grown = rssAfter - rssBefore;
        var verdict = $"- {name}: {(other == 0 ? "every request answered 200 or 429 + Retry-After" : $"**{other} requests neither 200 nor 429: {string.Join(", ", statuses.Keys.Where(k => k is not "200" and not "429"))}**")}; " +
                      $"resident memory {(grown <= MemoryBoundMb ? "within" : "**past**")} the +{MemoryBoundMb} MB bound ({grown:+0;-0} MB).";
        return (row, verdict);
    }
}
