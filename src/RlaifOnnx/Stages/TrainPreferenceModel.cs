using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Reporting;
using RlaifOnnx.Training;
using RlaifOnnx.Records;

namespace RlaifOnnx.Stages;

/// <summary>
/// Stages 04 and 05, the preference model (Constitutional AI §4.1; Askell et al. 2021 §4): a language
/// model with a scalar head, trained on comparisons of two answers to one conversation with the loss
/// −[p·log σ(r_a − r_b) + (1 − p)·log σ(r_b − r_a)], p the label's probability that a is better (1 or 0 for
/// hard labels, where it is −log σ(r_good − r_bad)). One config is one training phase:
/// <list type="number">
/// <item>preference-model pretraining (PMP): from a language-model folder (the head starts at random)
/// on Stack Exchange comparisons (<c>rlaif pmp-data</c>);</item>
/// <item>fine-tuning: from the PMP model's folder on the mix of AI harmlessness and human helpfulness
/// comparisons (<c>rlaif mix</c>).</item>
/// </list>
/// Both read rows of <see cref="MixedComparison"/> (messages, response_a, response_b, p_a). Each answer is
/// rendered after its conversation with the model's chat template, as <see cref="RewardScorer"/> renders it
/// when the trained model scores; over-long rows keep their end (the answer) and are counted.
///
/// Batches interleave the two answers of every comparison, rows [a₀, b₀, a₁, b₁, …], so a micro-batch
/// (an even number of rows) always holds whole comparisons. Checkpoints and resume work as in
/// <see cref="TrainLm"/>: the data order is a function of (seed, step). Output in
/// <see cref="Config.OutputDir"/>: metrics.jsonl, checkpoints/, model/ (the preference-model folder, which
/// <see cref="RewardScorer"/> and any ONNX runtime serve: input_ids and attention_mask in, rewards out) and,
/// with held-out comparisons, eval.json (accuracy, loss, calibration, overall and per source) and
/// eval_predictions.jsonl (each held-out label beside the model's p(a better), for the evaluate stage's
/// reliability diagram).
///
/// Run: <c>rlaif pm --config pm.yaml</c>.
/// </summary>
public static class TrainPreferenceModel
{
    public const string ModelSubdir = "model";
    public const string EvalFile = "eval.json";
    /// <summary>The held-out comparisons' labels and the model's p(a better), one <see cref="PreferencePrediction"/> per line.</summary>
    public const string EvalPredictionsFile = "eval_predictions.jsonl";
    public const string PairLabelInput = "p_a";
    public const string LossOutput = "loss";
    public const string AccuracyOutput = "accuracy";

    /// <summary>Configuration of one preference-model training phase.</summary>
    public sealed record Config : IValidatableConfig
    {
        /// <summary>Where to start: a language-model folder (a new scalar head is added) or a preference-model folder (e.g. after PMP).</summary>
        [ConfigPath] public required string Model { get; init; }
        /// <summary>Training comparisons, JSONL rows of id, source, messages, response_a, response_b, p_a (pm_mix.jsonl, pmp_train.jsonl).</summary>
        [ConfigPath] public required string Train { get; init; }
        /// <summary>Held-out comparisons in the same format (null: eval_fraction of train, or no evaluation).</summary>
        [ConfigPath] public string? Eval { get; init; }
        /// <summary>Without an eval file: the share of train's comparisons held out for evaluation (drawn by id with the seed).</summary>
        public double EvalFraction { get; init; }
        /// <summary>Folder for metrics.jsonl, checkpoints/, model/, eval.json and eval_predictions.jsonl.</summary>
        [ConfigPath] public required string OutputDir { get; init; }
        /// <summary>Optimizer steps in total (a resumed run continues up to this).</summary>
        public int Steps { get; init; } = 100;
        /// <summary>Comparisons per optimizer step.</summary>
        public int BatchSize { get; init; } = 8;
        /// <summary>Comparisons per ONNX Runtime run (gradients accumulated); 0 = the whole batch.</summary>
        public int MicroBatchSize { get; init; }
        /// <summary>Longest row (conversation + answer) in tokens; longer rows keep their last tokens.</summary>
        public int MaxLength { get; init; } = 512;
        /// <summary>AdamW and its schedule: learning_rate, warmup, schedule, weight_decay, max_grad_norm; cpu_memory_arena (speed or a lower peak).</summary>
        public OptimizerConfig Optimizer { get; init; } = new();
        /// <summary>LoRA adapters: rank (0 = train every weight), alpha, targets, dropout.</summary>
        public LoraConfig Lora { get; init; } = new();
        /// <summary>Write a checkpoint every this many steps (and at the end).</summary>
        public int SaveEvery { get; init; } = 50;
        /// <summary>Seed of the data order, the head's initialisation and the LoRA initialisation.</summary>
        public int Seed { get; init; } = 1;
        /// <summary>Use only the first N training comparisons (null: all).</summary>
        public int? Limit { get; init; }
        /// <summary>Bins of the calibration figure in eval.json.</summary>
        public int CalibrationBins { get; init; } = 10;

