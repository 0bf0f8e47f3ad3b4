using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Records;
using RlaifOnnx.Reporting;
using RlaifOnnx.Training;

namespace RlaifOnnx.Stages;

/// <summary>
/// Stage 06, reinforcement learning from AI feedback (Constitutional AI §4: "we then train a policy via RL
/// against this PM"): PPO (Schulman et al. 2017) of the SL-CAI policy with the preference model's score as
/// the reward, a KL penalty to the SL-CAI reference and a value model initialised from the PM, with TRL's
/// PPOTrainer semantics (trl/trainer/ppo_trainer.py; Ziegler et al. 2019). Each iteration:
/// <list type="number">
/// <item>rollouts: ONNX Runtime GenAI's copy of the policy in output_dir/rollout_policy is brought to the
/// current weights (<see cref="RolloutPolicy"/>: with LoRA the base is written once and only the adapters move,
/// as an ONNX Runtime adapter; without, the whole model is rewritten) and samples one response per prompt,
/// seeded by (seed, iteration);</item>
/// <item>scores: the PM's reward of (conversation, response), rendered as the PM was trained;</item>
/// <item>log-probs of the response tokens under the policy and the reference, and the value model's values,
/// from forward passes over the live training weights;</item>
/// <item>per-token rewards −β·KL plus the score at the last token, GAE advantages and returns, whitening
/// (<see cref="PpoMath"/>);</item>
/// <item>ppo_epochs passes over seeded mini-batches: one policy step (clipped surrogate) and one value step
/// (clipped value loss) per mini-batch;</item>
/// <item>the KL controller's update and one metrics.jsonl line;</item>
/// <item>checkpoints of both trainers with the iteration and β every save_every iterations.</item>
/// </list>
/// Every draw depends on (seed, iteration), so a rerun resumes from the newest checkpoint and reproduces the
/// uninterrupted run. Output: metrics.jsonl, checkpoints/{policy,value}/, rollout_policy/, model/ (the policy,
/// an LM folder) and value_model/ (a PM folder).
///
/// As TRL, every log-prob is of softmax(logits / temperature) and the learning rate decays linearly per
/// iteration; what still differs (the score at the last response token, a separate value optimizer, rollouts
/// from a GenAI copy of the policy) is tabled in README's PPO section.
///
/// Run: <c>rlaif ppo --config ppo.yaml</c>.
/// </summary>
public static partial class TrainPolicy
{
    public const string ModelSubdir = "model";
    public const string ValueModelSubdir = "value_model";
    public const string RolloutPolicySubdir = "rollout_policy";
    public const string MetricsFile = "metrics.jsonl";

    /// <summary>Configuration of the PPO stage.</summary>
    public sealed record Config : IValidatableConfig
    {
        /// <summary>The policy to train: a language-model folder (the SL-CAI model).</summary>
        [ConfigPath] public required string PolicyModel { get; init; }
        /// <summary>The KL penalty's reference policy (null: policy_model, as in Constitutional AI).</summary>
        [ConfigPath] public string? ReferenceModel { get; init; }
        /// <summary>The preference-model folder whose score is the reward.</summary>
        [ConfigPath] public required string RewardModel { get; init; }
        /// <summary>The preference-model folder the value model starts from, head included (null: reward_model).</summary>
        [ConfigPath] public string? ValueModel { get; init; }
        /// <summary>Prompts: a JSONL/text file or a built-in set such as builtin:red-team-train.</summary>
        [ConfigPath] public required string Prompts { get; init; }
        /// <summary>Folder for metrics.jsonl, checkpoints/, rollout_policy/, model/ and value_model/.</summary>
        [ConfigPath] public required string OutputDir { get; init; }
        /// <summary>PPO iterations (rollout, then updates); a resumed run continues up to this.</summary>
        public int Iterations { get; init; } = 20;
        /// <summary>Prompts (one response each) per iteration.</summary>
        public int RolloutBatchSize { get; init; } = 16;
        /// <summary>Rows per policy/value step; must divide rollout_batch_size.</summary>
        public int MiniBatchSize { get; init; } = 4;
        /// <summary>
        /// Rows per ONNX Runtime run within a policy or value step, gradients accumulated (TRL's per-device batch with
        /// gradient accumulation), and in the forward passes for the old log-probs, values and rewards; 0 = the whole mini-batch at
        /// once; unset = 1 with low_memory (a run's activations, the [rows, T, vocabulary] logits among them, are then one
        /// row's), else the whole mini-batch.
        /// </summary>
        public int? MicroBatchSize { get; init; }

