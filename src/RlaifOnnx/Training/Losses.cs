using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Training;

/// <summary>The PPO policy loss and the diagnostics that come with it (all scalars).</summary>
public sealed record PpoPolicyTerms(string Loss, string ClipFraction, string ApproxKl);

/// <summary>
/// Losses as ONNX subgraphs appended to a forward graph: each takes and returns value names of a
/// <see cref="GraphBuilder"/>, so a stage composes them (e.g. PPO = policy loss + c·value loss − β·entropy)
/// and then hands the graph to <see cref="Autodiff.GradientBuilder"/>. Masks may be any numeric type (cast to the
/// graph's float type); a mask of 1 selects a position. Means over masks divide by max(Σmask, 1) so an
/// all-zero mask gives 0, not NaN.
/// </summary>
public static class Losses
{
    /// <summary>A builder holding a copy of <paramref name="forward"/>'s graph, for appending losses to it.</summary>
    public static GraphBuilder Extend(ModelProto forward, string prefix = "loss/")
    {
        var floatType = forward.Graph.Output.Select(o => (DataType)o.Type.TensorType.ElemType)
            .FirstOrDefault(t => t is DataType.Float or DataType.Double, DataType.Float);
        var g = new GraphBuilder(forward.Graph.Name, floatType) { NamePrefix = prefix };
        g.Graph.Input.AddRange(forward.Graph.Input.Select(i => i.Clone()));
        g.Graph.Output.AddRange(forward.Graph.Output.Select(i => i.Clone()));
        g.Graph.Initializer.AddRange(forward.Graph.Initializer.Select(t => t.Clone()));
        g.Graph.Node.AddRange(forward.Graph.Node.Select(n => n.Clone()));
        g.Graph.ValueInfo.AddRange(forward.Graph.ValueInfo.Select(v => v.Clone()));
        return g;
    }

    /// <summary>Σ over all elements, as a scalar.</summary>
    public static string SumAll(GraphBuilder g, string x) => g.Op("ReduceSum", [x], ("keepdims", 0L));

    /// <summary>Σ(x·mask) / max(Σmask, 1), a scalar.</summary>
    public static string MaskedMean(GraphBuilder g, string x, string mask)
    {
        var m = g.Cast(mask, g.FloatType);
        var count = g.Op("Max", [SumAll(g, m), g.Scalar(1)]);
        return g.Div(SumAll(g, g.Mul(x, m)), count);
    }

    /// <summary>Mean over all elements, a scalar.</summary>
    public static string Mean(GraphBuilder g, string x) => g.Op("ReduceMean", [x], ("keepdims", 0L));

    /// <summary>log p(actions[b,t]) under softmax(logits[b,t,:]). logits [B,T,V], actions [B,T] int64 → [B,T].</summary>
    public static string TokenLogProbs(GraphBuilder g, string logits, string actions)
        => PickedLogProbs(g, g.LogSoftmax(logits, -1), actions);

    /// <summary>
    /// logProbs[b, t, actions[b,t]]: logProbs [B,T,V] (a LogSoftmax over the vocabulary), actions [B,T] int64 → [B,T].
    /// </summary>
    /// <remarks>
    /// LogSoftmax, not logits[action] − ReduceLogSumExp(logits): ONNX Runtime runs LogSoftmax with its
    /// vectorised softmax kernel and ReduceLogSumExp with a generic reduction, 9× slower on a [2048, 32000]
    /// block of logits (0.18 s of a 100M model's training step). The backward never builds a one-hot tensor:
    /// the gradient of the pick stays sparse (GatherElements' rule) and LogSoftmax's rule for a sparse
    /// gradient is one Softmax, one Mul and a scatter of one value per row.
    /// </remarks>
    public static string PickedLogProbs(GraphBuilder g, string logProbs, string actions)
        => g.Squeeze(g.GatherElements(logProbs, g.Unsqueeze(actions, -1), -1), -1);

    /// <summary>log p(ids[b,t+1] | ids[b,≤t]): logits [B,T,V], inputIds [B,T] → [B,T−1].</summary>
    public static string ShiftedTokenLogProbs(GraphBuilder g, string logits, string inputIds)
        => ShiftedPickedLogProbs(g, g.LogSoftmax(logits, -1), inputIds);

