using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Serving;

namespace RlaifOnnx.Tests.Serving;

/// <summary>One tiny PM folder, its local scorer, and a real reward server over it (batch size 2, so most requests span several batches).</summary>
public sealed class RewardServerFixture : IAsyncLifetime
{
    public PmFolder Model { get; } = new();
    public RewardScorer Local { get; private set; } = null!;
    public RewardServer Server { get; private set; } = null!;
    public HttpClient Http { get; } = new();

    public async ValueTask InitializeAsync()
    {
        Local = new RewardScorer(Model.Dir);
        Server = await RewardServer.StartAsync(Model.Dir, port: 0, new InferenceOptions { BatchSize = 2 });
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        Local.Dispose();
        Model.Dispose();
    }
}

/// <summary>The reward API of `rlaif serve` on a PM folder: HTTP rewards equal the local scorer's, in input order; bad requests get 400s naming the field.</summary>
public class RewardServerTests(RewardServerFixture fixture) : IClassFixture<RewardServerFixture>
{
    static readonly IReadOnlyList<ChatMessage> Chat1 = [new("user", "Is tea good for you?")];
    static readonly IReadOnlyList<ChatMessage> Chat2 = [new("system", "Be brief."), new("user", "Hi!"), new("assistant", "Hello."), new("user", "How do I bake bread?")];
    // Longer than the 128-token context: it loses its start and says so.
    static readonly string LongText = string.Concat(Enumerable.Repeat("the quick brown fox jumps over the lazy dog ", 40));