        /// <summary>The rows per run <see cref="MicroBatchSize"/> comes to (0 = the whole mini-batch).</summary>
        public int MicroBatchRows => MicroBatchSize ?? (LowMemory ? 1 : 0);
        /// <summary>Rows per forward pass for the old log-probs, values and rewards: micro_batch_size, or mini_batch_size when that is 0.</summary>
        public int ForwardRows => MicroBatchRows > 0 ? MicroBatchRows : MiniBatchSize;
        /// <summary>Whether the policy and value updates recompute layer activations (optimizer.gradient_checkpointing; unset: low_memory).</summary>
        public bool GradientCheckpointing => Optimizer.GradientCheckpointing ?? LowMemory;
        /// <summary>
        /// Policy AdamW and schedule: learning_rate, warmup, schedule, weight_decay, max_grad_norm (max_grad_norm applies
        /// to the value model too). The schedule steps once per iteration (linear: to 0 at the last, as TRL).
        /// </summary>
        public OptimizerConfig Optimizer { get; init; } = new() { Schedule = "linear" };
        /// <summary>
        /// LoRA adapters: rank (0 = train every weight), alpha, targets, dropout. With a rank, the value model gets
        /// adapters with the same settings over the PM's frozen base (and trains its head), as the policy over its own.
        /// </summary>
        public LoraConfig Lora { get; init; } = new();
        /// <summary>How rollouts are sampled: temperature (must be positive), top_p, max_new_tokens (of a response).</summary>
        public SamplingConfig Sampling { get; init; } = new() { Temperature = 0.7, MaxNewTokens = 53 };
        /// <summary>Passes over each rollout batch (TRL's num_ppo_epochs).</summary>
        public int PpoEpochs { get; init; } = 4;
        /// <summary>The value model's AdamW learning rate (constant).</summary>
        public double ValueLearningRate { get; init; } = 1e-5;
        /// <summary>PPO's ratio clip ε (TRL's cliprange).</summary>
        public double ClipEpsilon { get; init; } = 0.2;
        /// <summary>The value clip around the rollout's values (TRL's cliprange_value).</summary>
        public double ValueClip { get; init; } = 0.2;
        /// <summary>The KL penalty coefficient β (the initial one with kl_target).</summary>
        public double KlCoef { get; init; } = 0.05;
        /// <summary>
        /// Per-token KL estimator of the penalty: k1 (log π − log π_ref, TRL's default) or k3 ((r − 1) − log r, r = π_ref/π:
        /// never negative, but as a reward its policy gradient is not the KL's, while k1's is).
        /// </summary>
        public KlEstimator KlEstimator { get; init; } = KlEstimator.K1;
        /// <summary>Adaptive KL control (Ziegler et al. 2019): the per-sequence KL β steers to; null = fixed β.</summary>
        public double? KlTarget { get; init; }
        /// <summary>Adaptive KL control's horizon in samples.</summary>
        public double KlHorizon { get; init; } = 10000;
        /// <summary>Discount γ of GAE.</summary>
        public double Gamma { get; init; } = PpoMath.DefaultGamma;
        /// <summary>GAE's λ.</summary>
        public double Lam { get; init; } = PpoMath.DefaultLambda;
        /// <summary>Whiten the advantages over each rollout batch.</summary>
        public bool WhitenAdvantages { get; init; } = true;
        /// <summary>Subtracted from the score of a response that did not end with the end token (TRL's missing_eos_penalty); null = none.</summary>
        public double? MissingEosPenalty { get; init; }
        /// <summary>Prompts longer than this (rendered with the chat template, in tokens) are left out.</summary>
        public int MaxPromptTokens { get; init; } = 256;
        /// <summary>Seed of the prompt order, the rollouts, the mini-batch order and the LoRA initialisation.</summary>
        public int Seed { get; init; } = 1;
        /// <summary>Write checkpoints every this many iterations (and at the end).</summary>
        public int SaveEvery { get; init; } = 5;
        /// <summary>
        /// Trade some speed for a lower peak memory: with LoRA, GenAI's session and the trainers read the policy's base from
        /// one memory-mapped file (resident once, not twice); GenAI does not prepack weights (a heap copy of them); every
        /// ONNX Runtime session (GenAI's, the forward passes', the reward's, and the trainers' unless optimizer.cpu_memory_arena)
        /// allocates from one shared arena handed back after each run (Onnx.SharedArena); the updates and the forward passes
        /// run one row at a time (micro_batch_size unset), the updates recompute each layer's activations in the backward pass
        /// (optimizer.gradient_checkpointing unset), and the .NET garbage and the C heap's free memory go back to the system
        /// between phases. bench/RESULTS.md measures both settings.
        /// </summary>
        public bool LowMemory { get; init; } = true;

