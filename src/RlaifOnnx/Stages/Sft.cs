using System.Text.Json;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Records;
using RlaifOnnx.Reporting;
using RlaifOnnx.Training;

namespace RlaifOnnx.Stages;

/// <summary>
/// Stage 02, SL-CAI supervised fine-tuning (Constitutional AI paper §3.1, "SL-CAI"): the pretrained model
/// is fine-tuned on the final revisions of the revise stage mixed with helpfulness data — the helpful
/// model's own answers to helpfulness prompts — so the model learns harmless answers without forgetting
/// how to help.
///
/// <list type="number">
/// <item>Read the revise stage's SFT export and the helpfulness data: an existing JSONL file, or prompts the
/// helpful model answers now (helpfulness_samples.jsonl, resumable: a rerun continues where it stopped).</item>
/// <item>Mix them so the helpfulness share is <see cref="Config.HelpfulnessFraction"/> (seeded draws and
/// shuffle) and write sft_mix.jsonl atomically: messages lists with a source field.</item>
/// <item>Fine-tune with <see cref="TrainLm"/> into output_dir/train (metrics.jsonl, checkpoints/, model/);
/// rerunning the same config resumes from the newest checkpoint.</item>
/// </list>
///
/// Run: <c>rlaif sft --config sft.yaml</c>. The trained model folder is output_dir/train/model.
/// </summary>
public static class Sft
{
    public const string HelpfulnessSamplesFile = "helpfulness_samples.jsonl";
    public const string MixFile = "sft_mix.jsonl";
    public const string TrainSubdir = "train";
    public const string RevisionSource = "revision";
    public const string HelpfulnessSource = "helpfulness";

    /// <summary>Configuration of the SFT stage.</summary>
    public sealed record Config : IValidatableConfig
    {
        /// <summary>The pretrained model folder to fine-tune.</summary>
        [ConfigPath] public required string Model { get; init; }
        /// <summary>The revise stage's SFT export (sft_messages.jsonl or sft_prompt_completion.jsonl): JSONL lines of messages, or prompt and completion (message lists or strings).</summary>
        [ConfigPath] public required string Revisions { get; init; }
        /// <summary>Existing helpfulness examples in the same formats as revisions. Give this or helpfulness_prompts + helpful_model.</summary>
        [ConfigPath] public string? HelpfulnessData { get; init; }
        /// <summary>Helpfulness prompts for helpful_model to answer: any prompt source the revise stage reads (a .jsonl/.jsonl.gz/.txt file or builtin:helpful-train).</summary>
        [ConfigPath] public string? HelpfulnessPrompts { get; init; }
        /// <summary>For hh-rlhf transcript prompts: first_turn or full_context.</summary>
        public TranscriptPrompt TranscriptPrompt { get; init; } = TranscriptPrompt.FirstTurn;
        /// <summary>The helpful model that answers helpfulness_prompts: a model folder or the base URL of an OpenAI-compatible server.</summary>
        [ConfigPath] public string? HelpfulModel { get; init; }
        /// <summary>Model name to send to a helpful-model server (null: the server's first model).</summary>
        public string? HelpfulServerModel { get; init; }
        /// <summary>Use only the first N helpfulness prompts or examples (null: as many as the mix needs).</summary>
        public int? HelpfulnessLimit { get; init; }
        /// <summary>Share of helpfulness examples in the training set, in [0, 1]; 0 trains on the revisions alone.</summary>
        public double HelpfulnessFraction { get; init; } = 0.5;
        /// <summary>Helpfulness prompts per generation batch.</summary>
        public int GenerationBatchSize { get; init; } = 8;
        /// <summary>How answers are sampled: temperature, top_p, max_new_tokens.</summary>
        public SamplingConfig Sampling { get; init; } = new();
        /// <summary>AdamW and its schedule: learning_rate, warmup, schedule, weight_decay, max_grad_norm; cpu_memory_arena (speed or a lower peak).</summary>
        public OptimizerConfig Optimizer { get; init; } = new() { LearningRate = 3e-4, Schedule = "cosine" };
        /// <summary>LoRA adapters: rank (0 = train every weight), alpha, targets, dropout.</summary>
        public LoraConfig Lora { get; init; } = new();
        /// <summary>Execution provider for a local helpful model: cpu or cuda.</summary>
        public string ExecutionProvider { get; init; } = "cpu";
        /// <summary>For a server model: seconds one HTTP attempt may take before it is retried (null: $RLAIF_HTTP_TIMEOUT, else 60).</summary>
        public double? HttpTimeoutSeconds { get; init; }
        /// <summary>For a server model: seconds one call may take in all, retries and Retry-After waits included (null: $RLAIF_HTTP_DEADLINE, else 300).</summary>
        public double? HttpDeadlineSeconds { get; init; }
        /// <summary>Folder for helpfulness_samples.jsonl, sft_mix.jsonl and train/ (metrics.jsonl, checkpoints/, model/).</summary>
        [ConfigPath] public required string OutputDir { get; init; }
        /// <summary>Seed of the sampling, the mix's draws and shuffle, the data order and the LoRA initialisation.</summary>
        public int Seed { get; init; } = 1;
        /// <summary>Optimizer steps in total (a resumed run continues up to this).</summary>
        public int Steps { get; init; } = 100;
        /// <summary>Sequences per optimizer step.</summary>
        public int BatchSize { get; init; } = 8;
        /// <summary>Sequences per ONNX Runtime run (gradients accumulated); 0 = the whole batch.</summary>
        public int MicroBatchSize { get; init; }
        /// <summary>Longest sequence in tokens; longer examples are truncated.</summary>
        public int MaxLength { get; init; } = 256;
        /// <summary>Write a checkpoint every this many steps (and at the end).</summary>
        public int SaveEvery { get; init; } = 50;

