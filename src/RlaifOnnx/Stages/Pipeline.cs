using System.Globalization;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;

namespace RlaifOnnx.Stages;

/// <summary>
/// `rlaif run --config PIPELINE.yaml`: the pipeline's stages in order, each from its own stage config.
/// Everything is checked before anything runs: the pipeline file (unknown keys, stage kinds, duplicate
/// names, `only`/`from`), that every stage config exists, and that every stage config loads — so a typo
/// in the fifth stage fails before the first one starts. A stage runs exactly as its own command runs it
/// (the same library call). There is no pipeline state file: every stage resumes and skips finished work
/// by itself, so a rerun reruns each stage, which is quick when its outputs are complete.
/// </summary>
public static class Pipeline
{
    /// <summary>A pipeline: stages in order, optionally a subset to run. Stage kinds: train-lm, revise, sft, label, mix, pmp-data, pm, ppo, dpo, evaluate.</summary>
    public sealed record Config : IValidatableConfig
    {
        /// <summary>The stages in the order they run: each {name, stage, config}.</summary>
        public required IReadOnlyList<StageEntry> Stages { get; init; }
        /// <summary>Run only the stages with these names, in pipeline order (null: all).</summary>
        public IReadOnlyList<string>? Only { get; init; }
        /// <summary>Start at the stage with this name and run it and every stage after it (null: from the first).</summary>
        public string? From { get; init; }

        public IEnumerable<ConfigProblem> Problems()
        {
            if (Stages.Count == 0) yield return new("stages", "lists no stages");
            var firstIndex = new Dictionary<string, int>(StringComparer.Ordinal);
            for (var i = 0; i < Stages.Count; i++)
            {
                if (firstIndex.TryGetValue(Stages[i].Name, out var first))
                    yield return new("stages", $"duplicate stage name '{Stages[i].Name}' (stages[{first}] and stages[{i}])");
                else firstIndex[Stages[i].Name] = i;
            }
            foreach (var name in Only ?? [])
                if (!firstIndex.ContainsKey(name)) yield return new("only", NoSuchStage(name, firstIndex.Keys));
            if (From is not null && !firstIndex.ContainsKey(From)) yield return new("from", NoSuchStage(From, firstIndex.Keys));
            if (Only is not null && From is not null) yield return new("from", "give only or from, not both");
        }
    }

    /// <summary>One stage of a pipeline.</summary>
    public sealed record StageEntry : IValidatableConfig
    {
        /// <summary>The stage's name, unique in the pipeline (used by only and from, and printed as "== name (stage)").</summary>
        public required string Name { get; init; }
        /// <summary>The stage kind: train-lm, revise, sft, label, mix, pmp-data, pm, ppo, dpo or evaluate (the command that runs it alone).</summary>
        public required string Stage { get; init; }
        /// <summary>The stage's config file (relative to the pipeline file); the same file `rlaif STAGE --config` reads.</summary>
        [ConfigPath] public required string Config { get; init; }

        public IEnumerable<ConfigProblem> Problems()
        {
            if (string.IsNullOrWhiteSpace(Name)) yield return new("name", "must not be empty");
            if (KindOf(Stage) is null)
            {
                var names = Kinds.Select(k => k.Name).ToList();
                var hint = StageConfig.Nearest(Stage, names) is { } near ? $"did you mean '{near}'?" : $"expected one of {string.Join(", ", names)}";
                yield return new("stage", $"unknown stage kind '{Stage}'; {hint}");
            }
            if (!File.Exists(Config)) yield return new("config", $"config file '{Config}' not found");
        }
    }