        public IEnumerable<ConfigProblem> Problems()
        {
            if (Iterations < 1) yield return new("iterations", $"must be at least 1, got {Iterations}");
            if (!(Sampling.Temperature > 0)) yield return new("sampling", $"temperature must be positive (PPO samples), got {Sampling.Temperature}");
            // PPO trains the distribution it samples from, softmax(logits / temperature); nucleus sampling draws from another.
            if (Sampling.TopP < 1) yield return new("sampling", $"top_p must be 1 for PPO rollouts (got {Sampling.TopP}): the policy trained is softmax(logits/temperature), which top_p < 1 does not sample");
            // Dropout would make the trained log-probs differ from the rollout's (and the first ratio ≠ 1).
            if (Lora.Dropout > 0) yield return new("lora", $"dropout must be 0 for PPO (got {Lora.Dropout}): rollouts and the old log-probs run without it");
            if (RolloutBatchSize < 1) yield return new("rollout_batch_size", $"must be at least 1, got {RolloutBatchSize}");
            if (MiniBatchSize < 1) yield return new("mini_batch_size", $"must be at least 1, got {MiniBatchSize}");
            else if (RolloutBatchSize >= 1 && RolloutBatchSize % MiniBatchSize != 0)
                yield return new("mini_batch_size", $"{MiniBatchSize} does not divide rollout_batch_size {RolloutBatchSize}");
            if (MicroBatchSize < 0) yield return new("micro_batch_size", $"must be 0 or more, got {MicroBatchSize}");
            if (PpoEpochs < 1) yield return new("ppo_epochs", $"must be at least 1, got {PpoEpochs}");
            if (!(ValueLearningRate > 0)) yield return new("value_learning_rate", $"must be positive, got {ValueLearningRate}");
            if (!(ClipEpsilon > 0)) yield return new("clip_epsilon", $"must be positive, got {ClipEpsilon}");
            if (!(ValueClip > 0)) yield return new("value_clip", $"must be positive, got {ValueClip}");
            if (!(KlCoef >= 0)) yield return new("kl_coef", $"must be 0 or more, got {KlCoef}");
            if (KlTarget is { } target && !(target > 0)) yield return new("kl_target", $"must be positive, got {target}");
            if (!(KlHorizon > 0)) yield return new("kl_horizon", $"must be positive, got {KlHorizon}");
            if (!(Gamma is > 0 and <= 1)) yield return new("gamma", $"must be in (0, 1], got {Gamma}");
            if (!(Lam is >= 0 and <= 1)) yield return new("lam", $"must be in [0, 1], got {Lam}");
            if (MissingEosPenalty is { } penalty && !(penalty >= 0)) yield return new("missing_eos_penalty", $"must be 0 or more, got {penalty}");
            if (MaxPromptTokens < 1) yield return new("max_prompt_tokens", $"must be at least 1, got {MaxPromptTokens}");
            if (SaveEvery < 1) yield return new("save_every", $"must be at least 1, got {SaveEvery}");
        }
    }

    /// <summary>What a run produced: the exported policy and value model and the last iteration's metrics.</summary>
    public sealed record Summary(string Model, string ValueModel, int Iterations, IReadOnlyDictionary<string, double> LastMetrics);

    /// <summary>One sampled response: the whole row (prompt ids, response ids, the end token when it stopped there).</summary>
    sealed record Rollout(PromptItem Prompt, int[] Ids, int PromptLength, string Text, bool EndedWithEos)
    {
        public int ResponseLength => Ids.Length - PromptLength;
        /// <summary>[L−1]: position t ↔ token t+1 (see <see cref="Ppo"/>); true on the response tokens.</summary>
        public bool[] ResponseMask() => Enumerable.Range(0, Ids.Length - 1).Select(t => t + 1 >= PromptLength).ToArray();
    }

