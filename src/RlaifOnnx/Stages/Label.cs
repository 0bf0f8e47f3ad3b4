using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using RlaifOnnx.Configuration;
using RlaifOnnx.Constitution;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Records;
using RlaifOnnx.Reporting;

namespace RlaifOnnx.Stages;

/// <summary>
/// Stage 03, AI feedback labels (Constitutional AI paper §4.1).
///
/// For each comparison the feedback model reads a multiple-choice question:
/// <code>
/// Consider the following conversation between a human and an assistant:
/// [conversation as "Human: … Assistant: …"]
///
/// [principle]
/// Options:
/// (A) [first answer]
/// (B) [second answer]
/// The answer is:
/// </code>
/// and the label is the normalised probability of " (A)" against " (B)" from the scorer's log-probs: one
/// forward pass, no sampling. By default both orders are scored and averaged (removes position bias), over
/// M principles drawn per comparison (ensemble). Chain-of-thought mode lets the model reason first
/// ("Let's think step by step:") and clamps the result to [0.4, 0.6] (paper §4.2); a reasoning without a
/// parseable "(A)"/"(B)" answer is counted and falls back to the log-prob answer after the reasoning.
///
/// Comparisons come from an existing pairs file, or from sampling two answers per prompt from a policy
/// model. Over-long questions are cut from the left of the conversation (then the answers' tails) and counted.
/// The few-shot examples are drawn once per run, so every question starts with the same block, which the
/// scorer runs once and keeps the cache of (its prefix cache). The 2·M questions of one comparison differ
/// only after the conversation, so the rest of the shared prefix (header and conversation) runs once per
/// comparison; each principle's text (and "Options: (A) ") runs once for both orders, each order continues
/// from it, and the first answer is scored in the order's own pass, the second from that pass's cache
/// (issues 4 §7 and 12 §5; bench/RESULTS.md "label" measures the gain).
///
/// Run: <c>rlaif label --config label.yaml</c>. Output in <see cref="Config.OutputDir"/>: comparisons.jsonl
/// (resumable), preferences.jsonl (TRL export) and metrics.json (+ metrics.jsonl).
/// </summary>
public static partial class Label
{
    public const string ComparisonsFile = "comparisons.jsonl";
    public const string PreferencesFile = "preferences.jsonl";
    public const string MetricsFile = "metrics.json";
    public const string CandidateA = " (A)";
    public const string CandidateB = " (B)";
    const string Header = "Consider the following conversation between a human and an assistant:";
    const string ThinkStepByStep = "Let's think step by step:";

