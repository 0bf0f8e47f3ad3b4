using System.Diagnostics;
using System.Numerics.Tensors;

namespace RlaifOnnx.Bench;

/// <summary>
/// Memory bandwidth as STREAM measures it (McCalpin), over a range of working-set sizes: the triad
/// a[i] = b[i] + s·c[i] (3 × 4 bytes counted per element; write-allocate traffic not counted, as in STREAM)
/// and a plain read (a sum, 4 bytes per element), split across all cores, best of several passes after a
/// warm-up pass that also faults the pages in. A figure is only main memory's once the working set is well
/// beyond the last-level cache; on a VM the cache size the CPU reports may not say how much of it this
/// guest really gets, so the sweep shows where the figures fall to DRAM speed instead of trusting it.
/// </summary>
public static class MemoryBandwidth
{
    /// <summary>One size of the sweep: bytes touched per pass (all buffers together) and the best GB/s of each kernel.</summary>
    public sealed record Point(long WorkingSetBytes, double TriadBytesPerSecond, double ReadBytesPerSecond);

    /// <summary>Working sets from cache-sized to several times the 100M model's weights (bytes of all buffers together).</summary>
    public static long[] Sizes(bool quick) => quick
        ? [8L << 20, 64L << 20, 1024L << 20]
        : [8L << 20, 32L << 20, 128L << 20, 768L << 20, 1536L << 20, 3072L << 20];

    /// <summary>
    /// The sweep over <see cref="Sizes"/> and <paramref name="alsoBytes"/> (e.g. a model's weights), smallest first:
    /// several rounds over all sizes, best per size, so a burst of other work on a shared machine hits every size
    /// alike instead of spoiling one.
    /// </summary>
    public static List<Point> Sweep(bool quick, long alsoBytes)
    {
        var sizes = Sizes(quick).Append(alsoBytes).Distinct().Order().ToArray();
        var best = sizes.Select(s => new Point(s, 0, 0)).ToArray();
        for (var round = 0; round < (quick ? 1 : 3); round++)
            for (var i = 0; i < sizes.Length; i++)
                best[i] = best[i] with
                {
                    TriadBytesPerSecond = Math.Max(best[i].TriadBytesPerSecond, Triad(sizes[i])),
                    ReadBytesPerSecond = Math.Max(best[i].ReadBytesPerSecond, Read(sizes[i])),
                };
        GC.Collect();   // the buffers (up to 3 GB) go back before the next benchmark
        return best.ToList();
    }

    /// <summary>Markdown: the sweep as a table, marking one size.</summary>
    public static string Table(IEnumerable<Point> sweep, long markedBytes, string mark) =>
        "| working set | triad GB/s | read GB/s |\n|---|---:|---:|\n" + string.Join("\n", sweep.Select(p =>
            $"| {p.WorkingSetBytes / 1e6:F0} MB{(p.WorkingSetBytes == markedBytes ? $" ({mark})" : "")} | {p.TriadBytesPerSecond / 1e9:F1} | {p.ReadBytesPerSecond / 1e9:F1} |"));

    /// <summary>Triad over three buffers of workingSetBytes / 3 each; bytes per second.</summary>
    public static double Triad(long workingSetBytes)
    {
        GC.Collect();   // the previous size's buffers first: the process holds one size at a time
        var n = (int)(workingSetBytes / 3 / sizeof(float));
        float[] a = new float[n], b = new float[n], c = new float[n];
        for (var i = 0; i < n; i++) { b[i] = i; c[i] = 1; }
        var seconds = BestOf(Passes(workingSetBytes), n, (_, start, length) =>
            TensorPrimitives.MultiplyAdd(c.AsSpan(start, length), 3f, b.AsSpan(start, length), a.AsSpan(start, length)));
        GC.KeepAlive(a);
        return 3.0 * sizeof(float) * n / seconds;
    }

    /// <summary>Sum over one buffer of workingSetBytes: reads only, as a decoder step reads its weights; bytes per second.</summary>
    public static double Read(long workingSetBytes)
    {
        GC.Collect();
        var n = (int)Math.Min(workingSetBytes / sizeof(float), Array.MaxLength);
        var a = new float[n];
        for (var i = 0; i < n; i++) a[i] = i & 7;
        var sink = new float[Environment.ProcessorCount];
        var seconds = BestOf(Passes(workingSetBytes), n, (part, start, length) =>
            sink[part] += TensorPrimitives.Sum<float>(a.AsSpan(start, length)));   // kept so the sum is not dropped
        GC.KeepAlive(sink);
        return (double)sizeof(float) * n / seconds;
    }

    /// <summary>More passes for small sets so each size is timed over a similar amount of traffic.</summary>
    static int Passes(long workingSetBytes) => (int)Math.Clamp((4L << 30) / workingSetBytes, 8, 400);

    static double BestOf(int passes, int n, Action<int, int, int> kernel)
    {
        var parts = Environment.ProcessorCount;
        var chunk = (n + parts - 1) / parts;
        void Pass() => Parallel.For(0, parts, p =>
        {
            var start = p * chunk;
            var length = Math.Min(chunk, n - start);
            if (length > 0) kernel(p, start, length);
        });
        Pass();
        var best = double.MaxValue;
        for (var rep = 0; rep < passes; rep++)
        {
            var sw = Stopwatch.StartNew();
            Pass();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return best;
    }
}