        public IEnumerable<ConfigProblem> Problems()
        {
            if (HelpfulnessFraction is < 0 or > 1 || double.IsNaN(HelpfulnessFraction))
                yield return new("helpfulness_fraction", $"must be in [0, 1], got {HelpfulnessFraction}");
            if (HelpfulnessData is not null && HelpfulnessPrompts is not null)
                yield return new("helpfulness_prompts", "give either helpfulness_data (existing examples) or helpfulness_prompts (answered by helpful_model), not both");
            if (HelpfulnessPrompts is not null && HelpfulModel is null)
                yield return new("helpful_model", "is required with helpfulness_prompts (it answers them)");
            if (HelpfulModel is not null && HelpfulnessPrompts is null)
                yield return new("helpful_model", "answers helpfulness_prompts; give those too, or leave helpful_model out");
            if (HelpfulnessFraction > 0 && HelpfulnessData is null && HelpfulnessPrompts is null)
                yield return new("helpfulness_fraction", $"is {HelpfulnessFraction} but there is no helpfulness data; give helpfulness_data or helpfulness_prompts + helpful_model, or set helpfulness_fraction: 0");
            if (HelpfulnessLimit is < 1) yield return new("helpfulness_limit", $"must be at least 1, got {HelpfulnessLimit}");
            if (GenerationBatchSize < 1) yield return new("generation_batch_size", $"must be at least 1, got {GenerationBatchSize}");
            if (Steps < 1) yield return new("steps", $"must be at least 1, got {Steps}");
            if (BatchSize < 1) yield return new("batch_size", $"must be at least 1, got {BatchSize}");
            if (MicroBatchSize < 0) yield return new("micro_batch_size", $"must be 0 or more, got {MicroBatchSize}");
            if (MaxLength < 2) yield return new("max_length", $"must be at least 2, got {MaxLength}");
            if (SaveEvery < 1) yield return new("save_every", $"must be at least 1, got {SaveEvery}");
            foreach (var problem in HttpLimits.Problems(HttpTimeoutSeconds, HttpDeadlineSeconds)) yield return problem;
        }
    }

    /// <summary>What a run produced: examples per source in the mix, the final training loss and the trained model folder.</summary>
    public sealed record Summary(int RevisionExamples, int HelpfulnessExamples, string Mix, int Steps, double FinalLoss, string Model);

    /// <summary>
    /// How many helpfulness examples the mix needs so that every revision fits at share
    /// <paramref name="helpfulnessFraction"/>: ⌈R·f / (1 − f)⌉; null at f = 1 (no revisions, so no bound).
    /// Pure, so the sampling budget can be tested with numbers.
    /// </summary>
    public static int? HelpfulnessNeeded(int revisions, double helpfulnessFraction)
    {
        if (helpfulnessFraction >= 1) return null;
        if (helpfulnessFraction <= 0) return 0;
        // The 1e-9 keeps exact quotients (R = 6, f = 0.25 → 2) from rounding up past the integer.
        return (int)Math.Ceiling(revisions * helpfulnessFraction / (1 - helpfulnessFraction) - 1e-9);
    }