    /// <summary>Configuration of the label stage.</summary>
    public sealed record Config : IValidatableConfig
    {
        /// <summary>Existing pairs (JSONL): prompt/response_a/response_b[/preferred], prompt/chosen/rejected, or hh-rlhf chosen/rejected transcripts. Give this or prompts + policy_model.</summary>
        [ConfigPath] public string? Pairs { get; init; }
        /// <summary>Prompts to sample two answers for (any prompt source, see the revise stage). Needs policy_model.</summary>
        [ConfigPath] public string? Prompts { get; init; }
        /// <summary>For hh-rlhf transcript prompts: first_turn or full_context.</summary>
        public TranscriptPrompt TranscriptPrompt { get; init; } = TranscriptPrompt.FirstTurn;
        /// <summary>The model that answers the prompts (the SL-CAI model): a model folder or an OpenAI-compatible URL.</summary>
        [ConfigPath] public string? PolicyModel { get; init; }
        /// <summary>Model name to send to a policy server (null: its first model).</summary>
        public string? PolicyServerModel { get; init; }
        /// <summary>How answers are sampled: temperature, top_p, max_new_tokens.</summary>
        public SamplingConfig Sampling { get; init; } = new();
        /// <summary>The feedback model that reads the multiple-choice questions: a model folder or an OpenAI-compatible URL (with echo log-probs).</summary>
        [ConfigPath] public required string FeedbackModel { get; init; }
        /// <summary>Model name to send to a feedback server (null: its first model).</summary>
        public string? FeedbackServerModel { get; init; }
        /// <summary>The constitution: "default" (embedded) or a YAML file.</summary>
        [ConfigPath("default")] public string Constitution { get; init; } = "default";
        /// <summary>Folder for comparisons.jsonl, preferences.jsonl and metrics.json.</summary>
        [ConfigPath] public required string OutputDir { get; init; }
        /// <summary>Principles per comparison (M), drawn without repetition; p_a is their mean.</summary>
        public int Principles { get; init; } = 4;
        /// <summary>Score both orders (a first, then b first) and average; removes position bias.</summary>
        public bool BothOrders { get; init; } = true;
        /// <summary>Few-shot labelling examples prepended to every question (0 = none), drawn once per run with the seed: the same block before every question.</summary>
        public int FewShot { get; init; } = 1;
        /// <summary>Reuse shared work: the few-shot block's cache across comparisons, the header and conversation once per comparison, each principle's text once for both orders, both answers from each question's cache (false: one full pass per question, nothing kept across calls).</summary>
        public bool SharePrefix { get; init; } = true;
        /// <summary>Let the feedback model reason step by step before answering, then clamp.</summary>
        public bool ChainOfThought { get; init; }
        /// <summary>New tokens for a chain-of-thought reasoning.</summary>
        public int CotMaxNewTokens { get; init; } = 96;
        /// <summary>Lower clamp for chain-of-thought probabilities (paper: 0.4).</summary>
        public double ClampLow { get; init; } = 0.4;
        /// <summary>Upper clamp for chain-of-thought probabilities (paper: 0.6).</summary>
        public double ClampHigh { get; init; } = 0.6;
        /// <summary>Token budget of one question (null: the feedback model's context length, less room for the answer or reasoning; 4096 for a server).</summary>
        public int? MaxQuestionTokens { get; init; }
        /// <summary>Comparisons per batch; all their questions go to the scorer in one call.</summary>
        public int BatchSize { get; init; } = 8;
        /// <summary>Seed for principle draws, example draws, answer placement and sampling.</summary>
        public int Seed { get; init; }
        /// <summary>Use only the first N comparisons (null: all).</summary>
        public int? Limit { get; init; }
        /// <summary>Bins of the calibration diagram.</summary>
        public int CalibrationBins { get; init; } = 10;
        /// <summary>Execution provider for local models: cpu or cuda.</summary>
        public string ExecutionProvider { get; init; } = "cpu";
        /// <summary>For a server model: seconds one HTTP attempt may take before it is retried (null: $RLAIF_HTTP_TIMEOUT, else 60).</summary>
        public double? HttpTimeoutSeconds { get; init; }
        /// <summary>For a server model: seconds one call may take in all, retries and Retry-After waits included (null: $RLAIF_HTTP_DEADLINE, else 300).</summary>
        public double? HttpDeadlineSeconds { get; init; }

        public IEnumerable<ConfigProblem> Problems()
        {
            if (Pairs is null && Prompts is null) yield return new("pairs", "give pairs (existing comparisons) or prompts + policy_model (sampled comparisons)");
            if (Pairs is not null && Prompts is not null) yield return new("prompts", "give either pairs or prompts, not both");
            if (Prompts is not null && PolicyModel is null) yield return new("policy_model", "is required with prompts (it samples the two answers)");
            if (Principles < 1) yield return new("principles", $"must be at least 1, got {Principles}");
            if (FewShot < 0) yield return new("few_shot", $"must be 0 or more, got {FewShot}");
            if (ClampLow is < 0 or > 0.5 || ClampHigh is < 0.5 or > 1) yield return new("clamp_low", $"clamps must satisfy 0 ≤ clamp_low ≤ 0.5 ≤ clamp_high ≤ 1, got {ClampLow} and {ClampHigh}");
            if (MaxQuestionTokens is < 16) yield return new("max_question_tokens", $"must be at least 16, got {MaxQuestionTokens}");
            if (BatchSize < 1) yield return new("batch_size", $"must be at least 1, got {BatchSize}");
            if (Limit is < 1) yield return new("limit", $"must be at least 1, got {Limit}");
            if (CalibrationBins < 1) yield return new("calibration_bins", $"must be at least 1, got {CalibrationBins}");
            foreach (var problem in HttpLimits.Problems(HttpTimeoutSeconds, HttpDeadlineSeconds)) yield return problem;
        }
    }

