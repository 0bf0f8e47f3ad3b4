using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;

namespace RlaifOnnx.Tests.Inference;

/// <summary>
/// The scoring paths (ONNX Runtime log-probs for AI feedback, the preference model's rewards) meet a token
/// id past the model's embedding: one line naming the id and the vocabulary, exit code 2 from the command
/// line, instead of ONNX Runtime's Gather error and a stack trace. Ids inside the vocabulary still score.
/// </summary>
public sealed class VocabularyCheckTests
{
    /// <summary>GenAI's tiny GPT-2 export imported: an embedding of 1,000 rows under GPT-2's 50,257-token tokenizer.</summary>
    static string ImportedGpt2(TempDir tmp)
    {
        var dir = tmp.File("gpt2");
        var (config, weights, tokenizer) = OnnxImport.Import(SharedData.Require("genai-models/tiny-random-gpt2-fp32"));
        ModelWriter.Write(dir, config, weights, tokenizer, "base", []);
        return dir;
    }

    [Fact]
    public async Task The_log_prob_scorer_stops_at_an_id_past_the_embedding_with_one_line()
    {
        using var tmp = new TempDir();
        using var scorer = new OrtScorer(ImportedGpt2(tmp));
        // Single letters encode below 1,000; " cd" is GPT-2 token 22927.
        var fits = await scorer.ContinuationLogProbsAsync([("a b", " c")], TestContext.Current.CancellationToken);
        Assert.True(double.IsFinite(fits[0]) && fits[0] < 0);
        var e = await Assert.ThrowsAsync<UserError>(() => scorer.ContinuationLogProbsAsync([("ab", " cd")], TestContext.Current.CancellationToken));
        Assert.Equal("token id 22927 is past this model's vocabulary of 1000", e.Message);
    }

    [Fact]
    public void The_label_stage_on_such_a_model_exits_2_with_one_line()
    {
        using var tmp = new TempDir();
        var model = ImportedGpt2(tmp);
        File.WriteAllText(tmp.File("pairs.jsonl"), "{\"prompt\": \"ab cd\", \"response_a\": \"a\", \"response_b\": \"b\"}\n");
        File.WriteAllText(tmp.File("label.yaml"), $"pairs: pairs.jsonl\nfeedback_model: {model}\noutput_dir: out\nprinciples: 1\nfew_shot: 0\n");
        var label = CliProcess.Run("label", "--config", tmp.File("label.yaml"));
        Assert.Equal(2, label.ExitCode);
        Assert.Matches(@"^error: token id \d+ is past this model's vocabulary of 1000$", label.Stderr.Trim());
    }

    [Fact]
    public void The_reward_scorer_stops_at_an_id_past_the_embedding_with_one_line()
    {
        using var tmp = new TempDir();
        var config = TinyLlama.Config("gqa-untied", vocab: 300);
        var weights = PreferenceModelGraphs.FromLanguageModel(config, TinyLlama.Weights(config, 5), 5);
        var dir = tmp.File("pm");
        // The tokenizer has 400 ids, the embedding 300 rows.
        PreferenceModelFolder.Write(dir, config, weights, TinyTokenizer.Train(400), []);
        using var scorer = new RewardScorer(dir);
        const string text = "The assistant answered the question about the weather politely and helpfully.";
        var ids = scorer.Encode(text);
        var first = ids.First(id => id >= 300);
        var e = Assert.Throws<UserError>(() => scorer.Rewards([text], TestContext.Current.CancellationToken));
        Assert.Equal($"token id {first} is past this model's vocabulary of 300", e.Message);
        // Text that stays inside the embedding (bytes and specials only) still gets a reward.
        var inside = scorer.RewardsOfTokens([ids.Where(id => id < 300).ToArray()], TestContext.Current.CancellationToken);
        Assert.True(double.IsFinite(inside[0]));
    }
}
