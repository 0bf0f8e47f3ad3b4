using RlaifOnnx.Configuration;
using RlaifOnnx.Constitution;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Records;
using RlaifOnnx.Reporting;

namespace RlaifOnnx.Stages;

/// <summary>
/// Stage 01, supervised critique → revision (Constitutional AI paper §3.1).
///
/// The helpful model answers each prompt; then, K times, it is shown its latest answer with a critique
/// request drawn at random from the constitution, writes a critique, is asked to revise, and writes a
/// revision. Few-shot critique/revision dialogues from the constitution are prepended as earlier chat
/// turns so even a model that never saw the format follows it. Each round critiques the latest revision
/// in a fresh conversation (not one growing transcript), which keeps the context bounded at any K.
///
/// Run: <c>rlaif revise --config revise.yaml</c>. Output in <see cref="Config.OutputDir"/>:
/// revisions.jsonl (resumable: a rerun skips finished prompts), sft_prompt_completion.jsonl and
/// sft_messages.jsonl (rewritten whole from revisions.jsonl at the end of every run).
/// </summary>
public static class Revise
{
    public const string RevisionsFile = "revisions.jsonl";
    public const string SftPromptCompletionFile = "sft_prompt_completion.jsonl";
    public const string SftMessagesFile = "sft_messages.jsonl";

    /// <summary>Configuration of the revise stage.</summary>
    [ConfigRenamed("model", "helpful_model")]
    public sealed record Config : IValidatableConfig
    {
        /// <summary>Prompts: a .jsonl/.jsonl.gz file (prompt, messages, or hh-rlhf transcripts), a text file (one per line), or builtin:NAME (red-team-train, red-team-eval, helpful-train, helpful-eval).</summary>
        [ConfigPath] public required string Prompts { get; init; }
        /// <summary>For hh-rlhf transcripts: use only the first human turn (first_turn) or every turn before the last answer (full_context).</summary>
        public TranscriptPrompt TranscriptPrompt { get; init; } = TranscriptPrompt.FirstTurn;
        /// <summary>The helpful model: a model folder, or the base URL of an OpenAI-compatible server.</summary>
        [ConfigPath] public required string HelpfulModel { get; init; }
        /// <summary>Model name to send to a server (null: the server's first model).</summary>
        public string? HelpfulServerModel { get; init; }
        /// <summary>The constitution: "default" (embedded) or a YAML file.</summary>
        [ConfigPath("default")] public string Constitution { get; init; } = "default";
        /// <summary>Folder for revisions.jsonl and the SFT exports.</summary>
        [ConfigPath] public required string OutputDir { get; init; }
        /// <summary>Critique → revision rounds per prompt (the paper uses 4).</summary>
        public int Rounds { get; init; } = 4;
        /// <summary>Few-shot critique/revision examples prepended to every critique and revision request (0 = none).</summary>
        public int FewShot { get; init; } = 1;
        /// <summary>Seed for the principle and example draws (stable per prompt, so a resumed run draws the same) and for sampling.</summary>
        public int Seed { get; init; }
        /// <summary>How answers are sampled: temperature, top_p, max_new_tokens.</summary>
        public SamplingConfig Sampling { get; init; } = new() { Temperature = 0 };
        /// <summary>Prompts per generation batch.</summary>
        public int BatchSize { get; init; } = 8;
        /// <summary>Use only the first N prompts (null: all).</summary>
        public int? Limit { get; init; }
        /// <summary>Which revisions become SFT examples: "last" (the final answer only) or "all" (one example per round).</summary>
        public SftRevisions SftRevisions { get; init; } = SftRevisions.Last;
        /// <summary>Execution provider for a local model: cpu or cuda.</summary>
        public string ExecutionProvider { get; init; } = "cpu";
        /// <summary>For a server model: seconds one HTTP attempt may take before it is retried (null: $RLAIF_HTTP_TIMEOUT, else 60).</summary>
        public double? HttpTimeoutSeconds { get; init; }
        /// <summary>For a server model: seconds one call may take in all, retries and Retry-After waits included (null: $RLAIF_HTTP_DEADLINE, else 300).</summary>
        public double? HttpDeadlineSeconds { get; init; }

