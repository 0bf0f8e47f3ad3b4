using RlaifOnnx.Models;
using RlaifOnnx.Training;

namespace RlaifOnnx.Tests.Training;

/// <summary>
/// The KL penalty pulls the policy towards the reference, shown on fixed token rows so no sampled token (and
/// so no CPU's rounding of a sampled trajectory) decides the outcome: per-token rewards −β·(log π − log π_ref)
/// with a huge β, advantages from them (λ = 0, whitened, as the stage computes them), then one PPO update of
/// the policy. The exact teacher-forced KL(π‖π_ref) over the response positions — the full next-token
/// distributions, from the float64 reference forward — falls; with β = 0 and no score every advantage is 0
/// and the update leaves the policy where it was.
/// </summary>
public sealed class PpoKlPullTests
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    // Rows of prompt + response; the responses are sampled from the policy by the float64 reference forward with a
    // seeded generator (plain C# arithmetic, so every CPU draws the same tokens), as a rollout would draw them.
    const int Batch = 32, PromptLength = 2, Seq = 8, Actions = Seq - 1;
    static readonly Lazy<(ModelConfig C, WeightSet Reference, WeightSet Policy)> Models = new(() =>
    {
        var c = Config();
        var reference = TinyLlama.Weights(c, 3);
        return (c, reference, Drifted(reference, TinyLlama.Weights(c, 4)));
    });
    static readonly Lazy<int[][]> SampledRows = new(() => Sample(Models.Value.C, Models.Value.Policy, seed: 11));
    static int[][] Rows => SampledRows.Value;
    static readonly int[] Prompts = Enumerable.Repeat(PromptLength, Batch).ToArray();

    static ModelConfig Config() => TinyLlama.Config("gqa-untied");

    static long[][] Ids(ModelConfig c) => Rows.Select(r => Enumerable.Range(0, Seq).Select(t => t < r.Length ? (long)r[t] : c.PadTokenId).ToArray()).ToArray();
    static long[][] Mask() => Rows.Select(r => Enumerable.Range(0, Seq).Select(t => t < r.Length ? 1L : 0L).ToArray()).ToArray();
    static long[][] Positions() => Rows.Select(_ => Enumerable.Range(0, Seq).Select(t => (long)t).ToArray()).ToArray();

    /// <summary>Responses drawn from π token by token (softmax of the float64 logits, a seeded uniform per token).</summary>
    static int[][] Sample(ModelConfig c, WeightSet policy, int seed)
    {
        var random = new Random(seed);
        var rows = Enumerable.Range(0, Batch).Select(b => new List<int> { 5 + b % 7, 17 + b % 5 }).ToArray();
        for (var t = PromptLength; t < Seq; t++)
        {
            var ids = rows.Select(r => r.Select(x => (long)x).ToArray()).ToArray();
            var mask = rows.Select(r => r.Select(_ => 1L).ToArray()).ToArray();
            var positions = rows.Select(r => Enumerable.Range(0, r.Count).Select(i => (long)i).ToArray()).ToArray();
            var logits = LlamaReference.Forward(c, policy, ids, mask, positions);
            for (var b = 0; b < Batch; b++)
            {
                var row = logits[b][t - 1];
                var max = row.Max();
                var weights = row.Select(v => Math.Exp(v - max)).ToArray();
                var u = random.NextDouble() * weights.Sum();
                var token = 0;
                for (var acc = weights[0]; acc < u && token < weights.Length - 1; acc += weights[++token]) { }
                rows[b].Add(token);
            }
        }
        return rows.Select(r => r.ToArray()).ToArray();
    }

    /// <summary>response_mask [B][T−1]: true at t when ids[t+1] is a response token.</summary>
    static bool[][] ResponseMask() => Rows.Select((r, b) => Enumerable.Range(0, Actions).Select(t => t + 1 >= Prompts[b] && t + 1 < r.Length).ToArray()).ToArray();

    /// <summary>Log-softmax of every position's logits, [B][T][V], from the float64 reference forward.</summary>
    static double[][][] LogSoftmax(ModelConfig c, WeightSet w) =>
        LlamaReference.Forward(c, w, Ids(c), Mask(), Positions()).Select(row => row.Select(logits =>
        {
            var max = logits.Max();
            var lse = max + Math.Log(logits.Sum(v => Math.Exp(v - max)));
            return logits.Select(v => v - lse).ToArray();
        }).ToArray()).ToArray();

    /// <summary>log π(ids[t+1] | ids[..t]) per row, [B][T−1].</summary>
    static double[][] TokenLogProbs(ModelConfig c, double[][][] logSoftmax)
    {
        var ids = Ids(c);
        return logSoftmax.Select((row, b) => Enumerable.Range(0, Actions).Select(t => row[t][ids[b][t + 1]]).ToArray()).ToArray();
    }

    /// <summary>Σ over response positions of KL(π(·|ctx) ‖ π_ref(·|ctx)), exact over the vocabulary.</summary>
    static double ExactKl(double[][][] policy, double[][][] reference)
    {
        var mask = ResponseMask();
        double kl = 0;
        for (var b = 0; b < Rows.Length; b++)
            for (var t = 0; t < Actions; t++)
                if (mask[b][t])
                    for (var v = 0; v < policy[b][t].Length; v++)
                        kl += Math.Exp(policy[b][t][v]) * (policy[b][t][v] - reference[b][t][v]);
        return kl;
    }

    /// <summary>One PPO update of <paramref name="start"/> with the stage's rewards, GAE and whitening at β; returns the updated weights.</summary>
    static WeightSet OneUpdate(ModelConfig c, WeightSet start, double[][] logProbs, double[][] refLogProbs, double beta)
    {
        var mask = ResponseMask();
        var advantages = new List<double[]>();
        for (var b = 0; b < Rows.Length; b++)
        {
            var kl = PpoMath.TokenKl(logProbs[b], refLogProbs[b], mask[b], KlEstimator.K1);
            var rewards = PpoMath.TokenRewards(kl, mask[b], beta, score: 0);
            advantages.Add(PpoMath.Gae(rewards, new double[Actions], mask[b], gamma: 1, lambda: 0).Advantages);
        }
        var whitened = PpoMath.MaskedWhiten(advantages, mask);
        var ids = Ids(c);
        var batch = new TrainingBatch
        {
            ["input_ids"] = BatchTensor.Of(ids.SelectMany(r => r).ToArray(), Rows.Length, Seq),
            ["attention_mask"] = BatchTensor.Of(Mask().SelectMany(r => r).ToArray(), Rows.Length, Seq),
            ["position_ids"] = BatchTensor.Of(Positions().SelectMany(r => r).ToArray(), Rows.Length, Seq),
            [Ppo.OldLogProbsInput] = BatchTensor.Of(logProbs.SelectMany((r, b) => r.Select((v, t) => mask[b][t] ? (float)v : 0f)).ToArray(), Rows.Length, Actions),
            [Ppo.AdvantagesInput] = BatchTensor.Of(whitened.SelectMany(r => r.Select(v => (float)v)).ToArray(), Rows.Length, Actions),
            [Ppo.ResponseMaskInput] = BatchTensor.Of(mask.SelectMany(r => r.Select(m => m ? 1L : 0L)).ToArray(), Rows.Length, Actions),
        };
        var trainable = start.ToDictionary(kv => kv.Key, kv => new WeightTensor(kv.Value.Shape, (float[])kv.Value.Data.Clone()), StringComparer.Ordinal);
        using var trainer = new Trainer(Ppo.PolicyGraph(c), Ppo.LossOutput, trainable, new Dictionary<string, WeightTensor>(),
            Ppo.PolicyOptions(new TrainerOptions { LearningRate = 1e-3 }));
        trainer.Step(batch, Ct);
        var updated = new WeightSet();
        foreach (var (name, tensor) in trainer.TrainableWeights()) updated[name] = tensor;
        return updated;
    }

    /// <summary>A policy that drifted from the reference: a quarter of the way to other random weights.</summary>
    static WeightSet Drifted(WeightSet reference, WeightSet other)
    {
        var drifted = new WeightSet();
        foreach (var (name, r) in reference)
            drifted[name] = new WeightTensor(r.Shape, r.Data.Select((v, i) => v + 0.25f * (other[name].Data[i] - v)).ToArray());
        return drifted;
    }

    /// <summary>The exact KL to the reference before and after one update at <paramref name="beta"/>.</summary>
    static (double Before, double After) KlAroundOneUpdate(double beta)
    {
        var (c, reference, policy) = Models.Value;
        var refLogSoftmax = LogSoftmax(c, reference);
        var before = LogSoftmax(c, policy);
        var updated = OneUpdate(c, policy, TokenLogProbs(c, before), TokenLogProbs(c, refLogSoftmax), beta);
        return (ExactKl(before, refLogSoftmax), ExactKl(LogSoftmax(c, updated), refLogSoftmax));
    }

    [Fact]
    public void One_update_with_a_huge_kl_coefficient_lowers_the_exact_kl_to_the_reference()
    {
        var (before, after) = KlAroundOneUpdate(beta: 1000);
        TestContext.Current.TestOutputHelper?.WriteLine($"exact KL over the response positions: {before:F4} → {after:F4}");
        Assert.True(before > 0.01, $"the drifted policy should differ from the reference (KL {before})");
        Assert.True(after < before, $"KL {before} → {after}");
    }

    [Fact]
    public void With_no_penalty_and_no_score_the_update_leaves_the_policy_where_it_was()
    {
        // β = 0: every reward is 0, so every advantage is 0 — whitened they stay 0 (their variance is 0).
        var (before, after) = KlAroundOneUpdate(beta: 0);
        Assert.Equal(before, after, 6);
    }
}
