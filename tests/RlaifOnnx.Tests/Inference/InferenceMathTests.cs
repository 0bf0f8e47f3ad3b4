using System.Net.Http.Headers;
using RlaifOnnx.Inference;

namespace RlaifOnnx.Tests.Inference;

public class InferenceMathTests
{
    [Fact]
    public void LogSoftmaxAt_matches_hand_computed_values()
    {
        float[] row = [1f, 2f, 3f];
        // logsumexp(1,2,3) = 3 + ln(e^-2 + e^-1 + 1) = 3.40760596444438
        Assert.Equal(3.40760596444438, OrtScorer.LogSumExp(row), 12);
        Assert.Equal(1 - 3.40760596444438, OrtScorer.LogSoftmaxAt(row, 0), 12);
        Assert.Equal(3 - 3.40760596444438, OrtScorer.LogSoftmaxAt(row, 2), 12);
        // Large logits must not overflow: softmax is shift-invariant.
        float[] large = [1001f, 1002f, 1003f];
        Assert.Equal(OrtScorer.LogSoftmaxAt(row, 1), OrtScorer.LogSoftmaxAt(large, 1), 6);
    }

    [Fact]
    public void TopLogProbs_returns_the_k_most_likely_in_order()
    {
        float[] row = [0.5f, 3f, -1f, 2f, 3f];
        var top = OrtScorer.TopLogProbs(row, 3);
        Assert.Equal([1, 4, 3], top.Select(t => t.Id));
        Assert.Equal(OrtScorer.LogSoftmaxAt(row, 3), top[2].LogProb, 12);
        Assert.Empty(OrtScorer.TopLogProbs(row, 0));
    }

    [Fact]
    public void CommonPrefixLength_counts_equal_leading_tokens()
    {
        Assert.Equal(2, OrtScorer.CommonPrefixLength([5, 6, 7], [5, 6, 8, 9]));
        Assert.Equal(3, OrtScorer.CommonPrefixLength([5, 6, 7], [5, 6, 7, 9]));
        Assert.Equal(0, OrtScorer.CommonPrefixLength([1], [2]));
    }

    [Fact]
    public void CutAtEos_keeps_tokens_before_the_first_eos()
    {
        var eos = new HashSet<int> { 2 };
        var (cut, why, _) = GenAIGenerator.CutAtEos([7, 8, 2, 2, 2], eos, 5);
        Assert.Equal([7, 8], cut);
        Assert.Equal("stop", why);
        var (kept, reason, _) = GenAIGenerator.CutAtEos([7, 8, 9], eos, 3);
        Assert.Equal([7, 8, 9], kept);
        Assert.Equal("length", reason);
        Assert.Equal("stop", GenAIGenerator.CutAtEos([2], eos, 3).FinishReason);
        // A lone sequence ends before its EOS without showing it: shorter than the limit means EOS.
        Assert.Equal("stop", GenAIGenerator.CutAtEos([7], eos, 3).FinishReason);
    }

    [Fact]
    public void CutAtEos_keeps_the_end_token_that_was_sampled()
    {
        // Several end tokens (as Llama 3's <|eot_id|> and <|end_of_text|>): the one sampled is the one kept.
        var eos = new HashSet<int> { 2, 50 };
        Assert.Equal(50, GenAIGenerator.CutAtEos([7, 8, 50, 0, 0], eos, 5).EndTokenId);
        Assert.Equal(2, GenAIGenerator.CutAtEos([7, 2, 50], eos, 5).EndTokenId);
        // Run to the limit: no end token.
        Assert.Null(GenAIGenerator.CutAtEos([7, 8, 9], eos, 3).EndTokenId);
        // Ended early with the end token hidden: the only one when there is one, unknown when there are several.
        Assert.Equal(2, GenAIGenerator.CutAtEos([7], new HashSet<int> { 2 }, 3).EndTokenId);
        Assert.Null(GenAIGenerator.CutAtEos([7], eos, 3).EndTokenId);
    }

    [Fact]
    public void Redaction_removes_the_key_any_bearer_token_and_url_userinfo()
    {
        var text = HttpRetry.Redact("http://user:pa55@host:8/v1/x: HTTP 500: echoed Authorization: Bearer sk-secret-1 and sk-secret-1 again", "sk-secret-1");
        Assert.DoesNotContain("sk-secret-1", text);
        Assert.DoesNotContain("pa55", text);
        Assert.DoesNotContain("user", text);
        Assert.Equal("http://***@host:8/v1/x: HTTP 500: echoed Authorization: Bearer *** and *** again", text);
    }

    [Fact]
    public void RetryAfter_reads_seconds_and_dates()
    {
        var now = new DateTimeOffset(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);
        Assert.Equal(TimeSpan.FromSeconds(3), HttpRetry.RetryAfter(new RetryConditionHeaderValue(TimeSpan.FromSeconds(3)), now));
        Assert.Equal(TimeSpan.FromSeconds(7), HttpRetry.RetryAfter(new RetryConditionHeaderValue(now.AddSeconds(7)), now));
        Assert.Equal(TimeSpan.Zero, HttpRetry.RetryAfter(new RetryConditionHeaderValue(now.AddSeconds(-7)), now));
        Assert.Null(HttpRetry.RetryAfter(null, now));
    }

    [Fact]
    public void ApiBase_accepts_urls_with_or_without_v1()
    {
        Assert.Equal("http://h:8000/v1/", OpenAIBackend.ApiBase(new Uri("http://h:8000")).ToString());
        Assert.Equal("http://h:8000/v1/", OpenAIBackend.ApiBase(new Uri("http://h:8000/v1")).ToString());
        Assert.Equal("http://h:8000/v1/", OpenAIBackend.ApiBase(new Uri("http://h:8000/v1/")).ToString());
    }

    [Fact]
    public void SumContinuation_counts_tokens_that_overlap_the_continuation()
    {
        // Text "Hello world!" = prompt "Hello" + continuation " world!", plus one generated token "?".
        var logprobs = new CompletionLogprobs
        {
            Tokens = ["Hel", "lo", " world", "!", "?"],
            TokenLogprobs = [null, -1.0, -2.0, -0.5, -9.0],
            TextOffset = [0, 3, 5, 11, 12],
        };
        Assert.Equal(-2.5, OpenAIBackend.SumContinuation(logprobs, 5, 12, new Uri("http://x/v1/")), 12);
        // A token merged across the boundary ("lo w") counts as the continuation's.
        var merged = new CompletionLogprobs { Tokens = ["Hel", "lo w", "orld!"], TokenLogprobs = [null, -1.5, -0.25] };
        Assert.Equal(-1.75, OpenAIBackend.SumContinuation(merged, 5, 12, new Uri("http://x/v1/")), 12);
    }

    [Fact]
    public void Batches_respect_the_batch_size_and_the_logits_budget()
    {
        // Batch size 3, no budget pressure: 3 + 3 + 1.
        Assert.Equal([(0, 3), (3, 3), (6, 1)], OrtScorer.Batches([5, 5, 5, 5, 5, 5, 5], 3, 10, long.MaxValue));
        // Budget 100 logits with vocabulary 10: rows padded to the longest must fit 10 tokens in all.
        // [4, 5] → 2·5 = 10 tokens fit; adding 6 would need 3·6 = 18. [6] alone; [20] alone though over budget.
        Assert.Equal([(0, 2), (2, 1), (3, 1), (4, 1)], OrtScorer.Batches([4, 5, 6, 20, 3], 8, 10, 100));
    }
}