    /// <summary>The per-token arrays of one row the loss graphs read, [L−1] each (position t ↔ token t+1).</summary>
    sealed record RowArrays(double[] LogProbs, double[] Values, double[] Advantages, double[] Returns, bool[] Mask);

    /// <summary>
    /// Trains, checkpoints and exports; returns the exported folders and the last metrics. <paramref name="phase"/>, when
    /// given, is told the name of each phase as it starts (setup, sync, generation, scoring, forward, policy_update,
    /// value_update, export), e.g. for a memory sampler to attribute what it sees.
    /// </summary>
    public static async Task<Summary> Run(Config config, Action<string>? log = null, CancellationToken cancellationToken = default, string source = "ppo config",
        Action<string>? phase = null)
    {
        log ??= _ => { };
        // With low_memory each phase starts from what is live: the .NET garbage of the last one is collected and its memory
        // decommitted (else it stays resident up to the GC's allocation budget, tens of MiB), and what it freed in the C heap goes back to the
        // system (glibc keeps freed blocks below its mmap threshold resident, and the next phase — other sizes: GenAI,
        // the forward passes, the updates — does not reuse all of them, so the heap would grow by every phase's leftovers).
        var enter = (string name) =>
        {
            if (config.LowMemory)
            {
                GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
                CHeap.Trim();
            }
            phase?.Invoke(name);
        };
        enter("setup");
        foreach (var problem in config.Problems()) throw UserError.At(source, null, problem.Key, problem.Problem);
        var referenceDir = config.ReferenceModel ?? config.PolicyModel;
        var valueDir = config.ValueModel ?? config.RewardModel;
        var policyMeta = ModelFolder.ReadMetadata(config.PolicyModel);
        if (PreferenceModelFolder.IsPreferenceModel(config.PolicyModel))
            PreferenceModelFolder.RefuseWhereLanguageModelNeeded(config.PolicyModel, policyMeta);
        var model = policyMeta.Config;
        var referenceConfig = ModelFolder.ReadMetadata(referenceDir).Config;
        var valueMeta = PreferenceModelFolder.RequirePreferenceModel(valueDir);
        PreferenceModelFolder.RequirePreferenceModel(config.RewardModel);
        // Every row (prompt, response, end token) must fit the policy's and the value model's context.
        var longest = config.MaxPromptTokens + config.Sampling.MaxNewTokens + 1;
        if (longest > model.MaxPositions || longest > valueMeta.Config.MaxPositions)
            throw UserError.At(source, null, "max_prompt_tokens", $"{config.MaxPromptTokens} prompt tokens + {config.Sampling.MaxNewTokens} new tokens + the end token exceed " +
                $"the context of the policy ({model.MaxPositions}) or the value model ({valueMeta.Config.MaxPositions})");
        // The reference and the value model read the policy's token ids: they must share its tokenizer.
        SameTokenizer(config.PolicyModel, referenceDir, "reference_model", source);
        SameTokenizer(config.PolicyModel, valueDir, "value_model", source);

        // 0. Prompts, rendered with the policy's chat template; over-long ones are left out.
        var prompts = RenderPrompts(config, source, out var dropped);
        log($"{prompts.Count} prompts{(dropped > 0 ? $" ({dropped} over {config.MaxPromptTokens} tokens left out)" : "")}");

        using var sessions = OpenSessions(config, policyMeta, referenceConfig, valueMeta.Config, referenceDir, valueDir);
        var (policyTrainer, valueTrainer, rollout, lora) = (sessions.PolicyTrainer, sessions.ValueTrainer, sessions.Rollout, sessions.Lora);
        var (policyForward, referenceForward, valueForward, rewardScorer) = (sessions.PolicyForward, sessions.ReferenceForward, sessions.ValueForward, sessions.RewardScorer);

        // Resume: both trainers from their newest common checkpoint made with the same settings.
        var policyCheckpoints = Path.Combine(config.OutputDir, "checkpoints", "policy");
        var valueCheckpoints = Path.Combine(config.OutputDir, "checkpoints", "value");
        var settings = Settings(config);
        var startIteration = 0;
        var beta = config.KlCoef;
        DropUnmatchedCheckpoints(policyCheckpoints, valueCheckpoints);
        if (Checkpoint.Resume(policyCheckpoints, policyTrainer, settings, "output_dir") is { } resumed)
        {
            Checkpoint.Resume(valueCheckpoints, valueTrainer, settings, "output_dir");
            var state = JsonSerializer.Deserialize<Training.CheckpointState>(File.ReadAllText(Path.Combine(resumed, Checkpoint.StateFile)), ModelFolder.Json)!;
            startIteration = state.Extra["iteration"]!.GetValue<int>();
            beta = state.Extra["beta"]!.GetValue<double>();
            log($"resuming from {resumed} (iteration {startIteration}, β {beta})");
        }
        var kl = config.KlTarget is { } klTarget ? KlController.Adaptive(beta, klTarget, config.KlHorizon) : KlController.Fixed(beta);

        var order = new DataOrder(prompts.Count, config.Seed);
        long syncedStep = -1;
        var last = new Dictionary<string, double>();
        {
            using var metrics = new MetricsLog(Path.Combine(config.OutputDir, MetricsFile));
            using var progress = new Progress("ppo", config.Iterations);
            progress.SetDone(startIteration);
            for (var iteration = startIteration; iteration < config.Iterations; iteration++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var clock = Stopwatch.StartNew();

                // 1. Weight sync (GenAI follows the trained weights: the adapters only, with LoRA), then rollouts.
                enter("sync");
                var phaseClock = Stopwatch.StartNew();
                var (syncSeconds, syncBytes) = (0.0, 0L);
                if (syncedStep != policyTrainer.StepCount)
                {
                    rollout.Sync(policyTrainer.TrainableWeights(),
                        [.. policyMeta.Lineage, new LineageEntry($"ppo rollout policy (iteration {iteration})", Path.GetFullPath(config.PolicyModel), DateTimeOffset.UtcNow)]);
                    (syncSeconds, syncBytes) = (rollout.LastSyncSeconds, rollout.LastSyncBytes);
                    syncedStep = policyTrainer.StepCount;
                }
                var generator = rollout.Generator;
                enter("generation");
                phaseClock.Restart();
                var batchPrompts = Enumerable.Range(0, config.RolloutBatchSize).Select(i => prompts[order.At((long)iteration * config.RolloutBatchSize + i)]).ToList();
                // One GenAI batch per mini-batch of prompts, each with its own seed: one seed for all would give a
                // prompt that appears in two batches the same response twice.
                var generations = new List<Generation>();
                foreach (var (chunk, c) in batchPrompts.Chunk(config.MiniBatchSize).Select((chunk, c) => (chunk, c)))
                {
                    var sampling = new SamplingOptions
                    {
                        MaxNewTokens = config.Sampling.MaxNewTokens, Temperature = config.Sampling.Temperature, TopP = config.Sampling.TopP,
                        Seed = StableRandom.SeedFor(config.Seed, $"ppo rollout {iteration} {c}"),
                    };
                    generations.AddRange(await generator.GenerateAsync(chunk.Select(p => p.Text).ToList(), sampling, cancellationToken));
                }
                var rollouts = batchPrompts.Zip(generations, (p, g) =>
                {
                    var stopped = g.FinishReason == "stop";
                    // The end token the policy sampled (a model may have several); the main one only when GenAI hid it.
                    int[] end = stopped ? [g.EndTokenId ?? model.EosTokenId] : [];
                    return new Rollout(p.Item, [.. g.PromptIds, .. g.NewIds, .. end], g.PromptIds.Length, g.Text, stopped);
                }).ToList();
                var generationSeconds = phaseClock.Elapsed.TotalSeconds;
                enter("scoring");
                phaseClock.Restart();

                // 2. Scores: the PM's reward of (conversation, response), rendered as the PM was trained.
                var scores = rewardScorer.Rewards(rollouts.Select(r => (r.Prompt.Messages, r.Text)).ToList(), cancellationToken);
                var penalised = rollouts.Select((r, b) => PpoMath.PenalizeMissingEos(scores[b], r.EndedWithEos, config.MissingEosPenalty)).ToArray();
                var scoringSeconds = phaseClock.Elapsed.TotalSeconds;
                enter("forward");
                phaseClock.Restart();

                // 3. Old log-probs (policy, reference) and values with the current weights, in runs of micro_batch_size rows (of
                // mini_batch_size when that is 0): a run's [rows, T, vocabulary] log-probs are its largest tensors.
                var logProbs = RowOutputs(policyForward, rollouts, model.PadTokenId, config.ForwardRows, cancellationToken);
                var refLogProbs = RowOutputs(referenceForward, rollouts, model.PadTokenId, config.ForwardRows, cancellationToken);
                var values = RowOutputs(valueForward, rollouts, model.PadTokenId, config.ForwardRows, cancellationToken);
                var forwardSeconds = phaseClock.Elapsed.TotalSeconds;

                // 4. Per-token KL and rewards, GAE, whitening.
                var masks = rollouts.Select(r => r.ResponseMask()).ToList();
                var tokenKl = rollouts.Select((_, b) => PpoMath.TokenKl(logProbs[b], refLogProbs[b], masks[b], config.KlEstimator)).ToList();
                var rows = new List<RowArrays>();
                double nonScoreSum = 0;
                for (var b = 0; b < rollouts.Count; b++)
                {
                    var rewards = PpoMath.TokenRewards(tokenKl[b], masks[b], kl.Value, penalised[b]);
                    nonScoreSum -= kl.Value * tokenKl[b].Sum();
                    var (advantages, returns) = PpoMath.Gae(rewards, values[b], masks[b], config.Gamma, config.Lam);
                    // Masked positions keep log-prob 0 so the ratio there stays finite (see Ppo).
                    var oldLogProbs = logProbs[b].Select((v, t) => masks[b][t] ? v : 0).ToArray();
                    rows.Add(new RowArrays(oldLogProbs, values[b], advantages, returns, masks[b]));
                }
                if (config.WhitenAdvantages)
                {
                    var whitened = PpoMath.MaskedWhiten(rows.Select(r => r.Advantages).ToList(), masks);
                    rows = rows.Select((r, b) => r with { Advantages = whitened[b] }).ToList();
                }

                // 5. PPO epochs over seeded mini-batches: one policy step and one value step each.
                var steps = new List<(IReadOnlyDictionary<string, double> Policy, IReadOnlyDictionary<string, double> Value)>();
                var (policySeconds, valueSeconds) = (0.0, 0.0);
                var shuffle = StableRandom.For(config.Seed, $"ppo mini-batches {iteration}");
                for (var epoch = 0; epoch < config.PpoEpochs; epoch++)
                {
                    var permutation = Enumerable.Range(0, rollouts.Count).ToArray();
                    shuffle.Shuffle(permutation);
                    foreach (var chunk in permutation.Chunk(config.MiniBatchSize))
                    {
                        var batch = MiniBatch(chunk.Select(i => (rollouts[i], rows[i])).ToList(), model.PadTokenId);
                        enter("policy_update");
                        phaseClock.Restart();
                        var policyStep = policyTrainer.Step(batch, cancellationToken);
                        policySeconds += phaseClock.Elapsed.TotalSeconds;
                        enter("value_update");
                        phaseClock.Restart();
                        var valueStep = valueTrainer.Step(batch, cancellationToken);
                        valueSeconds += phaseClock.Elapsed.TotalSeconds;
                        if (!double.IsFinite(policyStep.Loss) || !double.IsFinite(valueStep.Loss))
                            throw new InvalidOperationException($"a loss became non-finite at iteration {iteration + 1} (policy {policyStep.Loss}, value {valueStep.Loss}); lower the learning rates");
                        steps.Add((policyStep.Metrics, valueStep.Metrics));
                    }
                }

                // 6. Metrics of this iteration, then the KL controller's update.
                var meanKl = PpoMath.MeanSequenceKl(tokenKl);
                last = new Dictionary<string, double>
                {
                    ["score"] = scores.Average(),
                    ["kl"] = meanKl,
                    ["non_score_reward"] = nonScoreSum / rollouts.Count,
                    ["rlhf_reward"] = penalised.Average() + nonScoreSum / rollouts.Count,
                    ["beta"] = kl.Value,
                    ["policy_loss"] = steps.Average(s => s.Policy["loss"]),
                    ["value_loss"] = steps.Average(s => s.Value["loss"]),
                    ["clip_fraction"] = steps.Average(s => s.Policy[Ppo.ClipFractionOutput]),
                    ["value_clip_fraction"] = steps.Average(s => s.Value[Ppo.ValueClipFractionOutput]),
                    ["approx_kl"] = steps.Average(s => s.Policy[Ppo.ApproxKlOutput]),
                    ["entropy"] = steps.Average(s => s.Policy[Ppo.EntropyOutput]),
                    // The first step's ratio is 1 by construction (old log-probs from the same weights); anything else is a mismatch.
                    ["first_clip_fraction"] = steps[0].Policy[Ppo.ClipFractionOutput],
                    ["first_approx_kl"] = steps[0].Policy[Ppo.ApproxKlOutput],
                    ["policy_grad_norm"] = steps.Average(s => s.Policy["grad_norm"]),
                    ["value_grad_norm"] = steps.Average(s => s.Value["grad_norm"]),
                    ["response_length"] = rollouts.Average(r => r.ResponseLength),
                    ["eos_fraction"] = rollouts.Count(r => r.EndedWithEos) / (double)rollouts.Count,
                    ["seconds"] = clock.Elapsed.TotalSeconds,
                    // Where the iteration's time went (bench/ reads these): sync, sampling, PM scores, the forward passes
                    // for old log-probs (policy, reference) and values, and the policy and value updates.
                    ["weight_sync_seconds"] = syncSeconds,
                    ["weight_sync_bytes"] = syncBytes,
                    ["generation_seconds"] = generationSeconds,
                    ["scoring_seconds"] = scoringSeconds,
                    ["forward_seconds"] = forwardSeconds,
                    ["policy_update_seconds"] = policySeconds,
                    ["value_update_seconds"] = valueSeconds,
                };
                metrics.Write(iteration + 1, last);
                kl.Update(meanKl, rollouts.Count);
                progress.Advance();
                progress.SetStatus($"score {last["score"]:F3}, kl {meanKl:F3}");

                // 7. Checkpoints of both trainers with the iteration and β (the value trainer's last: see DropUnmatchedCheckpoints).
                if ((iteration + 1) % config.SaveEvery == 0 || iteration + 1 == config.Iterations)
                {
                    var extra = new JsonObject { ["settings"] = settings.DeepClone(), ["iteration"] = iteration + 1, ["beta"] = kl.Value };
                    Checkpoint.Save(policyCheckpoints, policyTrainer, null, extra);
                    Checkpoint.Save(valueCheckpoints, valueTrainer, null, (JsonObject)extra.DeepClone());
                }
            }
        }

        // Export the policy (LoRA merged) and the value model.
        enter("export");
        var target = Path.Combine(config.OutputDir, ModelSubdir);
        ModelWriter.Write(target, model, Export.Weights(model, sessions.PolicyFrozenArrays(), policyTrainer, sessions.Adapters, lora?.Scale ?? 0), config.PolicyModel, "policy",
            [.. policyMeta.Lineage, new LineageEntry("ppo", Path.GetFullPath(config.PolicyModel), DateTimeOffset.UtcNow)]);
        var valueTarget = Path.Combine(config.OutputDir, ValueModelSubdir);
        PreferenceModelFolder.Write(valueTarget, valueMeta.Config,
            Export.Weights(valueMeta.Config, sessions.ValueFrozenArrays(), valueTrainer, sessions.ValueAdapters, lora?.Scale ?? 0, PreferenceModelGraphs.Shapes(valueMeta.Config)), valueDir,
            [.. valueMeta.Lineage, new LineageEntry("ppo value model", Path.GetFullPath(valueDir), DateTimeOffset.UtcNow)]);
        return new Summary(target, valueTarget, config.Iterations, last);
    }