        public IEnumerable<ConfigProblem> Problems()
        {
            if (Steps < 1) yield return new("steps", $"must be at least 1, got {Steps}");
            if (BatchSize < 1) yield return new("batch_size", $"must be at least 1, got {BatchSize}");
            if (MicroBatchSize < 0) yield return new("micro_batch_size", $"must be 0 or more, got {MicroBatchSize}");
            if (MaxLength < 2) yield return new("max_length", $"must be at least 2, got {MaxLength}");
            if (SaveEvery < 1) yield return new("save_every", $"must be at least 1, got {SaveEvery}");
            if (Limit is < 1) yield return new("limit", $"must be at least 1, got {Limit}");
            if (CalibrationBins < 1) yield return new("calibration_bins", $"must be at least 1, got {CalibrationBins}");
            if (EvalFraction is < 0 or >= 1) yield return new("eval_fraction", $"must be in [0, 1), got {EvalFraction}");
            if (Eval is not null && EvalFraction > 0) yield return new("eval_fraction", "give either eval (a file) or eval_fraction, not both");
        }
    }

    /// <summary>eval.json: the figures over all held-out comparisons and per source (ai, human, stackexchange, …).</summary>
    public sealed record EvalReport(PreferenceEvaluation Overall, IReadOnlyDictionary<string, PreferenceEvaluation> PerSource, int Truncated);

    /// <summary>A tokenised comparison: both rows and the label.</summary>
    sealed record TokenPair(int[] A, int[] B, float PA);