    /// <summary>log p(ids[b,t+1] | ids[b,≤t]) read from log-probs [B,T,V] (a LogSoftmax over the vocabulary) → [B,T−1].</summary>
    public static string ShiftedPickedLogProbs(GraphBuilder g, string logProbs, string inputIds)
    {
        // Gather on the full [B,T,V] log-probs with the targets shifted left (the last position gets a
        // dummy target), then drop the last position: no [B,T−1,V] copy of the log-probs, forward or backward.
        var targets = g.Concat(1, ShiftLeft(g, inputIds, false), g.Slice(inputIds, [0], [1], [1]));   // [B,T]
        return ShiftLeft(g, PickedLogProbs(g, logProbs, targets), true);                              // [B,T-1]
    }

    /// <summary>x[:, :-1] (dropLast) or x[:, 1:], along axis 1.</summary>
    public static string ShiftLeft(GraphBuilder g, string x, bool dropLast)
        => dropLast ? g.Slice(x, [0], [-1], [1]) : g.Slice(x, [1], [long.MaxValue], [1]);

    /// <summary>
    /// Causal-LM cross-entropy, mean over the selected target tokens: the logits at t predict ids[t+1];
    /// <paramref name="lossMask"/> [B,T] marks which tokens are targets (1 for response tokens, 0 for
    /// prompt and padding) — its first column is never a target. Returns a scalar.
    /// </summary>
    public static string CausalLmCrossEntropy(GraphBuilder g, string logits, string inputIds, string lossMask)
    {
        var logProbs = ShiftedTokenLogProbs(g, logits, inputIds);                 // [B,T-1]
        var targetMask = ShiftLeft(g, lossMask, false);                           // [B,T-1]
        return g.Neg(MaskedMean(g, logProbs, targetMask));
    }

    /// <summary>
    /// logits / T, the logits of the distribution sampling at temperature T draws from; T = 1 adds no node.
    /// (Multiplying by 1/T gives the same values and its gradient rule is the plain Mul one.)
    /// </summary>
    public static string Tempered(GraphBuilder g, string logits, double temperature)
    {
        if (!(temperature > 0) || double.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "the temperature must be positive and finite");
        return temperature == 1.0 ? logits : g.Mul(logits, g.Scalar(1.0 / temperature));
    }

    /// <summary>Entropy of softmax(logits) over the last axis: [B,T,V] → [B,T].</summary>
    public static string Entropy(GraphBuilder g, string logits) => EntropyOfLogProbs(g, g.LogSoftmax(logits, -1));

    /// <summary>Entropy −Σ p·log p over the last axis from log-probs [B,T,V] (a LogSoftmax over the vocabulary) → [B,T].</summary>
    /// <remarks>
    /// p = Softmax(log p) (softmax is shift-invariant, so this is softmax of the logits) and the sum a batched dot
    /// product (MatMul of p as [B,T,1,V] with log p as [B,T,V,1]): the only new tensor of the vocabulary's size is
    /// p, the same Softmax of the log-probs the token log-prob's gradient computes (ONNX Runtime merges the two),
    /// where Exp and Mul wrote two more.
    /// </remarks>
    public static string EntropyOfLogProbs(GraphBuilder g, string logProbs)
    {
        var expected = g.MatMul(g.Unsqueeze(g.Softmax(logProbs, -1), -2), g.Unsqueeze(logProbs, -1));     // [B,T,1,1]: Σ p·log p
        return g.Neg(g.Squeeze(expected, -2, -1));
    }

    /// <summary>
    /// softplus(x) = log(1 + eˣ), computed as max(x,0) + log(1 + e^−|x|) so it never overflows. |x| is written
    /// as where(x &gt; 0, x, −x) so that at x = 0 both pieces take the x ≤ 0 branch and the gradient is
    /// softplus′(0) = ½: with Abs and Relu, each of whose gradients is 0 at 0, it came out 0 there — and a DPO
    /// run starts exactly there (policy = reference, so every log-ratio difference is 0).
    /// </summary>
    public static string Softplus(GraphBuilder g, string x)
    {
        var abs = g.Where(g.Greater(x, g.Scalar(0)), x, g.Neg(x));
        return g.Add(g.Op("Relu", [x]), g.Log(g.Add(g.Scalar(1), g.Exp(g.Neg(abs)))));
    }

