using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Reporting;
using RlaifOnnx.Training;

using RlaifOnnx.Configuration;

namespace RlaifOnnx.Stages;

/// <summary>
/// Plain causal-LM training of a model folder on JSONL text — the primitive SL-CAI fine-tuning uses, and a
/// way to pretrain the small models the project builds itself.
///
///   rlaif train-lm --model models/tiny --data corpus.jsonl --out runs/lm --steps 200 --lr 3e-4
///
/// Each line is {"text": …} (loss on every token) or {"prompt": …, "completion": …} (loss on the completion
/// and the end-of-sequence token only). Text is tokenised with the folder's tokenizer by ONNX Runtime
/// GenAI, so training sees exactly the ids generation will. The output folder holds metrics.jsonl,
/// checkpoints/step-N (rerunning the same command resumes from the newest one and continues exactly as
/// an uninterrupted run) and model/, the trained model folder (LoRA adapters merged). The data order is a
/// function of (seed, step), so a checkpoint's step is all the random state there is to restore; a resumed
/// run appends the steps after its checkpoint to metrics.jsonl again (the later line of a step wins).
/// </summary>
public static class TrainLm
{
    public sealed record Config : IValidatableConfig
    {
        /// <summary>Model folder to start from (rlaif.json, model.onnx, tokenizer files).</summary>
        [ConfigPath] public required string Model { get; init; }
        /// <summary>JSONL training data: "text", or "prompt" and "completion" (strings, or message lists rendered with the chat template), or "messages", per line.</summary>
        [ConfigPath] public required string Data { get; init; }
        /// <summary>Output folder: metrics.jsonl, checkpoints/, model/.</summary>
        [ConfigPath] public required string OutputDir { get; init; }
        /// <summary>Optimizer steps in total (a resumed run continues up to this).</summary>
        public int Steps { get; init; } = 100;
        /// <summary>Sequences per optimizer step.</summary>
        public int BatchSize { get; init; } = 8;
        /// <summary>Sequences per ONNX Runtime run (gradients accumulated); 0 = the whole batch.</summary>
        public int MicroBatchSize { get; init; }
        /// <summary>Longest sequence in tokens; longer examples are truncated.</summary>
        public int MaxLength { get; init; } = 256;
        /// <summary>AdamW and its schedule: learning_rate, warmup, schedule, weight_decay, max_grad_norm; cpu_memory_arena (speed or a lower peak).</summary>
        public OptimizerConfig Optimizer { get; init; } = new() { LearningRate = 3e-4, Schedule = "cosine" };
        /// <summary>LoRA adapters: rank (0 = train every weight), alpha, targets, dropout.</summary>
        public LoraConfig Lora { get; init; } = new();
        /// <summary>Seed of the data order and the LoRA initialisation.</summary>
        public int Seed { get; init; } = 1;
        /// <summary>Write a checkpoint every this many steps (and at the end).</summary>
        public int SaveEvery { get; init; } = 50;

        public IEnumerable<ConfigProblem> Problems()
        {
            if (Steps < 1) yield return new("steps", $"must be at least 1, got {Steps}");
            if (BatchSize < 1) yield return new("batch_size", $"must be at least 1, got {BatchSize}");
            if (MicroBatchSize < 0) yield return new("micro_batch_size", $"must be 0 or more, got {MicroBatchSize}");
            if (MaxLength < 2) yield return new("max_length", $"needs at least 2 tokens, got {MaxLength}");
            if (SaveEvery < 1) yield return new("save_every", $"must be at least 1, got {SaveEvery}");
            foreach (var p in Optimizer.Problems()) yield return p with { Key = $"optimizer.{p.Key}" };
            foreach (var p in Lora.Problems()) yield return p with { Key = $"lora.{p.Key}" };
        }
    }