    /// <summary>Trains, checkpoints, exports and evaluates; returns the exported preference-model folder.</summary>
    public static string Run(Config config, Action<string>? log = null, CancellationToken cancellationToken = default, string source = "pm config")
    {
        log ??= _ => { };
        StageConfig.Check(config, source);
        var meta = ModelFolder.ReadMetadata(config.Model);
        var model = meta.Config;

        // 1. The comparisons, checked and tokenised before anything is trained.
        var train = ReadComparisons(config.Train);
        var eval = config.Eval is null ? null : ReadComparisons(config.Eval);
        if (config.EvalFraction > 0)
        {
            // Held out by id, so the split does not depend on the file's order and a rerun draws the same one.
            var heldOut = train.Where(c => StableRandom.For(config.Seed, c.Id, "pm eval").NextDouble() < config.EvalFraction).ToHashSet();
            (train, eval) = (train.Where(c => !heldOut.Contains(c)).ToList(), heldOut.ToList());
            if (train.Count == 0 || eval.Count == 0)
                throw UserError.At(source, null, "eval_fraction", $"{config.EvalFraction} leaves {train.Count} comparisons to train on and {eval.Count} to evaluate; change it or give an eval file");
        }
        if (config.Limit is { } limit) train = train.Take(limit).ToList();
        using var renderer = new PairRenderer(config.Model);
        var (pairs, truncated) = Tokenise(train, renderer, config.MaxLength);
        log($"{pairs.Count} comparisons, {pairs.Sum(p => p.A.Length + p.B.Length):N0} tokens, {truncated} rows cut to {config.MaxLength} tokens");

        // 2. Weights: a language model gets a fresh head, a preference model keeps its own.
        var startsFromLm = !PreferenceModelFolder.IsPreferenceModel(config.Model);
        var weights = startsFromLm
            ? PreferenceModelGraphs.FromLanguageModel(model, ModelFolder.ReadWeights(config.Model), config.Seed)
            : PreferenceModelFolder.ReadWeights(config.Model);

        // 3. The training graph: rewards of the interleaved rows, the soft-label loss of each (a, b) pair.
        var lora = LoraOptions.From(config.Lora);
        var graph = Graph(model);
        IReadOnlyList<LoraAdapter> adapters = [];
        if (lora is not null) (graph, adapters) = Lora.Apply(graph, lora);
        Dictionary<string, WeightTensor> trainable, frozen;
        if (lora is null) (trainable, frozen) = (new(weights, StringComparer.Ordinal), new(StringComparer.Ordinal));
        else
        {
            trainable = new(Lora.InitialWeights(adapters, config.Seed), StringComparer.Ordinal) { [PreferenceModelGraphs.HeadWeight] = weights[PreferenceModelGraphs.HeadWeight] };
            frozen = weights.Where(w => w.Key != PreferenceModelGraphs.HeadWeight).ToDictionary(w => w.Key, w => w.Value, StringComparer.Ordinal);
        }
        var options = TrainerOptions.From(config.Optimizer, config.Steps);
        var schedule = options.Schedule!;
        using var trainer = new Trainer(graph, LossOutput, trainable, frozen, options with
        {
            MicroBatchSize = 2 * config.MicroBatchSize,   // rows: two per comparison
            MetricOutputs = [AccuracyOutput],
        });

        // 4. Resume from the newest checkpoint made with the same settings.
        var checkpoints = Path.Combine(config.OutputDir, "checkpoints");
        var settings = Settings(config);
        if (Checkpoint.Resume(checkpoints, trainer, settings, "output_dir") is { } resumed)
            log($"resuming from {resumed} (step {trainer.StepCount})");

        // 5. Train: batch s holds comparisons s·B … s·B + B − 1 of the seeded epoch orders.
        var order = new DataOrder(pairs.Count, config.Seed);
        using (var metrics = new MetricsLog(Path.Combine(config.OutputDir, "metrics.jsonl")))
        using (var progress = new Progress("pm", config.Steps))
        {
            progress.SetDone(trainer.StepCount);
            while (trainer.StepCount < config.Steps)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var step = trainer.StepCount;
                var batchPairs = Enumerable.Range(0, config.BatchSize).Select(i => pairs[order.At(step * config.BatchSize + i)]).ToList();
                var clock = Stopwatch.StartNew();
                var result = trainer.Step(Batch(batchPairs, model.PadTokenId), cancellationToken);
                var values = new Dictionary<string, double>(result.Metrics) { ["comparisons_per_second"] = batchPairs.Count / clock.Elapsed.TotalSeconds };
                metrics.Write(trainer.StepCount, values);
                progress.Advance();
                progress.SetStatus($"loss {result.Loss:F4}");
                if (!double.IsFinite(result.Loss))
                    throw UserError.At(Path.Combine(config.OutputDir, "metrics.jsonl"), null, "loss", $"became {result.Loss} at step {trainer.StepCount}; the last good checkpoint is kept: lower optimizer.learning_rate (--optimizer-learning-rate) and rerun");
                if (trainer.StepCount % config.SaveEvery == 0 || trainer.StepCount == config.Steps)
                    Checkpoint.Save(checkpoints, trainer, schedule, new JsonObject { ["settings"] = settings.DeepClone() });
            }
        }

        // 6. Export the preference-model folder: the decoder's weights (LoRA merged) and the head.
        var exported = Export.Weights(model, frozen, trainer, adapters, lora?.Scale ?? 0, PreferenceModelGraphs.Shapes(model));
        var target = Path.Combine(config.OutputDir, ModelSubdir);
        PreferenceModelFolder.Write(target, model, exported, config.Model,
            [.. meta.Lineage, new LineageEntry(startsFromLm ? "pm (new head)" : "pm", Path.GetFullPath(config.Model), DateTimeOffset.UtcNow)]);

