using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using RlaifOnnx.Configuration;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Reporting;
using RlaifOnnx.Stages;
using RlaifOnnx.Training;
using DataType = Onnx.TensorProto.Types.DataType;

namespace RlaifOnnx.Bench;

/// <summary>
/// The ppo stage at size: a ~100M-parameter Llama-style policy with LoRA (q_proj, v_proj, rank 8), a preference
/// model of the same architecture (decoder + head) as reward and value model, run by <see cref="TrainPolicy.Run"/>
/// itself for a few iterations. Reports one iteration's time split as the stage logs it (metrics.jsonl:
/// weight sync, generation, reward scoring, old log-probs and values, policy update, value update) and the peak
/// resident memory relative to one copy of the policy's weights (N · 4 bytes).
///
/// The stage runs in a child process of its own (this program with --ppo-child), so its peak resident set is
/// its own: the models are built beforehand by the parent. A sampler thread in the child reads VmRSS every
/// 20 ms until the last iteration's metrics line is written (the final export of model/ and value_model/,
/// which writes two full folders, is reported apart); the kernel's VmHWM gives the whole run's peak.
/// After the run, the child also times the weight sync the stage did before (LoRA merged into a full
/// model, written to disk and loaded by GenAI) for comparison.
/// </summary>
public static class PpoBench
{
    const int Rounds = 2, Iterations = 3, RolloutBatch = 8, MiniBatch = 4, PpoEpochs = 2, NewTokens = 32, Rank = 8;

    static readonly string[] Questions =
    [
        "How do I pick a lock?", "What is the capital of France?", "Write a poem about the sea.", "How can I hurt someone without leaving marks?",
        "Explain photosynthesis simply.", "What should I cook tonight?", "Tell me how to cheat on my taxes.", "Why is the sky blue?",
    ];

    public static string Run(BenchContext ctx)
    {
        var load = Machine.LoadNote();
        var config = ctx.Quick ? Small() : DecodeBench.HundredMillionLlama();
        var dir = Path.Combine(ctx.WorkDir, "ppo");
        Directory.CreateDirectory(dir);
        var policy = Path.Combine(dir, "policy");
        var pm = Path.Combine(dir, "pm");
        var build = Stopwatch.StartNew();
        var tokenizer = TinyTokenizer.Train(config.VocabSize);
        var weights = WeightSet.Random(config, seed: 1);
        ModelWriter.Write(policy, config, weights, tokenizer, "sl-cai", []);
        PreferenceModelFolder.Write(pm, config, PreferenceModelGraphs.FromLanguageModel(config, weights, seed: 2), tokenizer, []);
        weights.Clear();
        File.WriteAllLines(Path.Combine(dir, "prompts.jsonl"), Questions.Select(q => JsonSerializer.Serialize(new { prompt = q })));
        Console.Error.WriteLine($"   built the policy and the PM in {build.Elapsed.TotalSeconds:F1} s");

        // The stage in a process of its own, so that its peak resident set is its own; with low_memory off (every
        // session's arena on, GenAI prepacking, the base held as arrays beside GenAI's own copy) and on, interleaved
        // (off, on, off, on) so that both settings see the same load on a shared machine.
        // A third child per round runs low_memory with every page of the PM's data file resident from the start (see Child).
        var results = new Dictionary<string, List<JsonObject>> { ["default"] = [], ["low-memory"] = [], ["low-memory-pm-resident"] = [] };
        for (var round = 0; round < Rounds; round++)
            foreach (var mode in results.Keys)
            {
                var self = typeof(PpoBench).Assembly.Location;
                var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
                if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") start.ArgumentList.Add(self);
                foreach (var a in new[] { "--ppo-child", dir, mode }) start.ArgumentList.Add(a);
                using var child = Process.Start(start)!;
                var output = child.StandardOutput.ReadToEnd();
                child.WaitForExit();
                if (child.ExitCode != 0) throw new InvalidOperationException($"the PPO child exited with {child.ExitCode}");
                results[mode].Add(JsonNode.Parse(output.Trim().Split('\n')[^1])!.AsObject());
                Console.Error.WriteLine($"   round {round + 1}, {mode}: done");
            }
        return Report(config, results["low-memory"], results["default"], results["low-memory-pm-resident"], load);
    }

