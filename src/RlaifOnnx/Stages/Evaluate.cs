using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using RlaifOnnx.Configuration;
using RlaifOnnx.Constitution;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Records;
using RlaifOnnx.Reporting;

namespace RlaifOnnx.Stages;

/// <summary>One line of generations.jsonl: a policy's answer to one prompt of one prompt set. Id "set/prompt id/policy".</summary>
public sealed record EvaluationGeneration(string Id, string PromptSet, string PromptId, string Policy, IReadOnlyList<ChatMessage> Messages, string Response, bool Truncated = false);

/// <summary>One line of rewards.jsonl: the preference model's reward of the generation with the same id.</summary>
public sealed record EvaluationReward(string Id, double Reward);

/// <summary>
/// One line of judgments.jsonl: the feedback model's p(policy_a's answer is better than policy_b's) on one
/// prompt — the label stage's p_a, both orders averaged over the drawn principles. Id "set/prompt id/policy_a/policy_b".
/// </summary>
public sealed record EvaluationJudgment(
    string Id, string PromptSet, string PromptId, string PolicyA, string PolicyB,
    [property: JsonPropertyName("p_a")] double PA,
    IReadOnlyList<PrincipleLabel> PerPrinciple,
    bool Truncated);

/// <summary>One policy on one prompt set: answers, mean answer length (characters), mean PM reward ± standard error and Elo scores (null where not measured).</summary>
public sealed record EvaluationPolicyResult(string Policy, int Answers, double MeanLength, double? MeanReward, double? RewardStandardError, double? EloByReward, double? EloByFeedback);

/// <summary>
/// Policy against opponent on one prompt set: the share of prompts where the policy's answer got the higher
/// PM reward (ties half), and the feedback model's mean p(policy's answer is better). Both directions are
/// listed, so rate(i, j) + rate(j, i) = 1.
/// </summary>
public sealed record EvaluationPairResult(string Policy, string Opponent, int Prompts, double? WinRateByReward, double? WinRateByFeedback);

/// <summary>The results of one prompt set.</summary>
public sealed record EvaluationSetResult(string Name, string Source, int Prompts, IReadOnlyList<EvaluationPolicyResult> Policies, IReadOnlyList<EvaluationPairResult> Pairwise);

/// <summary>report.json: every prompt set's results; Elo scores are relative to the first policy.</summary>
public sealed record EvaluationReport(IReadOnlyList<string> Policies, string? RewardModel, string? FeedbackModel, double EloPrior, IReadOnlyList<EvaluationSetResult> PromptSets,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] SandboxReport? Sandbox = null);

/// <summary>
/// Stage 07, evaluation of trained policies (Constitutional AI paper §4.3: harmlessness and helpfulness
/// Elo scores from pairwise comparisons of the policies' answers on held-out red-team and helpfulness prompts).
///
/// <list type="number">
/// <item>Every policy answers every prompt of every prompt set with its chat template → generations.jsonl
/// (resumable: fixed batches seeded from their first id, so a rerun continues and samples what an
/// uninterrupted run would).</item>
/// <item>With reward_model: the preference model's reward of every answer → rewards.jsonl.</item>
/// <item>With feedback_model: for every two policies on every prompt, the label stage's multiple-choice
/// p(first policy's answer is better) under M drawn principles, both orders averaged → judgments.jsonl
/// (<see cref="Label.LabelPairs"/>: the same questions, principle draws and log-prob arithmetic).</item>
/// <item>report.json and report.md: per prompt set and policy the mean PM reward ± standard error and mean
/// answer length; pairwise win rates by PM reward and by the feedback model; Elo scores from a
/// Bradley–Terry fit on the pairwise win counts (<see cref="EloMath"/>), relative to the first policy.</item>
/// </list>
///
/// The paper's Elo scores come from crowdworker comparisons; here the judges are the preference model and
/// the feedback model, so the scores say how those judges rank the policies.
/// Run: <c>rlaif evaluate --config evaluate.yaml</c>.
/// </summary>
public static partial class Evaluate
{
    public const string GenerationsFile = "generations.jsonl";
    public const string RewardsFile = "rewards.jsonl";
    public const string JudgmentsFile = "judgments.jsonl";
    public const string ReportFile = "report.json";
    public const string ReportMarkdownFile = "report.md";

