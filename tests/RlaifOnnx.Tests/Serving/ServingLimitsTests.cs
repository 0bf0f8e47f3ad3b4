using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Serving;

namespace RlaifOnnx.Tests.Serving;

/// <summary>What `rlaif serve` refuses and how it bounds itself: context, model names, fields, keys, queue, body size, metrics, streams.</summary>
public class ServingLimitsTests
{
    static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    static async Task<(HttpStatusCode Status, string Message)> PostAsync(HttpClient http, string path, HttpContent content)
    {
        using var response = await http.PostAsync(path, content, TestContext.Current.CancellationToken);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        var message = response.IsSuccessStatusCode ? text : JsonNode.Parse(text)!["error"]!["message"]!.GetValue<string>();
        return (response.StatusCode, message);
    }

    [Fact]
    public async Task Prompts_past_the_context_get_400_and_twenty_of_them_leave_memory_within_200_MB()
    {
        using var model = new LlamaFolder();
        var ct = TestContext.Current.CancellationToken;
        await using var server = await OpenAIServer.StartAsync(model.Dir, port: 0, cancellationToken: ct);
        using var http = new HttpClient { BaseAddress = server.BaseUrl };
        // ~50,000 tokens of echo on a 128-token model: answered at once, never scored.
        var prompt = string.Concat(Enumerable.Repeat("the quick brown fox jumps over the lazy dog ", 5000));
        var body = new JsonObject { ["model"] = "tiny-llama", ["prompt"] = prompt, ["max_tokens"] = 0, ["echo"] = true, ["logprobs"] = 1 }.ToJsonString();

        var (status, message) = await PostAsync(http, "v1/completions", Json(body));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Matches(@"^request: prompt: prompt is \d+ tokens; this model's context is 128$", message);

        GC.Collect();
        var before = Process.GetCurrentProcess().WorkingSet64;
        for (var i = 0; i < 20; i++)
            Assert.Equal(HttpStatusCode.BadRequest, (await PostAsync(http, "v1/completions", Json(body))).Status);
        GC.Collect();
        var grown = (Process.GetCurrentProcess().WorkingSet64 - before) / (1024.0 * 1024);
        Assert.True(grown < 200, $"resident memory grew {grown:0} MB over 20 past-context requests");

        // A prompt that fits but whose answer would not is refused the same way.
        (status, message) = await PostAsync(http, "v1/completions", Json("""{"prompt": "Hello there", "max_tokens": 500}"""));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("max_tokens is 500", message);
        Assert.Contains("this model's context is 128", message);
    }

    [Fact]
    public async Task Unknown_models_n_above_1_unknown_roles_and_wrong_content_types_are_refused_with_the_field_named()
    {
        using var model = new LlamaFolder();
        var ct = TestContext.Current.CancellationToken;
        await using var server = await OpenAIServer.StartAsync(model.Dir, port: 0, cancellationToken: ct);
        using var http = new HttpClient { BaseAddress = server.BaseUrl };

        var (status, message) = await PostAsync(http, "v1/completions", Json("""{"model": "gpt-4", "prompt": "Hi", "max_tokens": 2}"""));
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Contains("\"gpt-4\" does not exist here", message);

        (status, message) = await PostAsync(http, "v1/completions", Json("""{"prompt": "Hi", "max_tokens": 2, "n": 3}"""));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("n: only 1 choice", message);

        (status, message) = await PostAsync(http, "v1/chat/completions", Json("""{"messages": [{"role": "wizard", "content": "Hi"}]}"""));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("messages[0].role: unknown role \"wizard\"", message);

        (status, message) = await PostAsync(http, "v1/chat/completions", new StringContent("""{"messages": [{"role": "user", "content": "Hi"}]}""", Encoding.UTF8, "text/plain"));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("Content-Type must be application/json", message);

        // /health and /metrics are served by both kinds of server.
        Assert.Equal("ok", JsonNode.Parse(await http.GetStringAsync("health", ct))!["status"]!.GetValue<string>());
        var metrics = await http.GetStringAsync("metrics", ct);
        Assert.Contains("rlaif_requests_total{route=\"/v1/completions\",status=\"404\"} 1", metrics);
        Assert.Contains("rlaif_requests_total{route=\"/v1/chat/completions\",status=\"400\"} 2", metrics);
    }

