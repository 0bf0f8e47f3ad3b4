using System.Numerics.Tensors;

namespace RlaifOnnx.Training;

/// <summary>
/// AdamW settings, named and defaulted as torch.optim.AdamW. <see cref="MaxGradNorm"/> ≤ 0 turns global-norm
/// clipping off.
/// </summary>
public sealed record AdamWOptions
{
    public double LearningRate { get; init; } = 1e-3;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double Epsilon { get; init; } = 1e-8;
    /// <summary>Decoupled weight decay (Loshchilov &amp; Hutter 2019): w ← w·(1 − lr·λ) before the Adam update.</summary>
    public double WeightDecay { get; init; } = 0.01;
    /// <summary>Clip the gradients so their global L2 norm is at most this (torch.nn.utils.clip_grad_norm_); ≤ 0 = off.</summary>
    public double MaxGradNorm { get; init; } = 1.0;
}

/// <summary>One trainable tensor: the weight buffer ONNX Runtime reads and the gradient buffer it writes.</summary>
public sealed record Parameter(string Name, float[] Weight, float[] Gradient, bool Decay);

/// <summary>
/// AdamW exactly as torch.optim.AdamW (non-amsgrad, non-foreach semantics), in place over the buffers that
/// ONNX Runtime reads through OrtValues, so a step never copies a weight:
///   w ← w·(1 − lr·λ);  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
///   w ← w − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε).
/// Moments are float32 like torch's for float32 parameters; every loop is a TensorPrimitives call.
/// </summary>
public sealed class AdamW
{
    readonly AdamWOptions options;
    readonly float[] scratch;

    /// <summary>First moments by parameter name (torch's exp_avg).</summary>
    public Dictionary<string, float[]> FirstMoments { get; } = new(StringComparer.Ordinal);
    /// <summary>Second moments by parameter name (torch's exp_avg_sq).</summary>
    public Dictionary<string, float[]> SecondMoments { get; } = new(StringComparer.Ordinal);
    /// <summary>Updates taken so far (torch's per-parameter "step"; the same for every parameter here).</summary>
    public long StepCount { get; set; }

    public AdamW(IEnumerable<Parameter> parameters, AdamWOptions options)
    {
        this.options = options;
        var largest = 0;
        foreach (var p in parameters)
        {
            FirstMoments[p.Name] = new float[p.Weight.Length];
            SecondMoments[p.Name] = new float[p.Weight.Length];
            largest = Math.Max(largest, p.Weight.Length);
        }
        scratch = new float[largest];
    }

    /// <summary>One update of every parameter with learning rate <paramref name="lr"/> (the schedule's value for this step).</summary>
    public void Step(IReadOnlyList<Parameter> parameters, double lr)
    {
        StepCount++;
        var biasCorrection1 = 1 - Math.Pow(options.Beta1, StepCount);
        var biasCorrection2 = 1 - Math.Pow(options.Beta2, StepCount);
        var stepSize = (float)(lr / biasCorrection1);
        var inverseRootBc2 = (float)(1 / Math.Sqrt(biasCorrection2));
        var decay = (float)(1 - lr * options.WeightDecay);
        float b1 = (float)options.Beta1, b2 = (float)options.Beta2, eps = (float)options.Epsilon;
        foreach (var p in parameters)
        {
            Span<float> w = p.Weight, m = FirstMoments[p.Name], v = SecondMoments[p.Name];
            ReadOnlySpan<float> g = p.Gradient;
            var t = scratch.AsSpan(0, w.Length);
            if (p.Decay && options.WeightDecay != 0) TensorPrimitives.Multiply(w, decay, w);
            // m = β₁m + (1−β₁)g  (torch: exp_avg.lerp_(grad, 1−β₁))
            TensorPrimitives.Multiply(m, b1, m);
            TensorPrimitives.MultiplyAdd(g, 1 - b1, m, m);
            // v = β₂v + (1−β₂)g²
            TensorPrimitives.Multiply(g, g, t);
            TensorPrimitives.Multiply(v, b2, v);
            TensorPrimitives.MultiplyAdd(t, 1 - b2, v, v);
            // t = m / (√v/√(1−β₂ᵗ) + ε);  w −= stepSize·t
            TensorPrimitives.Sqrt(v, t);
            TensorPrimitives.Multiply(t, inverseRootBc2, t);
            TensorPrimitives.Add(t, eps, t);
            TensorPrimitives.Divide(m, t, t);
            TensorPrimitives.MultiplyAdd(t, -stepSize, w, w);
        }
    }
}

/// <summary>Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_ with norm_type 2).</summary>
public static class GradientClipping
{
    /// <summary>√(Σ over every tensor of Σg²), accumulated in double so large models do not lose precision.</summary>
    public static double GlobalNorm(IEnumerable<float[]> gradients)
    {
        double sum = 0;
        foreach (var g in gradients)
        {
            var n = TensorPrimitives.Norm(g);
            sum += (double)n * n;
        }
        return Math.Sqrt(sum);
    }

    /// <summary>
    /// Scales every gradient by min(1, maxNorm / (norm + 1e-6)) — torch's clip coefficient, applied only when
    /// it is below 1 — and returns the norm before clipping.
    /// </summary>
    public static double ClipByGlobalNorm(IReadOnlyList<float[]> gradients, double maxNorm)
    {
        var norm = GlobalNorm(gradients);
        if (maxNorm <= 0) return norm;
        var coefficient = maxNorm / (norm + 1e-6);
        if (coefficient < 1)
            foreach (var g in gradients) TensorPrimitives.Multiply(g, (float)coefficient, g);
        return norm;
    }
}

public enum ScheduleKind { Constant, Linear, Cosine }

/// <summary>
/// Learning-rate multipliers as Hugging Face transformers' get_{constant,linear,cosine}_schedule_with_warmup:
/// <see cref="Factor"/>(s) is the multiplier for the update after s completed updates (s = 0 for the first):
/// warm-up s/W for s &lt; W, then constant 1, linear (T − s)/(T − W), or cosine ½(1 + cos(π·p)) with
/// p = (s − W)/(T − W), floored at <see cref="MinRatio"/> (0 in Hugging Face).
/// </summary>
public sealed record LrSchedule(ScheduleKind Kind, int WarmupSteps, int TotalSteps, double MinRatio = 0)
{
    public double Factor(long step)
    {
        if (step < WarmupSteps) return (double)step / Math.Max(1, WarmupSteps);
        var decaySteps = Math.Max(1, TotalSteps - WarmupSteps);
        var progress = Math.Min(1.0, (double)(step - WarmupSteps) / decaySteps);
        var factor = Kind switch
        {
            ScheduleKind.Constant => 1.0,
            ScheduleKind.Linear => 1.0 - progress,
            ScheduleKind.Cosine => 0.5 * (1 + Math.Cos(Math.PI * progress)),
            _ => throw new ArgumentOutOfRangeException(nameof(Kind)),
        };
        return Kind == ScheduleKind.Constant ? factor : MinRatio + (1 - MinRatio) * factor;
    }

    public static ScheduleKind ParseKind(string name, string source) => name.ToLowerInvariant() switch
    {
        "constant" => ScheduleKind.Constant,
        "linear" => ScheduleKind.Linear,
        "cosine" => ScheduleKind.Cosine,
        _ => throw UserError.At(source, null, "schedule", $"'{name}' is not one of constant, linear, cosine"),
    };
}
