using System.Runtime.InteropServices;

namespace RlaifOnnx.Core;

/// <summary>
/// The C heap (glibc malloc) that ONNX Runtime allocates from when its CPU arena is off. glibc serves blocks
/// below a threshold that it raises as large blocks are freed (up to 32 MiB) from its own heaps, and keeps
/// what is freed there resident; a training step's activations (a few MiB each, thousands per step) then
/// stay resident between and across steps. A fixed threshold sends every block of 1 MiB or more to mmap,
/// which hands it back to the system when freed.
/// </summary>
public static class CHeap
{
    const int MmapThreshold = -3; // M_MMAP_THRESHOLD in glibc's malloc.h
    static int _applied;

    /// <summary>Fixes glibc's mmap threshold at 1 MiB, once per process; false where there is no glibc (other OS, musl).</summary>
    public static bool ReturnLargeFreedBlocks()
    {
        if (!OperatingSystem.IsLinux()) return false;
        if (Interlocked.Exchange(ref _applied, 1) == 1) return true;
        try { return MallOpt(MmapThreshold, 1 << 20) == 1; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }

    /// <summary>
    /// Hands the free memory inside glibc's heaps (every arena's, not only the top of the main one) back to the system:
    /// malloc_trim(0). Blocks below the mmap threshold that a phase freed stay resident in the heaps until then, and
    /// the next phase, which allocates other sizes, cannot always reuse them. False where there is no glibc.
    /// </summary>
    public static bool Trim()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { MallocTrim(0); return true; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }

    [DllImport("libc.so.6", EntryPoint = "malloc_trim")]
    static extern int MallocTrim(nuint pad);

    [DllImport("libc.so.6", EntryPoint = "mallopt")]
    static extern int MallOpt(int parameter, int value);
}
