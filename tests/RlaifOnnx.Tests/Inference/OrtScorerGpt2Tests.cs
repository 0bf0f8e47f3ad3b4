using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Tests.Models;


namespace RlaifOnnx.Tests.Inference;

/// <summary>The scorer on a GPT-2 folder, whose cache is one stacked past_{i} [2,B,H,P,D] per layer.</summary>
public class OrtScorerGpt2Tests
{
    [Fact]
    public async Task Gpt2_scores_equal_the_reference_and_cached_candidates_equal_scratch()
    {
        using var temp = new TempDir();
        var config = Gpt2GraphTests.TinyConfig() with { VocabSize = 300, MaxPositions = 128 };
        var weights = Gpt2GraphTests.NoisyWeights(config, 2);
        var dir = temp.File("gpt2");
        ModelWriter.Write(dir, config, weights, TinyTokenizer.Train(config.VocabSize), "base", []);
        using var scorer = new OrtScorer(dir, new InferenceOptions { BatchSize = 2 });
        var ct = TestContext.Current.CancellationToken;

        var ids = scorer.Encode("The assistant is helpful.");
        var scored = scorer.TokenLogProbs([ids], top: 0, ct)[0];
        var n = ids.Length;
        var tokens = new long[1, n];
        var mask = new long[1, n];
        var positions = new long[1, n];
        for (var t = 0; t < n; t++) (tokens[0, t], mask[0, t], positions[0, t]) = (ids[t], 1, t);
        var logits = Gpt2Reference.Forward(config, weights, tokens, mask, positions);   // [1, n, V]
        for (var t = 1; t < n; t++)
        {
            var row = Enumerable.Range(0, config.VocabSize).Select(v => logits[0, t - 1, v]).ToArray();
            var max = row.Max();
            var expected = row[ids[t]] - (max + Math.Log(row.Sum(x => Math.Exp(x - max))));
            Assert.Equal(expected, scored[t].LogProb, 4);
        }

        string[] prompts = ["Which is better? Answer:", "Tea?"];
        string[] candidates = [" (A)", " (B)", " both of them"];
        var shared = await scorer.CandidateLogProbsAsync(prompts, candidates, ct);
        var scratch = await scorer.ContinuationLogProbsAsync(prompts.SelectMany(p => candidates.Select(c => (p, c))).ToList(), ct);
        for (var p = 0; p < prompts.Length; p++)
            for (var c = 0; c < candidates.Length; c++)
                Assert.True(Math.Abs(scratch[p * candidates.Length + c] - shared[p][c]) < 1e-4, $"prompt {p} candidate {c}");
    }
}
