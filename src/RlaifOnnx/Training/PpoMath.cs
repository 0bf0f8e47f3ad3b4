namespace RlaifOnnx.Training;

/// <summary>Which per-token estimator of KL(π‖π_ref) the KL penalty uses (Schulman, "Approximating KL divergence", 2020).</summary>
public enum KlEstimator
{
    /// <summary>k1 = log π − log π_ref: unbiased, can be negative per token (TRL's default).</summary>
    K1,
    /// <summary>k3 = (r − 1) − log r with r = π_ref/π: unbiased, never negative, lower variance.</summary>
    K3,
}

/// <summary>
/// The per-token arithmetic of PPO for language models between a rollout and the loss graphs, in float64,
/// as TRL's PPOTrainer (trl/trainer/ppo_trainer.py) does it: the KL penalty per token, rewards (−β·KL with
/// the preference model's score on the last token), GAE advantages and returns, masked whitening and the
/// KL coefficient's controllers (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences").
///
/// Arrays are one sequence's response positions [T] (or a batch of them, [B][T]) with a mask: true on the
/// tokens that count, false on padding after the end token. The true positions of a row must form one
/// contiguous run (the response); everything outside it is 0 in every output and is never read.
///
/// One deliberate difference from TRL: TRL adds the score at index (last real token + 1) when that index
/// exists (its `sequence_lengths_p1`, which also keeps one extra value position); here the score is added
/// at the last real token itself, where the policy's final action is, as in Ziegler et al. and the
/// earlier TRL and lm-human-preferences code — the episode ends at the end token.
/// </summary>
public static class PpoMath
{
    /// <summary>TRL's default discount γ: no discounting within a response.</summary>
    public const double DefaultGamma = 1.0;
    /// <summary>TRL's default GAE λ.</summary>
    public const double DefaultLambda = 0.95;
    /// <summary>The ε TRL's masked_whiten adds to the variance before the square root.</summary>
    public const double WhitenEpsilon = 1e-8;

    /// <summary>k1 = log π − log π_ref for one token.</summary>
    public static double KlK1(double logProb, double refLogProb) => logProb - refLogProb;

    /// <summary>k3 = (r − 1) − log r, r = exp(log π_ref − log π), for one token.</summary>
    public static double KlK3(double logProb, double refLogProb)
    {
        var logR = refLogProb - logProb;
        return Math.Exp(logR) - 1 - logR;
    }

    /// <summary>Per-token KL estimates [T] from the policy's and the reference's log-probs of the sampled tokens; 0 on padding.</summary>
    public static double[] TokenKl(ReadOnlySpan<double> logProbs, ReadOnlySpan<double> refLogProbs, ReadOnlySpan<bool> mask, KlEstimator estimator)
    {
        CheckLengths(logProbs.Length, mask.Length, nameof(logProbs));
        CheckLengths(refLogProbs.Length, mask.Length, nameof(refLogProbs));
        var kl = new double[mask.Length];
        for (var t = 0; t < kl.Length; t++)
            if (mask[t]) kl[t] = estimator == KlEstimator.K1 ? KlK1(logProbs[t], refLogProbs[t]) : KlK3(logProbs[t], refLogProbs[t]);
        return kl;
    }

    /// <summary>The index of the last true position of the mask, or −1 if there is none.</summary>
    public static int LastRealIndex(ReadOnlySpan<bool> mask)
    {
        for (var t = mask.Length - 1; t >= 0; t--)
            if (mask[t]) return t;
        return -1;
    }

    /// <summary>
    /// TRL's missing_eos_penalty: a response that never produced the end token has its score lowered by
    /// the penalty (a truncated answer should not be rewarded like a finished one). Null = no penalty.
    /// </summary>
    public static double PenalizeMissingEos(double score, bool containsEos, double? missingEosPenalty)
        => !containsEos && missingEosPenalty is { } penalty ? score - penalty : score;