    /// <summary>Runs the stage with the models named in the config; returns comparisons.jsonl's path.</summary>
    public static async Task<string> Run(Config config, CancellationToken cancellationToken = default, string source = "label config")
    {
        // Every input is read and checked before a model is loaded: bad input fails fast and writes nothing.
        var inputs = ReadInputs(config, source);
        // share_prefix: false is the plain way, one full pass per question, so no prefix is reused across calls either.
        var options = new InferenceOptions { ExecutionProvider = config.ExecutionProvider, BatchSize = config.BatchSize, PrefixCacheBytes = config.SharePrefix ? new InferenceOptions().PrefixCacheBytes : 0,
            HttpTimeoutSeconds = config.HttpTimeoutSeconds, HttpDeadlineSeconds = config.HttpDeadlineSeconds };
        using var scorer = StageBackends.OpenScorer(config.FeedbackModel, config.FeedbackServerModel, options, source, "feedback_model");
        using var reasoner = config.ChainOfThought ? StageBackends.OpenGenerator(config.FeedbackModel, config.FeedbackServerModel, options, source, "feedback_model") : null;
        using var policy = config.Prompts is not null ? StageBackends.OpenGenerator(config.PolicyModel!, config.PolicyServerModel, options, source, "policy_model") : null;
        var budget = config.MaxQuestionTokens
            ?? (StageBackends.ContextLength(config.FeedbackModel) is { } context
                ? context - (config.ChainOfThought ? config.CotMaxNewTokens + 16 : 8)
                : 4096);
        return await Run(config, inputs, scorer, StageBackends.TokenCounter(scorer), budget, reasoner, policy, cancellationToken, source);
    }

    /// <summary>Runs the stage with backends the caller owns.</summary>
    public static Task<string> Run(Config config, IScorer scorer, Func<string, int> countTokens, int maxQuestionTokens,
        ITextGenerator? reasoner, ITextGenerator? policy, CancellationToken cancellationToken = default, string source = "label config") =>
        Run(config, ReadInputs(config, source), scorer, countTokens, maxQuestionTokens, reasoner, policy, cancellationToken, source);

    /// <summary>The checked inputs: the constitution and either existing pairs or prompts whose two answers are sampled batch by batch.</summary>
    sealed record Inputs(ConstitutionSet Constitution, List<PairItem>? Pairs, List<PromptItem>? Prompts);

    static Inputs ReadInputs(Config config, string source)
    {
        foreach (var problem in config.Problems()) throw UserError.At(source, null, problem.Key, problem.Problem);
        var constitution = ConstitutionSet.Load(config.Constitution);
        if (constitution.FeedbackPrinciples.Count == 0)
            throw UserError.At(config.Constitution, null, "feedback_principles", "the constitution has no feedback principles to label with");
        return config.Pairs is not null
            ? new Inputs(constitution, PromptSources.ReadPairs(config.Pairs, config.Seed), null)
            : new Inputs(constitution, null, PromptSources.ReadPrompts(config.Prompts!, config.TranscriptPrompt));
    }