        public IEnumerable<ConfigProblem> Problems()
        {
            foreach (var problem in HttpLimits.Problems(HttpTimeoutSeconds, HttpDeadlineSeconds)) yield return problem;
            if (Rounds < 1) yield return new("rounds", $"must be at least 1, got {Rounds}");
            if (FewShot < 0) yield return new("few_shot", $"must be 0 or more, got {FewShot}");
            if (BatchSize < 1) yield return new("batch_size", $"must be at least 1, got {BatchSize}");
            if (Limit is < 1) yield return new("limit", $"must be at least 1, got {Limit}");
        }
    }

    /// <summary>Which revisions the SFT exports hold.</summary>
    public enum SftRevisions { Last, All }

    /// <summary>Runs the stage with the model named in the config; returns revisions.jsonl's path.</summary>
    public static async Task<string> Run(Config config, CancellationToken cancellationToken = default, string source = "revise config")
    {
        // Every input is read and checked before a model is loaded: bad input fails fast and writes nothing.
        var (constitution, prompts) = ReadInputs(config, source);
        using var generator = StageBackends.OpenGenerator(config.HelpfulModel, config.HelpfulServerModel,
            new InferenceOptions { ExecutionProvider = config.ExecutionProvider, BatchSize = config.BatchSize, HttpTimeoutSeconds = config.HttpTimeoutSeconds, HttpDeadlineSeconds = config.HttpDeadlineSeconds }, source, "helpful_model");
        return await Run(config, constitution, prompts, generator, cancellationToken);
    }

    /// <summary>Runs the stage with a generator the caller owns.</summary>
    public static async Task<string> Run(Config config, ITextGenerator generator, CancellationToken cancellationToken = default, string source = "revise config")
    {
        var (constitution, prompts) = ReadInputs(config, source);
        return await Run(config, constitution, prompts, generator, cancellationToken);
    }

    static (ConstitutionSet, List<PromptItem>) ReadInputs(Config config, string source)
    {
        foreach (var problem in config.Problems()) throw UserError.At(source, null, problem.Key, problem.Problem);
        var constitution = ConstitutionSet.Load(config.Constitution);
        if (constitution.Critiques.Count == 0)
            throw UserError.At(config.Constitution, null, "critiques", "the constitution has no critique/revision pairs to revise with");
        var prompts = PromptSources.ReadPrompts(config.Prompts, config.TranscriptPrompt);
        if (config.Limit is { } limit) prompts = prompts.Take(limit).ToList();
        return (constitution, prompts);
    }

    static async Task<string> Run(Config config, ConstitutionSet constitution, List<PromptItem> prompts, ITextGenerator generator, CancellationToken cancellationToken)
    {

        Directory.CreateDirectory(config.OutputDir);
        var revisionsPath = Path.Combine(config.OutputDir, RevisionsFile);
        using (var output = ResumableJsonlWriter<RevisionRecord>.Open(revisionsPath, r => r.Id))
        {
            // Batches have fixed boundaries in prompt order and a seed drawn from their first prompt's id, so a
            // resumed run generates what an uninterrupted one would (the same chats padded together, the same
            // seed); a batch a killed run left partly written is generated again and only its missing records appended.
            var batches = prompts.Chunk(config.BatchSize).Where(b => b.Any(p => !output.IsDone(p.Id))).Select(b => b.ToList()).ToList();
            // A local model's context bounds every chat: over-long ones are fitted (see Fit) and the record marked.
            var countTokens = StageBackends.ChatTokenCounter(generator);
            var budget = (StageBackends.ContextLength(config.HelpfulModel) ?? int.MaxValue) - config.Sampling.MaxNewTokens;
            using var progress = new Progress("revise", prompts.Count, alreadyDone: output.Count);
            var sampling = new SamplingOptions { MaxNewTokens = config.Sampling.MaxNewTokens, Temperature = config.Sampling.Temperature, TopP = config.Sampling.TopP, Seed = config.Seed };
            foreach (var batch in batches)
            {
                cancellationToken.ThrowIfCancellationRequested();
                foreach (var record in await ReviseBatch(batch, constitution, config, generator, sampling with { Seed = StableRandom.SeedFor(config.Seed, batch[0].Id) }, countTokens, budget, cancellationToken))
                {
                    if (output.IsDone(record.Id)) continue;
                    output.Append(record);
                    progress.Advance();
                }
            }
        }

        WriteSftExports(config.OutputDir, config.SftRevisions);
        return revisionsPath;
    }

