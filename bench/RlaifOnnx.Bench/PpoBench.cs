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
    const int Iterations = 3, RolloutBatch = 8, MiniBatch = 4, PpoEpochs = 2, NewTokens = 32, Rank = 8;

    static readonly string[] Questions =
    [
        "How do I pick a lock?", "What is the capital of France?", "Write a poem about the sea.", "How can I hurt someone without leaving marks?",
        "Explain photosynthesis simply.", "What should I cook tonight?", "Tell me how to cheat on my taxes.", "Why is the sky blue?",
    ];

    public static string Run(BenchContext ctx)
    {
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

        // The stage in a process of its own, so that its peak resident set is its own.
        var self = typeof(PpoBench).Assembly.Location;
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") start.ArgumentList.Add(self);
        foreach (var a in new[] { "--ppo-child", dir }) start.ArgumentList.Add(a);
        using var child = Process.Start(start)!;
        var output = child.StandardOutput.ReadToEnd();
        child.WaitForExit();
        if (child.ExitCode != 0) throw new InvalidOperationException($"the PPO child exited with {child.ExitCode}");
        var result = JsonNode.Parse(output.Trim().Split('\n')[^1])!.AsObject();
        return Report(config, result);
    }

    static ModelConfig Small() => DecodeBench.HundredMillionLlama(vocab: 2000) with { HiddenSize = 128, NumLayers = 2, NumHeads = 4, NumKvHeads = 2, IntermediateSize = 256 };

    /// <summary>The child: runs the stage, samples its memory, prints one JSON line.</summary>
    public static int Child(string dir)
    {
        var policy = Path.Combine(dir, "policy");
        var pm = Path.Combine(dir, "pm");
        var output = Path.Combine(dir, "run");
        if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
        var baseline = Rss("VmRSS");
        var metricsPath = Path.Combine(output, TrainPolicy.MetricsFile);
        long iterationPeak = 0;
        var done = false;
        var sampler = new Thread(() =>
        {
            while (!Volatile.Read(ref done))
            {
                iterationPeak = Math.Max(iterationPeak, Rss("VmRSS"));
                if (File.Exists(metricsPath) && File.ReadAllLines(metricsPath).Length >= Iterations) break;
                Thread.Sleep(20);
            }
        }) { IsBackground = true };
        sampler.Start();
        var config = new TrainPolicy.Config
        {
            PolicyModel = policy, RewardModel = pm, Prompts = Path.Combine(dir, "prompts.jsonl"), OutputDir = output,
            Iterations = Iterations, RolloutBatchSize = RolloutBatch, MiniBatchSize = MiniBatch, PpoEpochs = PpoEpochs,
            Lora = new LoraConfig { Rank = Rank }, Sampling = new SamplingConfig { Temperature = 0.7, MaxNewTokens = NewTokens },
            MaxPromptTokens = 64, SaveEvery = 1000, Seed = 1,
        };
        var clock = Stopwatch.StartNew();
        TrainPolicy.Run(config).GetAwaiter().GetResult();
        var runSeconds = clock.Elapsed.TotalSeconds;
        Volatile.Write(ref done, true);
        sampler.Join();
        var wholePeak = Rss("VmHWM");

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
            ["baseline_rss"] = baseline, ["iteration_peak_rss"] = iterationPeak, ["whole_peak_rss"] = wholePeak, ["run_seconds"] = runSeconds,
            ["full_rewrite_seconds"] = fullRewriteSeconds,
            ["full_rewrite_bytes"] = new FileInfo(Path.Combine(fullDir, ModelFolder.DataFile)).Length,
            ["adapter_bytes"] = new FileInfo(Path.Combine(output, TrainPolicy.RolloutPolicySubdir, RolloutPolicy.AdapterFile)).Length,
            ["iterations"] = new JsonArray(rows.Select(r => (JsonNode)new JsonObject(r.Values.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)))).ToArray()),
        };
        Console.WriteLine(json.ToJsonString());
        return 0;
    }

    /// <summary>A /proc/self/status field in bytes (VmRSS: resident now, VmHWM: the peak so far).</summary>
    static long Rss(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":"))
                return long.Parse(line.Split(':', 2)[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        return 0;
    }

    static string Report(ModelConfig config, JsonObject r)
    {
        var n = config.ParameterCount;
        var copy = n * 4.0;
        static double Gib(double bytes) => bytes / (1024.0 * 1024 * 1024);
        var iterations = r["iterations"]!.AsArray().Select(i => i!.AsObject()).ToList();
        // The first iteration writes the base once; the later ones are what every further iteration costs.
        var steady = iterations.Skip(1).ToList();
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
        return $"""
            ## PPO iteration at size (`rlaif ppo`, {n / 1e6:F1}M-parameter Llama-style policy, LoRA)

            Policy: hidden {config.HiddenSize}, {config.NumLayers} layers, {config.NumHeads} heads / {config.NumKvHeads} kv heads, vocab {config.VocabSize}, random weights, LoRA rank {Rank} on
            q_proj and v_proj; reference = the policy's base without the adapters (the same arrays). Reward and value: a
            preference model of the same architecture (decoder + head, {n / 1e6:F1}M); with LoRA the value model is adapters and
            its own head over the PM's frozen base, which also scores the rewards (one copy of the PM's weights).
            {Iterations} iterations of {RolloutBatch} prompts × up to {NewTokens} new tokens (temperature 0.7), {PpoEpochs} PPO epochs of mini-batches of {MiniBatch},
            run by the stage itself (`TrainPolicy.Run`) in a child process; times are the stage's own per-phase
            timers in metrics.jsonl, averaged over iterations 2–{Iterations} (iteration 1 also writes the base once).
            The machine was shared with other work while this ran: absolute times are disturbed, shares less so.

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

            Peak ≤ 2.5× one copy: **{(ratio <= 2.5 ? "met" : "not met")}** ({ratio:F2}×). What is resident: the policy's base (one copy, shared by
            the policy's and the reference's forward passes and the policy trainer), the PM's weights (a second model of the
            same size, shared by reward scoring and the value model), ONNX Runtime GenAI's own copy of the policy's base (its
            session loads model.onnx.data), activations of the training runs, and the process's baseline.

            """;
    }
}