    static async Task<string> Run(Config config, Inputs inputs, IScorer scorer, Func<string, int> countTokens, int maxQuestionTokens,
        ITextGenerator? reasoner, ITextGenerator? policy, CancellationToken cancellationToken, string source)
    {
        if (config.ChainOfThought && reasoner is null) throw new ArgumentNullException(nameof(reasoner), "chain-of-thought mode needs a generator");
        if (inputs.Prompts is not null && policy is null) throw new ArgumentNullException(nameof(policy), "sampled comparisons need a policy generator");
        var (constitution, pairs, prompts) = inputs;
        var ids = pairs?.Select(p => p.Id).ToList() ?? prompts!.Select(p => p.Id).ToList();
        if (config.Limit is { } limit) ids = ids.Take(limit).ToList();

        Directory.CreateDirectory(config.OutputDir);
        var comparisonsPath = Path.Combine(config.OutputDir, ComparisonsFile);
        var fewShotBlock = FewShotBlock(constitution, config);
        var labelled = 0;
        var clock = Stopwatch.StartNew();
        using (var output = ResumableJsonlWriter<ComparisonRecord>.Open(comparisonsPath, r => r.Id))
        {
            // Batches have fixed boundaries in input order, so a resumed run puts together (and, sampling, seeds) what
            // an uninterrupted one would; a batch a killed run left partly written is labelled again and only its
            // missing records appended.
            var batches = Enumerable.Range(0, ids.Count).Chunk(config.BatchSize).Where(b => b.Any(i => !output.IsDone(ids[i]))).Select(b => b.ToList()).ToList();
            using var progress = new Progress("label", ids.Count, alreadyDone: ids.Count(output.IsDone));
            try
            {
                foreach (var indices in batches)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    // 1. the comparisons of this batch (sampling two answers per prompt when there are no pairs)
                    var batch = pairs is not null
                        ? indices.Select(i => pairs[i]).ToList()
                        : await SamplePairs(indices.Select(i => prompts![i]).ToList(), policy!, config, cancellationToken);
                    // 2–5. questions, reasoning, scores, labels
                    foreach (var record in await LabelBatch(batch, constitution, config, fewShotBlock, scorer, countTokens, maxQuestionTokens, reasoner, source, cancellationToken))
                    {
                        if (output.IsDone(record.Id)) continue;
                        output.Append(record);
                        progress.Advance();
                        labelled++;
                    }
                }
            }
            catch (UserError)
            {
                // Bad input met midway (e.g. a token id past the feedback model's vocabulary): its line alone.
                progress.Abandon();
                throw;
            }
        }

