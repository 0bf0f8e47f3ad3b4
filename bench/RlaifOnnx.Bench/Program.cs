using System.Diagnostics;
using System.Text;
using RlaifOnnx.Bench;

// `make bench`: runs every benchmark side by side in one process and writes bench/RESULTS.md.
// Usage: dotnet run --project bench/RlaifOnnx.Bench -c Release -- --out bench/RESULTS.md [--only NAME[,NAME…]] [--quick] [--no-torch] [--arena]
RlaifOnnx.Core.HugePages.RestartWithHugePagesIfUseful();   // as `rlaif` does: glibc reads its tunables only at start
// Diagnostics of the PPO bench's memory (DIR: the bench's work folder ppo/, after a run): --mem-probe DIR (what each piece
// of the stage adds, one at a time), --step-probe DIR ROWS LENGTH MICRO (the resident peak of one policy step);
// RLAIF_PPO_TRACE=1 (2: with a full GC at each reading) makes the PPO children print the heaps at every phase change.
if (args is ["--mem-probe", var probeDir]) return MemProbe.Run(probeDir);
if (args is ["--step-probe", var stepDir, var r, var l, var mb]) return StepProbe.Run(stepDir, int.Parse(r), int.Parse(l), int.Parse(mb));
if (args is ["--ppo-child", var ppoDir, var ppoMode]) return PpoBench.Child(ppoDir, ppoMode != "default", ppoMode == "low-memory-pm-resident");   // PpoBench's own process
var outPath = "bench/RESULTS.md";
string? only = null;
var quick = false;
var torch = true;
var arena = false;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--out": outPath = args[++i]; break;
        case "--only": only = args[++i]; break;
        case "--quick": quick = true; break;
        case "--no-torch": torch = false; break;
        case "--arena": arena = true; break;
        default: Console.Error.WriteLine($"unknown argument {args[i]}"); return 2;
    }
}

var report = new StringBuilder();
report.AppendLine("# Benchmarks");
report.AppendLine();
report.AppendLine($"Measured {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC on {Environment.ProcessorCount} cores, {Machine.Cpu()}, " +
                  $".NET {Environment.Version}, ONNX Runtime {Machine.OrtVersion()}.");
report.AppendLine($"CPU flags: {Machine.CpuFlags()}. Every figure below was measured on this CPU; the GEMM kernels ONNX Runtime (MLAS) " +
                  "and PyTorch pick depend on these flags, so figures from another CPU kind are not comparable.");
report.AppendLine($"Reproduce: `make bench` (runs `dotnet run --project bench/RlaifOnnx.Bench -c Release -- --out {outPath}`).");
report.AppendLine("Every ratio below divides numbers measured in this same run.");
report.AppendLine();

var ctx = new BenchContext(quick) { RunTorch = torch, TrainingArena = arena };
foreach (var bench in Benchmarks.All)
{
    if (only is null ? bench.OnRequestOnly : !only.Split(',').Contains(bench.Name)) continue;
    Console.Error.WriteLine($"== {bench.Name}");
    var sw = Stopwatch.StartNew();
    report.AppendLine(bench.Run(ctx));
    Console.Error.WriteLine($"   done in {sw.Elapsed.TotalSeconds:F1} s");
}
Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
File.WriteAllText(outPath, report.ToString());
Console.WriteLine(report);
return 0;
