using RlaifOnnx.Data;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Tests.Inference;

/// <summary>
/// Scoring candidates after one prefix and many suffixes (prefix once, suffixes as one batch from its
/// cache, candidates as one batch from theirs) against scoring every prefix + suffix + candidate from
/// scratch, and the label stage's p_a with it against one pass per question.
/// </summary>
public class SharedPrefixScorerTests
{
    // "Hello th" + "ere…": a token merges across the prefix/suffix boundary. "" leaves a question that
    // is the prefix alone. "… is th" + "ere": a token merges across the question/candidate boundary.
    const string Prefix = "Consider the conversation. Human: Hello th";
    static readonly string[] Suffixes =
    [
        "ere, which answer is better? Options: (A) tea (B) coffee\nThe answer is:",
        "",
        " friend. Which one is kinder?\nThe answer is:",
        "ere. Pick one, the answer is th",
    ];
    static readonly string[] Candidates = [" (A)", " (B)", "ere", " neither of them"];

    [Fact]
    public async Task Llama_shared_prefix_candidates_equal_the_reference_forward_from_scratch()
    {
        using var model = new LlamaFolder(variant: "qwen2-bias", seed: 5);
        using var scorer = new OrtScorer(model.Dir, new InferenceOptions { BatchSize = 3 });   // several batches per level: padding in play
        var ct = TestContext.Current.CancellationToken;
        AssertBoundaryMerges(scorer);

        var shared = await scorer.QuestionCandidateLogProbsAsync(Prefix, Suffixes, Candidates, ct);
        Assert.Equal(Suffixes.Length, shared.Count);
        for (var i = 0; i < Suffixes.Length; i++)
            for (var j = 0; j < Candidates.Length; j++)
            {
                var question = Prefix + Suffixes[i];
                var joint = scorer.Encode(question + Candidates[j]);
                var first = OrtScorer.CommonPrefixLength(scorer.Encode(question), joint);
                var reference = model.ReferenceTokenLogProbs(joint)[first..].Sum();
                Assert.True(Math.Abs(reference - shared[i][j]) < 1e-4, $"suffix {i} candidate {j}: shared {shared[i][j]} vs reference {reference}");
            }
        // The candidates are told apart.
        Assert.NotEqual(shared[0][0], shared[0][1]);
    }

    [Fact]
    public async Task Gpt2_shared_prefix_candidates_equal_one_pass_per_question_and_from_scratch()
    {
        using var temp = new TempDir();
        var config = Gpt2GraphTests.TinyConfig() with { VocabSize = 300, MaxPositions = 128 };
        var dir = temp.File("gpt2");
        ModelWriter.Write(dir, config, Gpt2GraphTests.NoisyWeights(config, 2), TinyTokenizer.Train(config.VocabSize), "base", []);
        using var scorer = new OrtScorer(dir, new InferenceOptions { BatchSize = 3 });
        var ct = TestContext.Current.CancellationToken;
        AssertBoundaryMerges(scorer);

        var shared = await scorer.QuestionCandidateLogProbsAsync(Prefix, Suffixes, Candidates, ct);
        var perQuestion = await scorer.CandidateLogProbsAsync(Suffixes.Select(s => Prefix + s).ToList(), Candidates, ct);
        var scratch = await scorer.ContinuationLogProbsAsync(Suffixes.SelectMany(s => Candidates.Select(c => (Prefix + s, c))).ToList(), ct);
        for (var i = 0; i < Suffixes.Length; i++)
            for (var j = 0; j < Candidates.Length; j++)
            {
                Assert.True(Math.Abs(scratch[i * Candidates.Length + j] - shared[i][j]) < 1e-4, $"suffix {i} candidate {j}: shared {shared[i][j]} vs scratch {scratch[i * Candidates.Length + j]}");
                Assert.True(Math.Abs(perQuestion[i][j] - shared[i][j]) < 1e-4, $"suffix {i} candidate {j}: shared {shared[i][j]} vs per question {perQuestion[i][j]}");
            }
    }

    [Fact]
    public async Task Label_p_a_with_the_shared_prefix_equals_one_pass_per_question_on_hh_rlhf()
    {
        var pairs = SharedData.Require("hh-rlhf/harmless-base-test.dev.jsonl.gz");
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("feedback"), seed: 4);
        var config = new Label.Config
        {
            Pairs = pairs, FeedbackModel = model, OutputDir = dir.File("shared"), Principles = 3, BothOrders = true,
            FewShot = 1, BatchSize = 8, Limit = 4, Seed = 2, MaxQuestionTokens = 600,
        };
        var ct = TestContext.Current.CancellationToken;
        var shared = Jsonl.ReadAll<ComparisonRecord>(await Label.Run(config, ct));
        var perQuestion = Jsonl.ReadAll<ComparisonRecord>(await Label.Run(config with { OutputDir = dir.File("per-question"), SharePrefix = false }, ct));

        Assert.Equal(4, shared.Count);
        Assert.Equal(perQuestion.Select(r => r.Id), shared.Select(r => r.Id));
        foreach (var (s, q) in shared.Zip(perQuestion))
        {
            Assert.Equal(q.PrincipleIds, s.PrincipleIds);
            Assert.True(Math.Abs(q.PA - s.PA) < 1e-9, $"{s.Id}: p_a {s.PA} vs {q.PA}");
            foreach (var (ls, lq) in s.PerPrinciple.Zip(q.PerPrinciple))
            {
                Assert.True(Math.Abs(lq.PAOrderAb - ls.PAOrderAb) < 1e-9, $"{s.Id}/{ls.PrincipleId} a first: {ls.PAOrderAb} vs {lq.PAOrderAb}");
                Assert.True(Math.Abs(lq.PAOrderBa!.Value - ls.PAOrderBa!.Value) < 1e-9, $"{s.Id}/{ls.PrincipleId} b first: {ls.PAOrderBa} vs {lq.PAOrderBa}");
            }
        }
        // The labels are not all the same number: the comparison would be empty if the model ignored its input.
        Assert.True(shared.SelectMany(r => r.PerPrinciple).Select(l => l.PAOrderAb).Distinct().Count() > 1);
    }

    /// <summary>The test strings exercise both boundary rules with this tokenizer.</summary>
    static void AssertBoundaryMerges(OrtScorer scorer)
    {
        var prefixIds = scorer.Encode(Prefix);
        var firstQuestion = scorer.Encode(Prefix + Suffixes[0]);
        Assert.True(OrtScorer.CommonPrefixLength(prefixIds, firstQuestion) < prefixIds.Length, "a token should merge across the prefix/suffix boundary");
        var lastQuestion = Prefix + Suffixes[^1];
        Assert.True(OrtScorer.CommonPrefixLength(scorer.Encode(lastQuestion), scorer.Encode(lastQuestion + "ere")) < scorer.Encode(lastQuestion).Length,
            "a token should merge across the question/candidate boundary");
    }
}
