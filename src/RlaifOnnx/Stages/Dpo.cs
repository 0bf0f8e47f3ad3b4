using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Reporting;
using RlaifOnnx.Training;

namespace RlaifOnnx.Stages;

/// <summary>
/// Offline direct preference optimisation (Rafailov et al. 2023; TRL's DPOTrainer) on the label stage's
/// preferences: the open Constitutional AI recipe SFT → AI labels → DPO, with the SL-CAI model as both the
/// start and the reference. Each line of <see cref="Config.Preferences"/> is a TRL preference example
/// ({prompt, chosen, rejected}, strings or message lists; the label stage's preferences.jsonl is one). Loss
/// `sigmoid` is TRL's; `soft` trains towards the soft label instead, p(chosen) = (1 + margin)/2 from the line's
/// margin (|2·p_a − 1| in preferences.jsonl; 1 when absent).
///
/// 1. tokenise every pair (the prompt rendered with the chat template, each completion's tokens the targets);
/// 2. the reference model's summed completion log-probs, computed once into reference_logps.jsonl (resumable);
///    with LoRA and no other reference the reference is the frozen base, so one copy of the weights serves both;
/// 3. train (seeded order, checkpoints, exact resume), logging TRL's rewards/chosen, rewards/rejected,
///    rewards/accuracies and rewards/margins;
/// 4. export the policy as a model folder (LoRA merged).
///
/// Run: <c>rlaif dpo --config dpo.yaml</c>. Output in output_dir: reference_logps.jsonl, metrics.jsonl,
/// checkpoints/, model/.
/// </summary>
public static class Dpo
{
    public const string ReferenceFile = "reference_logps.jsonl";
    public const string MetricsFile = "metrics.jsonl";
    public const string ModelSubdir = "model";

    /// <summary>Configuration of the DPO stage.</summary>
    public sealed record Config : IValidatableConfig
    {
        /// <summary>The model to train: a language-model folder (the SL-CAI model).</summary>
        [ConfigPath] public required string Model { get; init; }
        /// <summary>The reference model (null: the model itself, as it starts).</summary>
        [ConfigPath] public string? ReferenceModel { get; init; }
        /// <summary>Preference JSONL: {prompt, chosen, rejected} per line (strings or message lists), optional margin — the label stage's preferences.jsonl or any TRL preference file.</summary>
        [ConfigPath] public required string Preferences { get; init; }
        /// <summary>Output folder: reference_logps.jsonl, metrics.jsonl, checkpoints/, model/.</summary>
        [ConfigPath] public required string OutputDir { get; init; }
        /// <summary>sigmoid (TRL's DPO loss, the chosen answer preferred with probability 1) or soft (towards p = (1 + margin)/2).</summary>
        public DpoLoss Loss { get; init; } = DpoLoss.Sigmoid;
        /// <summary>β, the strength of the implicit KL constraint to the reference (TRL's default 0.1).</summary>
        public double Beta { get; init; } = 0.1;
        /// <summary>Optimizer steps in total.</summary>
        public int Steps { get; init; } = 100;
        /// <summary>Preference pairs per optimizer step.</summary>
        public int BatchSize { get; init; } = 8;
        /// <summary>Pairs per ONNX Runtime run (gradients accumulated); 0 = the whole batch.</summary>
        public int MicroBatchSize { get; init; }
        /// <summary>Longest prompt + completion in tokens; longer rows keep their last tokens.</summary>
        public int MaxLength { get; init; } = 512;
        /// <summary>AdamW and its schedule (TRL's DPO defaults: learning rate 1e-6, linear).</summary>
        public OptimizerConfig Optimizer { get; init; } = new() { LearningRate = 1e-6, Schedule = "linear" };
        /// <summary>LoRA adapters: rank (0 = train every weight), alpha, targets, dropout.</summary>
        public LoraConfig Lora { get; init; } = new();
        /// <summary>Seed of the data order and the LoRA initialisation.</summary>
        public int Seed { get; init; } = 1;
        /// <summary>Write a checkpoint every this many steps (and at the end).</summary>
        public int SaveEvery { get; init; } = 50;
        /// <summary>Use only the first N pairs (null: all).</summary>
        public int? Limit { get; init; }

