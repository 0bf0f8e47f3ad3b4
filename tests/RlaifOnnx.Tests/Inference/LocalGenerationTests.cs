using System.Text.Json.Nodes;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;

namespace RlaifOnnx.Tests.Inference;

/// <summary>GenAI generation on model folders the project writes, checked against the ONNX Runtime scorer's logits.</summary>
public class LocalGenerationTests
{
    static readonly string[] Prompts = ["The assistant is helpful and", "Tea?", "Once upon a time, there was a"];

    [Fact]
    public async Task Greedy_generation_is_the_scorer_argmax_at_every_step()
    {
        using var model = new LlamaFolder();
        using var generator = new GenAIGenerator(model.Dir);
        using var scorer = new OrtScorer(model.Dir);
        var results = await generator.GenerateAsync(Prompts, new SamplingOptions { Temperature = 0, MaxNewTokens = 8 }, TestContext.Current.CancellationToken);
        foreach (var g in results)
        {
            Assert.NotEmpty(g.NewIds);
            int[] all = [.. g.PromptIds, .. g.NewIds];
            var scored = scorer.TokenLogProbs([all], top: 1, TestContext.Current.CancellationToken)[0];
            for (var t = g.PromptIds.Length; t < all.Length; t++)
                Assert.Equal(scored[t].Top[0].Id, all[t]);
            if (g.FinishReason == "stop")
            {
                // The model's argmax after the last kept token is EOS.
                var next = scorer.TokenLogProbs([[.. all, model.Config.EosTokenId]], top: 1, TestContext.Current.CancellationToken)[0];
                Assert.Equal(model.Config.EosTokenId, next[^1].Top[0].Id);
            }
        }
    }

    [Fact]
    public async Task Greedy_batch_equals_one_by_one_and_seeded_sampling_repeats()
    {
        using var model = new LlamaFolder(variant: "mha-tied", seed: 9);
        using var generator = new GenAIGenerator(model.Dir, new InferenceOptions { BatchSize = 3 });
        var ct = TestContext.Current.CancellationToken;
        var greedy = new SamplingOptions { Temperature = 0, MaxNewTokens = 10 };
        var batch = await generator.GenerateAsync(Prompts, greedy, ct);
        for (var i = 0; i < Prompts.Length; i++)
            Assert.Equal((await generator.GenerateAsync([Prompts[i]], greedy, ct))[0].NewIds, batch[i].NewIds);

        var sampling = new SamplingOptions { Temperature = 1.0, TopP = 0.9, TopK = 20, MaxNewTokens = 10, Seed = 11 };
        var first = await generator.GenerateAsync(Prompts, sampling, ct);
        var again = await generator.GenerateAsync(Prompts, sampling, ct);
        Assert.Equal(first.Select(g => g.NewIds), again.Select(g => g.NewIds));
        Assert.Equal(first.Select(g => g.Text), again.Select(g => g.Text));
    }

    [Fact]
    public async Task Chat_applies_the_folders_ChatML_template()
    {
        using var model = new LlamaFolder();
        using var generator = new GenAIGenerator(model.Dir, new InferenceOptions { IntraOpThreads = 1 });
        ChatMessage[] chat = [new("system", "Be brief."), new("user", "Hi!")];
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n", generator.RenderChat(chat));
        var greedy = new SamplingOptions { Temperature = 0, MaxNewTokens = 6 };
        var viaChat = await generator.ChatAsync([chat], greedy, TestContext.Current.CancellationToken);
        var viaRaw = await generator.CompleteAsync([generator.RenderChat(chat)], greedy, TestContext.Current.CancellationToken);
        Assert.Equal(viaRaw, viaChat);
    }

    [Fact]
    public async Task Generation_stops_at_eos()
    {
        // Make the token greedy decoding emits third the EOS of a copy of the folder: generation must end before it.
        using var model = new LlamaFolder();
        var greedy = new SamplingOptions { Temperature = 0, MaxNewTokens = 8 };
        Generation before;
        using (var generator = new GenAIGenerator(model.Dir))
            before = (await generator.GenerateAsync([Prompts[0]], greedy, TestContext.Current.CancellationToken))[0];
        var k = Enumerable.Range(1, before.NewIds.Length - 1).First(i => !before.NewIds[..i].Contains(before.NewIds[i]));
        var configPath = Path.Combine(model.Dir, "genai_config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!;
        config["model"]!["eos_token_id"] = before.NewIds[k];
        File.WriteAllText(configPath, config.ToJsonString());
        using var stopping = new GenAIGenerator(model.Dir);
        var after = (await stopping.GenerateAsync([Prompts[0]], greedy, TestContext.Current.CancellationToken))[0];
        Assert.Equal(before.NewIds[..k], after.NewIds);
        Assert.Equal("stop", after.FinishReason);
    }

    [Fact]
    public async Task Empty_prompts_and_too_long_generations_are_user_errors()
    {
        using var model = new LlamaFolder();
        using var generator = new GenAIGenerator(model.Dir);
        var ct = TestContext.Current.CancellationToken;
        var empty = await Assert.ThrowsAsync<UserError>(() => generator.CompleteAsync(["Hi", ""], new SamplingOptions { MaxNewTokens = 2 }, ct));
        Assert.Equal("generation: prompt: is empty (it has no token to continue from)", empty.Message);
        var tooLong = await Assert.ThrowsAsync<UserError>(() => generator.CompleteAsync(["Hi"], new SamplingOptions { MaxNewTokens = 100_000 }, ct));
        Assert.Contains("exceeds the model's context length of", tooLong.Message);
    }
}
