using System.Diagnostics;
using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Training;

namespace RlaifOnnx.Bench;

/// <summary>
/// Training throughput of a ~100M-parameter Llama-style model (hidden 768, 12 layers, 12 heads, 4 kv heads,
/// intermediate 2048, vocab 32000, tied embeddings) at batch × length 8 × 256: full fine-tuning steps
/// (forward + backward graph in ONNX Runtime, global-norm clipping and AdamW in C#).
///
/// Model FLOPs per token: 6·N (N = parameters, embedding included — its tied use as the output head is a
/// real 2·h·V matmul each way) plus attention's 12·L·h·T (Chowdhery et al. 2022, PaLM appendix B: the
/// score and value matmuls, forward and backward, at full T×T since our graph computes masked positions
/// too). MFU divides by the fp32 GEMM peak measured earlier in the same run. ONNX Runtime's profiler shows
/// which operators dominate.
/// </summary>
public static class TrainingBench
{
    /// <summary>The quick run's small decoder (hidden 256, 4 layers, vocab 8000) at 4 × 128, for trying the bench out.</summary>
    static ModelConfig Small() => new()
    {
        Architecture = Architecture.Llama, ModelType = "llama", VocabSize = 8000, HiddenSize = 256, NumLayers = 4,
        NumHeads = 4, NumKvHeads = 2, IntermediateSize = 688, MaxPositions = 512, TieEmbeddings = true,
        BosTokenId = 1, EosTokenId = 2, PadTokenId = 0,
    };

