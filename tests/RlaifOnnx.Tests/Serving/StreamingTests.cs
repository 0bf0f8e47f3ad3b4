using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using RlaifOnnx.Serving;

namespace RlaifOnnx.Tests.Serving;

/// <summary>
/// stream=true over real HTTP on 127.0.0.1: tokens leave as GenAI makes them. min_tokens = max_tokens fixes how
/// many tokens a whole answer has (N), so the server's generated-token counter tells how far generation got. A
/// client that reads the first token's chunk and hangs up leaves that counter below N: the chunk was sent before
/// generation ended (a stream cut from the finished answer would have made all N first), and the disconnect
/// stopped generation (it would otherwise have gone on to N). No clock is read: only the order of events counts.
/// </summary>
public class StreamingTests
{
    // Long enough that a fast machine cannot finish the answer before the server sees the hang-up.
    const int N = 8000;
    static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    static async Task<(long Generated, long Running)> Metrics(HttpClient http, CancellationToken ct)
    {
        var text = await http.GetStringAsync("metrics", ct);
        long Value(string name) => long.Parse(Regex.Match(text, $@"^rlaif_{name} (\d+)$", RegexOptions.Multiline).Groups[1].Value);
        return (Value("generation_tokens_total"), Value("requests_running"));
    }

    /// <summary>The generated-token counter once no request but the asking one is running.</summary>
    static async Task<long> GeneratedWhenIdle(HttpClient http, CancellationToken ct)
    {
        while (true)
        {
            var (generated, running) = await Metrics(http, ct);
            if (running == 1) return generated;   // the /metrics request itself
            await Task.Delay(20, ct);
        }
    }

    [Theory]
    [InlineData("v1/completions", "{\"prompt\": \"Tea is\", \"temperature\": 1, \"seed\": 4, \"stream\": true")]
    [InlineData("v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi!\"}], \"temperature\": 1, \"seed\": 4, \"stream\": true")]
    public async Task The_first_piece_arrives_before_generation_ends_and_a_disconnect_stops_it(string route, string request)
    {
        var ct = TestContext.Current.CancellationToken;
        using var temp = new TempDir();
        var model = TinyModels.Folder(temp.File("lm"), maxPositions: N + 192);
        await using var server = await OpenAIServer.StartAsync(model, port: 0, cancellationToken: ct);
        using var http = new HttpClient { BaseAddress = server.BaseUrl };
        var body = $"{request}, \"max_tokens\": {N}, \"min_tokens\": {N}}}";

        // Read to the end: the answer is N tokens, all counted, and the pieces end with [DONE].
        using (var whole = await http.PostAsync(route, Json(body), ct))
        {
            Assert.Equal(HttpStatusCode.OK, whole.StatusCode);
            Assert.EndsWith("data: [DONE]\n\n", await whole.Content.ReadAsStringAsync(ct));
        }
        Assert.Equal(N, await GeneratedWhenIdle(http, ct));

        // Read up to the first token's chunk (after the opening role chunk of a chat), then hang up (a reset, as a client that is killed or closes its socket).
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(server.BaseUrl.Host, server.BaseUrl.Port, ct);
            var stream = client.GetStream();
            var bytes = Encoding.UTF8.GetBytes(body);
            await stream.WriteAsync(Encoding.ASCII.GetBytes($"POST /{route} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {bytes.Length}\r\n\r\n"), ct);
            await stream.WriteAsync(bytes, ct);
            using var reader = new StreamReader(stream, leaveOpen: true);
            Assert.Matches(@"^HTTP/1\.\d 200", await reader.ReadLineAsync(ct));   // HTTP/1.0: no chunked framing inside the lines
            while (true)
            {
                var line = await reader.ReadLineAsync(ct) ?? throw new Xunit.Sdk.XunitException("the stream ended before any token");
                if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;   // headers, chunk sizes, blank lines
                var choice = JsonNode.Parse(line["data: ".Length..])!["choices"]![0]!;
                if (choice["delta"]?["role"] is null) break;
            }
            client.Client.LingerState = new LingerOption(true, 0);
        }
        var afterDisconnect = await GeneratedWhenIdle(http, ct) - N;
        Assert.InRange(afterDisconnect, 1, N - 1);

        // The server goes on serving.
        using var next = await http.PostAsync(route, Json($"{request}, \"max_tokens\": 4}}"), ct);
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
    }
}