    /// <summary>
    /// A stage kind: its name (the CLI command), what it does (the command's help), its config record type,
    /// how to load that config and how to run it, returning a short summary of what it wrote. The CLI makes
    /// one command per row (`rlaif NAME --config FILE`), so a new stage is one row here.
    /// </summary>
    public sealed record StageKind(string Name, string Description, Type ConfigType,
        Func<string?, IReadOnlyList<(string Key, string Flag, string Value)>, object> Load,
        Func<object, string, Action<string>?, CancellationToken, Task<string>> Run)
    {
        static StageKind Of<T>(string name, string description, Func<T, string, Action<string>?, CancellationToken, Task<string>> run) where T : class =>
            new(name, description, typeof(T), StageConfig.LoadWithOverrides<T>, (config, path, log, ct) => run((T)config, path, log, ct));

        internal static readonly IReadOnlyList<StageKind> All =
        [
            Of<TrainLm.Config>("train-lm", "Train a model folder as a causal LM on JSONL text or prompt/completion pairs; resumable; exports a model folder (writes model/, metrics.jsonl, checkpoints/)",
                (c, _, log, ct) => Task.FromResult($"wrote {TrainLm.Run(c, log, ct)}")),
            Of<Revise.Config>("revise", "Answer prompts, then critique and revise the answers against the constitution (writes revisions.jsonl and SFT exports)",
                async (c, path, _, ct) => $"wrote {await Revise.Run(c, ct, path)} and the SFT exports beside it"),
            Of<Sft.Config>("sft", "Fine-tune the pretrained model on the final revisions mixed with helpfulness data (writes sft_mix.jsonl and train/model)", async (c, path, log, ct) =>
            {
                var s = await Sft.Run(c, log, ct, path);
                return $"examples: {s.RevisionExamples} revision, {s.HelpfulnessExamples} helpfulness; final loss {s.FinalLoss.ToString("F4", CultureInfo.InvariantCulture)} at step {s.Steps}; model: {s.Model}";
            }),
            Of<Label.Config>("label", "Label pairs of answers with the feedback model's multiple-choice probabilities (writes comparisons.jsonl, preferences.jsonl, metrics.json)",
                async (c, path, _, ct) => $"wrote {await Label.Run(c, ct, path)}\n{Label.Describe(Label.ReadMetrics(c.OutputDir)).TrimEnd()}"),
            Of<PreferenceMix.Config>("mix", "Build the preference-model training set from AI and human comparisons in set proportions (writes mixed_comparisons.jsonl)",
                (c, path, _, _) => Task.FromResult($"wrote {PreferenceMix.Run(c, path)}")),
            Of<PmpData.Config>("pmp-data", "Preference-model pretraining pairs from Stack Exchange Posts.xml dumps (writes pmp_train.jsonl, pmp_eval.jsonl, stats.json)", (c, path, _, ct) =>
            {
                var stats = PmpData.Run(c, ct, path);
                return Task.FromResult($"wrote {Path.Combine(c.OutputDir, PmpData.TrainFile)}, {PmpData.EvalFile}, {PmpData.StatsFile}\n{PmpData.Describe(stats).TrimEnd()}");
            }),
            Of<TrainPreferenceModel.Config>("pm", "Train a preference model (language model + scalar head) on comparisons; writes model/, metrics.jsonl, checkpoints/ and eval.json",
                (c, path, log, ct) => Task.FromResult($"wrote {TrainPreferenceModel.Run(c, log, ct, path)}")),
            Of<TrainPolicy.Config>("ppo", "PPO of a policy against a preference model (KL penalty to a reference, value model from the PM); writes model/, value_model/, metrics.jsonl and checkpoints/", async (c, path, log, ct) =>
            {
                var s = await TrainPolicy.Run(c, log, ct, path);
                var last = s.LastMetrics.TryGetValue("score", out var score)
                    ? $"last iteration: score {score:F4}, kl {s.LastMetrics["kl"]:F4}, β {s.LastMetrics["beta"]:G4}\n"
                    : "";
                return $"{last}wrote {s.Model} and {s.ValueModel}";
            }),
            Of<Dpo.Config>("dpo", "Direct preference optimisation of a model on preference pairs (the label stage's preferences.jsonl or any TRL preference JSONL), the model as its own reference; writes model/, metrics.jsonl, checkpoints/ and reference_logps.jsonl",
                (c, path, log, ct) => Task.FromResult($"wrote {Dpo.Run(c, log, ct, path)}")),
            Of<Evaluate.Config>("evaluate", "Compare policies on prompt sets: generations.jsonl, PM rewards, feedback-model judgments, win rates and Elo scores (report.json, report.md, report.html)", async (c, path, log, ct) =>
            {
                var report = await Evaluate.Run(c, log, ct, path);
                return $"wrote {Path.Combine(c.OutputDir, Evaluate.ReportFile)}, {Evaluate.ReportMarkdownFile} and {EvaluateHtml.ReportHtmlFile}\n{Evaluate.Describe(report).TrimEnd()}";
            }),
        ];
    }

    /// <summary>The stage kinds in pipeline order.</summary>
    public static IReadOnlyList<StageKind> Kinds => StageKind.All;

    /// <summary>The kind with this name, or null.</summary>
    public static StageKind? KindOf(string name) => Kinds.FirstOrDefault(k => k.Name == name);