    [Fact]
    public async Task A_stream_sends_server_sent_events_that_add_up_to_the_whole_answer()
    {
        using var model = new LlamaFolder();
        var ct = TestContext.Current.CancellationToken;
        await using var server = await OpenAIServer.StartAsync(model.Dir, port: 0, cancellationToken: ct);
        using var http = new HttpClient { BaseAddress = server.BaseUrl };
        const string Chat = "\"messages\": [{\"role\": \"user\", \"content\": \"Hi!\"}], \"max_tokens\": 8, \"temperature\": 0";

        using var whole = await http.PostAsync("v1/chat/completions", Json($"{{{Chat}}}"), ct);
        var expected = JsonNode.Parse(await whole.Content.ReadAsStringAsync(ct))!["choices"]![0]!["message"]!["content"]!.GetValue<string>();

        using var streamed = await http.PostAsync("v1/chat/completions", Json($"{{{Chat}, \"stream\": true}}"), ct);
        Assert.Equal(HttpStatusCode.OK, streamed.StatusCode);
        Assert.Equal("text/event-stream", streamed.Content.Headers.ContentType!.MediaType);
        var events = (await streamed.Content.ReadAsStringAsync(ct)).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c["object"]!.GetValue<string>()));
        Assert.Equal("assistant", chunks[0]["choices"]![0]!["delta"]!["role"]!.GetValue<string>());
        Assert.NotNull(chunks[^1]["choices"]![0]!["finish_reason"]);
        Assert.Equal(expected, string.Concat(chunks.Select(c => c["choices"]![0]!["delta"]!["content"]?.GetValue<string>() ?? "")));

        using var completion = await http.PostAsync("v1/completions", Json("""{"prompt": "Tea is", "max_tokens": 4, "temperature": 0, "stream": true}"""), ct);
        var text = await completion.Content.ReadAsStringAsync(ct);
        Assert.Contains("\"object\":\"text_completion\"", text);
        Assert.EndsWith("data: [DONE]\n\n", text);
    }

    [Fact]
    public async Task A_key_is_required_on_v1_when_one_is_set_and_hosts_beyond_loopback_need_one()
    {
        using var pm = new PmFolder();
        var ct = TestContext.Current.CancellationToken;
        await using var server = await RewardServer.StartAsync(pm.Dir, port: 0, serving: new ServingOptions { ApiKey = "sk-test-key-1234" }, cancellationToken: ct);
        using var http = new HttpClient { BaseAddress = server.BaseUrl };
        const string Body = """{"input": ["Tea is good."]}""";

        Assert.Equal(HttpStatusCode.Unauthorized, (await PostAsync(http, "v1/rewards", Json(Body))).Status);
        using (var wrong = new HttpRequestMessage(HttpMethod.Post, "v1/rewards") { Content = Json(Body) })
        {
            wrong.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "sk-test-key-1235");
            using var answer = await http.SendAsync(wrong, ct);
            Assert.Equal(HttpStatusCode.Unauthorized, answer.StatusCode);
            Assert.DoesNotContain("sk-test-key", await answer.Content.ReadAsStringAsync(ct));
        }
        using (var right = new HttpRequestMessage(HttpMethod.Post, "v1/rewards") { Content = Json(Body) })
        {
            right.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "sk-test-key-1234");
            Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(right, ct)).StatusCode);
        }
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("health", ct)).StatusCode);

        var e = Assert.Throws<UserError>(() => HttpHost.Check(0, new ServingOptions { Host = "0.0.0.0" }));
        Assert.Contains("--api-key-env", e.Message);
        HttpHost.Check(0, new ServingOptions { Host = "0.0.0.0", AllowUnauthenticated = true });
        HttpHost.Check(0, new ServingOptions { Host = "0.0.0.0", ApiKey = "k" });
    }

    [Fact]
    public async Task A_full_queue_answers_429_with_Retry_After_and_bodies_past_the_limit_get_413()
    {
        using var pm = new PmFolder();
        var ct = TestContext.Current.CancellationToken;
        await using var server = await RewardServer.StartAsync(pm.Dir, port: 0,
            serving: new ServingOptions { MaxConcurrentRequests = 1, MaxQueuedRequests = 0, MaxRequestBodyBytes = 64 * 1024 }, cancellationToken: ct);
        using var http = new HttpClient { BaseAddress = server.BaseUrl };

        // One request holds the only slot: its headers are in, its body keeps trickling (fast enough for
        // Kestrel's minimum data rate) and never finishes.
        using var holder = new TcpClient();
        await holder.ConnectAsync(IPAddress.Loopback, server.Port, ct);
        var stream = holder.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes("POST /v1/rewards HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{\"input\": [\""), ct);
        using var stopTrickle = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var trickle = Task.Run(async () =>
        {
            var chunk = Encoding.ASCII.GetBytes(new string('a', 100));
            try { while (true) { await stream.WriteAsync(chunk, stopTrickle.Token); await Task.Delay(100, stopTrickle.Token); } }
            catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException) { }
        }, ct);
        // Wait until the server reports it running (its slot taken), then any other request is turned away.
        var clock = Stopwatch.StartNew();
        while (!(await http.GetStringAsync("metrics", ct)).Contains("rlaif_requests_running 2") && clock.Elapsed < TimeSpan.FromSeconds(30))
            await Task.Delay(20, ct);   // 2: the holder and this /metrics request
        var busy = await http.PostAsync("v1/rewards", Json("""{"input": ["a"]}"""), ct);
        Assert.Equal(HttpStatusCode.TooManyRequests, busy.StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(1), busy.Headers.RetryAfter!.Delta);
        Assert.Contains("rlaif_requests_total{route=\"/v1/rewards\",status=\"429\"}", await http.GetStringAsync("metrics", ct));
        await stopTrickle.CancelAsync();
        await trickle;
        holder.Close();

        // The slot comes back once the holder is gone.
        clock.Restart();
        do busy = await http.PostAsync("v1/rewards", Json("""{"input": ["a"]}"""), ct);
        while (busy.StatusCode != HttpStatusCode.OK && clock.Elapsed < TimeSpan.FromSeconds(30));
        Assert.Equal(HttpStatusCode.OK, busy.StatusCode);

        var big = $"{{\"input\": [\"{new string('a', 100_000)}\"]}}";
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, (await http.PostAsync("v1/rewards", Json(big), ct)).StatusCode);
    }
}