    /// <summary>
    /// One line of the data file, in the formats TRL's SFT trainer reads: {"text"}; {"prompt", "completion"} as
    /// strings, or as message lists (conversational, rendered with the folder's chat template); {"messages"}
    /// (the last message, an assistant turn, is the completion).
    /// </summary>
    public sealed record Example(string? Text = null, JsonElement? Prompt = null, JsonElement? Completion = null, List<ChatMessage>? Messages = null);

    /// <summary>Trains, checkpoints and exports; returns the exported model folder.</summary>
    public static string Run(Config config, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        log ??= _ => { };
        StageConfig.Check(config, "train-lm");
        var meta = ModelFolder.ReadMetadata(config.Model);
        var model = meta.Config;
        // Every file of the folder is checked before any work: a broken one is named, not met halfway.
        var weights = ModelFolder.ReadWeights(config.Model);
        ModelFolder.CheckGenAIFiles(config.Model);

        // 1. Tokenise the data with the model folder's tokenizer.
        var sequences = Tokenise(config, model);
        log($"{sequences.Count} sequences, {sequences.Sum(s => s.Ids.Length):N0} tokens, {sequences.Sum(s => s.TargetMask.Sum(b => b)):N0} targets");

        // 2. The training graph, trainable and frozen weights.
        var lora = LoraOptions.From(config.Lora);
        var graph = CausalLm.Graph(model);
        IReadOnlyList<LoraAdapter> adapters = [];
        if (lora is not null) (graph, adapters) = Lora.Apply(graph, lora);
        IReadOnlyDictionary<string, WeightTensor> trainable = lora is null ? weights : Lora.InitialWeights(adapters, config.Seed);
        IReadOnlyDictionary<string, WeightTensor> frozen = lora is null ? new Dictionary<string, WeightTensor>() : weights;
        var options = TrainerOptions.From(config.Optimizer, config.Steps) with { MicroBatchSize = config.MicroBatchSize };
        var schedule = options.Schedule!;
        using var trainer = new Trainer(graph, CausalLm.LossOutput, trainable, frozen, CausalLm.Options(options));

        // 3. Resume from the newest checkpoint, when there is one made with the same settings.
        var checkpoints = Path.Combine(config.OutputDir, "checkpoints");
        var settings = Settings(config);
        if (Checkpoint.Resume(checkpoints, trainer, settings, "--out") is { } resumed)
            log($"resuming from {resumed} (step {trainer.StepCount})");

        // 4. Train: batch s holds examples s·B … s·B + B − 1 of the seeded epoch orders.
        var order = new DataOrder(sequences.Count, config.Seed);
        using var metrics = new MetricsLog(Path.Combine(config.OutputDir, "metrics.jsonl"));
        using (var progress = new Progress("train-lm", config.Steps))
        {
            progress.SetDone(trainer.StepCount);
            while (trainer.StepCount < config.Steps)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var step = trainer.StepCount;
                var batchSequences = Enumerable.Range(0, config.BatchSize).Select(i => sequences[order.At(step * config.BatchSize + i)]).ToList();
                var batch = CausalLm.Batch(batchSequences, model.PadTokenId);
                if (lora is not null)
                {
                    // Dropout masks drawn from (seed, step): a resumed run draws the same ones.
                    var ids = batch["input_ids"];
                    var masks = Lora.DropoutMasks(adapters, lora, ids.Rows, (int)ids.Shape[1], StableRandom.For(config.Seed, $"lora dropout {step}"));
                    foreach (var (name, mask) in masks) batch[name] = mask;
                }
                var clock = Stopwatch.StartNew();
                var result = trainer.Step(batch, cancellationToken);
                var tokens = batchSequences.Sum(s => s.Ids.Length);
                var values = new Dictionary<string, double>(result.Metrics) { ["tokens_per_second"] = tokens / clock.Elapsed.TotalSeconds };
                metrics.Write(trainer.StepCount, values);
                progress.Advance();
                progress.SetStatus($"loss {result.Loss:F4}");
                if (!double.IsFinite(result.Loss))
                    throw UserError.At(Path.Combine(config.OutputDir, "metrics.jsonl"), null, "loss", $"became {result.Loss} at step {trainer.StepCount}; the last good checkpoint is kept: lower optimizer.learning_rate (--optimizer-learning-rate) and rerun");
                if (trainer.StepCount % config.SaveEvery == 0 || trainer.StepCount == config.Steps)
                    Checkpoint.Save(checkpoints, trainer, schedule, new JsonObject { ["settings"] = settings.DeepClone() });
            }
        }