    /// <summary>
    /// Examples of each source in the mix: (helpfulness, revisions), as many as the inputs allow at the share
    /// without repeating any — <see cref="PreferenceMix.Counts"/> with helpfulness in the first place.
    /// </summary>
    public static (int Helpfulness, int Revisions) MixCounts(int helpfulnessAvailable, int revisionsAvailable, double helpfulnessFraction, string source)
    {
        var (helpfulness, revisions) = PreferenceMix.Counts(helpfulnessAvailable, revisionsAvailable, helpfulnessFraction, size: null, source);
        return (helpfulness, revisions);
    }

    /// <summary>Runs the stage, opening the helpful model named in the config when there are prompts left to answer.</summary>
    public static Task<Summary> Run(Config config, Action<string>? log = null, CancellationToken cancellationToken = default, string source = "sft config") =>
        Run(config, helpfulModel: null, log, cancellationToken, source);

    /// <summary>Runs the stage; a non-null <paramref name="helpfulModel"/> (owned by the caller) answers the helpfulness prompts instead of helpful_model.</summary>
    public static async Task<Summary> Run(Config config, ITextGenerator? helpfulModel, Action<string>? log = null, CancellationToken cancellationToken = default, string source = "sft config")
    {
        log ??= _ => { };

        // 1. Read and check every input before a model is loaded: bad input fails fast and writes nothing.
        StageConfig.Check(config, source);
        CheckModelFolder(config.Model, source, "model");
        if (!File.Exists(config.Revisions))
            throw UserError.At(source, null, "revisions", $"file '{config.Revisions}' not found (give the revise stage's sft_messages.jsonl or sft_prompt_completion.jsonl)");
        var revisions = ReadConversations(config.Revisions);
        if (revisions.Count == 0 && config.HelpfulnessFraction < 1)
            throw UserError.At(config.Revisions, null, null, "holds no examples");
        var needed = HelpfulnessNeeded(revisions.Count, config.HelpfulnessFraction);
        List<(string Id, IReadOnlyList<ChatMessage> Messages)> helpfulness = [];
        if (config.HelpfulnessData is { } data)
        {
            helpfulness = ReadConversations(data);
            if (config.HelpfulnessLimit is { } limit) helpfulness = helpfulness.Take(limit).ToList();
        }
        Directory.CreateDirectory(config.OutputDir);

        // 2. Sample the helpful model's answers to the helpfulness prompts the mix needs (resumable).
        if (config.HelpfulnessPrompts is { } promptSource && needed != 0)
        {
            var prompts = PromptSources.ReadPrompts(promptSource, config.TranscriptPrompt);
            var take = Math.Min(config.HelpfulnessLimit ?? int.MaxValue, needed ?? int.MaxValue);
            if (take < prompts.Count) prompts = prompts.Take(take).ToList();
            helpfulness = await SampleHelpfulness(config, prompts, helpfulModel, source, log, cancellationToken);
        }

        // 3. Mix: seeded draws from each source at the helpfulness share, shuffled, written whole.
        var (helpfulCount, revisionCount) = MixCounts(helpfulness.Count, revisions.Count, config.HelpfulnessFraction, source);
        var rng = new Random(config.Seed);
        var mix = PreferenceMix.Draw(revisions, revisionCount, rng).Select(r => new SftMixExample($"{RevisionSource}/{r.Id}", RevisionSource, r.Messages))
            .Concat(PreferenceMix.Draw(helpfulness, helpfulCount, rng).Select(h => new SftMixExample($"{HelpfulnessSource}/{h.Id}", HelpfulnessSource, h.Messages)))
            .ToArray();
        rng.Shuffle(mix);
        if (mix.Length == 0) throw UserError.At(source, null, "helpfulness_fraction", "the mix holds no examples");
        var mixPath = Path.Combine(config.OutputDir, MixFile);
        var trainDir = Path.Combine(config.OutputDir, TrainSubdir);
        WriteMix(mixPath, mix, trainDir);
        log($"{MixFile}: {revisionCount} revision and {helpfulCount} helpfulness examples");

        // 4. Fine-tune (TrainLm resumes from the newest checkpoint in train/checkpoints).
        var model = TrainLm.Run(new TrainLm.Config
        {
            Model = config.Model, Data = mixPath, OutputDir = trainDir, Steps = config.Steps, BatchSize = config.BatchSize,
            MicroBatchSize = config.MicroBatchSize, MaxLength = config.MaxLength, Optimizer = config.Optimizer, Lora = config.Lora,
            Seed = config.Seed, SaveEvery = config.SaveEvery,
        }, log, cancellationToken);

        // 5. Summary: a resumed run rewrites the steps after its checkpoint, so the last line of the last step wins.
        var metrics = MetricsLog.Read(Path.Combine(trainDir, "metrics.jsonl"));
        var last = metrics.Where(m => m.Step == config.Steps && m.Values.ContainsKey("loss")).LastOrDefault();
        return new Summary(revisionCount, helpfulCount, mixPath, config.Steps, last?.Values["loss"] ?? double.NaN, model);
    }