        // 7. Evaluate the exported model on the held-out comparisons, as it will be served.
        if (eval is not null)
        {
            var predictions = new List<PreferencePrediction>();
            var report = Evaluate(target, eval, config.MaxLength, config.CalibrationBins, cancellationToken, predictions);
            Jsonl.Write(Path.Combine(config.OutputDir, EvalPredictionsFile), predictions);
            AtomicFile.WriteAllText(Path.Combine(config.OutputDir, EvalFile), JsonSerializer.Serialize(report, ReportJson));
            log(Describe(report));
        }
        return target;
    }

    /// <summary>
    /// The training graph: the preference model's rewards [2n] over interleaved rows, split into r_a (even
    /// rows) and r_b (odd rows), the soft-label loss against input p_a [2n] (read at even rows; odd rows
    /// repeat it so every batch input has 2n rows and micro-batches slice evenly), and the batch accuracy.
    /// </summary>
    public static ModelProto Graph(ModelConfig model)
    {
        var g = Losses.Extend(PreferenceModelGraphs.Training(model, DataType.Float));
        var labels = g.Input(PairLabelInput, DataType.Float, "batch_size");
        var byPair = g.Reshape(PreferenceModelGraphs.RewardsOutput, -1, 2);                   // [n, 2]
        var rewardA = g.Gather(byPair, g.Int64s(0), 1);
        var rewardB = g.Gather(byPair, g.Int64s(1), 1);
        var pA = g.Gather(g.Reshape(labels, -1, 2), g.Int64s(0), 1);                            // [n, 1]
        var loss = Losses.PreferenceLoss(g, g.Reshape(rewardA, -1), g.Reshape(rewardB, -1), g.Reshape(pA, -1));
        g.OutputAs(loss, LossOutput, DataType.Float);
        // Accuracy: the larger reward on the side the label prefers (labels of exactly 0.5 count as a's side).
        var right = g.Op("Equal", [g.Op("Greater", [rewardA, rewardB]), g.Op("GreaterOrEqual", [pA, g.Scalar(0.5)])]);
        g.OutputAs(Losses.Mean(g, g.Cast(right, DataType.Float)), AccuracyOutput, DataType.Float);
        var rewards = g.Graph.Output.First(o => o.Name == PreferenceModelGraphs.RewardsOutput);
        g.Graph.Output.Remove(rewards);
        return g.ToModel();
    }

    /// <summary>Rows [a₀, b₀, a₁, b₁, …] right-padded with <paramref name="padId"/>, their attention mask, and p_a per row.</summary>
    static TrainingBatch Batch(IReadOnlyList<TokenPair> pairs, int padId)
    {
        var rows = pairs.SelectMany(p => new[] { p.A, p.B }).ToList();
        var length = rows.Max(r => r.Length);
        var ids = new long[rows.Count * length];
        var mask = new long[rows.Count * length];
        for (var b = 0; b < rows.Count; b++)
            for (var t = 0; t < length; t++)
            {
                var real = t < rows[b].Length;
                ids[b * length + t] = real ? rows[b][t] : padId;
                mask[b * length + t] = real ? 1 : 0;
            }
        var labels = pairs.SelectMany(p => new[] { p.PA, p.PA }).ToArray();
        return new TrainingBatch
        {
            ["input_ids"] = BatchTensor.Of(ids, rows.Count, length),
            ["attention_mask"] = BatchTensor.Of(mask, rows.Count, length),
            [PairLabelInput] = BatchTensor.Of(labels, rows.Count),
        };
    }

    /// <summary>Every row of a comparisons file, checked: a conversation, two non-empty answers and p_a in [0, 1].</summary>
    public static List<MixedComparison> ReadComparisons(string path)
    {
        var rows = new List<MixedComparison>();
        foreach (var (line, c) in Jsonl.Read<MixedComparison>(path))
        {
            if (c.Messages is not { Count: > 0 }) throw UserError.At(path, line, "messages", "is missing or empty (the conversation both answers reply to)");
            if (string.IsNullOrWhiteSpace(c.ResponseA)) throw UserError.At(path, line, "response_a", "is missing or empty");
            if (string.IsNullOrWhiteSpace(c.ResponseB)) throw UserError.At(path, line, "response_b", "is missing or empty");
            if (!(c.PA is >= 0 and <= 1)) throw UserError.At(path, line, "p_a", $"must be a probability in [0, 1], got {c.PA}");
            rows.Add(c);
        }
        if (rows.Count == 0) throw UserError.At(path, null, null, "holds no comparison");
        return rows;
    }

    /// <summary>Both rows of every comparison as token ids, each cut to its last <paramref name="maxLength"/> tokens; and how many were cut.</summary>
    static (List<TokenPair> Pairs, int Truncated) Tokenise(IReadOnlyList<MixedComparison> comparisons, PairRenderer renderer, int maxLength)
    {
        var truncated = 0;
        int[] Row(MixedComparison c, string answer)
        {
            var ids = renderer.Encode(c.Messages, answer);
            if (ids.Length <= maxLength) return ids;
            truncated++;
            return ids[^maxLength..];
        }
        var pairs = comparisons.Select(c => new TokenPair(Row(c, c.ResponseA), Row(c, c.ResponseB), (float)c.PA)).ToList();
        return (pairs, truncated);
    }

    /// <summary>
    /// The exported model's figures on held-out comparisons, scored by <see cref="RewardScorer"/> as a server would
    /// (rows cut as in training); with <paramref name="predictions"/>, also each comparison's label and prediction.
    /// </summary>
    public static EvalReport Evaluate(string modelDir, IReadOnlyList<MixedComparison> comparisons, int maxLength, int bins, CancellationToken cancellationToken = default,
        ICollection<PreferencePrediction>? predictions = null)
    {
        using var scorer = new RewardScorer(modelDir);
        var truncated = 0;
        var rows = comparisons.SelectMany(c => new[] { c.ResponseA, c.ResponseB }.Select(answer =>
        {
            var (ids, cut) = RewardScorer.KeepEnd(scorer.Encode(scorer.Render(c.Messages, answer)), maxLength);
            if (cut) truncated++;
            return ids;
        })).ToList();
        var rewards = scorer.RewardsOfTokens(rows, cancellationToken);
        PreferenceEvaluation Of(IEnumerable<int> indices)
        {
            var list = indices.ToList();
            return PreferenceMath.Evaluate(list.Select(i => rewards[2 * i]).ToList(), list.Select(i => rewards[2 * i + 1]).ToList(), list.Select(i => comparisons[i].PA).ToList(), bins);
        }
        var all = Enumerable.Range(0, comparisons.Count);
        if (predictions is not null)
            foreach (var i in all)
                predictions.Add(new PreferencePrediction(comparisons[i].Id, comparisons[i].Source, comparisons[i].PA,
                    PreferenceMath.ProbabilityAPreferred(rewards[2 * i], rewards[2 * i + 1]), rewards[2 * i], rewards[2 * i + 1]));
        var perSource = all.GroupBy(i => comparisons[i].Source).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => Of(g));
        return new EvalReport(Of(all), perSource, truncated);
    }

    /// <summary>
    /// A model folder's tokenizer and chat template, rendering (conversation, answer) rows exactly as
    /// <see cref="RewardScorer"/> does, so the trained model scores what it was trained on.
    /// </summary>
    sealed class PairRenderer : IDisposable
    {
        readonly Microsoft.ML.OnnxRuntimeGenAI.Tokenizer tokenizer;
        readonly ChatTemplate? template;

        public PairRenderer(string modelDir)
        {
            template = ChatTemplate.FromFolder(modelDir);
            tokenizer = RewardScorer.OpenTokenizer(modelDir);
        }

        public int[] Encode(IReadOnlyList<ChatMessage> context, string answer)
        {
            using var sequences = tokenizer.Encode(RewardScorer.RenderPair(template, tokenizer, context, answer));
            return sequences[0].ToArray();
        }

        public void Dispose() => tokenizer.Dispose();
    }

    static readonly JsonSerializerOptions ReportJson = new(Jsonl.JsonlOptions)
    {
        WriteIndented = true,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static EvalReport ReadEvaluation(string outputDir) =>
        JsonSerializer.Deserialize<EvalReport>(File.ReadAllText(Path.Combine(outputDir, EvalFile)), ReportJson)!;

    /// <summary>The evaluation as the lines the CLI prints.</summary>
    public static string Describe(EvalReport report)
    {
        static string Line(string name, PreferenceEvaluation e) =>
            $"{name}: {e.Comparisons} comparisons, accuracy {100 * e.Accuracy:F1} %, loss {e.Loss:F4}, mean |r_a − r_b| {e.MeanAbsMargin:F3}, " +
            $"calibration error {(e.ExpectedCalibrationError is { } x ? x.ToString("F3") : "n/a")}";
        var lines = new List<string> { Line("held-out", report.Overall) };
        lines.AddRange(report.PerSource.Select(s => "  " + Line(s.Key, s.Value)));
        if (report.Truncated > 0) lines.Add($"  rows cut to their last tokens: {report.Truncated}");
        return string.Join('\n', lines) + "\n";
    }

    /// <summary>The settings a resumed run must share with the checkpoint it continues.</summary>
    static JsonObject Settings(Config c) => new()
    {
        ["model"] = Path.GetFullPath(c.Model), ["train"] = Path.GetFullPath(c.Train), ["steps"] = c.Steps,
        ["batch_size"] = c.BatchSize, ["micro_batch_size"] = c.MicroBatchSize, ["max_length"] = c.MaxLength,
        ["optimizer"] = StageConfig.ToJson(c.Optimizer), ["lora"] = StageConfig.ToJson(c.Lora), ["seed"] = c.Seed, ["limit"] = c.Limit, ["eval_fraction"] = c.EvalFraction,
    };
}