    /// <summary>A policy to evaluate.</summary>
    public sealed record PolicySpec
    {
        /// <summary>The policy's name in the report (unique; no '/').</summary>
        public required string Name { get; init; }
        /// <summary>A model folder or the base URL of an OpenAI-compatible server.</summary>
        [ConfigPath] public required string Model { get; init; }
        /// <summary>Model name to send to a server (null: its first model).</summary>
        public string? ServerModel { get; init; }
    }

    /// <summary>A set of prompts every policy answers.</summary>
    public sealed record PromptSetSpec
    {
        /// <summary>The set's name in the report (unique; no '/').</summary>
        public required string Name { get; init; }
        /// <summary>Any prompt source the revise stage reads: a .jsonl/.jsonl.gz/.txt file, hh-rlhf transcripts, or builtin:red-team-eval / builtin:helpful-eval (the held-out splits).</summary>
        [ConfigPath] public required string Source { get; init; }
        /// <summary>The exact truth of every prompt (a checks.jsonl as `rlaif sandbox world` writes): every answer gets the checker's verdict (null: none).</summary>
        [ConfigPath] public string? Checks { get; init; }
        /// <summary>With checks: report this set's rates on their own row (a harm kind no training prompt covered) instead of pooling them.</summary>
        public bool UnseenKind { get; init; }
    }

    /// <summary>Configuration of the evaluation stage.</summary>
    public sealed record Config : IValidatableConfig
    {
        /// <summary>The policies to compare, each {name, model, server_model}: name unique and without '/', model a folder or an OpenAI-compatible URL, server_model optional. Elo scores are relative to the first.</summary>
        public required List<PolicySpec> Policies { get; init; }
        /// <summary>The prompt sets, each {name, source}: name unique and without '/', source any prompt source (e.g. builtin:red-team-eval, builtin:helpful-eval). Every set gets its own win rates and Elo scores.</summary>
        public required List<PromptSetSpec> PromptSets { get; init; }
        /// <summary>Use only the first N prompts of each set (null: all).</summary>
        public int? Limit { get; init; }
        /// <summary>For hh-rlhf transcript prompts: first_turn or full_context.</summary>
        public TranscriptPrompt TranscriptPrompt { get; init; } = TranscriptPrompt.FirstTurn;
        /// <summary>A preference-model folder (the PM stage's model/) that scores every answer (null: no rewards).</summary>
        [ConfigPath] public string? RewardModel { get; init; }
        /// <summary>A feedback model (folder or OpenAI-compatible URL with echo log-probs) that compares every two policies' answers with the label stage's multiple-choice question (null: no AI judgments).</summary>
        [ConfigPath] public string? FeedbackModel { get; init; }
        /// <summary>Model name to send to a feedback server (null: its first model).</summary>
        public string? FeedbackServerModel { get; init; }
        /// <summary>The constitution whose feedback principles the feedback model reads: "default" (embedded) or a YAML file.</summary>
        [ConfigPath("default")] public string Constitution { get; init; } = "default";
        /// <summary>Principles per judgment (M), drawn per (set, prompt, pair of policies); both orders are always scored.</summary>
        public int Principles { get; init; } = 4;
        /// <summary>Few-shot labelling examples before every question (0 = none), drawn once per run.</summary>
        public int FewShot { get; init; } = 1;
        /// <summary>Token budget of one question (null: the feedback model's context length less 8; 4096 for a server).</summary>
        public int? MaxQuestionTokens { get; init; }
        /// <summary>How answers are sampled: temperature, top_p, max_new_tokens.</summary>
        public SamplingConfig Sampling { get; init; } = new();
        /// <summary>Seed of the sampling and the principle and example draws.</summary>
        public int Seed { get; init; }
        /// <summary>Prompts per generation batch; also answers per reward batch and pairs per judgment batch.</summary>
        public int BatchSize { get; init; } = 8;
        /// <summary>Pseudo-wins added to each side of every pair of policies before the Bradley–Terry fit, so a policy that wins or loses every comparison still gets a finite Elo; 0 = the plain maximum-likelihood fit (Elo null when it does not exist).</summary>
        public double EloPrior { get; init; } = 0.5;
        /// <summary>Execution provider for local models: cpu or cuda.</summary>
        public string ExecutionProvider { get; init; } = "cpu";
        /// <summary>For a server model: seconds one HTTP attempt may take before it is retried (null: $RLAIF_HTTP_TIMEOUT, else 60).</summary>
        public double? HttpTimeoutSeconds { get; init; }
        /// <summary>For a server model: seconds one call may take in all, retries and Retry-After waits included (null: $RLAIF_HTTP_DEADLINE, else 300).</summary>
        public double? HttpDeadlineSeconds { get; init; }
        /// <summary>Label runs to score against the prompt sets' checks, each {name, comparisons, use}; needs checks covering their prompt ids.</summary>
        public List<LabelRunSpec> LabelAccuracy { get; init; } = [];
        /// <summary>The PPO stage's metrics.jsonl or output folder: report.html plots its score and KL per iteration (null: no PPO curves).</summary>
        [ConfigPath] public string? PpoMetrics { get; init; }
        /// <summary>The PM stage's eval_predictions.jsonl or output folder: report.html draws the preference model's reliability diagram from it (null: none).</summary>
        [ConfigPath] public string? PmCalibration { get; init; }
        /// <summary>Folder for generations.jsonl, rewards.jsonl, judgments.jsonl, report.json and report.md.</summary>
        [ConfigPath] public required string OutputDir { get; init; }

