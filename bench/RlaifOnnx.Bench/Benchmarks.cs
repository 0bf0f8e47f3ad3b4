using System.Diagnostics;

namespace RlaifOnnx.Bench;

/// <summary>State shared by the benchmarks of one run (e.g. the GEMM peak that MFU figures divide by).</summary>
public sealed class BenchContext(bool quick)
{
    public bool Quick { get; } = quick;
    /// <summary>Run the PyTorch reference beside the training figures (off with --no-torch while working on the bench).</summary>
    public bool RunTorch { get; init; } = true;
    /// <summary>Train with ONNX Runtime's CPU arena on (--arena) instead of the low-memory setting.</summary>
    public bool TrainingArena { get; init; }
    /// <summary>fp32 GEMM peak measured earlier in this run (best of MatMul and Gemm over the shapes), in FLOP/s.</summary>
    public double? GemmPeakFlops { get; set; }
    /// <summary>The best MatMul and the best Gemm of each GEMM measurement in this run, in GFLOP/s.</summary>
    public List<(double MatMul, double Gemm)> GemmPeaks { get; } = [];
    public string WorkDir { get; } = Directory.CreateTempSubdirectory("rlaif-bench-").FullName;
}

/// <summary>A section of RESULTS.md; <paramref name="OnRequestOnly"/> ones run only when named with --only.</summary>
public sealed record Benchmark(string Name, Func<BenchContext, string> Run, bool OnRequestOnly = false);

public static class Benchmarks
{
    /// <summary>In run order: the GEMM peak comes first because later figures divide by it.</summary>
    public static readonly Benchmark[] All =
    [
        new("gemm", GemmBench.Run),
        // Training right after the GEMM peak: its peak working set is then the training's, not an earlier benchmark's.
        new("train", TrainingBench.Run),
        new("attention", AttentionProductsBench.Run),
        new("decode", DecodeBench.Run),
        // Not part of a full run (decode measures it); `--only bandwidth` to look at the memory system alone.
        new("bandwidth", ctx => MemoryBandwidth.Table(MemoryBandwidth.Sweep(ctx.Quick, 400_000_000), 400_000_000, "~ the 100M model's weights") + "\n", OnRequestOnly: true),
        new("label", LabelBench.Run),
        new("serving", ServingBench.Run),
        new("ppo", PpoBench.Run),
    ];
}

public static class Machine
{
    /// <summary>
    /// "the 1-minute load average was L on N cores when this section started": other processes' work on a small
    /// machine disturbs times, so each section that times says how busy the machine was rather than assuming.
    /// </summary>
    public static string LoadNote()
    {
        try
        {
            var load = File.ReadAllText("/proc/loadavg").Split(' ')[0];
            return $"the 1-minute load average was {load} on {Environment.ProcessorCount} cores when this section started";
        }
        catch (IOException) { return "the machine's load was not readable (/proc/loadavg)"; }
    }

    public static string Cpu()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name")) return line.Split(':', 2)[1].Trim();
        }
        catch (IOException) { }
        return "unknown CPU";
    }

    /// <summary>The instruction-set extensions that decide which GEMM kernels run: AVX2, AVX-512F, AVX-512 BF16, AMX.</summary>
    public static string CpuFlags()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                if (!line.StartsWith("flags")) continue;
                var flags = line.Split(':', 2)[1].Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
                string F(string label, params string[] names) => $"{label} {(names.All(flags.Contains) ? "yes" : "no")}";
                return string.Join(", ", F("AVX2", "avx2"), F("FMA", "fma"), F("AVX-512F", "avx512f"), F("AVX-512 VNNI", "avx512_vnni"),
                    F("AVX-512 BF16", "avx512_bf16"), F("AMX (tile, bf16, int8)", "amx_tile", "amx_bf16", "amx_int8"));
            }
        }
        catch (IOException) { }
        return "flags unknown";
    }

    /// <summary>This process's resident set now (VmRSS) and its peak since start or the last <see cref="ResetPeakResident"/> (VmHWM), in bytes.</summary>
    public static (long Now, long Peak) Resident()
    {
        long now = 0, peak = 0;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:")) now = Kilobytes(line);
                else if (line.StartsWith("VmHWM:")) peak = Kilobytes(line);
            }
        }
        catch (IOException) { }
        if (peak == 0) peak = Process.GetCurrentProcess().PeakWorkingSet64;
        if (now == 0) now = Process.GetCurrentProcess().WorkingSet64;
        return (now, peak);
        static long Kilobytes(string line) => long.Parse(line.Split(':', 2)[1].Trim().Split(' ')[0]) * 1024;
    }

    /// <summary>Resets the peak resident set to the current one (Linux: "5" into /proc/self/clear_refs); false where unsupported.</summary>
    public static bool ResetPeakResident()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); return true; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>
    /// The last-level cache size the CPU reports (sysfs, else getconf's CPUID reading). On a VM this is the host
    /// CPU's figure, not necessarily what the guest's cores can use, hence the bandwidth sweep.
    /// </summary>
    public static string LastLevelCache()
    {
        try
        {
            var sysfs = "/sys/devices/system/cpu/cpu0/cache/index3/size";
            if (File.Exists(sysfs)) return File.ReadAllText(sysfs).Trim() + " (sysfs)";
            using var getconf = Process.Start(new ProcessStartInfo("getconf", "LEVEL3_CACHE_SIZE") { RedirectStandardOutput = true });
            var text = getconf?.StandardOutput.ReadToEnd().Trim();
            getconf?.WaitForExit();
            if (long.TryParse(text, out var bytes) && bytes > 0) return $"{bytes / (1 << 20)} MiB (CPUID, via getconf; sysfs shows none)";
        }
        catch (Exception e) when (e is IOException or System.ComponentModel.Win32Exception) { }
        return "not reported";
    }

    public static string OrtVersion() => Microsoft.ML.OnnxRuntime.OrtEnv.Instance().GetVersionString();
}