    /// <summary>
    /// Per-token rewards [T]: −β·KL on every real token, plus the sequence's score at its last real token;
    /// 0 on padding. A row with no real token gets no score (there is no action to credit).
    /// </summary>
    public static double[] TokenRewards(ReadOnlySpan<double> kl, ReadOnlySpan<bool> mask, double beta, double score)
    {
        CheckLengths(kl.Length, mask.Length, nameof(kl));
        var rewards = new double[mask.Length];
        for (var t = 0; t < rewards.Length; t++)
            if (mask[t]) rewards[t] = -beta * kl[t];
        var last = LastRealIndex(mask);
        if (last >= 0) rewards[last] += score;
        return rewards;
    }

    /// <summary>
    /// Generalised advantage estimation (Schulman et al. 2016, eq. 16) backwards over one sequence:
    /// δ_t = r_t + γ·V_{t+1} − V_t, A_t = δ_t + γλ·A_{t+1}, with V and A past the last real token taken as 0
    /// (the end token ends the episode); returns R_t = A_t + V_t. Both [T], 0 on padding.
    /// </summary>
    public static (double[] Advantages, double[] Returns) Gae(ReadOnlySpan<double> rewards, ReadOnlySpan<double> values, ReadOnlySpan<bool> mask,
        double gamma = DefaultGamma, double lambda = DefaultLambda)
    {
        CheckLengths(rewards.Length, mask.Length, nameof(rewards));
        CheckLengths(values.Length, mask.Length, nameof(values));
        var advantages = new double[mask.Length];
        var returns = new double[mask.Length];
        double nextValue = 0, nextAdvantage = 0;
        for (var t = mask.Length - 1; t >= 0; t--)
        {
            if (!mask[t])
            {
                nextValue = 0;
                nextAdvantage = 0;
                continue;
            }
            var delta = rewards[t] + gamma * nextValue - values[t];
            nextAdvantage = delta + gamma * lambda * nextAdvantage;
            nextValue = values[t];
            advantages[t] = nextAdvantage;
            returns[t] = nextAdvantage + values[t];
        }
        return (advantages, returns);
    }

    /// <summary>Mean over the true positions of every row, as TRL's masked_mean over the whole batch.</summary>
    public static double MaskedMean(IReadOnlyList<double[]> x, IReadOnlyList<bool[]> mask)
    {
        var (sum, count) = (0.0, 0L);
        ForEachReal(x, mask, v => { sum += v; count++; });
        if (count == 0) throw new ArgumentException("the mask selects no position", nameof(mask));
        return sum / count;
    }

    /// <summary>
    /// Variance over the true positions, unbiased (n/(n−1), Bessel's correction) by default as TRL's
    /// masked_var; it needs at least two positions.
    /// </summary>
    public static double MaskedVariance(IReadOnlyList<double[]> x, IReadOnlyList<bool[]> mask, bool unbiased = true)
    {
        var mean = MaskedMean(x, mask);
        var (sumSquares, count) = (0.0, 0L);
        ForEachReal(x, mask, v => { sumSquares += (v - mean) * (v - mean); count++; });
        if (unbiased && count < 2)
            throw new ArgumentException("an unbiased variance needs at least two masked positions", nameof(mask));
        var variance = sumSquares / count;
        return unbiased ? variance * count / (count - 1) : variance;
    }

    /// <summary>
    /// TRL's masked_whiten over a whole batch [B][T]: (x − mean)/√(var + 1e-8) with mean and unbiased
    /// variance taken over the true positions of all rows; with <paramref name="shiftMean"/> false the mean
    /// is added back (only the scale changes — TRL whitens rewards that way). Padding positions are 0. With
    /// fewer than two true positions nothing is scaled: 0 each (the value itself without the shift), where
    /// TRL's Bessel correction would divide by zero.
    /// </summary>
    public static double[][] MaskedWhiten(IReadOnlyList<double[]> x, IReadOnlyList<bool[]> mask, bool shiftMean = true)
    {
        // Fewer than two tokens (a batch of one response that ended at once): their spread is undefined, and
        // each token is its own mean, so whitening leaves 0 (or, without the shift, the value itself).
        var count = 0L;
        ForEachReal(x, mask, _ => count++);
        if (count < 2)
            return x.Select((row, b) => row.Select((v, t) => mask[b][t] && !shiftMean ? v : 0.0).ToArray()).ToArray();
        var mean = MaskedMean(x, mask);
        var scale = 1 / Math.Sqrt(MaskedVariance(x, mask) + WhitenEpsilon);
        var result = new double[x.Count][];
        for (var b = 0; b < x.Count; b++)
        {
            result[b] = new double[x[b].Length];
            for (var t = 0; t < x[b].Length; t++)
                if (mask[b][t]) result[b][t] = (x[b][t] - mean) * scale + (shiftMean ? 0 : mean);
        }
        return result;
    }