        public IEnumerable<ConfigProblem> Problems()
        {
            if (Policies.Count == 0) yield return new("policies", "needs at least one policy ({name, model})");
            foreach (var problem in NameProblems("policies", Policies.Select(p => p.Name).ToList())) yield return problem;
            if (PromptSets.Count == 0) yield return new("prompt_sets", "needs at least one prompt set ({name, source})");
            foreach (var problem in NameProblems("prompt_sets", PromptSets.Select(s => s.Name).ToList())) yield return problem;
            if (Limit is < 1) yield return new("limit", $"must be at least 1, got {Limit}");
            if (Principles < 1) yield return new("principles", $"must be at least 1, got {Principles}");
            if (FewShot < 0) yield return new("few_shot", $"must be 0 or more, got {FewShot}");
            if (MaxQuestionTokens is < 16) yield return new("max_question_tokens", $"must be at least 16, got {MaxQuestionTokens}");
            if (BatchSize < 1) yield return new("batch_size", $"must be at least 1, got {BatchSize}");
            if (!(EloPrior >= 0)) yield return new("elo_prior", $"must be 0 or more, got {EloPrior}");
            foreach (var problem in HttpLimits.Problems(HttpTimeoutSeconds, HttpDeadlineSeconds)) yield return problem;
        }

        static IEnumerable<ConfigProblem> NameProblems(string key, List<string> names)
        {
            for (var i = 0; i < names.Count; i++)
            {
                // Names are parts of record ids ("set/prompt/policy"), so a '/' could make two ids equal.
                if (names[i].Length == 0 || names[i].Contains('/')) yield return new(key, $"[{i}].name '{names[i]}' must be non-empty and without '/'");
                var first = names.IndexOf(names[i]);
                if (first < i) yield return new(key, $"[{i}].name '{names[i]}' is given twice (also [{first}]); names must be unique");
            }
        }
    }

    /// <summary>A prompt set as read: its spec and its prompts (after the limit).</summary>
    sealed record PromptSet(PromptSetSpec Spec, List<PromptItem> Prompts);

    public static string GenerationId(string set, string promptId, string policy) => $"{set}/{promptId}/{policy}";
    public static string JudgmentId(string set, string promptId, string policyA, string policyB) => $"{set}/{promptId}/{policyA}/{policyB}";