    /// <summary>A stage ready to run: its entry, its kind and its loaded config.</summary>
    public sealed record PlannedStage(StageEntry Entry, StageKind Kind, object StageConfig);

    /// <summary>
    /// Loads the pipeline file and every stage config it lists (a bad one is a <see cref="UserError"/>
    /// naming its file and line), then returns the stages that `only`/`from` select, in order.
    /// </summary>
    public static IReadOnlyList<PlannedStage> Plan(string pipelinePath, IReadOnlyList<(string Key, string Value)>? settings = null)
    {
        var config = StageConfig.Load<Config>(pipelinePath);
        settings ??= [];
        foreach (var (key, _) in settings)
            if (!config.Stages.Any(s => KindOf(s.Stage) is { } kind && StageConfig.HasKey(kind.ConfigType, key)))
                throw new UserError($"--set {key}: no stage of {pipelinePath} has the key '{key}'");
        // All of them, selected or not: the pipeline file is checked as a whole.
        var loaded = config.Stages.Select(s => new PlannedStage(s, KindOf(s.Stage)!, LoadStageConfig(s, settings))).ToList();
        CheckInputs(loaded);
        if (config.Only is { } only) return loaded.Where(p => only.Contains(p.Entry.Name)).ToList();
        if (config.From is { } from) return loaded.SkipWhile(p => p.Entry.Name != from).ToList();
        return loaded;
    }

    /// <summary>
    /// Plans, then runs the selected stages in order; <paramref name="log"/> gets "== name (stage)" before
    /// each, the stages' own progress lines and each stage's summary. The first failing stage stops the
    /// run with its error. Returns the names of the stages that ran.
    /// </summary>
    public static async Task<IReadOnlyList<string>> Run(string pipelinePath, Action<string>? log = null, CancellationToken cancellationToken = default,
        IReadOnlyList<(string Key, string Value)>? settings = null)
    {
        var stages = Plan(pipelinePath, settings);
        foreach (var stage in stages)
        {
            cancellationToken.ThrowIfCancellationRequested();
            log?.Invoke($"== {stage.Entry.Name} ({stage.Kind.Name})");
            var summary = await stage.Kind.Run(stage.StageConfig, stage.Entry.Config, log, cancellationToken);
            log?.Invoke(summary);
        }
        return stages.Select(s => s.Entry.Name).ToList();
    }

    /// <summary>
    /// Before anything runs: every file or folder a stage reads exists, or lies in the output folder of a
    /// stage before it (which will write it). The first one that does neither is a <see cref="UserError"/>
    /// naming the stage config, the key and the path.
    /// </summary>
    static void CheckInputs(IReadOnlyList<PlannedStage> stages)
    {
        var outputs = new List<string>();
        foreach (var stage in stages)
        {
            string? outputDir = null;
            foreach (var (key, path) in StageConfig.PathValues(stage.StageConfig))
            {
                if (key == "output_dir") { outputDir = path; continue; }
                if (File.Exists(path) || Directory.Exists(path) || outputs.Any(o => IsInside(path, o))) continue;
                throw UserError.At(stage.Entry.Config, null, key,
                    $"{path} not found, and no stage before '{stage.Entry.Name}' writes it (every input is checked before the first stage runs)");
            }
            if (outputDir is not null) outputs.Add(outputDir);
        }
    }

    static bool IsInside(string path, string folder)
    {
        var relative = Path.GetRelativePath(Path.GetFullPath(folder), Path.GetFullPath(path));
        return relative != ".." && !relative.StartsWith(".." + Path.DirectorySeparatorChar, StringComparison.Ordinal) && !Path.IsPathRooted(relative);
    }

    /// <summary>The entry's stage config; its errors also name the pipeline stage, since a config of another kind fails on its first key.</summary>
    static object LoadStageConfig(StageEntry entry, IReadOnlyList<(string Key, string Value)> settings)
    {
        var kind = KindOf(entry.Stage)!;
        var overrides = settings.Where(s => StageConfig.HasKey(kind.ConfigType, s.Key)).Select(s => (s.Key, $"--set {s.Key}={s.Value}", s.Value)).ToList();
        try { return kind.Load(entry.Config, overrides); }
        catch (UserError e) { throw new UserError($"{e.Message} (pipeline stage '{entry.Name}' reads it as a {entry.Stage} config)", e); }
    }

    static string NoSuchStage(string name, IEnumerable<string> names) =>
        StageConfig.Nearest(name, names.ToList()) is { } near ? $"no stage named '{name}'; did you mean '{near}'?" : $"no stage named '{name}'";
}