        public IEnumerable<ConfigProblem> Problems()
        {
            if (!(Beta > 0) || double.IsInfinity(Beta)) yield return new("beta", $"must be positive, got {Beta}");
            if (Steps < 1) yield return new("steps", $"must be at least 1, got {Steps}");
            if (BatchSize < 1) yield return new("batch_size", $"must be at least 1, got {BatchSize}");
            if (MicroBatchSize < 0) yield return new("micro_batch_size", $"must be 0 or more, got {MicroBatchSize}");
            if (MaxLength < 2) yield return new("max_length", $"needs at least 2 tokens, got {MaxLength}");
            if (SaveEvery < 1) yield return new("save_every", $"must be at least 1, got {SaveEvery}");
            if (Limit is < 1) yield return new("limit", $"must be at least 1, got {Limit}");
            if (Lora.Dropout > 0) yield return new("lora", "dropout is not supported by the dpo stage (the reference pass and the update would see different adapters)");
        }
    }

    public enum DpoLoss { Sigmoid, Soft }

    /// <summary>A preference line as TRL writes it; margin is the label stage's |2·p_a − 1|.</summary>
    public sealed record PreferenceLine(string? Id = null, JsonElement? Prompt = null, JsonElement? Chosen = null, JsonElement? Rejected = null, double? Margin = null);

    /// <summary>One tokenised pair: the chosen and rejected rows and the probability the chosen one is preferred.</summary>
    sealed record Pair(string Id, TokenSequence Chosen, TokenSequence Rejected, float Target);

    /// <summary>A line of reference_logps.jsonl: the reference's summed completion log-probs of one pair.</summary>
    public sealed record ReferenceLogProbs(string Id, double Chosen, double Rejected);

    /// <summary>Trains, checkpoints and exports; returns the exported model folder.</summary>
    public static string Run(Config config, Action<string>? log = null, CancellationToken cancellationToken = default, string source = "dpo config")
    {
        log ??= _ => { };
        StageConfig.Check(config, source);
        var meta = ModelFolder.ReadMetadata(config.Model);
        var model = meta.Config;
        var referenceDir = config.ReferenceModel ?? config.Model;
        var referenceMeta = ModelFolder.ReadMetadata(referenceDir);

        // 1. Every pair, checked and tokenised before anything runs.
        var pairs = ReadPairs(config, model);
        log($"{pairs.Count} preference pairs, {pairs.Sum(p => p.Chosen.Ids.Length + p.Rejected.Ids.Length):N0} tokens");

        // 2. The reference's log-probs, once (a rerun keeps the pairs already computed).
        var weights = ModelFolder.ReadWeights(config.Model);
        var sharesBase = config.Lora.Enabled && Path.GetFullPath(referenceDir) == Path.GetFullPath(config.Model);
        var referenceWeights = sharesBase || Path.GetFullPath(referenceDir) == Path.GetFullPath(config.Model) ? weights : ModelFolder.ReadWeights(referenceDir);
        var reference = ReferenceLogProbsOf(pairs, referenceMeta.Config, referenceWeights, Path.Combine(config.OutputDir, ReferenceFile), Math.Max(1, config.MicroBatchSize), cancellationToken);

        // 3. The training graph and its weights (LoRA: adapters over the frozen model).
        var lora = LoraOptions.From(config.Lora);
        var graph = Training.Dpo.Graph(model, config.Beta, lora);
        IReadOnlyList<LoraAdapter> adapters = lora is null ? [] : Lora.Apply(DecoderGraphs.Training(model, DataType.Float), lora).Adapters;
        IReadOnlyDictionary<string, WeightTensor> trainable = lora is null ? Copy(weights) : Lora.InitialWeights(adapters, config.Seed);
        IReadOnlyDictionary<string, WeightTensor> frozen = lora is null ? new Dictionary<string, WeightTensor>() : weights;
        var options = TrainerOptions.From(config.Optimizer, config.Steps) with { MicroBatchSize = 2 * config.MicroBatchSize };   // rows: two per pair
        var schedule = options.Schedule!;
        using var trainer = new Trainer(graph, Training.Dpo.LossOutput, trainable, frozen, Training.Dpo.Options(options));

        // 4. Resume from the newest checkpoint made with the same settings, then train.
        var checkpoints = Path.Combine(config.OutputDir, "checkpoints");
        var settings = Settings(config);
        if (Checkpoint.Resume(checkpoints, trainer, settings, "output_dir") is { } resumed)
            log($"resuming from {resumed} (step {trainer.StepCount})");
        var order = new DataOrder(pairs.Count, config.Seed);
        using (var metrics = new MetricsLog(Path.Combine(config.OutputDir, MetricsFile)))
        using (var progress = new Progress("dpo", config.Steps))
        {
            progress.SetDone(trainer.StepCount);
            while (trainer.StepCount < config.Steps)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var step = trainer.StepCount;
                var batchPairs = Enumerable.Range(0, config.BatchSize).Select(i => pairs[order.At(step * config.BatchSize + i)]).ToList();
                var clock = Stopwatch.StartNew();
                var result = trainer.Step(Batch(batchPairs, reference, model.PadTokenId), cancellationToken);
                var values = new Dictionary<string, double>(result.Metrics) { ["pairs_per_second"] = batchPairs.Count / clock.Elapsed.TotalSeconds };
                metrics.Write(trainer.StepCount, values);
                progress.Advance();
                progress.SetStatus($"loss {result.Loss:F4}");
                if (!double.IsFinite(result.Loss))
                    throw new InvalidOperationException($"the loss became {result.Loss} at step {trainer.StepCount}; lower optimizer.learning_rate");
                if (trainer.StepCount % config.SaveEvery == 0 || trainer.StepCount == config.Steps)
                    Checkpoint.Save(checkpoints, trainer, schedule, new JsonObject { ["settings"] = settings.DeepClone() });
            }
        }

