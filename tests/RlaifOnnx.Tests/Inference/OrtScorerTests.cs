using RlaifOnnx.Core;
using RlaifOnnx.Inference;


namespace RlaifOnnx.Tests.Inference;

/// <summary>The ONNX Runtime scorer against the float64 reference forward, and shared-prefix scoring against scoring from scratch.</summary>
public class OrtScorerTests
{
    static readonly (string Prompt, string Continuation)[] Pairs =
    [
        ("The assistant is helpful", " and honest."),
        ("Tea?", " Yes, please."),
        ("Which answer is better? Answer:", " (A)"),
        ("Hello th", "ere"),   // a token may merge across the boundary: it counts as the continuation's
    ];

    [Fact]
    public async Task Continuation_log_probs_equal_the_reference_forward()
    {
        using var model = new LlamaFolder();
        using var scorer = new OrtScorer(model.Dir, new InferenceOptions { BatchSize = 3 });   // batches of 3 and 1: padding in play
        var scores = await scorer.ContinuationLogProbsAsync(Pairs, TestContext.Current.CancellationToken);
        for (var i = 0; i < Pairs.Length; i++)
        {
            var promptIds = scorer.Encode(Pairs[i].Prompt);
            var jointIds = scorer.Encode(Pairs[i].Prompt + Pairs[i].Continuation);
            var first = OrtScorer.CommonPrefixLength(promptIds, jointIds);
            var reference = model.ReferenceTokenLogProbs(jointIds)[first..].Sum();
            Assert.True(first >= 1 && first < jointIds.Length);
            Assert.Equal(reference, scores[i], 4);
        }
    }

    [Fact]
    public async Task Candidates_scored_from_the_shared_prompt_cache_equal_scoring_from_scratch()
    {
        using var model = new LlamaFolder(variant: "qwen2-bias", seed: 5);
        using var scorer = new OrtScorer(model.Dir, new InferenceOptions { BatchSize = 2 });
        string[] prompts = ["Which response is less harmful? Options: (A) or (B). The answer is:", "Short one. Answer:"];
        string[] candidates = [" (A)", " (B)", " neither of them, really"];
        var shared = await scorer.CandidateLogProbsAsync(prompts, candidates, TestContext.Current.CancellationToken);
        var scratch = await scorer.ContinuationLogProbsAsync(
            prompts.SelectMany(p => candidates.Select(c => (p, c))).ToList(), TestContext.Current.CancellationToken);
        for (var p = 0; p < prompts.Length; p++)
            for (var c = 0; c < candidates.Length; c++)
                Assert.True(Math.Abs(scratch[p * candidates.Length + c] - shared[p][c]) < 1e-4,
                    $"prompt {p} candidate {c}: cache {shared[p][c]} vs scratch {scratch[p * candidates.Length + c]}");
        // The candidates are told apart: (A) and (B) do not score the same.
        Assert.NotEqual(shared[0][0], shared[0][1]);
    }

    [Fact]
    public void Token_log_probs_equal_the_reference_with_top_alternatives()
    {
        using var model = new LlamaFolder(variant: "mha-tied");
        using var scorer = new OrtScorer(model.Dir);
        int[][] sequences = [scorer.Encode("A short text about tea."), scorer.Encode("Hi")];
        var scored = scorer.TokenLogProbs(sequences, top: 3, TestContext.Current.CancellationToken);
        for (var s = 0; s < sequences.Length; s++)
        {
            var reference = model.ReferenceTokenLogProbs(sequences[s]);
            Assert.True(double.IsNaN(scored[s][0].LogProb));
            for (var t = 1; t < sequences[s].Length; t++)
            {
                Assert.Equal(reference[t], scored[s][t].LogProb, 4);
                Assert.Equal(3, scored[s][t].Top.Count);
                Assert.True(scored[s][t].Top[0].LogProb >= scored[s][t].LogProb - 1e-9);
            }
        }
    }

    [Fact]
    public async Task A_continuation_that_adds_no_token_is_a_user_error()
    {
        using var model = new LlamaFolder();
        using var scorer = new OrtScorer(model.Dir);
        var e = await Assert.ThrowsAsync<UserError>(() => scorer.ContinuationLogProbsAsync([("Hello", "")], TestContext.Current.CancellationToken));
        Assert.Contains("continuation: \"\" adds no token after the prompt", e.Message);
    }

    [Fact]
    public async Task A_small_logits_budget_splits_batches_without_changing_results()
    {
        using var model = new LlamaFolder();
        using var roomy = new OrtScorer(model.Dir, new InferenceOptions { BatchSize = 8 });
        // Room for about one row of logits at a time: every pass runs a single sequence.
        using var tight = new OrtScorer(model.Dir, new InferenceOptions { BatchSize = 8, MaxLogitsElements = 20L * model.Config.VocabSize });
        var ct = TestContext.Current.CancellationToken;
        var a = await roomy.ContinuationLogProbsAsync(Pairs, ct);
        var b = await tight.ContinuationLogProbsAsync(Pairs, ct);
        for (var i = 0; i < Pairs.Length; i++) Assert.Equal(a[i], b[i], 4);
        var ca = await roomy.CandidateLogProbsAsync(["Pick one:"], [" (A)", " (B)", " none"], ct);
        var cb = await tight.CandidateLogProbsAsync(["Pick one:"], [" (A)", " (B)", " none"], ct);
        for (var c = 0; c < 3; c++) Assert.Equal(ca[0][c], cb[0][c], 4);
    }
}
