using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Reporting;
using RlaifOnnx.Stages;
using RlaifOnnx.Training;


namespace RlaifOnnx.Tests.Stages;

/// <summary>
/// The ppo stage end to end on tiny models: rollouts, scores, updates and exports with finite metrics; the
/// first update's ratio is 1; a resumed run reproduces the uninterrupted one; PPO raises the score of a
/// preference model built to reward one class of tokens, and a huge KL coefficient keeps the policy near the
/// reference; bad configs are refused with one line.
/// </summary>
public class PpoStageTests
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    static readonly string[] Questions = ["hi", "how are you?", "tell me a joke", "what is two plus two?", "name a colour", "say something", "good morning", "why?"];

    static string Prompts(TempDir temp)
    {
        var path = temp.File("prompts.jsonl");
        File.WriteAllLines(path, Questions.Select(q => $"{{\"prompt\": \"{q}\"}}"));
        return path;
    }

    /// <summary>A preference model from the tiny LM's weights with a random head (rewards are arbitrary but fixed).</summary>
    static string RandomPm(string lm, string dir)
    {
        var config = TinyModels.Config;
        PreferenceModelFolder.Write(dir, config, PreferenceModelGraphs.FromLanguageModel(config, ModelFolder.ReadWeights(lm), seed: 7), lm,
            [new LineageEntry("test", null, DateTimeOffset.UtcNow)]);
        return dir;
    }

    /// <summary>
    /// +1 for the tokens the policy can make more likely together — those whose LM-head column has a positive entry
    /// in hidden dimension 0, so moving the final hidden state along that dimension raises all of them at once —
    /// −1 for the others, and 0 (neutral) for tokens that do not come back as themselves when their text is encoded
    /// again (partial UTF-8 bytes, special tokens): the PM reads the response as text, re-tokenised. The tokens of
    /// the rendered conversation around the response are neutral too, so the score varies with the response only.
    /// </summary>
    static int[] TokenClasses(string lm, string prompt)
    {
        var head = ModelFolder.ReadWeights(lm)["lm_head.weight"];                           // [h, V]
        var vocab = (int)head.Shape[1];
        using var tokenizer = RewardScorer.OpenTokenizer(lm);
        bool RoundTrips(int id)
        {
            var text = tokenizer.Decode([id]);
            if (text.Length == 0 || text.Contains('\uFFFD')) return false;
            using var again = tokenizer.Encode(text);
            return again[0].Length == 1 && again[0][0] == id;
        }
        var template = ChatTemplate.FromFolder(lm)!;
        using var around = tokenizer.Encode(RewardScorer.RenderPair(template, tokenizer, [new ChatMessage("user", prompt)], ""));
        var context = around[0].ToArray().ToHashSet();
        return Enumerable.Range(0, vocab).Select(id => context.Contains(id) || !RoundTrips(id) ? 0 : head.Data[id] > 0 ? 1 : -1).ToArray();
    }

    /// <summary>
    /// A preference model built by hand whose reward grows with the share of rewarded tokens in the text. Embeddings
    /// carry ±1 in dimension 0 (+1 for a rewarded token) and 1 in dimension 2; layer 0's attention has zero queries and
    /// keys, so every position attends uniformly to the tokens so far, and its value/output projections copy the mean of
    /// dimension 0 into dimension 1; every other block adds nothing (zero output projections). The head reads
    /// dimension 1 of the last token's normed state: reward ≈ √h·m/(4·√(2 + m²/16)), m the mean of ±1 over the sequence.
    /// </summary>
    static string ClassPm(string lm, string dir, int[] classes)
    {
        var config = TinyModels.Config;
        var weights = PreferenceModelGraphs.FromLanguageModel(config, ModelFolder.ReadWeights(lm), seed: 7);
        var h = config.HiddenSize;
        var set = new WeightSet();
        foreach (var (name, w) in weights)
        {
            var data = new float[w.Data.Length];
            if (name.Contains("norm")) Array.Fill(data, 1f);
            set[name] = new WeightTensor(w.Shape, data);
        }
        var embed = set["model.embed_tokens.weight"].Data;
        for (var id = 0; id < config.VocabSize; id++)
        {
            embed[id * h] = classes[id];
            embed[id * h + 2] = 1f;
        }
        var kvWidth = (int)set["model.layers.0.self_attn.v_proj.weight"].Shape[1];
        set["model.layers.0.self_attn.v_proj.weight"].Data[0 * kvWidth + 0] = 1f;       // input dim 0 → kv head 0, dim 0
        set["model.layers.0.self_attn.o_proj.weight"].Data[0 * h + 1] = 0.25f;          // head 0's dim 0 → residual dim 1
        set[PreferenceModelGraphs.HeadWeight].Data[1] = 1f;
        PreferenceModelFolder.Write(dir, config, set, lm, [new LineageEntry("test", null, DateTimeOffset.UtcNow)]);
        return dir;
    }

    static TrainPolicy.Config Config(string policy, string pm, string prompts, string output) => new()
    {
        PolicyModel = policy, RewardModel = pm, Prompts = prompts, OutputDir = output, Iterations = 3, RolloutBatchSize = 8, MiniBatchSize = 4,
        PpoEpochs = 2, Optimizer = new() { LearningRate = 1e-3, Schedule = "constant" }, ValueLearningRate = 1e-3, Sampling = new() { MaxNewTokens = 8, Temperature = 0.7 }, SaveEvery = 1, Seed = 3,
        MaxPromptTokens = 64,
    };

    static List<MetricsEntry> Metrics(string output) => MetricsLog.Read(Path.Combine(output, TrainPolicy.MetricsFile));

    [Fact]
    public async Task Runs_iterations_with_lora_exports_both_models_and_the_first_ratio_is_one()
    {
        using var temp = new TempDir();
        var lm = TinyModels.Folder(temp.File("lm"), seed: 2);
        var pm = RandomPm(lm, temp.File("pm"));
        var output = temp.File("ppo");
        // low_memory (the default): while the policy trains, the rollout folder's base file is mapped whole into this
        // process (the trainers' and forward passes' MappedWeights) besides GenAI's own mappings of it; with
        // low_memory: false nothing maps it whole (checked by hand: this assertion then fails).
        var baseData = Path.GetFullPath(Path.Combine(output, TrainPolicy.RolloutPolicySubdir, ModelFolder.DataFile));
        var wholeFileMapped = new List<bool>();
        void OnPhase(string phase)
        {
            if (phase != "policy_update") return;
            var size = new FileInfo(baseData).Length;
            wholeFileMapped.Add(File.ReadLines("/proc/self/maps").Where(l => l.TrimEnd().EndsWith(" " + baseData, StringComparison.Ordinal)).Any(l =>
            {
                var range = l.Split(' ', 2)[0].Split('-');
                return Convert.ToUInt64(range[1], 16) - Convert.ToUInt64(range[0], 16) >= (ulong)size;
            }));
        }
        var summary = await TrainPolicy.Run(Config(lm, pm, Prompts(temp), output) with { Iterations = 2, Lora = new() { Rank = 4 }, MissingEosPenalty = 1 }, null, Ct, phase: OnPhase);
        Assert.NotEmpty(wholeFileMapped);
        Assert.All(wholeFileMapped, Assert.True);

        var metrics = Metrics(output);
        Assert.Equal([1L, 2L], metrics.Select(m => m.Step));
        foreach (var m in metrics)
        {
            foreach (var key in new[] { "score", "kl", "non_score_reward", "beta", "policy_loss", "value_loss", "clip_fraction", "approx_kl", "entropy", "response_length", "eos_fraction" })
                Assert.True(double.IsFinite(m.Values[key]), $"{key} = {m.Values[key]}");
            // Old log-probs come from the same weights the first step trains: ratio 1 on every token.
            Assert.Equal(0, m.Values["first_clip_fraction"]);
            Assert.True(Math.Abs(m.Values["first_approx_kl"]) < 1e-5, $"first approx_kl {m.Values["first_approx_kl"]}");
            Assert.InRange(m.Values["response_length"], 1, 9);
        }
        Assert.Equal(0, metrics[0].Values["kl"], 6);   // the policy starts as the reference
        // Weight sync with LoRA: the first iteration writes the base once; later ones write only the adapter file.
        var rolloutDir = Path.Combine(output, TrainPolicy.RolloutPolicySubdir);
        var adapterBytes = new FileInfo(Path.Combine(rolloutDir, RolloutPolicy.AdapterFile)).Length;
        Assert.True(metrics[0].Values["weight_sync_bytes"] > new FileInfo(Path.Combine(rolloutDir, ModelFolder.DataFile)).Length);
        Assert.Equal(adapterBytes, metrics[1].Values["weight_sync_bytes"]);
        foreach (var key in new[] { "weight_sync_seconds", "generation_seconds", "scoring_seconds", "forward_seconds", "policy_update_seconds", "value_update_seconds" })
            Assert.All(metrics, m => Assert.True(m.Values[key] >= 0 && m.Values[key] <= m.Values["seconds"], $"{key} = {m.Values[key]}"));
        Assert.Equal(0.05, metrics[0].Values["beta"]);

        // Both folders: the policy an LM folder whose weights moved, the value model a PM folder whose weights moved.
        Assert.Equal("policy", ModelFolder.ReadMetadata(summary.Model).Role);
        Assert.Equal("ppo", ModelFolder.ReadMetadata(summary.Model).Lineage[^1].Step);
        var before = ModelFolder.ReadWeights(lm);
        var after = ModelFolder.ReadWeights(summary.Model);
        Assert.False(before["model.layers.0.self_attn.q_proj.weight"].Data.SequenceEqual(after["model.layers.0.self_attn.q_proj.weight"].Data));
        Assert.True(before["model.layers.0.mlp.up_proj.weight"].Data.SequenceEqual(after["model.layers.0.mlp.up_proj.weight"].Data), "LoRA leaves untargeted weights alone");
        Assert.True(PreferenceModelFolder.IsPreferenceModel(summary.ValueModel));
        var pmBefore = PreferenceModelFolder.ReadWeights(pm);
        var pmAfter = PreferenceModelFolder.ReadWeights(summary.ValueModel);
        Assert.False(pmBefore[PreferenceModelGraphs.HeadWeight].Data.SequenceEqual(pmAfter[PreferenceModelGraphs.HeadWeight].Data));
        // With LoRA the value model is adapters over the PM's frozen base: targeted projections moved, the others did not.
        Assert.False(pmBefore["model.layers.0.self_attn.q_proj.weight"].Data.SequenceEqual(pmAfter["model.layers.0.self_attn.q_proj.weight"].Data));
        Assert.True(pmBefore["model.layers.0.mlp.up_proj.weight"].Data.SequenceEqual(pmAfter["model.layers.0.mlp.up_proj.weight"].Data));
        Assert.True(Directory.Exists(Path.Combine(output, TrainPolicy.RolloutPolicySubdir)));
    }

    [Fact]
    public async Task A_resumed_run_reproduces_the_uninterrupted_one()
    {
        using var temp = new TempDir();
        var lm = TinyModels.Folder(temp.File("lm"), seed: 2);
        var pm = RandomPm(lm, temp.File("pm"));
        var output = temp.File("ppo");
        var config = Config(lm, pm, Prompts(temp), output) with { KlTarget = 0.5, KlHorizon = 100 };
        await TrainPolicy.Run(config, null, Ct);
        var whole = Metrics(output);
        byte[] Bytes(string sub) => File.ReadAllBytes(Path.Combine(output, sub, ModelFolder.DataFile));
        var (policyBytes, valueBytes) = (Bytes(TrainPolicy.ModelSubdir), Bytes(TrainPolicy.ValueModelSubdir));

        // Remove the last iteration's value checkpoint (as a crash between the two saves would) and the exports: the
        // policy checkpoint left without its partner is dropped, and the rerun continues from iteration 2.
        Directory.Delete(Checkpoint.Latest(Path.Combine(output, "checkpoints", "value"))!, recursive: true);
        Directory.Delete(Path.Combine(output, TrainPolicy.ModelSubdir), recursive: true);
        Directory.Delete(Path.Combine(output, TrainPolicy.ValueModelSubdir), recursive: true);
        await TrainPolicy.Run(config, null, Ct);

        var resumed = Metrics(output);
        Assert.Equal([1L, 2L, 3L], resumed.Select(m => m.Step));   // iteration 3 written again, in place of the first run's row
        Assert.Equal(Path.GetFileName(Checkpoint.Latest(Path.Combine(output, "checkpoints", "policy"))), Path.GetFileName(Checkpoint.Latest(Path.Combine(output, "checkpoints", "value"))));
        var (first, again) = (whole[^1], resumed[^1]);
        Assert.Equal(3, again.Step);
        foreach (var (key, value) in first.Values.Where(kv => kv.Key != "seconds" && !kv.Key.EndsWith("_seconds")))
            Assert.True(value.Equals(again.Values[key]), $"{key}: {value} vs {again.Values[key]}");
        Assert.NotEqual(whole[0].Values["beta"], whole[2].Values["beta"]);   // the adaptive β moved, and was restored
        Assert.Equal(policyBytes, Bytes(TrainPolicy.ModelSubdir));
        Assert.Equal(valueBytes, Bytes(TrainPolicy.ValueModelSubdir));

        // Other settings under the same checkpoints are refused.
        var error = await Assert.ThrowsAsync<UserError>(() => TrainPolicy.Run(config with { Seed = 4 }, null, Ct));
        Assert.Contains("settings", error.Message);
        // Rows that could not fit the models' context are refused before anything runs.
        var tooLong = await Assert.ThrowsAsync<UserError>(() => TrainPolicy.Run(config with { MaxPromptTokens = 4000, OutputDir = temp.File("other") }, null, Ct));
        Assert.Contains("max_prompt_tokens", tooLong.Message);
    }

    /// <summary>
    /// The tiny LM with its LM head scaled up: a sharper next-token distribution (entropy ≈ 2 nats instead of ≈ 5.8 of a
    /// near-uniform 400-token vocabulary), so a few rollouts sample the same tokens often enough to learn from.
    /// </summary>
    static string SharpLm(TempDir temp)
    {
        var source = TinyModels.Folder(temp.File("lm-source"), seed: 2);
        var weights = ModelFolder.ReadWeights(source);
        foreach (ref var w in weights["lm_head.weight"].Data.AsSpan()) w *= 6;
        var dir = temp.File("lm");
        ModelWriter.Write(dir, TinyModels.Config, weights, source, "sl-cai", [new LineageEntry("test", null, DateTimeOffset.UtcNow)]);
        return dir;
    }

    /// <summary>
    /// Paired runs from the same start and seeds, β = 0.01 against β = 1000. What is checked cannot hang on
    /// which tokens a CPU's rounding samples: the first iteration (rollouts, scores, KL, update) is the same
    /// computation in both runs and gives the same numbers; the penalty each run reports is −β·KL of its own
    /// rollouts; and every metric stays finite. That the penalty pulls the policy towards the reference is
    /// shown on fixed rows (PpoKlPullTests), not on a sampled trajectory.
    /// </summary>
    [Fact]
    public async Task Paired_runs_share_their_first_iteration_and_report_the_penalty_of_their_own_beta()
    {
        using var temp = new TempDir();
        var lm = SharpLm(temp);
        var pm = ClassPm(lm, temp.File("pm"), TokenClasses(lm, "hi"));
        var prompts = temp.File("hi.jsonl");
        File.WriteAllText(prompts, "{\"prompt\": \"hi\"}\n");
        var config = Config(lm, pm, prompts, temp.File("free")) with
        {
            Iterations = 3, PpoEpochs = 2, Optimizer = new() { LearningRate = 1e-3, Schedule = "constant" }, ValueLearningRate = 1e-3, KlCoef = 0.01, Sampling = new() { Temperature = 0.7, MaxNewTokens = 12 }, SaveEvery = 100,
        };
        await TrainPolicy.Run(config, null, Ct);
        var free = Metrics(config.OutputDir);
        await TrainPolicy.Run(config with { OutputDir = temp.File("held"), KlCoef = 1000 }, null, Ct);
        var held = Metrics(temp.File("held"));

        Assert.Equal(3, free.Count);
        Assert.Equal(3, held.Count);
        // Iteration 1 samples from the same policy with the same seeds, and its KL is 0 before any update, so β
        // does not enter: the two runs agree exactly, and so does the KL of iteration 2's rollouts (after the
        // same first update).
        Assert.Equal(free[0].Values["score"], held[0].Values["score"]);
        Assert.Equal(free[1].Values["kl"], held[1].Values["kl"]);
        foreach (var (run, beta) in new[] { (free, 0.01), (held, 1000.0) })
            foreach (var m in run)
            {
                Assert.All(m.Values.Values, v => Assert.True(double.IsFinite(v), $"a metric is {v}"));
                Assert.Equal(beta, m.Values["beta"]);
                // The penalty is −β times the KL of the run's own rollouts (the mean per sequence).
                Assert.Equal(-beta * m.Values["kl"], m.Values["non_score_reward"], Math.Max(1e-9, 1e-9 * beta * Math.Abs(m.Values["kl"])));
            }
    }

    /// <summary>
    /// low_memory's default micro-batches of one row (gradients accumulated, weighted by response tokens) against whole
    /// mini-batches: iteration 1 samples the same rollouts (same weights, same seeds), so its scores agree exactly and
    /// its updates agree to float rounding. Only the first iteration is compared: after it the weights differ in their
    /// last bits, and a later sample may differ.
    /// </summary>
    [Fact]
    public async Task One_row_micro_batches_update_as_whole_mini_batches_do()
    {
        using var temp = new TempDir();
        var lm = TinyModels.Folder(temp.File("lm"), seed: 2);
        var pm = RandomPm(lm, temp.File("pm"));
        var config = Config(lm, pm, Prompts(temp), temp.File("rows")) with { Iterations = 1, Lora = new() { Rank = 4 }, SaveEvery = 100 };
        Assert.Equal(1, config.MicroBatchRows);
        Assert.Equal(0, (config with { LowMemory = false }).MicroBatchRows);
        Assert.Equal(0, (config with { MicroBatchSize = 0 }).MicroBatchRows);
        await TrainPolicy.Run(config, null, Ct);
        await TrainPolicy.Run(config with { OutputDir = temp.File("whole"), MicroBatchSize = 0 }, null, Ct);
        var (rows, whole) = (Metrics(temp.File("rows"))[0], Metrics(temp.File("whole"))[0]);
        foreach (var key in new[] { "score", "kl", "response_length" })
            Assert.Equal(whole.Values[key], rows.Values[key]);
        foreach (var key in new[] { "policy_loss", "value_loss", "approx_kl", "entropy", "clip_fraction", "value_clip_fraction", "policy_grad_norm", "value_grad_norm" })
            Assert.True(Math.Abs(rows.Values[key] - whole.Values[key]) <= 1e-4 * Math.Max(1, Math.Abs(whole.Values[key])),
                $"{key}: one-row micro-batches {rows.Values[key]:R}, whole mini-batches {whole.Values[key]:R}");
    }

    [Fact]
    public void Bad_configs_are_refused_naming_the_key()
    {
        const string required = "policy_model: p\nreward_model: r\nprompts: builtin:red-team-train\noutput_dir: o\n";
        void Refused(string extra, string key)
        {
            var e = Assert.Throws<UserError>(() => StageConfig.Parse<TrainPolicy.Config>(required + extra, "ppo.yaml"));
            Assert.Contains(key, e.Message);
        }
        Refused("mini_batch_size: 3\nrollout_batch_size: 8\n", "mini_batch_size");
        Refused("sampling:\n  temperature: 0\n", "temperature");
        Refused("kl_target: -1\n", "kl_target");
        Refused("kl_estimator: k2\n", "kl_estimator");
        Refused("lam: 1.5\n", "lam");
        Refused("ppo_epochs: 0\n", "ppo_epochs");
        Refused("missing_eos_penalty: -1\n", "missing_eos_penalty");
        Refused("micro_batch_size: -1\n", "micro_batch_size");
        Refused("wisper: 1\n", "wisper");
        Assert.Equal(KlEstimator.K3, StageConfig.Parse<TrainPolicy.Config>(required + "kl_estimator: k3\n", "ppo.yaml").KlEstimator);
    }

    [Fact]
    public void The_cli_exits_2_with_one_line_on_an_unknown_key_and_lists_the_keys()
    {
        using var temp = new TempDir();
        var yaml = temp.File("ppo.yaml");
        File.WriteAllText(yaml, "policy_model: p\nreward_model: r\nprompts: builtin:red-team-train\noutput_dir: o\nkl_coeff: 0.1\n");
        var bad = CliProcess.Run(["ppo", "--config", yaml]);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("kl_coef", bad.Stderr);
        Assert.Single(bad.Stderr.Trim().Split('\n'));

        var help = CliProcess.Run(["ppo", "--help-config"]);
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("rollout_batch_size", help.Stdout);
        Assert.Contains("kl_estimator", help.Stdout);
    }
}