    public static string Run(BenchContext ctx)
    {
        var config = ctx.Quick ? Small() : DecodeBench.HundredMillionLlama() with { BosTokenId = 1, EosTokenId = 2, PadTokenId = 0 };
        // The MFU divides by a peak from this run: measure it here when `--only train` skipped the gemm benchmark.
        var gemmSection = ctx.GemmPeakFlops is null ? GemmBench.Run(ctx) : "";
        var (batchSize, length) = ctx.Quick ? (4, 128) : (8, 256);
        // Two warm-up steps: the first builds ONNX Runtime's kernels' state and the process's first huge pages
        // (the kernel zeroes and compacts them once; later steps reuse what glibc handed back); PyTorch gets the same.
        var (warmupSteps, timedSteps) = (2, 4);
        var threads = Environment.ProcessorCount;
        var n = config.ParameterCount;

        // Memory is read from /proc/self/status: the peak (VmHWM) is reset here, so it is the training's own.
        GC.Collect();
        var peakReset = Machine.ResetPeakResident();
        var residentBefore = Machine.Resident().Now;
        var measured = Train(ctx, config, batchSize, length, warmupSteps, timedSteps, threads);
        var residentPeak = Machine.Resident().Peak;

        // The machine may be shared: measure the GEMM peak again now and divide by the larger of the two
        // peaks, so a quiet moment during the GEMM run cannot make the MFU look better than it is.
        var peakBefore = ctx.GemmPeakFlops;
        GemmBench.Run(ctx);
        var peakAfter = ctx.GemmPeakFlops;
        ctx.GemmPeakFlops = Math.Max(peakBefore ?? 0, peakAfter ?? 0);
        var profilePath = Directory.GetFiles(ctx.WorkDir, "train-profile*.json").MaxBy(f => new FileInfo(f).Length); // the eval session writes an empty one too
        var profile = profilePath is null ? null : TrainingProfile.Read(profilePath, timedSteps);

        // PyTorch after ours has finished and released its memory, never beside it.
        GC.Collect();
        if (ctx.RunTorch) Console.Error.WriteLine("   PyTorch reference (bench/torch_train.py) …");
        // Twice: in a user's default environment, and with the C heap on huge pages as this project's processes run.
        var (torch, torchSkipped) = ctx.RunTorch ? TorchReference.Run(config, batchSize, length, threads, warmupSteps, timedSteps, hugePages: false) : (null, "Skipped (--no-torch).");
        var (torchHuge, _) = ctx.RunTorch && torch is not null && HugePages.Active
            ? TorchReference.Run(config, batchSize, length, threads, warmupSteps, timedSteps, hugePages: true) : (null, null);

        double tokens = batchSize * length;
        var tokensPerSecond = tokens / measured.StepSeconds;
        var dense = 6.0 * n;
        var attention = 12.0 * config.NumLayers * config.HiddenSize * length;
        var peak = ctx.GemmPeakFlops;
        string Mfu(double flopsPerToken) => peak is { } p ? $"{100 * flopsPerToken * tokensPerSecond / p:F1}%" : "n/a";
        var outside = (measured.StepSeconds - measured.RunSeconds) / measured.StepSeconds;
        var optimizerMs = 1000 * (measured.StepSeconds - measured.RunSeconds);
        var memory = new MemoryAccount(config, n, batchSize, length, residentBefore, measured.ResidentBetweenSteps, residentPeak);
        return gemmSection + $"""
            ## Training throughput ({n / 1e6:F0}M Llama-style, full fine-tuning)

            Model: hidden {config.HiddenSize}, {config.NumLayers} layers, {config.NumHeads} heads / {config.NumKvHeads} kv heads, intermediate {config.IntermediateSize}, vocab {config.VocabSize}, tied embeddings:
            N = {n:N0} parameters. Batch × length = {batchSize} × {length} = {tokens:N0} tokens per step, float32,
            AdamW over all weights, one ONNX Runtime run per step (no micro-batching), {threads} threads, C heap on {(HugePages.Active ? "2 MiB pages (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, set at start as `rlaif` sets it)" : "4 KiB pages (huge pages not in use: RLAIF_HUGE_PAGES=0, or THP/glibc without the madvise mode)")},
            {(ctx.TrainingArena ? "ONNX Runtime's CPU arena on\n(`TrainerOptions.CpuMemoryArena = true`, `--arena`)." : "ONNX Runtime's CPU arena off\n(`TrainerOptions.CpuMemoryArena = false`: large freed buffers go back to the system).")} {timedSteps} timed steps after {warmupSteps} warm-up steps.

            | measure | value |
            |---|---|
            | step time | {measured.StepSeconds:F2} s (loss {measured.Loss:F3}) |
            | training tokens/s | **{tokensPerSecond:F1}** |
            | MFU, 6·N FLOPs/token | **{Mfu(dense)}** |
            | MFU, 6·N + 12·L·h·T FLOPs/token (attention at full T×T) | {Mfu(dense + attention)} |
            | achieved model GFLOP/s (6·N + attention) | {(dense + attention) * tokensPerSecond / 1e9:F1} |
            | GEMM peak divided by (max of before / after the steps; best of MatMul and Gemm) | {(peak ?? 0) / 1e9:F1} GFLOP/s ({(peakBefore ?? 0) / 1e9:F1} / {(peakAfter ?? 0) / 1e9:F1}) |
            | the same peaks, MatMul / Gemm | {string.Join("; ", ctx.GemmPeaks.Select(p => $"{p.MatMul:F1} / {p.Gemm:F1}"))} GFLOP/s |
            | MFU, 6·N FLOPs/token, against the best MatMul alone | {(ctx.GemmPeaks.Count > 0 ? $"{100 * dense * tokensPerSecond / (ctx.GemmPeaks.Max(p => p.MatMul) * 1e9):F1}%" : "n/a")} |
            | peak resident set of the training (VmHWM{(peakReset ? ", reset when training started" : ", whole process")}) | {Gib(residentPeak):F2} GiB |
            | time outside ONNX Runtime's Run | **{100 * outside:F1}%** of the step ({measured.StepSeconds - measured.RunSeconds:F2} s: batch binding, clipping, AdamW) |

            Goals: MFU ≥ 50%, outside-Run share ≤ 5%.

            {PageFaults.Section()}
            {TorchSection(torch, torchHuge, torchSkipped, tokensPerSecond, residentPeak)}
            {memory.Section()}
            {ProfileSection(profile, optimizerMs, peak)}
            """;
    }

    sealed record Measured(double StepSeconds, double RunSeconds, double Loss, long ResidentBetweenSteps);

