using System.Net.Http.Json;
using System.Text.Json;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Serving;

namespace RlaifOnnx.Tests.Serving;

/// <summary>A real server on 127.0.0.1 serving a tiny Llama folder: chat, completion and scoring through HTTP equal the local backends.</summary>
public class OpenAIServerScoringTests
{
    [Fact]
    public async Task Client_chat_completion_and_scoring_equal_the_local_backends()
    {
        using var model = new LlamaFolder();
        var ct = TestContext.Current.CancellationToken;
        await using var server = await OpenAIServer.StartAsync(model.Dir, port: 0, modelName: "tiny", cancellationToken: ct);
        using var generator = new GenAIGenerator(model.Dir);
        using var scorer = new OrtScorer(model.Dir);
        using var client = new OpenAIBackend(new OpenAIOptions { BaseUrl = new Uri(server.BaseUrl, "v1"), Model = "tiny" });

        var greedy = new SamplingOptions { Temperature = 0, MaxNewTokens = 8 };
        IReadOnlyList<ChatMessage>[] chats = [[new("user", "Is tea good?")], [new("system", "Be brief."), new("user", "Hi!")]];
        Assert.Equal(await generator.ChatAsync(chats, greedy, ct), await client.ChatAsync(chats, greedy, ct));
        string[] prompts = ["The assistant is", "Tea?"];
        Assert.Equal(await generator.CompleteAsync(prompts, greedy, ct), await client.CompleteAsync(prompts, greedy, ct));

        (string, string)[] pairs = [("The assistant is helpful", " and honest."), ("Which is better? Answer:", " (A)"), ("Hello th", "ere")];
        var local = await scorer.ContinuationLogProbsAsync(pairs, ct);
        var remote = await client.ContinuationLogProbsAsync(pairs, ct);
        for (var i = 0; i < pairs.Length; i++) Assert.Equal(local[i], remote[i], 5);

        string[] questions = ["Which is less harmful? The answer is:", "Pick one:"];
        var localCandidates = await scorer.CandidateLogProbsAsync(questions, [" (A)", " (B)"], ct);
        var remoteCandidates = await client.CandidateLogProbsAsync(questions, [" (A)", " (B)"], ct);
        for (var q = 0; q < questions.Length; q++)
            for (var c = 0; c < 2; c++) Assert.Equal(localCandidates[q][c], remoteCandidates[q][c], 5);
    }

    [Fact]
    public async Task Completions_echo_prompt_log_probs_and_chat_returns_token_log_probs()
    {
        using var model = new LlamaFolder();
        var ct = TestContext.Current.CancellationToken;
        await using var server = await OpenAIServer.StartAsync(model.Dir, port: 0, cancellationToken: ct);
        using var scorer = new OrtScorer(model.Dir);
        using var http = new HttpClient { BaseAddress = server.BaseUrl };

        var models = await http.GetFromJsonAsync<ModelList>("v1/models", OpenAIJson.Options, ct);
        Assert.Equal("tiny-llama", models!.Data.Single().Id);

        var text = "Tea is good.";
        var response = await http.PostAsJsonAsync("v1/completions", new { model = "tiny-llama", prompt = text, max_tokens = 0, echo = true, logprobs = 2 }, ct);
        response.EnsureSuccessStatusCode();
        var completion = (await response.Content.ReadFromJsonAsync<CompletionResponse>(OpenAIJson.Options, ct))!;
        var lp = completion.Choices.Single().Logprobs!;
        var ids = scorer.Encode(text);
        var expected = scorer.TokenLogProbs([ids], top: 2, TestContext.Current.CancellationToken)[0];
        Assert.Equal(ids.Length, lp.Tokens.Count);
        Assert.Equal(text, string.Concat(lp.Tokens));
        Assert.Null(lp.TokenLogprobs[0]);
        for (var t = 1; t < ids.Length; t++)
        {
            Assert.Equal(expected[t].LogProb, lp.TokenLogprobs[t]!.Value, 6);
            // Keyed by token text, so two ids that decode alike (bytes of one character) share an entry.
            Assert.InRange(lp.TopLogprobs![t]!.Count, 1, 2);
            Assert.Equal(expected[t].Top[0].LogProb, lp.TopLogprobs[t]!.Values.Max(), 6);
        }
        Assert.Equal(0, lp.TextOffset![0]);

        // The client's raw request asks for log-probs through the chat endpoint.
        using var client = new OpenAIBackend(new OpenAIOptions { BaseUrl = server.BaseUrl });
        var answer = (await client.ChatCompletionAsync(new ChatCompletionRequest
        {
            Messages = [new WireMessage("user", "Hi!")], MaxTokens = 5, Temperature = 0, Logprobs = true, TopLogprobs = 1,
        }, ct)).Choices.Single();
        Assert.NotNull(answer.Logprobs);
        Assert.Equal(answer.Message.Content, string.Concat(answer.Logprobs!.Content.Select(c => c.Token)));
        // Greedy: each chosen token is the most likely one.
        Assert.All(answer.Logprobs.Content, c => Assert.Equal(c.TopLogprobs[0].Logprob, c.Logprob, 9));

        var bad = await http.PostAsJsonAsync("v1/completions", new { prompt = 5 }, ct);
        Assert.Equal(400, (int)bad.StatusCode);
        var error = JsonDocument.Parse(await bad.Content.ReadAsStringAsync(ct)).RootElement.GetProperty("error").GetProperty("message").GetString();
        Assert.Contains("prompt: must be a string or an array of strings", error);

        var streaming = await http.PostAsJsonAsync("v1/chat/completions", new { messages = new[] { new { role = "user", content = "Hi!" } }, stream = true }, ct);
        Assert.Equal(200, (int)streaming.StatusCode);
        Assert.EndsWith("data: [DONE]\n\n", await streaming.Content.ReadAsStringAsync(ct));
    }
}
