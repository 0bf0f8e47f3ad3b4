using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Serving;


namespace RlaifOnnx.Tests.Serving;

/// <summary>A real OpenAI-compatible server on 127.0.0.1 serving a model folder; the HTTP client must agree with the local backend.</summary>
public class OpenAIServerTests
{
    static readonly SamplingOptions Greedy = new() { Temperature = 0, MaxNewTokens = 6 };

    [Fact]
    public async Task Client_generation_through_the_server_equals_the_local_backend()
    {
        using var dir = new TempDir();
        var model = Directory.CreateDirectory(dir.File("tiny-gpt2")).FullName;
        TestModels.Gpt2WithTemplate(model);
        var ct = TestContext.Current.CancellationToken;
        await using var server = await OpenAIServer.StartAsync(model, port: 0, cancellationToken: ct);
        Assert.NotEqual(0, server.Port);
        using var local = new GenAIGenerator(model);
        // No model name given: the client asks /v1/models, which names the folder.
        using var client = new OpenAIBackend(new OpenAIOptions { BaseUrl = server.BaseUrl });

        string[] prompts = ["he is in the", "a b c", "x"];
        Assert.Equal(await local.CompleteAsync(prompts, Greedy, ct), await client.CompleteAsync(prompts, Greedy, ct));

        IReadOnlyList<ChatMessage>[] chats = [[new("user", "he"), new("assistant", "is"), new("user", "in")], [new("user", "a b c")]];
        Assert.Equal(await local.ChatAsync(chats, Greedy, ct), await client.ChatAsync(chats, Greedy, ct));

        // This export has no rlaif.json: generation is served, log-probs are refused with the reason.
        var e = await Assert.ThrowsAsync<UserError>(() => client.ContinuationLogProbsAsync([("he is", " in")], ct));
        Assert.Contains("log-probs are unavailable", e.Message);
    }
}