    /// <summary>All rounds for one batch of prompts: every generation call covers the whole batch.</summary>
    static async Task<List<RevisionRecord>> ReviseBatch(List<PromptItem> batch, ConstitutionSet constitution, Config config,
        ITextGenerator generator, SamplingOptions sampling, Func<IReadOnlyList<ChatMessage>, int>? countTokens, int budget, CancellationToken ct)
    {
        var truncated = new bool[batch.Count];
        List<ChatMessage> Chat(int i, IReadOnlyList<ChatMessage> prefix, IReadOnlyList<ChatMessage> tail)
        {
            var (chat, cut) = Fit(prefix, batch[i].Messages, tail, countTokens, budget);
            truncated[i] |= cut;
            return chat;
        }

        // 1. draw each prompt's principles and few-shot examples (stable per prompt id: resume draws the same)
        var draws = batch.Select(p =>
        {
            var rng = StableRandom.For(config.Seed, p.Id, "revise");
            var principles = Enumerable.Range(0, config.Rounds).Select(_ => constitution.Critiques[rng.Next(constitution.Critiques.Count)]).ToList();
            var examples = DrawExamples(constitution.CritiqueExamples, config.FewShot, rng);
            return (principles, prefix: FewShotPrefix(examples));
        }).ToList();

        // 2. initial answers, with no few-shot prefix: this is the helpful model's ordinary behaviour
        var initial = await generator.ChatAsync(batch.Select((_, i) => (IReadOnlyList<ChatMessage>)Chat(i, [], [])).ToList(), sampling, ct);
        var current = initial.Select(Clean).ToList();
        var rounds = batch.Select(_ => new List<RevisionRound>()).ToList();

        // 3. K rounds of critique → revision
        for (var round = 0; round < config.Rounds; round++)
        {
            // Seeds stay non-negative (a negative seed asks GenAI for a random one) and differ per call.
            var roundSampling = sampling with { Seed = StableRandom.SeedFor(sampling.Seed, $"round {round} critique") };
            var critiqueTails = batch.Select((_, i) => new List<ChatMessage> { new("assistant", current[i]), new("user", draws[i].principles[round].CritiqueRequest) }).ToList();
            var critiqueChats = batch.Select((_, i) => (IReadOnlyList<ChatMessage>)Chat(i, draws[i].prefix, critiqueTails[i])).ToList();
            var critiques = (await generator.ChatAsync(critiqueChats, roundSampling, ct)).Select(Clean).ToList();

            var revisionChats = batch.Select((_, i) => (IReadOnlyList<ChatMessage>)Chat(i, draws[i].prefix,
                [.. critiqueTails[i], new("assistant", critiques[i]), new("user", draws[i].principles[round].RevisionRequest)])).ToList();
            var revisions = (await generator.ChatAsync(revisionChats, sampling with { Seed = StableRandom.SeedFor(sampling.Seed, $"round {round} revision") }, ct)).Select(Clean).ToList();

            for (var i = 0; i < batch.Count; i++)
            {
                var p = draws[i].principles[round];
                rounds[i].Add(new RevisionRound(p.Id, p.CritiqueRequest, critiques[i], p.RevisionRequest, revisions[i]));
                current[i] = revisions[i];
            }
        }

        return batch.Select((p, i) => new RevisionRecord(p.Id, p.LastUserText, p.Messages, initial[i].Trim(), rounds[i], current[i], truncated[i])).ToList();
    }