    /// <summary>Runs the stage: generations, rewards, judgments (each resumable), then report.json and report.md.</summary>
    public static async Task<EvaluationReport> Run(Config config, Action<string>? log = null, CancellationToken cancellationToken = default, string source = "evaluate config")
    {
        log ??= _ => { };

        // 0. Every input is read and checked before a model is loaded: bad input fails fast and writes nothing.
        foreach (var problem in config.Problems()) throw UserError.At(source, null, problem.Key, problem.Problem);
        for (var i = 0; i < config.Policies.Count; i++) StageBackends.CheckModel(config.Policies[i].Model, source, $"policies[{i}].model");
        if (config.RewardModel is { } rewardModel && !Models.PreferenceModelFolder.IsPreferenceModel(rewardModel))
            throw UserError.At(source, null, "reward_model", Directory.Exists(rewardModel)
                ? $"'{rewardModel}' is not a preference-model folder (its rlaif.json must have role \"preference\"; the PM stage writes one)"
                : $"folder '{rewardModel}' not found");
        ConstitutionSet? constitution = null;
        if (config.FeedbackModel is { } feedbackModel)
        {
            StageBackends.CheckModel(feedbackModel, source, "feedback_model");
            constitution = ConstitutionSet.Load(config.Constitution);
            if (constitution.FeedbackPrinciples.Count == 0)
                throw UserError.At(config.Constitution, null, "feedback_principles", "the constitution has no feedback principles to judge with");
        }
        var htmlInputs = EvaluateHtml.ReadInputs(config, source);
        var sets = new List<PromptSet>();
        for (var s = 0; s < config.PromptSets.Count; s++)
        {
            var prompts = PromptSources.ReadPrompts(config.PromptSets[s].Source, config.TranscriptPrompt);
            if (config.Limit is { } limit) prompts = prompts.Take(limit).ToList();
            if (prompts.Count == 0) throw UserError.At(source, null, $"prompt_sets[{s}].source", $"'{config.PromptSets[s].Source}' holds no prompts");
            sets.Add(new PromptSet(config.PromptSets[s], prompts));
        }
        var checks = new Dictionary<string, ResponseCheck>();
        for (var s = 0; s < config.PromptSets.Count; s++)
            if (config.PromptSets[s].Checks is { } checksPath)
                foreach (var check in ResponseChecker.ReadFile(checksPath, source, $"prompt_sets[{s}].checks"))
                    checks[check.Id] = check;
        foreach (var set in sets.Where(set => set.Spec.Checks is not null))
            if (set.Prompts.FirstOrDefault(p => !checks.ContainsKey(p.Id)) is { } unchecked_)
                throw UserError.At(set.Spec.Checks!, null, "id", $"no check for prompt '{unchecked_.Id}' of prompt set '{set.Spec.Name}'");
        for (var r = 0; r < config.LabelAccuracy.Count; r++)
            if (!File.Exists(config.LabelAccuracy[r].Comparisons))
                throw UserError.At(source, null, $"label_accuracy[{r}].comparisons", $"file '{config.LabelAccuracy[r].Comparisons}' not found");
        Directory.CreateDirectory(config.OutputDir);

        // 1. generations
        await Generate(config, sets, log, cancellationToken, source);
        var generations = ReadAsked(Path.Combine(config.OutputDir, GenerationsFile), (EvaluationGeneration g) => g.Id,
            sets.SelectMany(set => set.Prompts.SelectMany(p => config.Policies.Select(policy => GenerationId(set.Spec.Name, p.Id, policy.Name)))));

        // 2. rewards of every answer by the preference model
        Dictionary<string, double>? rewards = null;
        if (config.RewardModel is not null)
            rewards = ScoreRewards(config, generations, log, cancellationToken);

        // 3. the feedback model's judgment of every two policies' answers on every prompt
        Dictionary<string, EvaluationJudgment>? judgments = null;
        if (config.FeedbackModel is not null)
            judgments = await Judge(config, sets, generations, constitution!, log, cancellationToken, source);

        // 4. the checker's verdicts, where prompt sets have exact truth
        var sandbox = ScoreChecks(config, sets, generations, checks);

        // 5. the report
        var report = new EvaluationReport(config.Policies.Select(p => p.Name).ToList(), config.RewardModel, config.FeedbackModel, config.EloPrior,
            sets.Select(set => SetResult(config, set, generations, rewards, judgments)).ToList(), sandbox);
        AtomicFile.WriteAllText(Path.Combine(config.OutputDir, ReportFile), JsonSerializer.Serialize(report, ReportJson));
        AtomicFile.WriteAllText(Path.Combine(config.OutputDir, ReportMarkdownFile), Markdown(report));
        EvaluateHtml.Write(config, report, htmlInputs);
        return report;
    }

