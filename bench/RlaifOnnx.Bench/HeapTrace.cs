using System.Runtime.InteropServices;

namespace RlaifOnnx.Bench;

/// <summary>
/// Where the anonymous memory is, for accounting a phase: the .NET GC's committed heap, glibc malloc's heaps (in use
/// and free-but-kept) and its mmapped chunks (mallinfo2, summed over every arena), beside the process's anonymous PSS.
/// What none of these hold is someone else's mmap (ONNX Runtime GenAI, the runtime's own stacks and code).
/// </summary>
public static class HeapTrace
{
    [StructLayout(LayoutKind.Sequential)]
    struct MallInfo2
    {
        public nuint Arena, Ordblks, Smblks, Hblks, Hblkhd, Usmblks, Fsmblks, Uordblks, Fordblks, Keepcost;
    }

    [DllImport("libc.so.6", EntryPoint = "mallinfo2")]
    static extern MallInfo2 Mallinfo2();

    public static string Line(string label)
    {
        static double M(double bytes) => bytes / (1024.0 * 1024);
        var p = ProcMemory.Read();
        var gc = GC.GetGCMemoryInfo();
        string malloc;
        try
        {
            var m = Mallinfo2();
            malloc = $"malloc heap {M(m.Arena):F0} (in use {M(m.Uordblks):F0}, free {M(m.Fordblks):F0}), malloc mmapped {M(m.Hblkhd):F0} in {m.Hblks} chunks";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { malloc = "no mallinfo2"; }
        var full = Environment.GetEnvironmentVariable("RLAIF_PPO_TRACE") == "2" ? $", live after a full GC {M(GC.GetTotalMemory(true)):F0}" : "";
        return $"[heap] {label,-14} PSS {M(p.Pss):F0} MiB (anon {M(p.PssAnon):F0}, file {M(p.PssFile):F0}); .NET committed {M(gc.TotalCommittedBytes):F0}, " +
               $"heap {M(gc.HeapSizeBytes):F0}, live {M(GC.GetTotalMemory(false)):F0}{full}; {malloc}";
    }
}