    /// <summary>
    /// The helpful model answers each prompt; finished answers are appended to helpfulness_samples.jsonl one
    /// whole line at a time. Batches have fixed boundaries in prompt order and a seed drawn from their first
    /// prompt's id, so a resumed run samples exactly what an uninterrupted one would; a batch that is partly
    /// written is generated again and only its missing answers are appended.
    /// </summary>
    static async Task<List<(string Id, IReadOnlyList<ChatMessage> Messages)>> SampleHelpfulness(Config config, List<PromptItem> prompts,
        ITextGenerator? helpfulModel, string source, Action<string> log, CancellationToken cancellationToken)
    {
        var path = Path.Combine(config.OutputDir, HelpfulnessSamplesFile);
        using (var output = ResumableJsonlWriter<HelpfulnessSample>.Open(path, s => s.Id))
        {
            var batches = prompts.Chunk(config.GenerationBatchSize).Where(b => b.Any(p => !output.IsDone(p.Id))).ToList();
            if (output.ResumedCount > 0) log($"{HelpfulnessSamplesFile}: {output.ResumedCount} answers from an earlier run");
            if (batches.Count > 0)
            {
                using var owned = helpfulModel is null
                    ? StageBackends.OpenGenerator(config.HelpfulModel!, config.HelpfulServerModel,
                        new InferenceOptions { ExecutionProvider = config.ExecutionProvider, BatchSize = config.GenerationBatchSize, HttpTimeoutSeconds = config.HttpTimeoutSeconds, HttpDeadlineSeconds = config.HttpDeadlineSeconds }, source, "helpful_model")
                    : null;
                var generator = helpfulModel ?? owned!;
                var countTokens = StageBackends.ChatTokenCounter(generator);
                var budget = (StageBackends.ContextLength(config.HelpfulModel!) ?? int.MaxValue) - config.Sampling.MaxNewTokens;
                var sampling = new SamplingOptions { MaxNewTokens = config.Sampling.MaxNewTokens, Temperature = config.Sampling.Temperature, TopP = config.Sampling.TopP };
                using var progress = new Progress("sft: helpful answers", prompts.Count, alreadyDone: output.Count);
                foreach (var batch in batches)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    // A prompt longer than a local model's context keeps its latest turns (the revise stage's rule).
                    var fitted = batch.Select(p => Revise.Fit([], p.Messages, [], countTokens, budget)).ToList();
                    var answers = await generator.ChatAsync(fitted.Select(f => (IReadOnlyList<ChatMessage>)f.Chat).ToList(),
                        sampling with { Seed = StableRandom.SeedFor(config.Seed, batch[0].Id) }, cancellationToken);
                    for (var i = 0; i < batch.Length; i++)
                    {
                        if (output.IsDone(batch[i].Id)) continue;
                        output.Append(new HelpfulnessSample(batch[i].Id, [.. batch[i].Messages, new ChatMessage("assistant", answers[i].Trim())], fitted[i].Truncated));
                        progress.Advance();
                    }
                }
            }
        }
        // The file may hold answers to prompts a different limit no longer asks for: only the asked ones count.
        var byId = Jsonl.ReadAll<HelpfulnessSample>(path).ToDictionary(s => s.Id);
        return prompts.Select(p => (p.Id, byId[p.Id].Messages)).ToList();
    }

    /// <summary>
    /// The conversations of a JSONL file in the formats <see cref="TrainLm"/> reads, as messages lists ending in
    /// the trained assistant turn: "messages" as they are; "prompt" + "completion" message lists joined (the
    /// completion one assistant message); string prompt and completion as one user turn and one assistant turn.
    /// Plain "text" lines have no answer to mix and are refused. Lines without an id are named by line number.
    /// </summary>
    static List<(string Id, IReadOnlyList<ChatMessage> Messages)> ReadConversations(string path)
    {
        var result = new List<(string, IReadOnlyList<ChatMessage>)>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (line, row) in Jsonl.Read<ConversationRow>(path))
        {
            List<ChatMessage> messages;
            if (row.Text is not null)
                throw UserError.At(path, line, "text", "plain text has no answer to fine-tune on; give messages, or prompt and completion");
            if (row.Messages is { } m)
            {
                if (row.Prompt is not null || row.Completion is not null)
                    throw UserError.At(path, line, "messages", "give one of prompt and completion, or messages");
                messages = m;
            }
            else
            {
                if (row.Prompt is not { } p) throw UserError.At(path, line, "prompt", "is missing (each line needs messages, or prompt and completion)");
                if (row.Completion is not { } c) throw UserError.At(path, line, "completion", "is missing (each line needs messages, or prompt and completion)");
                if (p.ValueKind == JsonValueKind.String && c.ValueKind == JsonValueKind.String)
                    messages = [new("user", p.GetString()!), new("assistant", c.GetString()!)];
                else
                {
                    var completion = MessageList(c, path, line, "completion");
                    if (completion.Count != 1) throw UserError.At(path, line, "completion", $"must be one assistant message, got {completion.Count}");
                    messages = [.. MessageList(p, path, line, "prompt"), .. completion];
                }
            }
            if (messages.Count < 2 || messages[^1].Role != "assistant")
                throw UserError.At(path, line, row.Messages is null ? "completion" : "messages", "needs at least one turn before a final assistant turn");
            var id = row.Id ?? $"line-{line}";
            if (!ids.Add(id)) throw UserError.At(path, line, "id", $"duplicate id '{id}'");
            result.Add((id, messages));
        }
        return result;
    }

    /// <summary>A line of an SFT file as read: whichever of TrainLm's formats it is in, with an optional id.</summary>
    sealed record ConversationRow(string? Id = null, string? Text = null, JsonElement? Prompt = null, JsonElement? Completion = null, List<ChatMessage>? Messages = null);

    static List<ChatMessage> MessageList(JsonElement value, string path, int line, string field)
    {
        if (value.ValueKind != JsonValueKind.Array)
            throw UserError.At(path, line, field, "must be a string or a list of {role, content} messages (both strings, or both lists)");
        var list = new List<ChatMessage>();
        foreach (var m in value.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                || !m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                throw UserError.At(path, line, $"{field}[{list.Count}]", "must be an object with string role and content");
            list.Add(new ChatMessage(role.GetString()!, content.GetString()!));
        }
        if (list.Count == 0) throw UserError.At(path, line, field, "is an empty message list");
        return list;
    }

    /// <summary>
    /// Writes sft_mix.jsonl atomically. Once training has a checkpoint, a mix that came out different (other
    /// revisions, another fraction) would silently continue a run on other data, so it is refused.
    /// </summary>
    static void WriteMix(string mixPath, SftMixExample[] mix, string trainDir)
    {
        var bytes = mix.SelectMany(Jsonl.SerializeLine).ToArray();
        if (File.Exists(mixPath) && Checkpoint.Latest(Path.Combine(trainDir, "checkpoints")) is not null)
        {
            if (File.ReadAllBytes(mixPath).AsSpan().SequenceEqual(bytes)) return;
            throw UserError.At(mixPath, null, null, $"the training set changed since {trainDir} started training on it; use a new output_dir or delete {trainDir}");
        }
        AtomicFile.WriteAllBytes(mixPath, bytes);
    }

    static void CheckModelFolder(string dir, string source, string field)
    {
        if (!Directory.Exists(dir)) throw UserError.At(source, null, field, $"model folder '{dir}' not found");
        if (!File.Exists(Path.Combine(dir, "genai_config.json")))
            throw UserError.At(source, null, field, $"'{dir}' is not a model folder (genai_config.json is missing)");
    }
}