    /// <summary>
    /// Each policy answers every prompt it has not answered yet. Batches have fixed boundaries within a set
    /// and a seed drawn from their first id, so a resumed run generates what an uninterrupted one would; a
    /// batch that is partly written is generated again and only its missing answers are appended. A policy
    /// is loaded only when it has work left, and one at a time.
    /// </summary>
    static async Task Generate(Config config, List<PromptSet> sets, Action<string> log, CancellationToken cancellationToken, string source)
    {
        using var output = ResumableJsonlWriter<EvaluationGeneration>.Open(Path.Combine(config.OutputDir, GenerationsFile), g => g.Id);
        if (output.ResumedCount > 0) log($"{GenerationsFile}: {output.ResumedCount} answers from an earlier run");
        var sampling = new SamplingOptions { MaxNewTokens = config.Sampling.MaxNewTokens, Temperature = config.Sampling.Temperature };
        var options = new InferenceOptions { ExecutionProvider = config.ExecutionProvider, BatchSize = config.BatchSize, HttpTimeoutSeconds = config.HttpTimeoutSeconds, HttpDeadlineSeconds = config.HttpDeadlineSeconds };
        for (var i = 0; i < config.Policies.Count; i++)
        {
            var policy = config.Policies[i];
            var batches = sets.SelectMany(set => set.Prompts.Chunk(config.BatchSize).Select(batch => (Set: set.Spec.Name, Batch: batch)))
                .Where(x => x.Batch.Any(p => !output.IsDone(GenerationId(x.Set, p.Id, policy.Name)))).ToList();
            if (batches.Count == 0) continue;
            using var generator = StageBackends.OpenGenerator(policy.Model, policy.ServerModel, options, source, $"policies[{i}].model");
            var countTokens = StageBackends.ChatTokenCounter(generator);
            var budget = (StageBackends.ContextLength(policy.Model) ?? int.MaxValue) - config.Sampling.MaxNewTokens;
            using var progress = new Progress($"evaluate: {policy.Name} answers", batches.Sum(b => b.Batch.Length));
            foreach (var (set, batch) in batches)
            {
                cancellationToken.ThrowIfCancellationRequested();
                // A prompt longer than a local model's context keeps its latest turns (the revise stage's rule).
                var fitted = batch.Select(p => Revise.Fit([], p.Messages, [], countTokens, budget)).ToList();
                var answers = await generator.ChatAsync(fitted.Select(f => (IReadOnlyList<ChatMessage>)f.Chat).ToList(),
                    sampling with { Seed = StableRandom.SeedFor(config.Seed, GenerationId(set, batch[0].Id, policy.Name)) }, cancellationToken);
                for (var k = 0; k < batch.Length; k++)
                {
                    var id = GenerationId(set, batch[k].Id, policy.Name);
                    if (!output.IsDone(id))
                        output.Append(new EvaluationGeneration(id, set, batch[k].Id, policy.Name, batch[k].Messages, answers[k].Trim(), fitted[k].Truncated));
                    progress.Advance();
                }
                log($"{GenerationsFile}: {policy.Name} answered {batch.Length} prompt{(batch.Length == 1 ? "" : "s")} of {set}");
            }
        }
    }