    async Task<(HttpStatusCode Status, JsonNode Body)> PostAsync(string path, string body)
    {
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await fixture.Http.PostAsync(new Uri(fixture.Server.BaseUrl, path), content, TestContext.Current.CancellationToken);
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!);
    }

    static JsonObject Pair(IReadOnlyList<ChatMessage> chat, string response) => new()
    {
        ["messages"] = new JsonArray(chat.Select(m => (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content }).ToArray()),
        ["response"] = response,
    };

    static void AssertClose(double[] expected, double[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-6, $"[{i}]: expected {expected[i]}, got {actual[i]}");
    }

    static double[] Rewards(JsonNode body) => body["data"]!.AsArray().Select(e => e!["reward"]!.GetValue<double>()).ToArray();

    [Fact]
    public async Task Rewards_over_HTTP_equal_the_local_scorer_for_texts_pairs_and_a_mixed_list()
    {
        string[] texts = ["Tea is good.", "No.", LongText];
        var (status, body) = await PostAsync("v1/rewards", new JsonObject { ["input"] = new JsonArray(texts.Select(t => (JsonNode)t!).ToArray()) }.ToJsonString());
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("list", body["object"]!.GetValue<string>());
        Assert.Equal("tiny-pm", body["model"]!.GetValue<string>());
        AssertClose(fixture.Local.Rewards(texts, TestContext.Current.CancellationToken), Rewards(body));
        Assert.Equal([0, 1, 2], body["data"]!.AsArray().Select(e => e!["index"]!.GetValue<int>()));
        Assert.Equal([false, false, true], body["data"]!.AsArray().Select(e => e!["truncated"]!.GetValue<bool>()));

        (IReadOnlyList<ChatMessage>, string)[] pairs = [(Chat1, "Yes, in moderation."), (Chat2, "Flour, water, salt, yeast; knead, rise, bake.")];
        (status, body) = await PostAsync("v1/rewards", new JsonObject { ["input"] = new JsonArray(pairs.Select(p => (JsonNode)Pair(p.Item1, p.Item2)).ToArray()) }.ToJsonString());
        Assert.Equal(HttpStatusCode.OK, status);
        var local = fixture.Local.Rewards(pairs, TestContext.Current.CancellationToken);
        AssertClose(local, Rewards(body));
        // The two responses get different rewards: the numbers carry information about the input.
        Assert.NotEqual(local[0], local[1]);

        // Mixed: a pair, a text, a pair; the text of a pair is the pair's rendering, so both kinds agree.
        var mixed = new JsonArray(Pair(Chat2, "Flour, water, salt, yeast; knead, rise, bake."), "Tea is good.", Pair(Chat1, "Yes, in moderation."), fixture.Local.Render(Chat1, "Yes, in moderation."));
        (status, body) = await PostAsync("v1/rewards", new JsonObject { ["model"] = "tiny-pm", ["input"] = mixed }.ToJsonString());
        Assert.Equal(HttpStatusCode.OK, status);
        AssertClose([local[1], fixture.Local.Rewards(["Tea is good."], TestContext.Current.CancellationToken)[0], local[0], local[0]], Rewards(body));
    }

    [Fact]
    public async Task A_list_longer_than_the_batch_keeps_input_order()
    {
        // Lengths out of order, so the scorer's shortest-first batching reorders them internally.
        string[] texts = ["a much longer text than the others, with many words in it", "b", "medium length text", "cc", LongText, "the longest of the short ones, by a few words, truly", "d d d"];
        var (status, body) = await PostAsync("v1/rewards", new JsonObject { ["input"] = new JsonArray(texts.Select(t => (JsonNode)t!).ToArray()) }.ToJsonString());
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(Enumerable.Range(0, texts.Length), body["data"]!.AsArray().Select(e => e!["index"]!.GetValue<int>()));
        // Each text scored alone, so no batching is involved on the local side.
        AssertClose(texts.Select(t => fixture.Local.Rewards([t], TestContext.Current.CancellationToken)[0]).ToArray(), Rewards(body));
    }

    [Fact]
    public async Task Concurrent_requests_each_get_their_own_rewards()
    {
        string[][] lists = [["one", "two three"], ["four five six", "seven"], ["eight", LongText, "nine ten"], ["eleven twelve"]];
        var answers = await Task.WhenAll(lists.Select(l => PostAsync("v1/rewards", new JsonObject { ["input"] = new JsonArray(l.Select(t => (JsonNode)t!).ToArray()) }.ToJsonString())));
        for (var k = 0; k < lists.Length; k++)
        {
            Assert.Equal(HttpStatusCode.OK, answers[k].Status);
            AssertClose(fixture.Local.Rewards(lists[k], TestContext.Current.CancellationToken), Rewards(answers[k].Body));
        }
    }

    [Theory]
    [InlineData("{\"input\": [\"a\", ", "malformed JSON")]
    [InlineData("[\"a\"]", "the request body must be a JSON object")]
    [InlineData("{}", "input is missing")]
    [InlineData("{\"input\": []}", "input is empty")]
    [InlineData("{\"input\": \"a\"}", "input must be an array")]
    [InlineData("{\"model\": 3, \"input\": [\"a\"]}", "model must be a string")]
    [InlineData("{\"input\": [\"a\", 7]}", "input[1] must be a string or an object")]
    [InlineData("{\"input\": [\"a\", \"b\", {\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}]}", "input[2].response is missing")]
    [InlineData("{\"input\": [{\"response\": \"r\"}]}", "input[0].messages is missing")]
    [InlineData("{\"input\": [{\"messages\": [{\"role\": \"user\", \"content\": 5}], \"response\": \"r\"}]}", "input[0].messages[0].content must be a string")]
    [InlineData("{\"input\": [{\"messages\": [{\"content\": \"hi\"}], \"response\": \"r\"}]}", "input[0].messages[0].role is missing")]
    [InlineData("{\"input\": [\"\"]}", "input[0] tokenizes to no tokens")]
    public async Task A_bad_request_is_a_400_naming_the_field(string body, string message)
    {
        var (status, answer) = await PostAsync("v1/rewards", body);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("invalid_request_error", answer["error"]!["type"]!.GetValue<string>());
        Assert.Contains(message, answer["error"]!["message"]!.GetValue<string>());
    }

    [Fact]
    public async Task Models_health_an_unknown_model_and_language_model_routes()
    {
        var ct = TestContext.Current.CancellationToken;
        var models = JsonNode.Parse(await fixture.Http.GetStringAsync(new Uri(fixture.Server.BaseUrl, "v1/models"), ct))!;
        Assert.Equal("list", models["object"]!.GetValue<string>());
        var entry = models["data"]!.AsArray().Single()!;
        Assert.Equal("tiny-pm", entry["id"]!.GetValue<string>());
        Assert.Equal("model", entry["object"]!.GetValue<string>());
        Assert.Equal("reward", entry["task"]!.GetValue<string>());

        using var health = await fixture.Http.GetAsync(new Uri(fixture.Server.BaseUrl, "health"), ct);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);

        var (status, body) = await PostAsync("v1/rewards", "{\"model\": \"gpt-4\", \"input\": [\"a\"]}");
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Contains("\"gpt-4\" is not served here", body["error"]!["message"]!.GetValue<string>());

        // A reward model generates nothing: the OpenAI routes are not there.
        (status, body) = await PostAsync("v1/completions", "{\"prompt\": \"a\"}");
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Contains("reward model", body["error"]!["message"]!.GetValue<string>());
        (status, _) = await PostAsync("v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}");
        Assert.Equal(HttpStatusCode.NotFound, status);
    }
}
