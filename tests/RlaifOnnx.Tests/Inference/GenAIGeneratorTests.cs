using System.Text.Json.Nodes;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;

namespace RlaifOnnx.Tests.Inference;

/// <summary>
/// GenAI generation on the shared exported GPT-2 (random weights, vocabulary 1,000). Its tokenizer knows
/// more tokens than the model, so the prompts are chosen to encode to ids below 1,000 (checked).
/// </summary>
public class GenAIGeneratorTests
{
    static readonly string[] Prompts = ["he is in the", "a b c", "x", "xq"];

    static string Gpt2() => SharedData.Require("genai-models/tiny-random-gpt2-fp32");

    static GenAIGenerator Open(string dir, int batchSize = 8)
    {
        var generator = new GenAIGenerator(dir, new InferenceOptions { BatchSize = batchSize });
        foreach (var p in Prompts)
        {
            using var ids = generator.Tokenizer.Encode(p);
            Assert.All(ids[0].ToArray(), id => Assert.True(id < 1000, $"prompt '{p}' encodes to id {id}, outside the model's vocabulary"));
        }
        return generator;
    }

    [Fact]
    public async Task Greedy_batch_equals_one_by_one_and_returns_only_new_tokens()
    {
        using var generator = Open(Gpt2());
        var greedy = new SamplingOptions { Temperature = 0, MaxNewTokens = 6 };
        var batch = await generator.GenerateAsync(Prompts, greedy, TestContext.Current.CancellationToken);
        for (var i = 0; i < Prompts.Length; i++)
        {
            var alone = (await generator.GenerateAsync([Prompts[i]], greedy, TestContext.Current.CancellationToken))[0];
            Assert.Equal(alone.NewIds, batch[i].NewIds);
            Assert.Equal(alone.Text, batch[i].Text);
            using var promptIds = generator.Tokenizer.Encode(Prompts[i]);
            Assert.Equal(promptIds[0].ToArray(), batch[i].PromptIds);
            Assert.Equal(generator.Tokenizer.Decode(batch[i].NewIds), batch[i].Text);
            Assert.True(batch[i].NewIds.Length == 6 || batch[i].FinishReason == "stop");
        }
        // Different prompts of different lengths give different continuations (padding did not leak).
        Assert.NotEqual(batch[2].NewIds, batch[3].NewIds);
    }

    [Fact]
    public async Task Sampling_is_reproducible_under_a_seed()
    {
        using var generator = Open(Gpt2(), batchSize: 4);
        var sampling = new SamplingOptions { Temperature = 1.5, MaxNewTokens = 12, Seed = 7 };
        var first = await generator.GenerateAsync(Prompts, sampling, TestContext.Current.CancellationToken);
        var second = await generator.GenerateAsync(Prompts, sampling, TestContext.Current.CancellationToken);
        Assert.Equal(first.Select(g => g.NewIds), second.Select(g => g.NewIds));
        var other = await generator.GenerateAsync(Prompts, sampling with { Seed = 8 }, TestContext.Current.CancellationToken);
        Assert.NotEqual(first.SelectMany(g => g.NewIds), other.SelectMany(g => g.NewIds));
        // Top-k 1 keeps only the most likely token: sampling collapses to greedy.
        var topOne = await generator.GenerateAsync(Prompts, sampling with { TopK = 1 }, TestContext.Current.CancellationToken);
        var greedy = await generator.GenerateAsync(Prompts, new SamplingOptions { Temperature = 0, MaxNewTokens = 12 }, TestContext.Current.CancellationToken);
        Assert.Equal(greedy.Select(g => g.NewIds), topOne.Select(g => g.NewIds));
    }

    [Fact]
    public async Task Each_sequence_stops_at_its_eos()
    {
        // Make a token the greedy continuation emits the EOS of a copy of the model, then generate again:
        // that sequence must end just before it, while the others in the batch carry on.
        using var dir = new TempDir();
        foreach (var f in Directory.GetFiles(Gpt2())) File.Copy(f, Path.Combine(dir.Path, Path.GetFileName(f)));
        var greedy = new SamplingOptions { Temperature = 0, MaxNewTokens = 8 };
        IReadOnlyList<Generation> before;
        using (var original = Open(dir.Path))
            before = await original.GenerateAsync(Prompts, greedy, TestContext.Current.CancellationToken);
        // A prompt whose continuation has a token at position k ≥ 1 that did not occur before it.
        var (victim, k) = Enumerable.Range(0, Prompts.Length)
            .SelectMany(p => Enumerable.Range(1, before[p].NewIds.Length - 1).Select(i => (p, i)))
            .First(c => !before[c.p].NewIds[..c.i].Contains(before[c.p].NewIds[c.i]));
        var eos = before[victim].NewIds[k];
        var configPath = dir.File("genai_config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!;
        config["model"]!["eos_token_id"] = eos;
        File.WriteAllText(configPath, config.ToJsonString());

        using var generator = Open(dir.Path);
        var results = await generator.GenerateAsync(Prompts, greedy, TestContext.Current.CancellationToken);
        Assert.Equal(before[victim].NewIds[..k], results[victim].NewIds);
        Assert.Equal("stop", results[victim].FinishReason);
        // Sequences that never meet the new EOS are untouched by the other's stop.
        for (var p = 0; p < Prompts.Length; p++)
            if (!before[p].NewIds.Contains(eos)) Assert.Equal(before[p].NewIds, results[p].NewIds);
        Assert.Contains(results, r => r.FinishReason == "length" && r.NewIds.Length == 8);
    }

    [Fact]
    public void A_folder_without_genai_config_is_a_user_error()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<UserError>(() => new GenAIGenerator(dir.Path));
        Assert.Contains("genai_config.json: is missing", e.Message);
    }

    [Fact]
    public void An_unknown_execution_provider_is_a_user_error()
    {
        var e = Assert.Throws<UserError>(() => new GenAIGenerator(Gpt2(), new InferenceOptions { ExecutionProvider = "tpu" }));
        Assert.Contains("execution_provider: unknown provider 'tpu' (supported: cpu, cuda)", e.Message);
    }
}