        // 5. Export the trained model folder.
        var exported = Export.Weights(model, frozen, trainer, adapters, lora?.Scale ?? 0);
        var target = Path.Combine(config.OutputDir, ModelSubdir);
        ModelWriter.Write(target, model, exported, config.Model, meta.Role,
            [.. meta.Lineage, new LineageEntry("dpo", Path.GetFullPath(config.Model), DateTimeOffset.UtcNow)]);
        return target;
    }

    /// <summary>Every line of the preferences file as a tokenised pair; a line without prompt, chosen or rejected names the field.</summary>
    static List<Pair> ReadPairs(Config config, ModelConfig model)
    {
        using var encoder = new CompletionEncoder(config.Model, model);
        var pairs = new List<Pair>();
        var file = config.Preferences;
        foreach (var (line, p) in Jsonl.Read<PreferenceLine>(file))
        {
            if (p.Prompt is not { } prompt) throw UserError.At(file, line, "prompt", "is missing (a preference line needs prompt, chosen and rejected)");
            if (p.Chosen is not { } chosen) throw UserError.At(file, line, "chosen", "is missing");
            if (p.Rejected is not { } rejected) throw UserError.At(file, line, "rejected", "is missing");
            if (p.Margin is { } m && !(m is >= 0 and <= 1)) throw UserError.At(file, line, "margin", $"must be in [0, 1], got {m}");
            var target = config.Loss == DpoLoss.Soft ? (float)((1 + (p.Margin ?? 1)) / 2) : 1f;
            pairs.Add(new Pair(p.Id ?? $"line-{line}", Cut(encoder.Encode(prompt, chosen, file, line, completionField: "chosen"), config.MaxLength),
                Cut(encoder.Encode(prompt, rejected, file, line, completionField: "rejected"), config.MaxLength), target));
            if (config.Limit is { } limit && pairs.Count == limit) break;
        }
        if (pairs.Count == 0) throw UserError.At(file, null, null, "holds no preference pair");
        var duplicate = pairs.GroupBy(p => p.Id).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw UserError.At(file, null, "id", $"'{duplicate.Key}' is given to more than one pair");
        return pairs;
    }

    /// <summary>A row of at most <paramref name="maxLength"/> tokens: its last ones (the completion is what DPO scores).</summary>
    static TokenSequence Cut(TokenSequence s, int maxLength) =>
        s.Ids.Length <= maxLength ? s : new TokenSequence(s.Ids[^maxLength..], s.TargetMask[^maxLength..]);

    /// <summary>The reference's log-probs of every pair: read from the cache file, the missing ones computed and appended.</summary>
    static Dictionary<string, ReferenceLogProbs> ReferenceLogProbsOf(List<Pair> pairs, ModelConfig referenceModel, IReadOnlyDictionary<string, WeightTensor> weights,
        string path, int pairsPerRun, CancellationToken cancellationToken)
    {
        using (var output = ResumableJsonlWriter<ReferenceLogProbs>.Open(path, r => r.Id))
        {
            var todo = pairs.Where(p => !output.IsDone(p.Id)).ToList();
            if (todo.Count > 0)
            {
                using var forward = new BoundForward(Training.Dpo.SequenceLogProbGraph(referenceModel), weights, Training.Dpo.SequenceLogProbsOutput);
                using var progress = new Progress("dpo: reference log-probs", todo.Count);
                foreach (var chunk in todo.Chunk(pairsPerRun))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var rows = chunk.SelectMany(p => new[] { p.Chosen, p.Rejected }).ToList();
                    var logps = forward.Run(CausalLm.Batch(rows, referenceModel.PadTokenId), out _);   // [2·chunk, 1]
                    for (var i = 0; i < chunk.Length; i++) output.Append(new ReferenceLogProbs(chunk[i].Id, logps[2 * i], logps[2 * i + 1]));
                    progress.Advance(chunk.Length);
                }
            }
        }
        return Jsonl.ReadAll<ReferenceLogProbs>(path).ToDictionary(r => r.Id);
    }

    /// <summary>Rows [chosen₀, rejected₀, chosen₁, …] with their completion masks, the reference log-probs and the target per row.</summary>
    static TrainingBatch Batch(IReadOnlyList<Pair> pairs, IReadOnlyDictionary<string, ReferenceLogProbs> reference, int padId)
    {
        var batch = CausalLm.Batch(pairs.SelectMany(p => new[] { p.Chosen, p.Rejected }).ToList(), padId);
        batch[Training.Dpo.ReferenceLogProbsInput] = BatchTensor.Of(pairs.SelectMany(p => new[] { (float)reference[p.Id].Chosen, (float)reference[p.Id].Rejected }).ToArray(), 2 * pairs.Count);
        batch[Training.Dpo.TargetInput] = BatchTensor.Of(pairs.SelectMany(p => new[] { p.Target, p.Target }).ToArray(), 2 * pairs.Count);
        return batch;
    }

    static Dictionary<string, WeightTensor> Copy(IReadOnlyDictionary<string, WeightTensor> weights) =>
        weights.ToDictionary(w => w.Key, w => new WeightTensor(w.Value.Shape, (float[])w.Value.Data.Clone()), StringComparer.Ordinal);

    /// <summary>The settings a resumed run must share with the checkpoint it continues.</summary>
    static JsonObject Settings(Config c) => new()
    {
        ["model"] = Path.GetFullPath(c.Model), ["reference_model"] = Path.GetFullPath(c.ReferenceModel ?? c.Model), ["preferences"] = Path.GetFullPath(c.Preferences),
        ["loss"] = StageConfig.EnumName(c.Loss), ["beta"] = c.Beta, ["steps"] = c.Steps, ["batch_size"] = c.BatchSize, ["micro_batch_size"] = c.MicroBatchSize,
        ["max_length"] = c.MaxLength, ["optimizer"] = StageConfig.ToJson(c.Optimizer), ["lora"] = StageConfig.ToJson(c.Lora), ["seed"] = c.Seed, ["limit"] = c.Limit,
    };
}
