namespace RlaifOnnx.Models;

/// <summary>One weight: its shape and float32 values in row-major order.</summary>
public sealed record WeightTensor(long[] Shape, float[] Data)
{
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A model's weights by canonical name (<see cref="WeightNames"/>). <see cref="CheckAgainst"/> proves a
/// set is complete and correctly shaped for a config before any graph is built from it.
/// </summary>
public sealed class WeightSet : Dictionary<string, WeightTensor>
{
    public WeightSet() : base(StringComparer.Ordinal) { }

    /// <summary>Throws a <see cref="UserError"/> naming <paramref name="source"/> on a missing, extra or misshapen weight.</summary>
    public void CheckAgainst(ModelConfig config, string source)
    {
        var expected = WeightNames.Shapes(config);
        foreach (var (name, shape) in expected)
        {
            if (!TryGetValue(name, out var w)) throw UserError.At(source, null, name, "weight is missing");
            if (!w.Shape.SequenceEqual(shape))
                throw UserError.At(source, null, name, $"shape [{string.Join(",", w.Shape)}] does not match the config's [{string.Join(",", shape)}]");
            if (w.Data.Length != w.Count) throw UserError.At(source, null, name, $"holds {w.Data.Length} values for shape [{string.Join(",", w.Shape)}]");
        }
        foreach (var name in Keys)
            if (!expected.ContainsKey(name)) throw UserError.At(source, null, name, "weight is not part of this architecture");
    }

    /// <summary>Random weights as Hugging Face initialises them: normal(0, 0.02) for matrices, ones for norm scales, zeros for biases.</summary>
    public static WeightSet Random(ModelConfig config, int seed)
    {
        var rng = new Random(seed);
        var set = new WeightSet();
        foreach (var (name, shape) in WeightNames.Shapes(config).OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var count = (int)shape.Aggregate(1L, (a, b) => a * b);
            var data = new float[count];
            var isNorm = name.Contains("norm") || name.Contains("ln_");
            if (isNorm && name.EndsWith(".weight")) Array.Fill(data, 1f);
            else if (!name.EndsWith(".bias"))
                for (var i = 0; i < count; i++) data[i] = (float)(0.02 * Gaussian(rng));
            set[name] = new WeightTensor(shape, data);
        }
        return set;
    }

    static double Gaussian(Random rng)
    {
        // Box–Muller.
        var u1 = 1.0 - rng.NextDouble();
        var u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
