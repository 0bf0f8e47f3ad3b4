using System.Diagnostics;
using System.Text.Json;
using RlaifOnnx.Core;
using RlaifOnnx.Models;

namespace RlaifOnnx.Bench;

/// <summary>
/// Runs bench/torch_train.py — the same decoder, batch, AdamW and thread count in PyTorch — as a child
/// process after the project's own training has finished (never at the same time: both need gigabytes),
/// and reads its one JSON line. Null result with the reason when python3 or torch is missing.
/// </summary>
public static class TorchReference
{
    public sealed record Result(double TokensPerSecond, double StepSeconds, long PeakRssBytes, double Loss, long Parameters,
        string Version, string Blas, int Threads);

    public const string InstallHint = "PyTorch is not installed, so this section was skipped. Debian/Ubuntu: " +
        "`apt-get install python3-torch libopenblas0-pthread` (OpenBLAS as the BLAS PyTorch calls; without it Debian's torch " +
        "uses the reference BLAS), then run `make bench` again.";

    /// <param name="hugePages">Start python with glibc's huge-page tunable set, as this project's processes run
    /// (see HugePages), instead of the environment a user's python has by default.</param>
    public static (Result? Result, string? Skipped) Run(ModelConfig c, int batch, int length, int threads, int warmup, int steps, bool hugePages)
    {
        var script = FindScript();
        if (script is null) return (null, "bench/torch_train.py was not found beside the bench.");
        var python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        if (!Works(python, "-c \"import torch\"")) return (null, InstallHint);
        var args = $"\"{script}\" --hidden {c.HiddenSize} --layers {c.NumLayers} --heads {c.NumHeads} --kv-heads {c.NumKvHeads} " +
                   $"--intermediate {c.IntermediateSize} --vocab {c.VocabSize} --batch {batch} --length {length} --threads {threads} --warmup {warmup} --steps {steps}";
        var start = new ProcessStartInfo(python, args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.Environment.Remove("GLIBC_TUNABLES");
        if (hugePages) start.Environment["GLIBC_TUNABLES"] = $"{HugePages.Tunable}=1";
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start python3");
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        var line = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault();
        if (process.ExitCode != 0 || line is null)
            return (null, $"bench/torch_train.py failed (exit {process.ExitCode}): {stderr.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault()}");
        using var doc = JsonDocument.Parse(line);
        var r = doc.RootElement;
        return (new Result(r.GetProperty("tokens_per_second").GetDouble(), r.GetProperty("step_seconds").GetDouble(),
            r.GetProperty("peak_rss_bytes").GetInt64(), r.GetProperty("loss").GetDouble(), r.GetProperty("parameters").GetInt64(),
            r.GetProperty("torch").GetString() ?? "?", r.GetProperty("blas").GetString() ?? "?", r.GetProperty("threads").GetInt32()), null);
    }

    static bool Works(string file, string args)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false });
            if (p is null) return false;
            p.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception) { return false; }
    }

    /// <summary>bench/torch_train.py in the working directory or above the bench's binaries (the repository root).</summary>
    static string? FindScript()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "bench", "torch_train.py");
                if (File.Exists(candidate)) return candidate;
            }
        return null;
    }
}
