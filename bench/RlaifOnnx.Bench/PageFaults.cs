using System.Diagnostics;
using System.Runtime.InteropServices;

namespace RlaifOnnx.Bench;

/// <summary>
/// What the first touch of fresh memory costs here: a 64 MiB anonymous mapping written once per 4 KiB page,
/// with 4 KiB pages and with MADV_HUGEPAGE (what glibc asks for when its hugetlb tunable is set). With ONNX
/// Runtime's arena off, every large activation of a training step is such a fresh mapping.
/// </summary>
public static class PageFaults
{
    const int ProtReadWrite = 0x3, MapPrivateAnonymous = 0x02 | 0x20, MadvHugePage = 14;
    const long Bytes = 64L << 20;

    public static string Section()
    {
        if (!OperatingSystem.IsLinux()) return "";
        var small = Microseconds(huge: false);
        var huge = Microseconds(huge: true);
        return $"""
            First touch of fresh memory on this machine (a 64 MiB anonymous mapping written once per 4 KiB page, best of 5):
            {small:F2} µs per 4 KiB page with 4 KiB pages, {huge:F2} µs per 4 KiB of memory with 2 MiB pages (MADV_HUGEPAGE):
            a fresh 16 MiB activation ([2048, 2048] float32) costs {small * 4096 / 1000:F1} ms or {huge * 4096 / 1000:F1} ms before any arithmetic.

            """;
    }

    /// <summary>Best of 5: microseconds per 4 KiB page to fault in (and zero) a fresh anonymous mapping.</summary>
    static double Microseconds(bool huge)
    {
        var best = double.MaxValue;
        for (var round = 0; round < 5; round++)
        {
            var p = Mmap(IntPtr.Zero, (nuint)Bytes, ProtReadWrite, MapPrivateAnonymous, -1, 0);
            if (p == new IntPtr(-1)) return double.NaN;
            try
            {
                if (huge) _ = Madvise(p, (nuint)Bytes, MadvHugePage);
                var clock = Stopwatch.StartNew();
                unsafe
                {
                    var bytes = (byte*)p;
                    for (long i = 0; i < Bytes; i += 4096) bytes[i] = 1;
                }
                best = Math.Min(best, clock.Elapsed.TotalMicroseconds / (Bytes / 4096));
            }
            finally { _ = Munmap(p, (nuint)Bytes); }
        }
        return best;
    }

    [DllImport("libc.so.6", EntryPoint = "mmap")] static extern IntPtr Mmap(IntPtr address, nuint length, int protection, int flags, int fd, long offset);
    [DllImport("libc.so.6", EntryPoint = "madvise")] static extern int Madvise(IntPtr address, nuint length, int advice);
    [DllImport("libc.so.6", EntryPoint = "munmap")] static extern int Munmap(IntPtr address, nuint length);
}