    /// <summary>A prompt rendered with the policy's chat template (the text generation continues).</summary>
    sealed record RenderedPrompt(PromptItem Item, string Text);

    static List<RenderedPrompt> RenderPrompts(Config config, string source, out int dropped)
    {
        var items = PromptSources.ReadPrompts(config.Prompts);
        var template = ChatTemplate.FromFolder(config.PolicyModel)
            ?? throw UserError.At(Path.Combine(config.PolicyModel, ModelFolder.TokenizerConfigFile), null, "chat_template", "is missing: PPO renders its prompts as conversations");
        using var tokenizer = RewardScorer.OpenTokenizer(config.PolicyModel);
        var kept = new List<RenderedPrompt>();
        foreach (var item in items)
        {
            var text = template.Render(tokenizer, item.Messages);
            using var ids = tokenizer.Encode(text);
            if (ids[0].Length <= config.MaxPromptTokens) kept.Add(new RenderedPrompt(item, text));
        }
        dropped = items.Count - kept.Count;
        if (kept.Count == 0) throw UserError.At(source, null, "max_prompt_tokens", $"every one of the {items.Count} prompts is longer than {config.MaxPromptTokens} tokens");
        return kept;
    }

    static void SameTokenizer(string policyDir, string otherDir, string key, string source)
    {
        var a = Path.Combine(policyDir, ModelFolder.TokenizerFile);
        var b = Path.Combine(otherDir, ModelFolder.TokenizerFile);
        if (File.Exists(a) && File.Exists(b) && !File.ReadAllBytes(a).AsSpan().SequenceEqual(File.ReadAllBytes(b)))
            throw UserError.At(source, null, key, $"{otherDir} has another tokenizer than policy_model (it must read the policy's token ids)");
    }

