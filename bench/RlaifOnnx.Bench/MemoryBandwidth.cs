using System.Diagnostics;

namespace RlaifOnnx.Bench;

/// <summary>
/// Main-memory bandwidth as STREAM's triad measures it (McCalpin): a[i] = b[i] + s·c[i] over buffers far larger
/// than the caches, split across all cores, 3 × 4 bytes counted per element (write-allocate traffic not counted,
/// as in STREAM), best of 5 after a warm-up pass that also faults the pages in.
/// </summary>
public static class MemoryBandwidth
{
    public static long BufferBytes(bool quick) => quick ? 64L << 20 : 256L << 20;

    public static double Triad(bool quick)
    {
        var n = (int)(BufferBytes(quick) / sizeof(float));
        float[] a = new float[n], b = new float[n], c = new float[n];
        for (var i = 0; i < n; i++) { b[i] = i; c[i] = 1; }
        var parts = Environment.ProcessorCount;
        var chunk = (n + parts - 1) / parts;
        void Pass() => Parallel.For(0, parts, p =>
        {
            var start = p * chunk;
            var length = Math.Min(chunk, n - start);
            if (length <= 0) return;
            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(c.AsSpan(start, length), 3f, b.AsSpan(start, length), a.AsSpan(start, length));
        });
        Pass();
        var best = double.MaxValue;
        for (var rep = 0; rep < 5; rep++)
        {
            var sw = Stopwatch.StartNew();
            Pass();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return 3.0 * sizeof(float) * n / best;
    }
}