        // 6. exports and metrics over everything in comparisons.jsonl (this run and earlier ones)
        var records = Jsonl.ReadAll<ComparisonRecord>(comparisonsPath);
        Jsonl.Write(Path.Combine(config.OutputDir, PreferencesFile), records.Select(ToPreference));
        var metrics = ComputeMetrics(records, config.BothOrders, config.CalibrationBins, labelled, labelled / Math.Max(clock.Elapsed.TotalSeconds, 1e-9));
        AtomicFile.WriteAllText(Path.Combine(config.OutputDir, MetricsFile), JsonSerializer.Serialize(metrics, MetricsJson));
        using (var log = new MetricsLog(Path.Combine(config.OutputDir, "metrics.jsonl")))
            log.Write(records.Count, MetricValues(metrics));
        return comparisonsPath;
    }

    static readonly JsonSerializerOptions MetricsJson = new(Jsonl.JsonlOptions)
    {
        WriteIndented = true,
        // metrics.json spells out every figure, null when it does not apply (no human preferences, one order).
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static LabelMetrics ReadMetrics(string outputDir) =>
        JsonSerializer.Deserialize<LabelMetrics>(File.ReadAllText(Path.Combine(outputDir, MetricsFile)), MetricsJson)!;

    /// <summary>
    /// Labels given comparisons the way the stage labels one batch (principles drawn per comparison id,
    /// the run's few-shot block, both orders if configured, M principles ensembled), without writing files:
    /// for callers that compare answers of their own, such as the evaluation stage. Chain-of-thought mode
    /// needs <paramref name="reasoner"/>.
    /// </summary>
    public static Task<List<ComparisonRecord>> LabelPairs(IReadOnlyList<PairItem> pairs, ConstitutionSet constitution, Config config, IScorer scorer,
        Func<string, int> countTokens, int maxQuestionTokens, ITextGenerator? reasoner = null, CancellationToken cancellationToken = default, string source = "label config")
    {
        if (config.ChainOfThought && reasoner is null) throw new ArgumentNullException(nameof(reasoner), "chain-of-thought mode needs a generator");
        if (pairs.Count == 0) return Task.FromResult(new List<ComparisonRecord>());
        return LabelBatch(pairs.ToList(), constitution, config, FewShotBlock(constitution, config), scorer, countTokens, maxQuestionTokens, reasoner, source, cancellationToken);
    }

    /// <summary>Two answers per prompt from the policy model: each chat twice in one batch, sampled.</summary>
    static async Task<List<PairItem>> SamplePairs(List<PromptItem> prompts, ITextGenerator policy, Config config, CancellationToken ct)
    {
        var chats = prompts.SelectMany(p => new[] { p.Messages, p.Messages }).ToList();
        var sampling = new SamplingOptions
        {
            MaxNewTokens = config.Sampling.MaxNewTokens,
            Temperature = config.Sampling.Temperature,
            Seed = StableRandom.SeedFor(config.Seed, prompts[0].Id),
        };
        var answers = await policy.ChatAsync(chats, sampling, ct);
        return prompts.Select((p, i) => new PairItem(p.Id, p.Messages, answers[2 * i].Trim(), answers[2 * i + 1].Trim(), null)).ToList();
    }

    /// <summary>One comparison's prepared questions: the (possibly truncated) inputs and the drawn principles and examples.</summary>
    sealed record Prepared(PairItem Pair, IReadOnlyList<ChatMessage> Context, string A, string B, List<FeedbackPrinciple> Principles, string FewShot, bool Truncated);

    /// <summary>
    /// The few-shot block before every question: examples drawn once per run (seeded), in one order, the
    /// same text for every comparison like the paper's fixed labelling prompt. An example without a
    /// principle of its own is shown with one principle drawn for the run. Being one text, its tokens are
    /// run once and their cache reused by every later question (the scorer's prefix cache).
    /// </summary>
    public static string FewShotBlock(ConstitutionSet constitution, Config config)
    {
        if (config.FewShot == 0) return "";
        var rng = StableRandom.For(config.Seed, "few-shot", "label");
        var pool = constitution.FeedbackExamples.Where(e => config.ChainOfThought ? e.Reasoning is not null : true).ToList();
        var examples = Revise.DrawExamples(pool, config.FewShot, rng);
        var shownWith = constitution.FeedbackPrinciples[rng.Next(constitution.FeedbackPrinciples.Count)];
        return FewShotPrefix(examples, shownWith, constitution, config.ChainOfThought);
    }

    static async Task<List<ComparisonRecord>> LabelBatch(List<PairItem> batch, ConstitutionSet constitution, Config config, string fewShotBlock, IScorer scorer,
        Func<string, int> countTokens, int maxQuestionTokens, ITextGenerator? reasoner, string source, CancellationToken ct)
    {
        // 2. draw principles per comparison (stable per id), fit the question into the budget
        var prepared = new List<Prepared>();
        foreach (var pair in batch)
        {
            var rng = StableRandom.For(config.Seed, pair.Id, "label");
            var principles = Revise.DrawExamples(constitution.FeedbackPrinciples, config.Principles, rng);
            var longest = principles.MaxBy(p => p.Text.Length)!;
            var fewShot = fewShotBlock;
            var (context, a, b, truncated) = FitQuestion(pair, q => countTokens(fewShot + q), longest.Text, config.ChainOfThought, maxQuestionTokens);
            if (fewShot.Length > 0 && countTokens(fewShot + Question(context, longest.Text, a, b, config.ChainOfThought)) > maxQuestionTokens)
            {
                // The few-shot examples alone leave no room: this comparison goes without them.
                fewShot = "";
                (context, a, b, truncated) = FitQuestion(pair, countTokens, longest.Text, config.ChainOfThought, maxQuestionTokens);
            }
            if (countTokens(Question(context, longest.Text, a, b, config.ChainOfThought)) > maxQuestionTokens)
                throw UserError.At(source, null, "max_question_tokens", $"{maxQuestionTokens} tokens cannot hold even an empty question with principle '{longest.Id}'");
            prepared.Add(new Prepared(pair, context, a, b, principles, fewShot, truncated));
        }

        // 3. every question of the batch: comparison × principle × order (a first, then b first). The
        //    questions of one comparison differ only after the conversation, so each comparison has one
        //    shared prefix (few-shot examples, header, conversation) and a suffix per principle and order.
        var orders = config.BothOrders ? 2 : 1;
        var prefixes = new List<string>();
        var suffixes = new List<string>(); // [comparison][principle][order], flattened
        foreach (var p in prepared)
        {
            prefixes.Add(p.FewShot + QuestionPrefix(p.Context));
            foreach (var principle in p.Principles)
                for (var order = 0; order < orders; order++)
                {
                    var (first, second) = order == 0 ? (p.A, p.B) : (p.B, p.A);
                    suffixes.Add(QuestionSuffix(principle.Text, first, second, config.ChainOfThought));
                }
        }
        var perComparison = suffixes.Count / prepared.Count;

        // 4. chain of thought: the model reasons, its stated answer (if any) is the choice
        var reasoning = new string?[suffixes.Count];
        var stated = new char?[suffixes.Count];
        if (config.ChainOfThought)
        {
            var questions = suffixes.Select((suffix, q) => prefixes[q / perComparison] + suffix).ToList();
            var generated = await reasoner!.CompleteAsync(questions, new SamplingOptions { MaxNewTokens = config.CotMaxNewTokens, Temperature = 0 }, ct);
            for (var q = 0; q < suffixes.Count; q++)
            {
                (reasoning[q], stated[q]) = ParseReasoning(generated[q]);
                suffixes[q] += " " + reasoning[q] + "\nSo the answer is:";
            }
        }

        // 5. log p(" (A)") and log p(" (B)") after every question. Sharing the prefix: per comparison one
        //    scorer call that runs the shared prefix once (its few-shot block F comes from the scorer's kept
        //    cache after the first comparison, so only header and conversation run), the M principles' texts
        //    as one batch from its cache, the 2M orders as one batch from theirs (the first answer in the same
        //    pass), the second answers from those passes' caches — cost ≈ (C − F) + M·P + 2M·(S − P) tokens
        //    against 2M·(C + S) for one pass per question (C prefix, S suffix, P principle tokens), with the
        //    same log-probs within float rounding. Without sharing: one pass per question, both answers
        //    continuing from it.
        var logProbs = new List<double[]>(); // [question] → {log p(A), log p(B)}
        for (var c = 0; c < prepared.Count; c++)
        {
            var mine = suffixes.GetRange(c * perComparison, perComparison);
            logProbs.AddRange(config.SharePrefix
                ? await scorer.QuestionCandidateLogProbsAsync(prefixes[c], mine, [CandidateA, CandidateB], ct)
                : await scorer.CandidateLogProbsAsync(mine.Select(x => prefixes[c] + x).ToList(), [CandidateA, CandidateB], ct));
        }

        var records = new List<ComparisonRecord>();
        var k = 0;
        foreach (var p in prepared)
        {
            var perPrinciple = new List<PrincipleLabel>();
            var unparsed = 0;
            foreach (var principle in p.Principles)
            {
                var pFirst = new double[orders];
                var why = new string?[orders];
                for (var order = 0; order < orders; order++, k++)
                {
                    pFirst[order] = LabelMath.ProbabilityOfFirst(logProbs[k][0], logProbs[k][1]);
                    if (config.ChainOfThought)
                    {
                        if (stated[k] is { } answer) pFirst[order] = answer == 'A' ? 1.0 : 0.0;
                        else unparsed++;
                        pFirst[order] = LabelMath.Clamp(pFirst[order], config.ClampLow, config.ClampHigh);
                        why[order] = reasoning[k];
                    }
                }
                var pAb = pFirst[0];
                double? pBa = orders == 2 ? LabelMath.FromSwappedOrder(pFirst[1]) : null;
                var pA = orders == 2 ? LabelMath.AverageOrders(pFirst[0], pFirst[1]) : pAb;
                perPrinciple.Add(new PrincipleLabel(principle.Id, pA, pAb, pBa, why[0], orders == 2 ? why[1] : null));
            }
            var pair = p.Pair;
            records.Add(new ComparisonRecord(pair.Id, pair.Context.LastOrDefault(m => m.Role == "user")?.Content ?? "", pair.Context,
                pair.ResponseA, pair.ResponseB, LabelMath.Ensemble(perPrinciple.Select(l => l.PA).ToList()),
                p.Principles.Select(x => x.Id).ToList(), perPrinciple, p.Truncated, unparsed,
                pair.HumanChoseA switch { true => "a", false => "b", null => null }));
        }
        return records;
    }

    static PreferenceRecord ToPreference(ComparisonRecord r)
    {
        var aWins = r.PA >= 0.5;
        return new PreferenceRecord(r.Id, r.Messages,
            [new ChatMessage("assistant", aWins ? r.ResponseA : r.ResponseB)],
            [new ChatMessage("assistant", aWins ? r.ResponseB : r.ResponseA)],
            Math.Abs(2 * r.PA - 1));
    }
}