        // 5. Export the trained model folder.
        var exported = Export.Weights(model, frozen, trainer, adapters, lora?.Scale ?? 0);
        var target = Path.Combine(config.OutputDir, "model");
        ModelWriter.Write(target, model, exported, config.Model, meta.Role,
            [.. meta.Lineage, new LineageEntry("train-lm", Path.GetFullPath(config.Model), DateTimeOffset.UtcNow)]);
        return target;
    }

    /// <summary>The settings a resumed run must share with the checkpoint it continues.</summary>
    static JsonObject Settings(Config c) => new()
    {
        ["data"] = Path.GetFullPath(c.Data), ["model"] = Path.GetFullPath(c.Model), ["steps"] = c.Steps,
        ["batch_size"] = c.BatchSize, ["micro_batch_size"] = c.MicroBatchSize, ["max_length"] = c.MaxLength, ["seed"] = c.Seed,
        ["optimizer"] = StageConfig.ToJson(c.Optimizer), ["lora"] = StageConfig.ToJson(c.Lora),
    };

    /// <summary>Token ids and target masks of every usable line; a line with neither text nor a prompt/completion pair is an error naming it.</summary>
    internal static List<TokenSequence> Tokenise(Config config, ModelConfig model)
    {
        using var encoder = new CompletionEncoder(config.Model, model);
        var result = new List<TokenSequence>();
        foreach (var (line, example) in Jsonl.Read<Example>(config.Data))
        {
            var sequence = Encode(example, encoder, model, config.Data, line);
            var (ids, mask) = (sequence.Ids, sequence.TargetMask);
            if (ids.Length > config.MaxLength) { ids = ids[..config.MaxLength]; mask = mask[..config.MaxLength]; }
            // A sequence trains only if some token after the first is a target.
            if (mask.Skip(1).Any(m => m == 1)) result.Add(new TokenSequence(ids, mask));
        }
        if (result.Count == 0) throw UserError.At(config.Data, null, null, "holds no training example with a target token");
        return result;
    }

    /// <summary>One line: text (every token a target), prompt and completion, or messages (the last, an assistant turn, the completion).</summary>
    static TokenSequence Encode(Example example, CompletionEncoder encoder, ModelConfig model, string file, int line)
    {
        if (example.Text is not null)
        {
            if (example.Prompt is not null || example.Completion is not null || example.Messages is not null)
                throw UserError.At(file, line, "text", "give one of text, prompt and completion, or messages");
            int[] ids = [.. encoder.Encode(example.Text), model.EosTokenId];
            return new TokenSequence(ids, ids.Select(_ => (byte)1).ToArray());
        }
        if (example.Messages is { } messages)
        {
            if (example.Prompt is not null || example.Completion is not null)
                throw UserError.At(file, line, "messages", "give one of text, prompt and completion, or messages");
            if (messages.Count < 2 || messages[^1].Role != "assistant")
                throw UserError.At(file, line, "messages", "needs at least one turn before a final assistant turn");
            return encoder.Encode(messages[..^1], [messages[^1]], file, line, "messages");
        }
        if (example.Prompt is not { } p) throw UserError.At(file, line, "prompt", "is missing (each line needs text, prompt and completion, or messages)");
        if (example.Completion is not { } c) throw UserError.At(file, line, "completion", "is missing (each line needs text, prompt and completion, or messages)");
        return encoder.Encode(p, c, file, line);
    }
}