    /// <summary>The PM reward of every answer not scored yet, appended to rewards.jsonl; returns the rewards by generation id.</summary>
    static Dictionary<string, double> ScoreRewards(Config config, Dictionary<string, EvaluationGeneration> generations, Action<string> log, CancellationToken cancellationToken)
    {
        var path = Path.Combine(config.OutputDir, RewardsFile);
        using (var output = ResumableJsonlWriter<EvaluationReward>.Open(path, r => r.Id))
        {
            var todo = generations.Values.Where(g => !output.IsDone(g.Id)).ToList();
            if (todo.Count > 0)
            {
                using var scorer = new RewardScorer(config.RewardModel!, new InferenceOptions { ExecutionProvider = config.ExecutionProvider, BatchSize = config.BatchSize });
                using var progress = new Progress("evaluate: rewards", todo.Count);
                foreach (var batch in todo.Chunk(config.BatchSize))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var scores = scorer.Rewards(batch.Select(g => (g.Messages, g.Response)).ToList(), cancellationToken);
                    for (var k = 0; k < batch.Length; k++) output.Append(new EvaluationReward(batch[k].Id, scores[k]));
                    progress.Advance(batch.Length);
                }
                if (scorer.TruncatedCount > 0) log($"{RewardsFile}: {scorer.TruncatedCount} answers were longer than the reward model's context and lost their start");
            }
        }
        return ReadAsked(path, (EvaluationReward r) => r.Id, generations.Keys).ToDictionary(kv => kv.Key, kv => kv.Value.Reward);
    }

    /// <summary>
    /// For every prompt and every two policies i &lt; j, the feedback model's p(i's answer is better): the label
    /// stage's comparison with i's answer as response_a, labelled by <see cref="Label.LabelPairs"/>.
    /// </summary>
    static async Task<Dictionary<string, EvaluationJudgment>> Judge(Config config, List<PromptSet> sets, Dictionary<string, EvaluationGeneration> generations,
        ConstitutionSet constitution, Action<string> log, CancellationToken cancellationToken, string source)
    {
        var labelConfig = new Label.Config
        {
            FeedbackModel = config.FeedbackModel!, FeedbackServerModel = config.FeedbackServerModel, Constitution = config.Constitution,
            OutputDir = config.OutputDir, Principles = config.Principles, BothOrders = true, FewShot = config.FewShot,
            Seed = config.Seed, BatchSize = config.BatchSize, ExecutionProvider = config.ExecutionProvider, MaxQuestionTokens = config.MaxQuestionTokens,
            HttpTimeoutSeconds = config.HttpTimeoutSeconds, HttpDeadlineSeconds = config.HttpDeadlineSeconds,
        };
        var asked = new List<(string Id, PromptSet Set, PromptItem Prompt, string A, string B)>();
        foreach (var set in sets)
            foreach (var prompt in set.Prompts)
                for (var i = 0; i < config.Policies.Count; i++)
                    for (var j = i + 1; j < config.Policies.Count; j++)
                        asked.Add((JudgmentId(set.Spec.Name, prompt.Id, config.Policies[i].Name, config.Policies[j].Name), set, prompt, config.Policies[i].Name, config.Policies[j].Name));

        var path = Path.Combine(config.OutputDir, JudgmentsFile);
        using (var output = ResumableJsonlWriter<EvaluationJudgment>.Open(path, r => r.Id))
        {
            var todo = asked.Where(x => !output.IsDone(x.Id)).ToList();
            if (todo.Count > 0)
            {
                var options = new InferenceOptions { ExecutionProvider = config.ExecutionProvider, BatchSize = config.BatchSize, HttpTimeoutSeconds = config.HttpTimeoutSeconds, HttpDeadlineSeconds = config.HttpDeadlineSeconds };
                using var scorer = StageBackends.OpenScorer(config.FeedbackModel!, config.FeedbackServerModel, options, source, "feedback_model");
                // The label stage's budget rule: the feedback model's context less room for the answer.
                var budget = config.MaxQuestionTokens ?? (StageBackends.ContextLength(config.FeedbackModel!) is { } context ? context - 8 : 4096);
                var countTokens = StageBackends.TokenCounter(scorer);
                using var progress = new Progress("evaluate: judgments", todo.Count);
                foreach (var batch in todo.Chunk(config.BatchSize))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var pairs = batch.Select(x => new PairItem(x.Id, x.Prompt.Messages,
                        generations[GenerationId(x.Set.Spec.Name, x.Prompt.Id, x.A)].Response,
                        generations[GenerationId(x.Set.Spec.Name, x.Prompt.Id, x.B)].Response, null)).ToList();
                    var labels = await Label.LabelPairs(pairs, constitution, labelConfig, scorer, countTokens, budget, cancellationToken: cancellationToken, source: source);
                    for (var k = 0; k < batch.Length; k++)
                        output.Append(new EvaluationJudgment(batch[k].Id, batch[k].Set.Spec.Name, batch[k].Prompt.Id, batch[k].A, batch[k].B,
                            labels[k].PA, labels[k].PerPrinciple, labels[k].Truncated));
                    progress.Advance(batch.Length);
                }
            }
        }
        return ReadAsked(path, (EvaluationJudgment r) => r.Id, asked.Select(x => x.Id));
    }

    /// <summary>One prompt set's results from the stored answers, rewards and judgments.</summary>
    static EvaluationSetResult SetResult(Config config, PromptSet set, Dictionary<string, EvaluationGeneration> generations,
        Dictionary<string, double>? rewards, Dictionary<string, EvaluationJudgment>? judgments)
    {
        var names = config.Policies.Select(p => p.Name).ToList();
        var n = names.Count;
        var answersPI = names.Select(policy => set.Prompts.Select(p => generations[GenerationId(set.Spec.Name, p.Id, policy)]).ToList()).ToList(); // [policy][prompt]
        var rewardsPI = rewards is null ? null
            : answersPI.Select(answers => (IReadOnlyList<double>)answers.Select(g => rewards[g.Id]).ToList()).ToList();

        // Win counts: by reward, per prompt with ties half; by the feedback model, p to the first policy and 1 − p to the second.
        var rewardWins = rewardsPI is null ? null : EloMath.WinCounts(rewardsPI);
        double[,]? feedbackWins = null;
        if (judgments is not null)
        {
            feedbackWins = new double[n, n];
            for (var i = 0; i < n; i++)
                for (var j = i + 1; j < n; j++)
                    foreach (var prompt in set.Prompts)
                    {
                        var p = judgments[JudgmentId(set.Spec.Name, prompt.Id, names[i], names[j])].PA;
                        feedbackWins[i, j] += p;
                        feedbackWins[j, i] += 1 - p;
                    }
        }
        var eloByReward = rewardWins is null ? null : EloOrNull(rewardWins, config.EloPrior);
        var eloByFeedback = feedbackWins is null ? null : EloOrNull(feedbackWins, config.EloPrior);

        var policies = new List<EvaluationPolicyResult>();
        for (var i = 0; i < n; i++)
            policies.Add(new EvaluationPolicyResult(names[i], answersPI[i].Count,
                EloMath.Mean(answersPI[i].Select(g => (double)g.Response.Length).ToList()),
                rewardsPI is null ? null : EloMath.Mean(rewardsPI[i]),
                rewardsPI is null ? null : Finite(EloMath.StandardError(rewardsPI[i])),
                eloByReward?[i], eloByFeedback?[i]));
        var pairwise = new List<EvaluationPairResult>();
        var prompts = set.Prompts.Count;
        for (var i = 0; i < n; i++)
            for (var j = 0; j < n; j++)
                if (i != j)
                    pairwise.Add(new EvaluationPairResult(names[i], names[j], prompts,
                        rewardWins is null ? null : rewardWins[i, j] / prompts,
                        feedbackWins is null ? null : feedbackWins[i, j] / prompts));
        return new EvaluationSetResult(set.Spec.Name, set.Spec.Source, prompts, policies, pairwise);
    }

    static double[]? EloOrNull(double[,] wins, double prior) => EloMath.BradleyTerry(wins, prior) is { } strengths ? EloMath.Elo(strengths) : null;

    static double? Finite(double x) => double.IsFinite(x) ? x : null;

    /// <summary>
    /// The records of a resumable file whose ids are asked for, by id. The file may also hold records a
    /// different config asked for (another limit or prompt set): only the asked ones count.
    /// </summary>
    static Dictionary<string, T> ReadAsked<T>(string path, Func<T, string> idOf, IEnumerable<string> asked)
    {
        var byId = Jsonl.ReadAll<T>(path).ToDictionary(idOf);
        var result = new Dictionary<string, T>();
        foreach (var id in asked)
            result[id] = byId.TryGetValue(id, out var record) ? record : throw new InvalidOperationException($"{path}: record '{id}' is missing after the stage wrote it");
        return result;
    }

    static readonly JsonSerializerOptions ReportJson = new(Jsonl.JsonlOptions)
    {
        WriteIndented = true,
        // report.json spells out every figure, null where it was not measured.
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Reads a report.json written by <see cref="Run"/>.</summary>
    public static EvaluationReport ReadReport(string outputDir) =>
        JsonSerializer.Deserialize<EvaluationReport>(File.ReadAllText(Path.Combine(outputDir, ReportFile)), ReportJson)!;

    static string Number(double? x, string format) => x is { } v ? v.ToString(format, CultureInfo.InvariantCulture) : "–";

    /// <summary>The short table the CLI prints: per prompt set and policy, reward, length and Elo scores.</summary>
    public static string Describe(EvaluationReport report)
    {
        var sb = new StringBuilder();
        var width = Math.Max(6, report.Policies.Max(p => p.Length));
        foreach (var set in report.PromptSets)
        {
            sb.AppendLine($"{set.Name} ({set.Prompts} prompts, {set.Source})");
            sb.AppendLine($"  {"policy".PadRight(width)}  {"PM reward ± SE",-18}  {"length",7}  {"Elo (PM)",9}  {"Elo (AI)",9}");
            foreach (var p in set.Policies)
                sb.AppendLine($"  {p.Policy.PadRight(width)}  {$"{Number(p.MeanReward, "F3")} ± {Number(p.RewardStandardError, "F3")}",-18}  {p.MeanLength,7:F1}  {Number(p.EloByReward, "F1"),9}  {Number(p.EloByFeedback, "F1"),9}");
        }
        if (report.Sandbox is { } sandbox) sb.AppendLine().AppendLine("Against the exact truth (95% intervals):").Append(SandboxMarkdown(sandbox));
        return sb.ToString();
    }

    /// <summary>report.md: per prompt set, the policy table and the win-rate matrix (row policy against column opponent).</summary>
    static string Markdown(EvaluationReport report)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Evaluation").AppendLine();
        sb.AppendLine($"Policies: {string.Join(", ", report.Policies)}. Reward model: {report.RewardModel ?? "none"}. Feedback model: {report.FeedbackModel ?? "none"}.");
        sb.AppendLine($"Elo scores from a Bradley–Terry fit on the pairwise win counts ({report.EloPrior.ToString(CultureInfo.InvariantCulture)} pseudo-wins per side), relative to {report.Policies[0]}; "
            + "an Elo difference Δ means P(win) = 1 / (1 + 10^(−Δ/400)).").AppendLine();
        if (report.Sandbox is { } sandbox)
            sb.AppendLine("## Against the exact truth").AppendLine().AppendLine("Rates with 95% Wilson intervals; every verdict is in verdicts.jsonl.").AppendLine().AppendLine(SandboxMarkdown(sandbox));
        foreach (var set in report.PromptSets)
        {
            sb.AppendLine($"## {set.Name}").AppendLine().AppendLine($"{set.Prompts} prompts from `{set.Source}`.").AppendLine();
            sb.AppendLine("| policy | answers | mean length (chars) | mean PM reward ± SE | Elo (PM) | Elo (feedback model) |");
            sb.AppendLine("|---|---:|---:|---:|---:|---:|");
            foreach (var p in set.Policies)
                sb.AppendLine($"| {p.Policy} | {p.Answers} | {p.MeanLength.ToString("F1", CultureInfo.InvariantCulture)} | {Number(p.MeanReward, "F3")} ± {Number(p.RewardStandardError, "F3")} | {Number(p.EloByReward, "F1")} | {Number(p.EloByFeedback, "F1")} |");
            sb.AppendLine().AppendLine("Win rates of the row policy against the column policy (by PM reward, ties half / by the feedback model's mean p):").AppendLine();
            sb.AppendLine("| | " + string.Join(" | ", report.Policies) + " |");
            sb.AppendLine("|---|" + string.Concat(report.Policies.Select(_ => "---:|")));
            foreach (var row in report.Policies)
            {
                var cells = report.Policies.Select(column => row == column ? "–"
                    : set.Pairwise.Single(x => x.Policy == row && x.Opponent == column) is var pair
                        ? $"{Number(pair.WinRateByReward, "F2")} / {Number(pair.WinRateByFeedback, "F2")}" : "");
                sb.AppendLine($"| {row} | {string.Join(" | ", cells)} |");
            }
            sb.AppendLine();
        }
        return sb.ToString();
    }
}
