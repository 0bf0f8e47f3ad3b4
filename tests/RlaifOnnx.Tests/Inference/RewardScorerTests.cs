using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;

namespace RlaifOnnx.Tests.Inference;

/// <summary>
/// A preference model folder written to disk and scored through <see cref="RewardScorer"/> (ONNX Runtime
/// session + GenAI tokenizer): round trip of the weights, rewards equal to the in-memory reward graph run
/// on the same token ids, chat rendering, left truncation, and the refusals between LM and PM folders.
/// </summary>
public sealed class RewardScorerTests
{
    const int Vocab = 400;
    static readonly Lazy<TinyTokenizer> Tokenizer = new(() => TinyTokenizer.Train(Vocab));
    // A short context so the truncation test needs only a short text.
    static readonly ModelConfig Config = TinyLlama.Config("gqa-untied", Vocab) with { MaxPositions = 48 };
    static readonly LineageEntry[] Lineage = [new("test", null, DateTimeOffset.UnixEpoch)];

    static WeightSet PmWeights() => PreferenceModelGraphs.FromLanguageModel(Config, TinyLlama.Weights(Config, 4), seed: 9);

    static string WritePm(TempDir tmp, WeightSet weights)
    {
        var dir = tmp.File("pm");
        PreferenceModelFolder.Write(dir, Config, weights, Tokenizer.Value, Lineage);
        return dir;
    }

    /// <summary>The in-memory inference graph's rewards for token rows, each run alone (batch 1, no padding).</summary>
    static double[] GraphRewards(WeightSet weights, IEnumerable<int[]> rows)
    {
        using var runner = new OrtTestRunner(PreferenceModelGraphs.Inference(Config, weights));
        return rows.Select(row => runner.Run(new Dictionary<string, TestTensor>
        {
            ["input_ids"] = TestTensor.Of(row.Select(t => (long)t).ToArray(), 1, row.Length),
            ["attention_mask"] = TestTensor.Of(row.Select(_ => 1L).ToArray(), 1, row.Length),
        })[PreferenceModelGraphs.RewardsOutput][0]).ToArray();
    }

    [Fact]
    public void Folder_round_trips_and_the_scorer_equals_the_in_memory_graph()
    {
        using var tmp = new TempDir();
        var weights = PmWeights();
        var dir = WritePm(tmp, weights);

        Assert.True(PreferenceModelFolder.IsPreferenceModel(dir));
        Assert.False(File.Exists(Path.Combine(dir, ModelFolder.GenAIConfigFile)));
        Assert.True(File.Exists(Path.Combine(dir, ModelFolder.DataFile)));
        Assert.Equal("preference", ModelFolder.ReadMetadata(dir).Role);
        Assert.DoesNotContain(Directory.GetFileSystemEntries(tmp.Path), p => Path.GetFileName(p).StartsWith('.'));
        var read = PreferenceModelFolder.ReadWeights(dir);
        Assert.Equal(weights.Keys.Order(StringComparer.Ordinal), read.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, w) in weights)
        {
            Assert.Equal(w.Shape, read[name].Shape);
            Assert.Equal(w.Data, read[name].Data);
        }

        // Texts of different lengths, batched two at a time (sorted by length inside), returned in input order.
        string[] texts = ["The quick brown fox jumps over the lazy dog.", "Hi", "A preference model reads the whole answer.", "ok then"];
        using var scorer = new RewardScorer(dir, new InferenceOptions { BatchSize = 2 });
        var rewards = scorer.Rewards(texts, TestContext.Current.CancellationToken);
        var rows = texts.Select(scorer.Encode).ToArray();
        Assert.True(rows.Select(r => r.Length).Distinct().Count() >= 3, "the texts should tokenize to different lengths");
        var expected = GraphRewards(weights, rows);
        for (var i = 0; i < texts.Length; i++)
            Assert.True(Math.Abs(rewards[i] - expected[i]) < 1e-5, $"text {i}: scorer {rewards[i]:R}, graph {expected[i]:R}");
        Assert.True(rewards.Distinct().Count() == texts.Length, string.Join(", ", rewards));
        Assert.Equal(0, scorer.TruncatedCount);

        // Over weights held in memory (PPO's shared PM base): the same rewards, padding and order included.
        using var inMemory = new RewardScorer(dir, weights, new InferenceOptions { BatchSize = 2 });
        var shared = inMemory.Rewards(texts, TestContext.Current.CancellationToken);
        for (var i = 0; i < texts.Length; i++)
            Assert.True(Math.Abs(shared[i] - expected[i]) < 1e-5, $"text {i}: in-memory scorer {shared[i]:R}, graph {expected[i]:R}");