    /// <summary>
    /// The policy checkpoint is written before the value one, so a crash between the two leaves a policy
    /// checkpoint without its value partner: checkpoints newer than the newest pair are removed, and both
    /// trainers resume from the same iteration.
    /// </summary>
    static void DropUnmatchedCheckpoints(string policyRoot, string valueRoot)
    {
        static List<string> Names(string root) => Directory.Exists(root)
            ? Directory.GetDirectories(root, "step-*").Where(d => File.Exists(Path.Combine(d, Checkpoint.StateFile))).Select(Path.GetFileName).OfType<string>().ToList()
            : [];
        var policy = Names(policyRoot);
        var value = Names(valueRoot);
        var common = policy.Intersect(value).Order(StringComparer.Ordinal).LastOrDefault();
        foreach (var (root, names) in new[] { (policyRoot, policy), (valueRoot, value) })
            foreach (var name in names.Where(n => common is null || string.CompareOrdinal(n, common) > 0))
                Directory.Delete(Path.Combine(root, name), recursive: true);
    }

    /// <summary>The settings a resumed run must share with the checkpoint it continues.</summary>
    static JsonObject Settings(Config c) => new()
    {
        ["policy_model"] = Path.GetFullPath(c.PolicyModel), ["reference_model"] = Path.GetFullPath(c.ReferenceModel ?? c.PolicyModel),
        ["reward_model"] = Path.GetFullPath(c.RewardModel), ["value_model"] = Path.GetFullPath(c.ValueModel ?? c.RewardModel), ["prompts"] = c.Prompts,
        ["rollout_batch_size"] = c.RolloutBatchSize, ["mini_batch_size"] = c.MiniBatchSize, ["micro_batch_size"] = c.MicroBatchRows, ["ppo_epochs"] = c.PpoEpochs,
        ["optimizer"] = StageConfig.ToJson(c.Optimizer), ["value_learning_rate"] = c.ValueLearningRate, ["clip_epsilon"] = c.ClipEpsilon,
        ["value_clip"] = c.ValueClip, ["kl_coef"] = c.KlCoef, ["kl_estimator"] = StageConfig.EnumName(c.KlEstimator), ["kl_target"] = c.KlTarget,
        ["kl_horizon"] = c.KlHorizon, ["gamma"] = c.Gamma, ["lam"] = c.Lam, ["whiten_advantages"] = c.WhitenAdvantages,
        ["sampling"] = StageConfig.ToJson(c.Sampling), ["missing_eos_penalty"] = c.MissingEosPenalty,
        ["max_prompt_tokens"] = c.MaxPromptTokens, ["lora"] = StageConfig.ToJson(c.Lora),
        ["seed"] = c.Seed, 
    };

    /// <summary>
    /// The policy trainer's options: the optimizer section with its schedule stepped once per iteration over
    /// that iteration's ppo_epochs · rollout/mini-batch updates (warm-up counted in iterations too), as TRL steps
    /// its scheduler once per batch of rollouts.
    /// </summary>
    internal static TrainerOptions PolicyTrainerOptions(Config config)
    {
        var options = TrainerOptions.From(config.Optimizer, config.Iterations);
        var updatesPerIteration = config.PpoEpochs * (config.RolloutBatchSize / config.MiniBatchSize);
        return options with
        {
            Schedule = options.Schedule! with { UpdatesPerStep = updatesPerIteration }, MicroBatchSize = config.MicroBatchRows,
            GradientCheckpointing = config.GradientCheckpointing,
        };
    }
}
