using RlaifOnnx.Core;

namespace RlaifOnnx.Models;

/// <summary>One weight: its shape and float32 values in row-major order.</summary>
public sealed record WeightTensor(long[] Shape, float[] Data)
{
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A model's weights by canonical name (<see cref="WeightNames"/>). <see cref="CheckAgainst(ModelConfig, string)"/> proves a
/// set is complete and correctly shaped for a config before any graph is built from it.
/// </summary>
public sealed class WeightSet : Dictionary<string, WeightTensor>
{
    public WeightSet() : base(StringComparer.Ordinal) { }

    /// <summary>Throws a <see cref="UserError"/> naming <paramref name="source"/> on a missing, extra or misshapen weight.</summary>
    public void CheckAgainst(ModelConfig config, string source) => CheckAgainst(WeightNames.Shapes(config), source);

    /// <summary>
    /// Throws a <see cref="UserError"/> naming <paramref name="source"/> unless this set holds exactly the
    /// <paramref name="expected"/> names with those shapes (e.g. a preference model's, which add score.weight).
    /// </summary>
    public void CheckAgainst(IReadOnlyDictionary<string, long[]> expected, string source)
    {
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
            else if (!name.EndsWith(".bias")) FillGaussian(rng, data, 0.02);
            set[name] = new WeightTensor(shape, data);
        }
        return set;
    }

    /// <summary>Normal(0, std) values by Box–Muller, using both values of each pair.</summary>
    internal static void FillGaussian(Random rng, float[] data, double std)
    {
        for (var i = 0; i < data.Length; i += 2)
        {
            var radius = std * Math.Sqrt(-2.0 * Math.Log(1.0 - rng.NextDouble()));
            var (sin, cos) = Math.SinCos(2 * Math.PI * rng.NextDouble());
            data[i] = (float)(radius * cos);
            if (i + 1 < data.Length) data[i + 1] = (float)(radius * sin);
        }
    }
}