    static Measured Train(BenchContext ctx, ModelConfig config, int batchSize, int length, int warmupSteps, int timedSteps, int threads)
    {
        var weights = WeightSet.Random(config, 1);
        var rng = new Random(2);
        var sequences = Enumerable.Range(0, batchSize).Select(_ => new TokenSequence(
            Enumerable.Range(0, length).Select(_ => rng.Next(3, config.VocabSize)).ToArray(), Enumerable.Repeat((byte)1, length).ToArray())).ToList();
        var batch = CausalLm.Batch(sequences, config.PadTokenId);
        // Arena off: the low-memory setting (see TrainerOptions.CpuMemoryArena); the memory table below says so.
        var options = CausalLm.Options(new TrainerOptions { LearningRate = 1e-4, Threads = threads, CpuMemoryArena = ctx.TrainingArena });
        var graph = CausalLm.Graph(config);

        // Warm-up steps, then the timed ones. ONNX Runtime's profiler is on throughout (it records a
        // timestamp pair per node, microseconds against steps of seconds) and its file is written when the
        // trainer is disposed.
        var profilePrefix = Path.Combine(ctx.WorkDir, "train-profile");
        var build = Stopwatch.StartNew();
        using var trainer = new Trainer(graph, CausalLm.LossOutput, weights, new Dictionary<string, WeightTensor>(), options with { ProfilePrefix = profilePrefix });
        Console.Error.WriteLine($"   built the training session in {build.Elapsed.TotalSeconds:F1} s");
        for (var i = 0; i < warmupSteps; i++)
        {
            var before = trainer.StepSeconds;
            trainer.Step(batch);
            Console.Error.WriteLine($"   warm-up step {trainer.StepSeconds - before:F2} s");
        }
        var between = Machine.Resident().Now;
        var (step0, run0) = (trainer.StepSeconds, trainer.RunSeconds);
        StepResult result = default!;
        for (var i = 0; i < timedSteps; i++)
        {
            var before = trainer.StepSeconds;
            result = trainer.Step(batch);
            Console.Error.WriteLine($"   timed step {trainer.StepSeconds - before:F2} s");
        }
        return new Measured((trainer.StepSeconds - step0) / timedSteps, (trainer.RunSeconds - run0) / timedSteps, result.Loss, between);
    }

    static double Gib(long bytes) => bytes / (1024.0 * 1024 * 1024);

    static string TorchSection(TorchReference.Result? torch, TorchReference.Result? torchHuge, string? skipped, double ourTokensPerSecond, long ourPeak)
    {
        if (torch is null) return $"### PyTorch on the same config, same run\n\n{skipped}\n";
        // The goals are judged against the faster PyTorch run and the smaller PyTorch peak of the two environments.
        var fastest = torchHuge is null ? torch.TokensPerSecond : Math.Max(torch.TokensPerSecond, torchHuge.TokensPerSecond);
        var smallest = torchHuge is null ? torch.PeakRssBytes : Math.Min(torch.PeakRssBytes, torchHuge.PeakRssBytes);
        string Row(string name, TorchReference.Result r) =>
            $"| {name} | {r.TokensPerSecond:F1} | {ourTokensPerSecond / r.TokensPerSecond:F2}× | {Gib(r.PeakRssBytes):F2} GiB | {(double)ourPeak / r.PeakRssBytes:F2}× | {r.Loss:F3} |";
        return $"""
            ### PyTorch on the same config, same run

            bench/torch_train.py: the same decoder ({torch.Parameters:N0} parameters), batch, sequence length, AdamW (lr 1e-4,
            clipping at 1.0) and thread count ({torch.Threads}) in PyTorch {torch.Version} (BLAS: `{torch.Blas}`), run as a
            child process after this project's steps had finished (never beside them); the same warm-up and timed steps.
            It runs {(torchHuge is null ? "once, in the environment python has by default" : "twice: in the environment python has by default, and with the same glibc tunable this\nproject's processes set (its C heap on huge pages too)")}.

            | run | tokens/s | ours ÷ it | peak resident set | ours ÷ it | loss after the steps |
            |---|---:|---:|---:|---:|---:|
            | this project (ONNX Runtime) | {ourTokensPerSecond:F1} | | {Gib(ourPeak):F2} GiB | | |
            {Row("PyTorch, default environment", torch)}
            {(torchHuge is null ? "" : Row("PyTorch, C heap on huge pages", torchHuge))}

            Against the faster PyTorch run: **{ourTokensPerSecond / fastest:F2}×** its tokens/s (goal ≥ 2×); against the smaller
            PyTorch peak: **{(double)ourPeak / smallest:F2}×** its memory (goal ≤ 1×).

            """;
    }

    static string ProfileSection(TrainingProfile? profile, double optimizerMs, double? peakFlops)
    {
        if (profile is null || profile.Nodes.Count == 0) return "ONNX Runtime wrote no profile.\n";
        return $"""
            ### Where a step's time goes (ONNX Runtime profiler, the timed steps only)

            Node times summed per step ({profile.TotalMs:F0} ms of node time; with 2 threads a node's time is its wall time).
            By region — forward / backward nodes (the gradient nodes are named after the forward node they differentiate) and
            the part of the layer their names' scopes say; nodes ONNX Runtime's graph optimizer created under new names are
            counted as unscoped:

            {profile.RegionTable(optimizerMs)}
            By operator:

            {profile.OperatorTable(15)}
            By GEMM shape (2·M·N·K FLOPs per product; GFLOP/s against this run's GEMM peak):

            {profile.GemmTable(16, peakFlops)}
            """;
    }
}