    /// <summary>log σ(x) = −softplus(−x).</summary>
    public static string LogSigmoid(GraphBuilder g, string x) => g.Neg(Softplus(g, g.Neg(x)));

    /// <summary>
    /// Soft-label preference loss, mean over the batch: −[p·log σ(r_a − r_b) + (1 − p)·log σ(r_b − r_a)],
    /// with rewards r_a, r_b [B] and p [B] the probability that a is preferred. For p ∈ {0, 1} it is the
    /// Bradley–Terry loss −log σ(r_good − r_bad) (Constitutional AI §4.1 trains on soft labels).
    /// </summary>
    public static string PreferenceLoss(GraphBuilder g, string rewardA, string rewardB, string probA)
    {
        var margin = g.Sub(rewardA, rewardB);                                    // [B]
        var p = g.Cast(probA, g.FloatType);
        var perPair = g.Add(g.Mul(p, Softplus(g, g.Neg(margin))), g.Mul(g.Sub(g.Scalar(1), p), Softplus(g, margin)));
        return Mean(g, perPair);
    }

    /// <summary>Mean squared error over the masked positions (all positions when <paramref name="mask"/> is null).</summary>
    public static string MseLoss(GraphBuilder g, string prediction, string target, string? mask = null)
    {
        var diff = g.Sub(prediction, g.Cast(target, g.FloatType));
        var squared = g.Mul(diff, diff);
        return mask is null ? Mean(g, squared) : MaskedMean(g, squared, mask);
    }

    /// <summary>
    /// PPO's clipped surrogate (Schulman et al. 2017, eq. 7) as a loss to minimise:
    /// mean over masked tokens of max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)), ρ = exp(logπ − logπ_old).
    /// Also TRL's diagnostics: pg_clipfrac, the fraction of tokens where the clipped term is the larger one
    /// (the clip binds and the token's gradient is cut), and approxkl, ½·mean((log ρ)²).
    /// </summary>
    public static PpoPolicyTerms PpoPolicyLoss(GraphBuilder g, string logProbs, string oldLogProbs, string advantages, string mask, double clipEpsilon)
    {
        var logRatio = g.Sub(logProbs, oldLogProbs);
        var ratio = g.Exp(logRatio);
        var unclipped = g.Neg(g.Mul(advantages, ratio));
        var clippedRatio = g.Op("Clip", [ratio, g.Scalar(1 - clipEpsilon), g.Scalar(1 + clipEpsilon)]);
        var clipped = g.Neg(g.Mul(advantages, clippedRatio));
        var loss = MaskedMean(g, g.Op("Max", [unclipped, clipped]), mask);
        var clipBinds = g.Cast(g.Greater(clipped, unclipped), g.FloatType);
        var clipFraction = MaskedMean(g, clipBinds, mask);
        var approxKl = g.Mul(g.Scalar(0.5), MaskedMean(g, g.Mul(logRatio, logRatio), mask));
        return new PpoPolicyTerms(loss, clipFraction, approxKl);
    }

    /// <summary>
    /// PPO's clipped value loss: ½ · mean over masked positions of max((v − R)², (v_clip − R)²) with
    /// v_clip = v_old + clip(v − v_old, −ε, ε).
    /// </summary>
    public static string PpoValueLoss(GraphBuilder g, string values, string oldValues, string returns, string mask, double clipEpsilon)
    {
        var clippedValues = g.Add(oldValues, g.Op("Clip", [g.Sub(values, oldValues), g.Scalar(-clipEpsilon), g.Scalar(clipEpsilon)]));
        var error = g.Sub(values, returns);
        var clippedError = g.Sub(clippedValues, returns);
        var worst = g.Op("Max", [g.Mul(error, error), g.Mul(clippedError, clippedError)]);
        return g.Mul(g.Scalar(0.5), MaskedMean(g, worst, mask));
    }
}
