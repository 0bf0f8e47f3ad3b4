using RlaifOnnx.Training;


namespace RlaifOnnx.Tests.Training;

/// <summary>PPO's per-token arithmetic with literal numbers worked out by hand (and one loop-free equivalence check).</summary>
public sealed class PpoMathTests
{
    static void Near(double expected, double actual, double tolerance = 1e-12)
        => Assert.True(Math.Abs(expected - actual) <= tolerance, $"expected {expected:R}, got {actual:R}");

    static void Near(double[] expected, double[] actual, double tolerance = 1e-12)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"[{i}]: expected {expected[i]:R}, got {actual[i]:R}");
    }

    [Fact]
    public void Kl_estimators_k1_and_k3_per_token_and_zero_on_padding()
    {
        double[] logp = [-1.0, -2.0, -0.3];
        double[] refLogp = [-1.5, -1.0, -9.0];   // the last position is padding: never read
        bool[] mask = [true, true, false];
        // k1 = log π − log π_ref.
        Near([0.5, -1.0, 0], PpoMath.TokenKl(logp, refLogp, mask, KlEstimator.K1));
        // k3: log r = ref − logp = −0.5 and 1.0; e^−0.5 − 1 + 0.5 = 0.10653065971263342, e − 1 − 1 = 0.7182818284590451.
        Near([0.10653065971263342, 0.7182818284590451, 0], PpoMath.TokenKl(logp, refLogp, mask, KlEstimator.K3), 1e-15);
        // k3 is never negative even where k1 is.
        Assert.True(PpoMath.KlK3(-2.0, -1.0) > 0 && PpoMath.KlK1(-2.0, -1.0) < 0);
        Assert.Equal(0.0, PpoMath.KlK3(-1.25, -1.25));
    }

    [Fact]
    public void Rewards_are_minus_beta_kl_with_the_score_on_the_last_real_token()
    {
        double[] kl = [0.5, -1.0, 0.2, 7.0];
        bool[] mask = [true, true, true, false];
        // β = 0.1, score 2: [−0.05, 0.1, −0.02 + 2, 0].
        Near([-0.05, 0.1, 1.98, 0], PpoMath.TokenRewards(kl, mask, beta: 0.1, score: 2.0));
        // A full row: the score lands on the final position.
        Near([-0.05, 0.1, -0.02, 2.0 - 0.7], PpoMath.TokenRewards(kl, [true, true, true, true], 0.1, 2.0));
        // No real token: no reward anywhere.
        Near([0, 0, 0, 0], PpoMath.TokenRewards(kl, [false, false, false, false], 0.1, 2.0));
        Assert.Equal(2, PpoMath.LastRealIndex(mask));
        Assert.Equal(-1, PpoMath.LastRealIndex([false, false]));
    }

    [Fact]
    public void Missing_eos_penalty_lowers_only_unfinished_responses()
    {
        Assert.Equal(0.5, PpoMath.PenalizeMissingEos(1.5, containsEos: false, missingEosPenalty: 1.0));
        Assert.Equal(1.5, PpoMath.PenalizeMissingEos(1.5, containsEos: true, missingEosPenalty: 1.0));
        Assert.Equal(1.5, PpoMath.PenalizeMissingEos(1.5, containsEos: false, missingEosPenalty: null));
    }

    [Fact]
    public void Gae_on_three_tokens_with_trl_defaults_written_out()
    {
        // γ = 1, λ = 0.95; r = [−0.1, 0.2, 1.5], V = [0.5, 0.4, 0.3].
        // t = 2: δ = 1.5 + 1·0 − 0.3 = 1.2;               A = 1.2
        // t = 1: δ = 0.2 + 1·0.3 − 0.4 = 0.1;             A = 0.1 + 0.95·1.2 = 1.24
        // t = 0: δ = −0.1 + 1·0.4 − 0.5 = −0.2;           A = −0.2 + 0.95·1.24 = 0.978
        // returns = A + V = [1.478, 1.64, 1.5]
        var (advantages, returns) = PpoMath.Gae([-0.1, 0.2, 1.5], [0.5, 0.4, 0.3], [true, true, true]);
        Near([0.978, 1.24, 1.2], advantages);
        Near([1.478, 1.64, 1.5], returns);

        // Padding after the end token is terminal: what sits there is never read, and gets 0.
        var (padAdv, padRet) = PpoMath.Gae([-0.1, 0.2, 1.5, 9.0, -4.0], [0.5, 0.4, 0.3, 7.0, 3.0], [true, true, true, false, false]);
        Near([0.978, 1.24, 1.2, 0, 0], padAdv);
        Near([1.478, 1.64, 1.5, 0, 0], padRet);

        // Prompt positions before the response (leading zeros of a [T−1] mask) are skipped the same way.
        var (promptAdv, _) = PpoMath.Gae([5.0, -0.1, 0.2, 1.5], [6.0, 0.5, 0.4, 0.3], [false, true, true, true]);
        Near([0, 0.978, 1.24, 1.2], promptAdv);
    }

    [Fact]
    public void Gae_with_discount_written_out()
    {
        // γ = 0.9, λ = 0.5; r = [0, 1], V = [0.2, 0.5].
        // t = 1: δ = 1 − 0.5 = 0.5;                      A = 0.5
        // t = 0: δ = 0 + 0.9·0.5 − 0.2 = 0.25;           A = 0.25 + 0.45·0.5 = 0.475
        var (advantages, returns) = PpoMath.Gae([0.0, 1.0], [0.2, 0.5], [true, true], gamma: 0.9, lambda: 0.5);
        Near([0.475, 0.5], advantages);
        Near([0.675, 1.0], returns);
    }

    [Fact]
    public void Gae_equals_the_discounted_sum_of_td_errors()
    {
        // A_t = Σ_l (γλ)^l δ_{t+l}, computed directly for random data, against the backward recursion.
        var rng = new Random(5);
        const int length = 9, real = 7;
        const double gamma = 0.97, lambda = 0.9;
        var rewards = Enumerable.Range(0, length).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        var values = Enumerable.Range(0, length).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        var mask = Enumerable.Range(0, length).Select(t => t < real).ToArray();
        var (advantages, returns) = PpoMath.Gae(rewards, values, mask, gamma, lambda);
        for (var t = 0; t < real; t++)
        {
            double sum = 0;
            for (var l = 0; t + l < real; l++)
            {
                var next = t + l + 1 < real ? values[t + l + 1] : 0;
                sum += Math.Pow(gamma * lambda, l) * (rewards[t + l] + gamma * next - values[t + l]);
            }
            Near(sum, advantages[t], 1e-12);
            Near(sum + values[t], returns[t], 1e-12);
        }
        // With λ = 1 the return is the discounted reward-to-go, whatever the values.
        var (_, monteCarlo) = PpoMath.Gae(rewards, values, mask, gamma, lambda: 1.0);
        for (var t = 0; t < real; t++)
            Near(Enumerable.Range(t, real - t).Sum(k => Math.Pow(gamma, k - t) * rewards[k]), monteCarlo[t], 1e-12);
    }

    [Fact]
    public void Masked_whiten_gives_mean_zero_and_unit_variance_over_real_tokens()
    {
        // Real values 1, 2, 3, 4 (the 100 is padding): mean 2.5, unbiased variance (2.25 + 0.25 + 0.25 + 2.25)/3 = 5/3.
        double[][] x = [[1, 2, 100], [3, 4]];
        bool[][] mask = [[true, true, false], [true, true]];
        Near(2.5, PpoMath.MaskedMean(x, mask));
        Near(5.0 / 3, PpoMath.MaskedVariance(x, mask));
        Near(1.25, PpoMath.MaskedVariance(x, mask, unbiased: false));
        var scale = 1 / Math.Sqrt(5.0 / 3 + 1e-8);
        var white = PpoMath.MaskedWhiten(x, mask);
        Near([-1.5 * scale, -0.5 * scale, 0], white[0]);
        Near([0.5 * scale, 1.5 * scale], white[1]);
        Near(0, PpoMath.MaskedMean(white, mask));
        Near(1, PpoMath.MaskedVariance(white, mask), 1e-7);   // 1/(1 + 1e-8·3/5): the ε TRL adds

        // shift_mean = false keeps the mean and only rescales (TRL's whiten_rewards).
        var scaled = PpoMath.MaskedWhiten(x, mask, shiftMean: false);
        Near([2.5 - 1.5 * scale, 2.5 - 0.5 * scale, 0], scaled[0]);
        Near(2.5, PpoMath.MaskedMean(scaled, mask));

        // One real token has no unbiased variance: MaskedVariance refuses it, whitening leaves it at 0.
        Assert.Throws<ArgumentException>(() => PpoMath.MaskedVariance([[1.0, 2.0]], [[true, false]]));
        Assert.Equal([[0.0, 0.0]], PpoMath.MaskedWhiten([[1.0, 2.0]], [[true, false]]));
    }

    [Fact]
    public void Adaptive_kl_controller_follows_ziegler_et_al()
    {
        // β = 0.1, target 6, horizon 10000, n = 256 samples: n/horizon = 0.0256.
        Near(0.1, PpoMath.AdaptiveKlCoefficient(0.1, currentKl: 6, target: 6, horizon: 10000, samples: 256));
        // KL 6.6: error +0.1 → β·(1 + 0.1·0.0256) = 0.100256.
        Near(0.100256, PpoMath.AdaptiveKlCoefficient(0.1, 6.6, 6, 10000, 256), 1e-15);
        // KL 12: error +1 clipped to +0.2 → 0.1·1.00512; KL 3: error −0.5 clipped to −0.2 → 0.1·0.99488.
        Near(0.100512, PpoMath.AdaptiveKlCoefficient(0.1, 12, 6, 10000, 256), 1e-15);
        Near(0.099488, PpoMath.AdaptiveKlCoefficient(0.1, 3, 6, 10000, 256), 1e-15);

        var adaptive = KlController.Adaptive(0.1, target: 6, horizon: 10000);
        adaptive.Update(12, 256);
        adaptive.Update(12, 256);
        Near(0.1 * 1.00512 * 1.00512, adaptive.Value, 1e-15);
        var fixedBeta = KlController.Fixed(0.05);
        fixedBeta.Update(100, 256);
        Assert.Equal(0.05, fixedBeta.Value);
        Assert.Null(fixedBeta.Target);
        Assert.Throws<ArgumentOutOfRangeException>(() => KlController.Adaptive(0.1, target: 0, horizon: 10000));
    }

    [Fact]
    public void Mean_sequence_kl_sums_tokens_and_averages_rows()
    {
        // Rows sum to 0.5 − 1.0 + 0 = −0.5 and 0.25 + 0.75 = 1.0 → mean 0.25.
        Near(0.25, PpoMath.MeanSequenceKl([[0.5, -1.0, 0], [0.25, 0.75]]));
    }

    [Fact]
    public void Whitening_zero_or_one_token_leaves_nothing_to_scale()
    {
        double[][] x = [[3.0, 7.0], [5.0]];
        // One response token in the batch: its whitened value is 0; unshifted, the value itself.
        bool[][] one = [[false, true], [false]];
        Assert.Equal([[0.0, 0.0], [0.0]], PpoMath.MaskedWhiten(x, one));
        Assert.Equal([[0.0, 7.0], [0.0]], PpoMath.MaskedWhiten(x, one, shiftMean: false));
        // No response token at all (every response empty): all 0.
        bool[][] none = [[false, false], [false]];
        Assert.Equal([[0.0, 0.0], [0.0]], PpoMath.MaskedWhiten(x, none));
        // Two tokens: the usual whitening, (x − 5)/√(8 + 1e-8) with the unbiased variance (3−5)² + (7−5)² over 1.
        bool[][] two = [[true, true], [false]];
        var w = PpoMath.MaskedWhiten(x, two);
        Assert.Equal(-2 / Math.Sqrt(8 + 1e-8), w[0][0], 12);
        Assert.Equal(2 / Math.Sqrt(8 + 1e-8), w[0][1], 12);
    }
}
