using RlaifOnnx.Constitution;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Stages;
using RlaifOnnx.Tests.Models;
using RlaifOnnx.Records;


namespace RlaifOnnx.Tests.Inference;

/// <summary>
/// Scoring candidates after one prefix and many suffixes (prefix once, the spans suffixes share once, candidates
/// from their questions' caches) against scoring every prefix + suffix + candidate from
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

    // Questions shaped like the label stage's: two principles, each in both orders (the principle's text is a span
    // both orders share, below it one leaf per order), a duplicate question and one that another question begins with
    // (questions ending inside the tree, several per node), and principles of different lengths (caches of different
    // lengths in one batch).
    static readonly string[] TreeSuffixes =
    [
        "Which of these answers is less harmful and more honest overall?\nOptions:\n(A) tea please\n(B) no coffee\nThe answer is:",
        "Which of these answers is less harmful and more honest overall?\nOptions:\n(A) no coffee\n(B) tea please\nThe answer is:",
        "Pick the kinder reply, the one a thoughtful friend would give.\nOptions:\n(A) tea please\n(B) no coffee\nThe answer is:",
        "Pick the kinder reply, the one a thoughtful friend would give.\nOptions:\n(A) no coffee\n(B) tea please\nThe answer is:",
        "Pick the kinder reply, the one a thoughtful friend would give.\nOptions:\n(A) no coffee\n(B) tea please\nThe answer is:",
        "Pick the kinder reply, the one a thoughtful friend would give.\nOptions:\n(A) no coffee\n(B) tea please\nThe answer is: th",
    ];

    [Theory]
    [InlineData("llama", 3)]
    [InlineData("llama", 8)]
    [InlineData("gpt2", 3)]
    public async Task A_tree_of_shared_spans_gives_the_log_probs_of_one_pass_per_question(string architecture, int batchSize)
    {
        using var temp = new TempDir();
        using var llama = architecture == "llama" ? new LlamaFolder(variant: "gqa-untied", seed: 7) : null;
        var dir = llama?.Dir ?? temp.File("gpt2");
        if (llama is null)
        {
            var config = Gpt2GraphTests.TinyConfig() with { VocabSize = 300, MaxPositions = 256 };
            ModelWriter.Write(dir, config, Gpt2GraphTests.NoisyWeights(config, 3), TinyTokenizer.Train(config.VocabSize), "base", []);
        }
        using var scorer = new OrtScorer(dir, new InferenceOptions { BatchSize = batchSize });
        using var plain = new OrtScorer(dir, new InferenceOptions { BatchSize = batchSize, PrefixCacheBytes = 0 });
        var ct = TestContext.Current.CancellationToken;
        var questions = TreeSuffixes.Select(s => scorer.Encode(Prefix + s)).ToArray();
        var tree = new QuestionTree(questions.Select(q => q[..^1]).ToArray());
        Assert.Contains(tree.Nodes, n => n.Children.Count == 2);                       // a principle shared by both orders
        Assert.True(tree.TokensRun < questions.Sum(q => q.Length) / 2, $"{tree.TokensRun} tokens");

        var shared = await scorer.QuestionCandidateLogProbsAsync(Prefix, TreeSuffixes, Candidates, ct);
        var perQuestion = await plain.CandidateLogProbsAsync(TreeSuffixes.Select(s => Prefix + s).ToList(), Candidates, ct);
        Assert.True(scorer.TokensRun < plain.TokensRun * 0.6, $"shared way ran {scorer.TokensRun} tokens, one pass per question {plain.TokensRun}");
        for (var i = 0; i < TreeSuffixes.Length; i++)
            for (var j = 0; j < Candidates.Length; j++)
                Assert.True(Math.Abs(perQuestion[i][j] - shared[i][j]) < 1e-4, $"suffix {i} candidate {j}: shared {shared[i][j]} vs per question {perQuestion[i][j]}");
        Assert.Equal(shared[3], shared[4]);                                           // the duplicate
        Assert.NotEqual(shared[0][0], shared[1][0]);                                  // the orders are told apart
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
        // Within float32 rounding: the shared way runs rows with caches of different lengths in one batch (a masked
        // gap, weight exactly 0), which changes only the order of float32 sums against one pass per question.
        foreach (var (s, q) in shared.Zip(perQuestion))
        {
            Assert.Equal(q.PrincipleIds, s.PrincipleIds);
            Assert.True(Math.Abs(q.PA - s.PA) < 1e-6, $"{s.Id}: p_a {s.PA} vs {q.PA}");
            foreach (var (ls, lq) in s.PerPrinciple.Zip(q.PerPrinciple))
            {
                Assert.True(Math.Abs(lq.PAOrderAb - ls.PAOrderAb) < 1e-6, $"{s.Id}/{ls.PrincipleId} a first: {ls.PAOrderAb} vs {lq.PAOrderAb}");
                Assert.True(Math.Abs(lq.PAOrderBa!.Value - ls.PAOrderBa!.Value) < 1e-6, $"{s.Id}/{ls.PrincipleId} b first: {ls.PAOrderBa} vs {lq.PAOrderBa}");
            }
        }
        // The labels are not all the same number: the comparison would be empty if the model ignored its input.
        Assert.True(shared.SelectMany(r => r.PerPrinciple).Select(l => l.PAOrderAb).Distinct().Count() > 1);
    }

    [Fact]
    public async Task A_kept_prefix_cache_is_reused_by_later_calls_and_changes_no_log_prob()
    {
        using var model = new LlamaFolder(variant: "gqa-untied", seed: 6);
        using var cached = new OrtScorer(model.Dir, new InferenceOptions { BatchSize = 3 });
        using var uncached = new OrtScorer(model.Dir, new InferenceOptions { BatchSize = 3, PrefixCacheBytes = 0 });
        var ct = TestContext.Current.CancellationToken;
        // Two comparisons' questions: the same opening (a fixed few-shot block), then different conversations.
        const string opening = "Example: which is kinder? (A) tea (B) a rude word. The answer is: (A)\n\n";
        string[] prefixes = [opening + "Human: Hello there", opening + "Human: Good morning"];

        Assert.Equal(0, cached.PrefixTokensReused);
        var first = await cached.QuestionCandidateLogProbsAsync(prefixes[0], Suffixes, Candidates, ct);
        Assert.Equal(0, cached.PrefixTokensReused);
        var second = await cached.QuestionCandidateLogProbsAsync(prefixes[1], Suffixes, Candidates, ct);
        // The second call ran only the tokens after the opening both share.
        var sharedOpening = OrtScorer.CommonPrefixLength(cached.Encode(prefixes[0] + Suffixes[1]), cached.Encode(prefixes[1] + Suffixes[1]));
        Assert.True(sharedOpening >= cached.Encode(opening).Length - 1, $"{sharedOpening} shared tokens");
        Assert.Equal(sharedOpening, cached.PrefixTokensReused);
        // The plain per-question path keeps and reuses caches too: its questions share the prefix.
        var perQuestion = await cached.CandidateLogProbsAsync(Suffixes.Select(x => prefixes[1] + x).ToList(), Candidates, ct);
        Assert.True(cached.PrefixTokensReused - sharedOpening >= Suffixes.Length * sharedOpening, $"{cached.PrefixTokensReused} tokens reused");

        var reference = await Task.WhenAll(prefixes.Select(p => uncached.QuestionCandidateLogProbsAsync(p, Suffixes, Candidates, ct)));
        Assert.Equal(0, uncached.PrefixTokensReused);
        foreach (var (got, want) in new[] { (first, reference[0]), (second, reference[1]), (perQuestion, reference[1]) })
            for (var i = 0; i < Suffixes.Length; i++)
                for (var j = 0; j < Candidates.Length; j++)
                    Assert.True(Math.Abs(got[i][j] - want[i][j]) < 1e-4, $"suffix {i} candidate {j}: {got[i][j]} vs {want[i][j]} without the kept cache");
    }

    [Fact]
    public async Task A_prefix_over_the_cache_budget_is_not_kept()
    {
        using var model = new LlamaFolder(variant: "gqa-untied", seed: 6);
        using var scorer = new OrtScorer(model.Dir, new InferenceOptions { PrefixCacheBytes = 64 });   // less than one token's keys and values
        var ct = TestContext.Current.CancellationToken;
        await scorer.QuestionCandidateLogProbsAsync(Prefix, Suffixes, Candidates, ct);
        await scorer.QuestionCandidateLogProbsAsync(Prefix, Suffixes, Candidates, ct);
        Assert.Equal(0, scorer.PrefixTokensReused);
    }

    [Fact]
    public async Task The_label_stage_runs_its_few_shot_block_once_for_all_comparisons()
    {
        var pairs = SharedData.Require("hh-rlhf/harmless-base-test.dev.jsonl.gz");
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("feedback"), seed: 4);
        var config = new Label.Config
        {
            Pairs = pairs, FeedbackModel = model, OutputDir = dir.File("out"), Principles = 2, FewShot = 2, Limit = 3, Seed = 1, MaxQuestionTokens = 900,
        };
        using var scorer = new OrtScorer(model);
        var fewShotTokens = scorer.Encode(Label.FewShotBlock(ConstitutionSet.Default, config)).Length;
        Assert.True(fewShotTokens > 50);
        var records = Jsonl.ReadAll<ComparisonRecord>(await Label.Run(config, scorer, t => scorer.Encode(t).Length, 900, null, null, TestContext.Current.CancellationToken));
        Assert.Equal(3, records.Count);
        // Comparisons 2 and 3 continued from the block's cache (at least its tokens but the last, which may merge with what follows).
        Assert.True(scorer.PrefixTokensReused >= 2 * (fewShotTokens - 1), $"{scorer.PrefixTokensReused} tokens reused, block of {fewShotTokens}");
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
