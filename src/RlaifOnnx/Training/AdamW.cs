using System.Numerics.Tensors;

namespace RlaifOnnx.Training;

/// <summary>AdamW hyper-parameters (Loshchilov &amp; Hutter 2019; PyTorch's defaults apart from the weight decay).</summary>
public sealed record AdamWOptions(double Beta1 = 0.9, double Beta2 = 0.999, double Epsilon = 1e-8, double WeightDecay = 0.0);

/// <summary>
/// AdamW with decoupled weight decay over the <see cref="Parameter"/> buffers, in place and vectorised
/// with TensorPrimitives. Update at step t (PyTorch's torch.optim.AdamW):
/// w ← w·(1 − lr·λ); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
/// w ← w − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε).
/// </summary>
public sealed class AdamW(IReadOnlyList<Parameter> parameters, AdamWOptions options)
{
    readonly float[][] _m = parameters.Select(p => new float[p.Weight.Length]).ToArray();
    readonly float[][] _v = parameters.Select(p => new float[p.Weight.Length]).ToArray();
    readonly float[] _scratch = new float[parameters.Count == 0 ? 0 : parameters.Max(p => p.Weight.Length)];

    public AdamWOptions Options { get; } = options;
    public IReadOnlyList<Parameter> Parameters { get; } = parameters;
    /// <summary>Updates taken so far (t of the bias corrections).</summary>
    public long StepCount { get; private set; }
    public IReadOnlyList<float[]> FirstMoments => _m;
    public IReadOnlyList<float[]> SecondMoments => _v;

    /// <summary>Applies one update with learning rate <paramref name="learningRate"/> to every parameter.</summary>
    public void Step(double learningRate)
    {
        StepCount++;
        var (b1, b2) = (Options.Beta1, Options.Beta2);
        var biasCorrection1 = 1 - Math.Pow(b1, StepCount);
        var biasCorrection2 = 1 - Math.Pow(b2, StepCount);
        var decay = (float)(1 - learningRate * Options.WeightDecay);
        var stepSize = (float)(learningRate / biasCorrection1);
        var inverseSqrtCorrection2 = (float)(1 / Math.Sqrt(biasCorrection2));
        for (var i = 0; i < Parameters.Count; i++)
        {
            var w = Parameters[i].Weight.AsSpan();
            ReadOnlySpan<float> g = Parameters[i].Gradient;
            var m = _m[i].AsSpan();
            var v = _v[i].AsSpan();
            var tmp = _scratch.AsSpan(0, w.Length);
            if (decay != 1f) TensorPrimitives.Multiply(w, decay, w);
            TensorPrimitives.Multiply(m, (float)b1, m);
            TensorPrimitives.MultiplyAdd(g, (float)(1 - b1), m, m);
            TensorPrimitives.Multiply(g, g, tmp);
            TensorPrimitives.Multiply(v, (float)b2, v);
            TensorPrimitives.MultiplyAdd(tmp, (float)(1 - b2), v, v);
            TensorPrimitives.Sqrt(v, tmp);
            TensorPrimitives.Multiply(tmp, inverseSqrtCorrection2, tmp);
            TensorPrimitives.Add(tmp, (float)Options.Epsilon, tmp);
            TensorPrimitives.Divide(m, tmp, tmp);
            TensorPrimitives.MultiplyAdd(tmp, -stepSize, w, w);
        }
    }

    /// <summary>Restores moments and step count (checkpoint resume).</summary>
    public void Restore(long stepCount, IReadOnlyList<float[]> firstMoments, IReadOnlyList<float[]> secondMoments)
    {
        for (var i = 0; i < _m.Length; i++)
        {
            firstMoments[i].CopyTo(_m[i], 0);
            secondMoments[i].CopyTo(_v[i], 0);
        }
        StepCount = stepCount;
    }
}

/// <summary>Global-norm gradient clipping (Pascanu et al. 2013), as torch.nn.utils.clip_grad_norm_.</summary>
public static class GradientClipping
{
    /// <summary>√(Σ over all parameters of Σ g²), accumulated in double.</summary>
    public static double GlobalNorm(IReadOnlyList<Parameter> parameters)
    {
        var sum = 0.0;
        foreach (var p in parameters)
        {
            var norm = (double)TensorPrimitives.Norm<float>(p.Gradient);
            sum += norm * norm;
        }
        return Math.Sqrt(sum);
    }

    /// <summary>Scales every gradient by maxNorm / norm when the global norm exceeds maxNorm; returns the norm before clipping.</summary>
    public static double ClipByGlobalNorm(IReadOnlyList<Parameter> parameters, double maxNorm)
    {
        var norm = GlobalNorm(parameters);
        if (norm > maxNorm && norm > 0)
        {
            var scale = (float)(maxNorm / (norm + 1e-6));
            foreach (var p in parameters) TensorPrimitives.Multiply(p.Gradient, scale, p.Gradient);
        }
        return norm;
    }
}
