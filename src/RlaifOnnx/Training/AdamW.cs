using System.Numerics;
using System.Numerics.Tensors;

namespace RlaifOnnx.Training;

/// <summary>AdamW hyper-parameters (Loshchilov &amp; Hutter 2019; PyTorch's defaults apart from the weight decay).</summary>
public sealed record AdamWOptions(double Beta1 = 0.9, double Beta2 = 0.999, double Epsilon = 1e-8, double WeightDecay = 0.0);

/// <summary>
/// AdamW with decoupled weight decay over the <see cref="Parameter"/> buffers, in place, in one fused
/// SIMD pass per tensor. Update at step t (PyTorch's torch.optim.AdamW):
/// w ← w·(1 − lr·λ); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
/// w ← w − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε).
/// </summary>
public sealed class AdamW(IReadOnlyList<Parameter> parameters, AdamWOptions options)
{
    readonly float[][] _m = parameters.Select(p => new float[p.Weight.Length]).ToArray();
    readonly float[][] _v = parameters.Select(p => new float[p.Weight.Length]).ToArray();

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
        // Parameters are independent: update them in parallel (each one's result does not depend on the split).
        Parallel.For(0, Parameters.Count, i => Update(Parameters[i].Weight, Parameters[i].Gradient, _m[i], _v[i],
            decay, (float)b1, (float)(1 - b1), (float)b2, (float)(1 - b2), stepSize, inverseSqrtCorrection2, (float)Options.Epsilon));
    }

    /// <summary>
    /// One fused pass over a tensor (reading w, g, m, v once and writing w, m, v once): the optimizer step
    /// is memory-bound, and separate TensorPrimitives passes would stream every buffer ten times.
    /// 1 − β is passed in (computed in double): in float, 1 − 0.999f loses three digits.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static void Update(Span<float> w, ReadOnlySpan<float> g, Span<float> m, Span<float> v,
        float decay, float b1, float oneMinusB1, float b2, float oneMinusB2, float stepSize, float inverseSqrtCorrection2, float epsilon)
    {
        var i = 0;
        var width = Vector<float>.Count;
        if (Vector.IsHardwareAccelerated)
        {
            Vector<float> vb1 = new(b1), vc1 = new(oneMinusB1), vb2 = new(b2), vc2 = new(oneMinusB2);
            Vector<float> vDecay = new(decay), vStep = new(stepSize), vCorrection = new(inverseSqrtCorrection2), vEps = new(epsilon);
            for (; i <= w.Length - width; i += width)
            {
                var gi = new Vector<float>(g[i..]);
                var mi = vb1 * new Vector<float>(m[i..]) + vc1 * gi;
                var vi = vb2 * new Vector<float>(v[i..]) + vc2 * (gi * gi);
                var denominator = Vector.SquareRoot(vi) * vCorrection + vEps;
                var wi = new Vector<float>(w[i..]) * vDecay - vStep * (mi / denominator);
                mi.CopyTo(m[i..]);
                vi.CopyTo(v[i..]);
                wi.CopyTo(w[i..]);
            }
        }
        for (; i < w.Length; i++)
        {
            var gi = g[i];
            var mi = m[i] = b1 * m[i] + oneMinusB1 * gi;
            var vi = v[i] = b2 * v[i] + oneMinusB2 * (gi * gi);
            w[i] = w[i] * decay - stepSize * (mi / (MathF.Sqrt(vi) * inverseSqrtCorrection2 + epsilon));
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