    /// <summary>
    /// The batch's KL(π‖π_ref) per sequence: the mean over rows of each row's summed per-token KL [B][T]
    /// (padding is 0) — the quantity the adaptive controller compares with its target (TRL's objective/kl).
    /// </summary>
    public static double MeanSequenceKl(IReadOnlyList<double[]> tokenKl)
    {
        if (tokenKl.Count == 0) throw new ArgumentException("no rows", nameof(tokenKl));
        double sum = 0;
        foreach (var row in tokenKl)
            foreach (var v in row) sum += v;
        return sum / tokenKl.Count;
    }

    /// <summary>
    /// The adaptive KL coefficient of Ziegler et al. 2019 (§2.2): β ← β·(1 + clip(KL/target − 1, −0.2, 0.2)·n/horizon),
    /// with KL the measured KL(π‖π_ref) of the last batch (per sequence) and n the number of samples it came from.
    /// </summary>
    public static double AdaptiveKlCoefficient(double beta, double currentKl, double target, double horizon, long samples)
    {
        if (target <= 0) throw new ArgumentOutOfRangeException(nameof(target), target, "the KL target must be positive");
        if (horizon <= 0) throw new ArgumentOutOfRangeException(nameof(horizon), horizon, "the KL horizon must be positive");
        var proportionalError = Math.Clamp(currentKl / target - 1, -0.2, 0.2);
        return beta * (1 + proportionalError * samples / horizon);
    }

    static void ForEachReal(IReadOnlyList<double[]> x, IReadOnlyList<bool[]> mask, Action<double> visit)
    {
        if (x.Count != mask.Count) throw new ArgumentException($"{x.Count} rows of values but {mask.Count} rows of mask", nameof(mask));
        for (var b = 0; b < x.Count; b++)
        {
            CheckLengths(x[b].Length, mask[b].Length, $"row {b}");
            for (var t = 0; t < x[b].Length; t++)
                if (mask[b][t]) visit(x[b][t]);
        }
    }

    static void CheckLengths(int length, int maskLength, string what)
    {
        if (length != maskLength) throw new ArgumentException($"{what} has {length} positions but the mask {maskLength}");
    }
}

/// <summary>
/// The KL penalty coefficient β of PPO against a reference policy: fixed, or adapted after each batch
/// towards a target KL (Ziegler et al. 2019; TRL's AdaptiveKLController / FixedKLController).
/// </summary>
public sealed class KlController
{
    /// <summary>The current β.</summary>
    public double Value { get; private set; }
    /// <summary>The KL the adaptive controller steers to; null for a fixed β.</summary>
    public double? Target { get; }
    /// <summary>Samples over which a constant proportional error changes β by e^(±0.2) (adaptive only).</summary>
    public double Horizon { get; }

    KlController(double value, double? target, double horizon) => (Value, Target, Horizon) = (value, target, horizon);

    public static KlController Fixed(double beta) => new(beta, null, 0);

    public static KlController Adaptive(double initialBeta, double target, double horizon)
    {
        if (target <= 0) throw new ArgumentOutOfRangeException(nameof(target), target, "the KL target must be positive");
        if (horizon <= 0) throw new ArgumentOutOfRangeException(nameof(horizon), horizon, "the KL horizon must be positive");
        return new(initialBeta, target, horizon);
    }

    /// <summary>After a batch of <paramref name="samples"/> sequences whose mean KL was <paramref name="currentKl"/>; a fixed β stays.</summary>
    public void Update(double currentKl, long samples)
    {
        if (Target is { } target) Value = PpoMath.AdaptiveKlCoefficient(Value, currentKl, target, Horizon, samples);
    }
}
