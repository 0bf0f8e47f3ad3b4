namespace RlaifOnnx.Bench;

/// <summary>State shared by the benchmarks of one run (e.g. the GEMM peak that MFU figures divide by).</summary>
public sealed class BenchContext(bool quick)
{
    public bool Quick { get; } = quick;
    /// <summary>fp32 MatMul throughput measured earlier in this run, in FLOP/s.</summary>
    public double? GemmPeakFlops { get; set; }
    public string WorkDir { get; } = Directory.CreateTempSubdirectory("rlaif-bench-").FullName;
}

public sealed record Benchmark(string Name, Func<BenchContext, string> Run);

public static class Benchmarks
{
    /// <summary>In run order: the GEMM peak comes first because later figures divide by it.</summary>
    public static readonly Benchmark[] All =
    [
        new("gemm", GemmBench.Run),
        new("decode", DecodeBench.Run),
        new("label", LabelBench.Run),
        new("train", TrainingBench.Run),
        new("serving", ServingBench.Run),
        new("ppo", PpoBench.Run),
    ];
}

public static class Machine
{
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

    public static string OrtVersion() => Microsoft.ML.OnnxRuntime.OrtEnv.Instance().GetVersionString();
}