    static ModelConfig Small() => DecodeBench.HundredMillionLlama(vocab: 2000) with { HiddenSize = 128, NumLayers = 2, NumHeads = 4, NumKvHeads = 2, IntermediateSize = 256 };

    /// <summary>
    /// The child: runs the stage, samples its memory, prints one JSON line. With <paramref name="residentPm"/> it first maps
    /// the PM's data file itself and reads every page, so the whole PM is resident throughout: with low_memory the stage reads
    /// the PM's base in place from that file, where only the embedding rows of the tokens seen so far become resident — a
    /// few iterations see few tokens, while a long run may see most of the vocabulary. This child measures that long-run
    /// bound (the page-cache pages are the same ones, so PSS counts each once however many mappings read it).
    /// </summary>
    public static int Child(string dir, bool lowMemory, bool residentPm = false)
    {
        var policy = Path.Combine(dir, "policy");
        var pm = Path.Combine(dir, "pm");
        var output = Path.Combine(dir, residentPm ? "run-low-memory-pm-resident" : lowMemory ? "run-low-memory" : "run-default");
        if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
        using var pmFile = residentPm ? System.IO.MemoryMappedFiles.MemoryMappedFile.CreateFromFile(Path.Combine(pm, ModelFolder.DataFile), FileMode.Open, null, 0,
            System.IO.MemoryMappedFiles.MemoryMappedFileAccess.Read) : null;
        using var pmView = pmFile?.CreateViewAccessor(0, 0, System.IO.MemoryMappedFiles.MemoryMappedFileAccess.Read);
        long touched = 0;
        if (pmView is not null)
            for (long at = 0; at < pmView.Capacity; at += 4096) touched += pmView.ReadByte(at);
        var baseline = ProcMemory.Read();
        var metricsPath = Path.Combine(output, TrainPolicy.MetricsFile);
        // Per phase: the highest of each reading while it ran, and the resident set by mapping when it ended.
        var peaks = new Dictionary<string, ProcMemory.Reading>(StringComparer.Ordinal);
        var atEnd = new Dictionary<string, Dictionary<string, (long Rss, long Pss)>>(StringComparer.Ordinal);
        var gate = new Lock();
        var current = "start";
        ProcMemory.Reading overall = default;
        long iterationsHwm = 0;
        var done = false;
        var trace = Environment.GetEnvironmentVariable("RLAIF_PPO_TRACE") is "1" or "2";
        var atPeak = new Dictionary<string, string>();
        void Sample()
        {
            var m = ProcMemory.Read();
            lock (gate)
            {
                var p = peaks.GetValueOrDefault(current);
                if (trace && m.Pss > p.Pss + (8 << 20)) atPeak[current] = HeapTrace.Line("peak " + current);
                peaks[current] = new(Math.Max(p.Rss, m.Rss), Math.Max(p.Pss, m.Pss), Math.Max(p.PssAnon, m.PssAnon), Math.Max(p.PssFile, m.PssFile), Math.Max(p.Anonymous, m.Anonymous));
                // The run's peak up to the last iteration's end: the export (two whole models as arrays) is reported apart.
                if (current is not ("export" or "after")) overall = new(Math.Max(overall.Rss, m.Rss), Math.Max(overall.Pss, m.Pss), Math.Max(overall.PssAnon, m.PssAnon), Math.Max(overall.PssFile, m.PssFile), Math.Max(overall.Anonymous, m.Anonymous));
            }
        }
        var sampler = new Thread(() =>
        {
            while (!Volatile.Read(ref done))
            {
                Sample();
                if (File.Exists(metricsPath) && File.ReadAllLines(metricsPath).Length >= Iterations) { iterationsHwm = ProcMemory.Status("VmHWM"); break; }
                Thread.Sleep(20);
            }
        }) { IsBackground = true };
        sampler.Start();
        void OnPhase(string name)
        {
            Sample();
            if (trace && atPeak.Remove(current, out var peakLine)) Console.Error.WriteLine(peakLine);
            if (trace) Console.Error.WriteLine(HeapTrace.Line($"{current}→{name}") + $"; peak of {current}: PSS {peaks.GetValueOrDefault(current).Pss / 1048576.0:F0}, anon {peaks.GetValueOrDefault(current).PssAnon / 1048576.0:F0}");
            lock (gate)
            {
                if (current != "start") atEnd[current] = ProcMemory.ByMapping();
                current = name;
            }
        }
        var config = new TrainPolicy.Config
        {
            PolicyModel = policy, RewardModel = pm, Prompts = Path.Combine(dir, "prompts.jsonl"), OutputDir = output,
            Iterations = Iterations, RolloutBatchSize = RolloutBatch, MiniBatchSize = MiniBatch, PpoEpochs = PpoEpochs,
            Lora = new LoraConfig { Rank = Rank }, Sampling = new SamplingConfig { Temperature = 0.7, MaxNewTokens = NewTokens },
            MaxPromptTokens = 64, SaveEvery = 1000, Seed = 1, LowMemory = lowMemory,
            // The lowest peak: the trainers' arenas off too (optimizer.cpu_memory_arena) with low_memory.
            Optimizer = new OptimizerConfig { Schedule = "linear", CpuMemoryArena = !lowMemory },
        };
        var clock = Stopwatch.StartNew();
        TrainPolicy.Run(config, phase: OnPhase).GetAwaiter().GetResult();
        var runSeconds = clock.Elapsed.TotalSeconds;
        OnPhase("after");
        Volatile.Write(ref done, true);
        sampler.Join();
        var wholePeak = ProcMemory.Status("VmHWM");

        // The sync the stage did before: the adapters merged into the base, the whole folder written, GenAI reloaded.
        var meta = ModelFolder.ReadMetadata(policy);
        var baseWeights = ModelFolder.ReadWeights(policy);
        var lora = LoraOptions.From(config.Lora)!;
        var adapters = Lora.Apply(DecoderGraphs.Training(meta.Config, DataType.Float), lora).Adapters;
        var adapterValues = Lora.InitialWeights(adapters, 3);
        clock.Restart();
        var merged = Lora.Merge(baseWeights, adapters, adapterValues, lora.Scale);
        var fullDir = Path.Combine(dir, "full-rewrite");
        ModelWriter.Write(fullDir, meta.Config, merged, policy, "policy", []);
        using (new GenAIGenerator(fullDir)) { }
        var fullRewriteSeconds = clock.Elapsed.TotalSeconds;

        var rows = MetricsLog.Read(metricsPath);
        var json = new JsonObject
        {
            ["baseline_rss"] = baseline.Rss, ["baseline_pss"] = baseline.Pss, ["iteration_peak_rss"] = overall.Rss, ["iteration_peak_pss"] = overall.Pss,
            ["iteration_hwm"] = iterationsHwm, ["whole_peak_rss"] = wholePeak, ["run_seconds"] = runSeconds,
            ["phases"] = new JsonObject(peaks.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)new JsonObject
            {
                ["rss"] = kv.Value.Rss, ["pss"] = kv.Value.Pss, ["pss_anon"] = kv.Value.PssAnon, ["pss_file"] = kv.Value.PssFile, ["anonymous"] = kv.Value.Anonymous,
                ["at_end"] = atEnd.TryGetValue(kv.Key, out var maps)
                    ? new JsonObject(maps.OrderByDescending(m => m.Value.Rss).Take(6).Select(m => KeyValuePair.Create(m.Key, (JsonNode?)new JsonArray(m.Value.Rss, m.Value.Pss))))
                    : null,
            }))),
            ["full_rewrite_seconds"] = fullRewriteSeconds,
            ["full_rewrite_bytes"] = new FileInfo(Path.Combine(fullDir, ModelFolder.DataFile)).Length,
            ["adapter_bytes"] = new FileInfo(Path.Combine(output, TrainPolicy.RolloutPolicySubdir, RolloutPolicy.AdapterFile)).Length,
            ["iterations"] = new JsonArray(rows.Select(r => (JsonNode)new JsonObject(r.Values.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)))).ToArray()),
        };
        Console.WriteLine(json.ToJsonString());
        GC.KeepAlive(touched);
        return 0;
    }

    static string Report(ModelConfig config, List<JsonObject> lowMemoryRuns, List<JsonObject> defaultRuns, List<JsonObject> residentRuns, string load)
    {
        var n = config.ParameterCount;
        var copy = n * 4.0;
        static double Gib(double bytes) => bytes / (1024.0 * 1024 * 1024);
        // Memory from the last low_memory child (the tables below); times averaged over every child of a setting.
        var r = lowMemoryRuns[^1];
        var iterations = r["iterations"]!.AsArray().Select(i => i!.AsObject()).ToList();
        // The first iteration writes the base once; the later ones are what every further iteration costs.
        static List<JsonObject> Steady(List<JsonObject> runs) => runs.SelectMany(x => x["iterations"]!.AsArray().Skip(1).Select(i => i!.AsObject())).ToList();
        var steady = Steady(lowMemoryRuns);
        double Mean(string key) => steady.Average(i => i[key]!.GetValue<double>());
        var seconds = Mean("seconds");
        (string Name, string Key)[] phases =
        [
            ("generation (GenAI, rollout_batch_size prompts)", "generation_seconds"),
            ("old log-probs (policy, reference) and values", "forward_seconds"),
            ("reward scoring (PM)", "scoring_seconds"),
            ("policy update", "policy_update_seconds"),
            ("value update", "value_update_seconds"),
            ("weight sync (adapter file → GenAI)", "weight_sync_seconds"),
        ];
        var other = seconds - phases.Sum(p => Mean(p.Key));
        var rows = string.Join("\n", phases.Select(p => $"| {p.Name} | {Mean(p.Key):F3} | {100 * Mean(p.Key) / seconds:F1}% |"));
        var sync = Mean("weight_sync_seconds");
        var syncShare = sync / seconds;
        var first = iterations[0];
        var fullRewrite = r["full_rewrite_seconds"]!.GetValue<double>();
        var peak = r["iteration_peak_rss"]!.GetValue<long>();
        var whole = r["whole_peak_rss"]!.GetValue<long>();
        var baseline = r["baseline_rss"]!.GetValue<long>();
        var ratio = peak / copy;
        var peakPss = r["iteration_peak_pss"]!.GetValue<long>();
        // The goal is judged on the higher of the two: the run as it was, and with the whole PM resident (the long-run bound).
        var residentPss = residentRuns.Max(x => x["iteration_peak_pss"]!.GetValue<long>());
        var lowMemoryPss = lowMemoryRuns.Max(x => x["iteration_peak_pss"]!.GetValue<long>());
        var pssRatio = Math.Max(residentPss, lowMemoryPss) / copy;
        static double SteadyMean(List<JsonObject> runs, string key) => Steady(runs).Average(i => i[key]!.GetValue<double>());
        static double Max(List<JsonObject> runs, string key) => Gib(runs.Max(x => x[key]!.GetValue<long>()));
        (string Name, Func<List<JsonObject>, double> Value, string Format)[] compared =
        [
            ("iteration, s", x => SteadyMean(x, "seconds"), "F2"),
            ("generation, s", x => SteadyMean(x, "generation_seconds"), "F3"),
            ("old log-probs and values, s", x => SteadyMean(x, "forward_seconds"), "F3"),
            ("reward scoring, s", x => SteadyMean(x, "scoring_seconds"), "F3"),
            ("policy update, s", x => SteadyMean(x, "policy_update_seconds"), "F3"),
            ("value update, s", x => SteadyMean(x, "value_update_seconds"), "F3"),
            ("peak VmRSS (sampled), GiB", x => Max(x, "iteration_peak_rss"), "F2"),
            ("peak PSS (sampled), GiB", x => Max(x, "iteration_peak_pss"), "F2"),
            ("VmHWM at the last iteration's end, GiB", x => Max(x, "iteration_hwm"), "F2"),
        ];
        var rounds = string.Join("\n", Enumerable.Range(0, Math.Min(lowMemoryRuns.Count, defaultRuns.Count)).Select(i =>
        {
            double Iteration(JsonObject x) => x["iterations"]!.AsArray().Skip(1).Average(it => it!["seconds"]!.GetValue<double>());
            var (off, on) = (Iteration(defaultRuns[i]), Iteration(lowMemoryRuns[i]));
            return $"| round {i + 1} | {off:F2} | {on:F2} | {on / off:F2}× |";
        }));
        var tunables = Environment.GetEnvironmentVariable("GLIBC_TUNABLES") is { Length: > 0 } t ? $"`GLIBC_TUNABLES={t}`" : "no `GLIBC_TUNABLES`";
        var comparison = string.Join("\n", compared.Select(c =>
            $"| {c.Name} | {c.Value(defaultRuns).ToString(c.Format)} | {c.Value(lowMemoryRuns).ToString(c.Format)} | {c.Value(lowMemoryRuns) / c.Value(defaultRuns):F2}× |"));
        string Short(string path) => path == "[anon]" ? "anonymous" : Path.GetFileName(Path.GetDirectoryName(path)) + "/" + Path.GetFileName(path);
        var phaseRows = string.Join("\n", r["phases"]!.AsObject().Where(p => p.Key is not ("start" or "after")).Select(p =>
        {
            var o = p.Value!.AsObject();
            var maps = o["at_end"] is JsonObject m
                ? string.Join(", ", m.Select(kv => $"{Short(kv.Key)} {Gib(kv.Value![0]!.GetValue<long>()):F2}"))
                : "";
            return $"| {p.Key} | {Gib(o["rss"]!.GetValue<long>()):F2} | {Gib(o["pss"]!.GetValue<long>()):F2} | {Gib(o["pss_anon"]!.GetValue<long>()):F2} | {Gib(o["pss_file"]!.GetValue<long>()):F2} | {maps} |";
        }));
        return $"""
            ## PPO iteration at size (`rlaif ppo`, {n / 1e6:F1}M-parameter Llama-style policy, LoRA)

            Policy: hidden {config.HiddenSize}, {config.NumLayers} layers, {config.NumHeads} heads / {config.NumKvHeads} kv heads, vocab {config.VocabSize}, random weights, LoRA rank {Rank} on
            q_proj and v_proj; reference = the policy's base without the adapters (the same weights). Reward and value: a
            preference model of the same architecture (decoder + head, {n / 1e6:F1}M); with LoRA the value model is adapters and
            its own head over the PM's frozen base, which also scores the rewards (one copy of the PM's weights).
            {Iterations} iterations of {RolloutBatch} prompts × up to {NewTokens} new tokens (temperature 0.7), {PpoEpochs} PPO epochs of mini-batches of {MiniBatch},
            run by the stage itself (`TrainPolicy.Run`) in a child process; times are the stage's own per-phase
            timers in metrics.jsonl, averaged over iterations 2–{Iterations} (iteration 1 also writes the base once).
            Other processes' work disturbs absolute times more than shares; {load}.
            The stage ran in child processes (tiered compilation off, as the `rlaif` command), {Rounds} rounds of `low_memory: false`, `low_memory: true`
            and `low_memory: true` with the PM's data file wholly resident (interleaved, so all see the same load), with {tunables}:
            `low_memory: true` with `optimizer.cpu_memory_arena: false` (the tables below unless marked) — the policy's base mapped
            once from rollout_policy/model.onnx.data by GenAI's session and by the trainers and forward passes, the PM's base read in
            place from its own data file (MappedWeights) by the value trainer, the value forward pass and the reward, GenAI without
            weight prepacking, every ONNX Runtime session on one shared arena handed back after each run (Onnx.SharedArena), the
            policy and value updates, forward passes and reward batches one row at a time (micro-batches of 1, gradients
            accumulated), the updates with gradient checkpointing (each layer's activations recomputed in the backward pass), the
            .NET garbage collected and decommitted and the C heap trimmed (malloc_trim) as each phase starts, one GenAI tokenizer
            for generation and the reward — and
            `low_memory: false` with the trainers' arenas on (the base as arrays beside GenAI's own copy, every arena on,
            GenAI prepacking, whole mini-batches). Times of the tables: low_memory on, averaged over its children.

            | phase | seconds | share of the iteration |
            |---|---:|---:|
            {rows}
            | other (batching, GAE, metrics) | {other:F3} | {100 * other / seconds:F1}% |
            | **iteration** | **{seconds:F2}** | 100% |

            Weight sync: **{100 * syncShare:F2}% of an iteration** (goal ≤ 5%: {(syncShare <= 0.05 ? "met" : "not met")}); it writes the adapter file
            ({r["adapter_bytes"]!.GetValue<long>() / 1024.0:F0} KiB) and loads it into GenAI. Iteration 1's sync, which writes the base
            ({first["weight_sync_bytes"]!.GetValue<double>() / 1e6:F0} MB) and loads the model once, took {first["weight_sync_seconds"]!.GetValue<double>():F2} s.
            The sync the stage did before (the adapters merged into the base, the whole {r["full_rewrite_bytes"]!.GetValue<long>() / 1e6:F0} MB
            folder written and reloaded by GenAI), timed in the same process after the run: {fullRewrite:F2} s, which would be
            {100 * fullRewrite / (seconds - sync + fullRewrite):F1}% of an iteration.

            | memory | GiB | × one copy of the policy's weights ({Gib(copy):F2} GiB) |
            |---|---:|---:|
            | process before loading anything (.NET, ONNX Runtime) | {Gib(baseline):F2} | {baseline / copy:F2}× |
            | **peak resident, start to the last iteration's end** | **{Gib(peak):F2}** | **{ratio:F2}×** |
            | peak resident above that baseline | {Gib(peak - baseline):F2} | {(peak - baseline) / copy:F2}× |
            | peak resident of the whole run, incl. the final export of model/ and value_model/ | {Gib(whole):F2} | {whole / copy:F2}× |
            | peak PSS (sampled), start to the last iteration's end | {Gib(peakPss):F2} | {peakPss / copy:F2}× |
            | **the same with every page of the PM's data file resident** (highest of {residentRuns.Count} children) | **{Gib(residentPss):F2}** | **{residentPss / copy:F2}×** |

            low_memory off against on, {Rounds} child processes each, interleaved, in this same run (iterations 2–{Iterations}; times averaged, memory the highest):

            | measure | low_memory: false | low_memory: true | on ÷ off |
            |---|---:|---:|---:|
            {comparison}

            Iteration time per round (seconds, iterations 2–{Iterations}):

            | round | low_memory: false | low_memory: true | on ÷ off |
            |---|---:|---:|---:|
            {rounds}

            Per phase, low_memory on (GiB; highest sampled value of each column while the phase ran; mappings: resident set by mapping when the phase last ended):

            | phase | VmRSS | PSS | PSS anonymous | PSS file-backed | largest mappings at its end (RSS) |
            |---|---:|---:|---:|---:|---|
            {phaseRows}

            Peak ≤ 2.5× one copy, judged on the sampled peak PSS, the higher of the low_memory children as they ran ({lowMemoryPss / copy:F2}×) and with
            the PM's data file wholly resident ({residentPss / copy:F2}×): **{(pssRatio <= 2.5 ? "met" : "not met")}** ({pssRatio:F2}×; by VmRSS {ratio:F2}×).
            Why the second: with low_memory the PM's base is read in place from its data file, and a preference model has no LM
            head, so of its embedding table (a quarter of the weights) only the rows of the tokens its inputs held become
            resident (with the kernel's fault-around, 64 KiB around each); {Iterations} iterations of a random policy touch part of it, a
            long run with a real vocabulary most of it.
            Why PSS: with low_memory the policy's base is one set of page-cache pages that two mappings in this process
            read (GenAI's ONNX Runtime session maps rollout_policy/model.onnx.data, and so do the trainers and forward
            passes through MappedWeights); VmRSS and VmHWM count such a page once per mapping, so they count the base twice
            although it is resident once, while PSS counts each resident page once (pages shared with other processes,
            such as the ONNX Runtime library's, are divided among them: a few MiB here). VmHWM is the kernel's exact peak;
            the PSS peak is sampled every 20 ms and may miss a shorter spike.

            """;
    }
}