        // With a tokenizer borrowed from elsewhere (PPO lends GenAI's when the files are the same): the same token ids and
        // rewards, and disposing the scorer leaves the lent tokenizer usable.
        using var lent = RewardScorer.OpenTokenizer(dir);
        using (var borrowing = new RewardScorer(dir, weights, new InferenceOptions { BatchSize = 2 }, () => lent))
        {
            Assert.Equal(texts.Select(scorer.Encode), texts.Select(borrowing.Encode));
            Assert.Equal(shared, borrowing.Rewards(texts, TestContext.Current.CancellationToken));
        }
        using var again = lent.Encode(texts[0]);
        Assert.Equal(rows[0], again[0].ToArray());
    }

    [Fact]
    public void Pairs_are_rendered_with_the_chat_template_as_the_conversation_and_an_assistant_turn()
    {
        using var tmp = new TempDir();
        var dir = WritePm(tmp, PmWeights());
        IReadOnlyList<ChatMessage> context = [new("user", "How do I bake bread?")];
        const string good = "Mix flour, water, salt and yeast; knead, let it rise, bake.";
        const string bad = "No.";

        using var scorer = new RewardScorer(dir);
        var rendered = scorer.Render(context, good);
        // The same text as rendering the whole conversation with the template, without a generation prompt.
        var template = ChatTemplate.FromFolder(dir)!;
        using (var tokenizer = RewardScorer.OpenTokenizer(dir))
        {
            Assert.Equal(template.Render(tokenizer, [.. context, new ChatMessage("assistant", good)], addGenerationPrompt: false), rendered);
            Assert.Equal(rendered, RewardScorer.RenderPair(template, tokenizer, context, good));
        }
        Assert.Contains("How do I bake bread?", rendered);
        Assert.EndsWith("<|im_end|>\n", rendered);
        Assert.True(rendered.IndexOf(good, StringComparison.Ordinal) > rendered.IndexOf("bake bread", StringComparison.Ordinal));

        var pairRewards = scorer.Rewards([(context, good), (context, bad)], TestContext.Current.CancellationToken);
        var textRewards = scorer.Rewards([rendered, scorer.Render(context, bad)], TestContext.Current.CancellationToken);
        Assert.Equal(textRewards, pairRewards);
        Assert.NotEqual(pairRewards[0], pairRewards[1]);
    }

    [Fact]
    public void Over_long_inputs_keep_their_end_and_are_counted()
    {
        using var tmp = new TempDir();
        var weights = PmWeights();
        var dir = WritePm(tmp, weights);
        using var scorer = new RewardScorer(dir);
        var longText = string.Join(" ", Enumerable.Range(0, 40).Select(i => $"word{i}")) + " and the final answer";
        var ids = scorer.Encode(longText);
        Assert.True(ids.Length > scorer.MaxTokens, $"{ids.Length} tokens");

        var rewards = scorer.Rewards([longText, "short"], TestContext.Current.CancellationToken);
        Assert.Equal(1, scorer.TruncatedCount);
        var kept = ids[^scorer.MaxTokens..];
        var (keptIds, cut) = RewardScorer.KeepEnd(ids, scorer.MaxTokens);
        Assert.True(cut);
        Assert.Equal(kept, keptIds);
        Assert.False(RewardScorer.KeepEnd(kept, scorer.MaxTokens).Truncated);
        var expected = GraphRewards(weights, [kept])[0];
        Assert.True(Math.Abs(rewards[0] - expected) < 1e-5, $"scorer {rewards[0]:R}, graph on the last {scorer.MaxTokens} tokens {expected:R}");
    }

    [Fact]
    public void Language_model_and_preference_model_folders_are_not_mistaken_for_each_other()
    {
        using var tmp = new TempDir();
        var pm = WritePm(tmp, PmWeights());
        var lm = tmp.File("lm");
        ModelWriter.Write(lm, Config, TinyLlama.Weights(Config, 4), Tokenizer.Value, "base", Lineage);

        // `model inspect` counts the PM's own weights: the LM's minus lm_head.weight plus score.weight.
        var pmParameters = Config.ParameterCount - Config.HiddenSize * Config.VocabSize + Config.HiddenSize;
        var description = ModelInspector.Describe(pm);
        Assert.Contains("preference", description);
        Assert.Contains(pmParameters.ToString("N0", System.Globalization.CultureInfo.InvariantCulture) + " (", description);

        Assert.False(PreferenceModelFolder.IsPreferenceModel(lm));
        Assert.False(PreferenceModelFolder.IsPreferenceModel(tmp.File("missing")));
        var e = Assert.Throws<UserError>(() => new RewardScorer(lm));
        Assert.Contains("rlaif.json: role", e.Message);
        Assert.Contains("preference model", e.Message);
        Assert.Throws<UserError>(() => PreferenceModelFolder.ReadWeights(lm));

        e = Assert.Throws<UserError>(() => ModelFolder.ReadWeights(pm));
        Assert.Contains("language model is needed", e.Message);
        Assert.Throws<UserError>(() => new OrtScorer(pm));
        Assert.Throws<UserError>(() => new GenAIGenerator(pm));
    }

    [Fact]
    public void Writing_refuses_weights_without_the_head_and_leaves_nothing()
    {
        using var tmp = new TempDir();
        var weights = PmWeights();
        weights.Remove(PreferenceModelGraphs.HeadWeight);
        var e = Assert.Throws<UserError>(() => PreferenceModelFolder.Write(tmp.File("pm"), Config, weights, Tokenizer.Value, Lineage));
        Assert.Contains("score.weight", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(tmp.Path));
    }
}