    /// <summary>
    /// Fits prefix + prompt + tail into <paramref name="budget"/> tokens: drops the few-shot prefix first,
    /// then the prompt's oldest turns, then the start of its first remaining turn. Returns whether the
    /// prompt itself was cut. Without a counter (a server) the chat is returned whole.
    /// </summary>
    internal static (List<ChatMessage> Chat, bool Truncated) Fit(IReadOnlyList<ChatMessage> prefix, IReadOnlyList<ChatMessage> prompt,
        IReadOnlyList<ChatMessage> tail, Func<IReadOnlyList<ChatMessage>, int>? tokens, int budget)
    {
        List<ChatMessage> Join(IEnumerable<ChatMessage> p, IEnumerable<ChatMessage> q) => [.. p, .. q, .. tail];
        var chat = Join(prefix, prompt);
        if (tokens is null || tokens(chat) <= budget) return (chat, false);
        chat = Join([], prompt);
        if (tokens(chat) <= budget) return (chat, false);
        var kept = prompt.ToList();
        while (kept.Count > 1 && tokens(Join([], kept)) > budget) kept.RemoveAt(0);
        if (tokens(Join([], kept)) > budget)
        {
            var first = kept[0];
            int lo = 0, hi = first.Content.Length;
            while (lo < hi)
            {
                var mid = (lo + hi + 1) / 2;
                if (tokens(Join([], [first with { Content = "…" + first.Content[^mid..] }, .. kept.Skip(1)])) <= budget) lo = mid; else hi = mid - 1;
            }
            kept[0] = first with { Content = "…" + first.Content[^lo..] };
        }
        return (Join([], kept), true);
    }

    /// <summary>Model output as stored: surrounding whitespace trimmed.</summary>
    static string Clean(string text) => text.Trim();

    /// <summary>n distinct examples in a random order (all of them when there are fewer).</summary>
    internal static List<T> DrawExamples<T>(IReadOnlyList<T> examples, int n, Random rng)
    {
        var order = Enumerable.Range(0, examples.Count).ToArray();
        rng.Shuffle(order);
        return order.Take(Math.Min(n, examples.Count)).Select(i => examples[i]).ToList();
    }

    /// <summary>A few-shot example as the chat turns it stands for: conversation, critique request, critique, revision request, revision.</summary>
    internal static List<ChatMessage> FewShotPrefix(IEnumerable<CritiqueExample> examples)
    {
        var turns = new List<ChatMessage>();
        foreach (var e in examples)
        {
            turns.AddRange(e.Conversation);
            turns.Add(new("user", e.CritiqueRequest));
            turns.Add(new("assistant", e.Critique));
            turns.Add(new("user", e.RevisionRequest));
            turns.Add(new("assistant", e.Revision));
        }
        return turns;
    }

    /// <summary>Rewrites both SFT exports from revisions.jsonl (whole files, atomically).</summary>
    public static void WriteSftExports(string outputDir, SftRevisions which)
    {
        var records = Jsonl.ReadAll<RevisionRecord>(Path.Combine(outputDir, RevisionsFile));
        var examples = new List<(string Id, IReadOnlyList<ChatMessage> Prompt, string Answer)>();
        foreach (var r in records)
        {
            if (which == SftRevisions.All)
                for (var k = 0; k < r.Rounds.Count; k++) examples.Add(($"{r.Id}/{k + 1}", r.Messages, r.Rounds[k].Revision));
            else examples.Add((r.Id, r.Messages, r.FinalResponse));
        }
        Jsonl.Write(Path.Combine(outputDir, SftPromptCompletionFile),
            examples.Select(e => new SftPromptCompletion(e.Id, e.Prompt, [new ChatMessage("assistant", e.Answer)])));
        Jsonl.Write(Path.Combine(outputDir, SftMessagesFile),
            examples.Select(e => new SftMessages(e.Id, [.. e.Prompt, new ChatMessage("assistant", e.Answer)])));
    }
}
