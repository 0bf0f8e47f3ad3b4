using System.Text.Json;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Records;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Tests.Stages;

/// <summary>
/// The evaluation stage on three tiny local Llama "policies" (different random weights), a tiny preference
/// model and a tiny feedback model: real GenAI sampling, real reward and log-prob scoring.
/// </summary>
public class EvaluateStageTests
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    sealed record Models(string P1, string P2, string P3, string Pm);

    static Models Build(TempDir dir)
    {
        var p1 = TinyModels.Folder(dir.File("p1"), seed: 1);
        var p2 = TinyModels.Folder(dir.File("p2"), seed: 2);
        var p3 = TinyModels.Folder(dir.File("p3"), seed: 3);
        var config = ModelFolder.ReadMetadata(p1).Config;
        var pm = dir.File("pm");
        PreferenceModelFolder.Write(pm, config, PreferenceModelGraphs.FromLanguageModel(config, ModelFolder.ReadWeights(p1), 5), p1, []);
        return new Models(p1, p2, p3, pm);
    }

    static Evaluate.Config Config(Models m, string output, bool judges = true) => new()
    {
        Policies =
        [
            new() { Name = "base", Model = m.P1 },
            new() { Name = "sl-cai", Model = m.P2 },
            new() { Name = "rl-cai", Model = m.P3 },
        ],
        PromptSets =
        [
            new() { Name = "harmlessness", Source = "builtin:red-team-eval" },
            new() { Name = "helpfulness", Source = "builtin:helpful-eval" },
        ],
        Limit = 3,
        RewardModel = judges ? m.Pm : null,
        FeedbackModel = judges ? m.P1 : null,
        Principles = 2,
        FewShot = 1,
        Sampling = new() { Temperature = 1.0, MaxNewTokens = 8 },
        BatchSize = 2,
        Seed = 7,
        OutputDir = output,
    };

    static string[] Keys(JsonElement e) => e.EnumerateObject().Select(p => p.Name).ToArray();

    [Fact]
    public async Task Every_policy_answers_every_prompt_once_and_the_report_agrees_with_rewards_and_judgments_recomputed()
    {
        using var dir = new TempDir();
        var models = Build(dir);
        var config = Config(models, dir.File("eval"));
        var report = await Evaluate.Run(config, cancellationToken: Ct);

        // generations.jsonl: 3 policies × 2 sets × 3 prompts, each once, in the documented schema
        var generationsPath = Path.Combine(config.OutputDir, Evaluate.GenerationsFile);
        var generations = Jsonl.ReadAll<EvaluationGeneration>(generationsPath);
        Assert.Equal(18, generations.Count);
        Assert.Equal(18, generations.Select(g => (g.PromptSet, g.PromptId, g.Policy)).Distinct().Count());
        Assert.All(generations, g => Assert.Equal(Evaluate.GenerationId(g.PromptSet, g.PromptId, g.Policy), g.Id));
        var redTeam = PromptSources.ReadPrompts("builtin:red-team-eval").Take(3).ToList();
        foreach (var policy in new[] { "base", "sl-cai", "rl-cai" })
            Assert.Equal(redTeam.Select(p => p.Id), generations.Where(g => g.Policy == policy && g.PromptSet == "harmlessness").Select(g => g.PromptId));
        Assert.Equal(redTeam[0].Messages, generations.First(g => g.PromptSet == "harmlessness").Messages);
        using (var line = JsonDocument.Parse(File.ReadLines(generationsPath).First()))
            Assert.Equal(["id", "prompt_set", "prompt_id", "policy", "messages", "response", "truncated"], Keys(line.RootElement));

        // report.json schema
        using (var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(config.OutputDir, Evaluate.ReportFile))))
        {
            var root = json.RootElement;
            Assert.Equal(["policies", "reward_model", "feedback_model", "elo_prior", "prompt_sets"], Keys(root));
            var set = root.GetProperty("prompt_sets")[0];
            Assert.Equal(["name", "source", "prompts", "policies", "pairwise"], Keys(set));
            Assert.Equal(["policy", "answers", "mean_length", "mean_reward", "reward_standard_error", "elo_by_reward", "elo_by_feedback"], Keys(set.GetProperty("policies")[0]));
            Assert.Equal(["policy", "opponent", "prompts", "win_rate_by_reward", "win_rate_by_feedback"], Keys(set.GetProperty("pairwise")[0]));
        }
        Assert.Equal(report, Evaluate.ReadReport(config.OutputDir) with { Policies = report.Policies, PromptSets = report.PromptSets });
        Assert.Contains("## helpfulness", File.ReadAllText(Path.Combine(config.OutputDir, Evaluate.ReportMarkdownFile)));

        // rewards recomputed with the preference model, and the judgments as stored
        using var scorer = new RewardScorer(models.Pm);
        var judgments = Jsonl.ReadAll<EvaluationJudgment>(Path.Combine(config.OutputDir, Evaluate.JudgmentsFile));
        Assert.Equal(2 * 3 * 3, judgments.Count); // 2 sets × 3 prompts × 3 pairs of policies
        Assert.All(judgments, j =>
        {
            Assert.InRange(j.PA, 1e-9, 1 - 1e-9);
            Assert.Equal(2, j.PerPrinciple.Count);
            Assert.All(j.PerPrinciple, l => Assert.NotNull(l.PAOrderBa)); // both orders scored
            Assert.Equal(LabelMath.Ensemble(j.PerPrinciple.Select(l => l.PA).ToList()), j.PA, 12);
        });

        foreach (var set in report.PromptSets)
        {
            Assert.Equal(3, set.Prompts);
            var mine = generations.Where(g => g.PromptSet == set.Name).ToList();
            var rewardsByPolicy = report.Policies.ToDictionary(p => p, p =>
            {
                var answers = mine.Where(g => g.Policy == p).ToList();
                return scorer.Rewards(answers.Select(g => (g.Messages, g.Response)).ToList(), Ct);
            });
            foreach (var p in set.Policies)
            {
                Assert.Equal(3, p.Answers);
                Assert.Equal(rewardsByPolicy[p.Policy].Average(), p.MeanReward!.Value, 9);
                Assert.True(p.RewardStandardError > 0);
                Assert.Equal(mine.Where(g => g.Policy == p.Policy).Average(g => g.Response.Length), p.MeanLength, 12);
            }
            Assert.Equal(0.0, set.Policies[0].EloByReward);
            Assert.Equal(0.0, set.Policies[0].EloByFeedback);
            Assert.Equal(6, set.Pairwise.Count);
            foreach (var pair in set.Pairwise)
            {
                var reverse = set.Pairwise.Single(x => x.Policy == pair.Opponent && x.Opponent == pair.Policy);
                Assert.Equal(1.0, pair.WinRateByReward!.Value + reverse.WinRateByReward!.Value, 12);
                Assert.Equal(1.0, pair.WinRateByFeedback!.Value + reverse.WinRateByFeedback!.Value, 12);

                // the PM win rate from the recomputed per-prompt rewards, ties half, by a plain loop
                double[] a = rewardsByPolicy[pair.Policy], b = rewardsByPolicy[pair.Opponent];
                var wins = 0.0;
                for (var k = 0; k < 3; k++) wins += a[k] > b[k] ? 1 : a[k] == b[k] ? 0.5 : 0;
                Assert.Equal(wins / 3, pair.WinRateByReward.Value, 12);

                // the feedback win rate is the mean p over the stored judgments, from whichever side they were asked
                var asked = judgments.Where(j => j.PromptSet == set.Name && ((j.PolicyA == pair.Policy && j.PolicyB == pair.Opponent) || (j.PolicyA == pair.Opponent && j.PolicyB == pair.Policy))).ToList();
                Assert.Equal(3, asked.Count);
                Assert.Equal(asked.Average(j => j.PolicyA == pair.Policy ? j.PA : 1 - j.PA), pair.WinRateByFeedback.Value, 12);
            }

            // Elo by reward: the Bradley–Terry fit on the recomputed win counts (0.5 pseudo-wins per side)
            var counts = EloMath.WinCounts(report.Policies.Select(p => (IReadOnlyList<double>)rewardsByPolicy[p]).ToList());
            var elo = EloMath.Elo(EloMath.BradleyTerry(counts, prior: 0.5)!);
            for (var i = 0; i < 3; i++) Assert.Equal(elo[i], set.Policies[i].EloByReward!.Value, 6);
        }
    }

    [Fact]
    public async Task A_run_cancelled_after_its_first_batch_resumes_to_the_same_report_and_the_seed_decides_the_answers()
    {
        using var dir = new TempDir();
        var models = Build(dir);
        var whole = Config(models, dir.File("whole"));
        await Evaluate.Run(whole, cancellationToken: Ct);

        // the same config into another folder, cancelled once the first batch is written
        var resumed = whole with { OutputDir = dir.File("resumed") };
        using (var cancel = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Evaluate.Run(resumed, line =>
            {
                if (line.Contains("answered")) cancel.Cancel();
            }, cancel.Token));
        }
        var generationsPath = Path.Combine(resumed.OutputDir, Evaluate.GenerationsFile);
        Assert.Equal(2, File.ReadAllLines(generationsPath).Length); // one batch of two prompts
        Assert.False(File.Exists(Path.Combine(resumed.OutputDir, Evaluate.ReportFile)));
        var firstBatch = File.ReadAllLines(generationsPath);

        await Evaluate.Run(resumed, cancellationToken: Ct);
        var lines = File.ReadAllLines(generationsPath);
        Assert.Equal(firstBatch, lines.Take(2)); // kept, not rewritten
        var generations = Jsonl.ReadAll<EvaluationGeneration>(generationsPath);
        Assert.Equal(18, generations.Select(g => g.Id).Distinct().Count());
        Assert.Equal(18, generations.Count);

        // everything equals the uninterrupted run: answers, rewards, judgments and the report
        static string Sorted(string path) => string.Join('\n', File.ReadAllLines(path).Order(StringComparer.Ordinal));
        foreach (var file in new[] { Evaluate.GenerationsFile, Evaluate.RewardsFile, Evaluate.JudgmentsFile })
            Assert.Equal(Sorted(Path.Combine(whole.OutputDir, file)), Sorted(Path.Combine(resumed.OutputDir, file)));
        Assert.Equal(File.ReadAllText(Path.Combine(whole.OutputDir, Evaluate.ReportFile)), File.ReadAllText(Path.Combine(resumed.OutputDir, Evaluate.ReportFile)));
        // a rerun of a finished run appends nothing
        await Evaluate.Run(resumed, cancellationToken: Ct);
        Assert.Equal(lines, File.ReadAllLines(generationsPath));

        // another seed samples other answers (answers only, no judges: the sampling is what the seed decides)
        var otherSeed = Config(models, dir.File("seed8"), judges: false) with { Seed = 8 };
        var sameSeed = Config(models, dir.File("seed7"), judges: false);
        await Evaluate.Run(otherSeed, cancellationToken: Ct);
        await Evaluate.Run(sameSeed, cancellationToken: Ct);
        Assert.Equal(Sorted(Path.Combine(whole.OutputDir, Evaluate.GenerationsFile)), Sorted(Path.Combine(sameSeed.OutputDir, Evaluate.GenerationsFile)));
        Assert.NotEqual(Sorted(Path.Combine(whole.OutputDir, Evaluate.GenerationsFile)), Sorted(Path.Combine(otherSeed.OutputDir, Evaluate.GenerationsFile)));
        var noJudges = Evaluate.ReadReport(sameSeed.OutputDir);
        Assert.All(noJudges.PromptSets.SelectMany(s => s.Policies), p => Assert.Null(p.MeanReward));
        Assert.All(noJudges.PromptSets.SelectMany(s => s.Pairwise), p => Assert.Null(p.WinRateByFeedback));
    }
}

/// <summary>`rlaif evaluate` with bad input: exit code 2, one line naming the problem, nothing written.</summary>
public class EvaluateCliTests
{
    static CliProcess.Result RunWith(TempDir dir, string yaml)
    {
        File.WriteAllText(dir.File("evaluate.yaml"), yaml);
        return CliProcess.Run("evaluate", "--config", dir.File("evaluate.yaml"));
    }

    static void AssertOneLineError(CliProcess.Result result, string expected, TempDir dir)
    {
        Assert.Equal(2, result.ExitCode);
        var lines = result.Stderr.Trim().Split('\n');
        Assert.Single(lines);
        Assert.Contains(expected, lines[0]);
        Assert.False(Directory.Exists(dir.File("out")));
    }

    const string Sets = "prompt_sets:\n  - {name: harmlessness, source: builtin:red-team-eval}\noutput_dir: out\n";

    [Fact]
    public void A_policy_name_given_twice_is_refused()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("m"));
        var result = RunWith(dir, $"policies:\n  - {{name: base, model: {model}}}\n  - {{name: base, model: {model}}}\n" + Sets);
        AssertOneLineError(result, "evaluate.yaml:1: policies: [1].name 'base' is given twice (also [0]); names must be unique", dir);
    }

    [Fact]
    public void No_policies_is_refused()
    {
        using var dir = new TempDir();
        AssertOneLineError(RunWith(dir, "policies: []\n" + Sets), "evaluate.yaml:1: policies: needs at least one policy", dir);
    }

    [Fact]
    public void A_missing_model_folder_is_refused_before_anything_runs()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("m"));
        var result = RunWith(dir, $"policies:\n  - {{name: base, model: {model}}}\n  - {{name: sl-cai, model: no-such-model}}\n" + Sets);
        AssertOneLineError(result, "policies[1].model: model folder '" + dir.File("no-such-model") + "' not found", dir);
    }

    [Fact]
    public void An_unknown_key_names_the_nearest_valid_one()
    {
        using var dir = new TempDir();
        var result = RunWith(dir, "polices:\n  - {name: base, model: m}\n" + Sets);
        AssertOneLineError(result, "evaluate.yaml:1: polices: unknown key; did you mean 'policies'?", dir);
    }
}

/// <summary>`rlaif evaluate` as a user runs it: one policy is enough for rewards; the table goes to stdout.</summary>
public class EvaluateCliRunTests
{
    [Fact]
    public void Prints_the_table_and_writes_the_report()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("m"), seed: 4);
        var config = RlaifOnnx.Models.ModelFolder.ReadMetadata(model).Config;
        RlaifOnnx.Models.PreferenceModelFolder.Write(dir.File("pm"), config, RlaifOnnx.Models.PreferenceModelGraphs.FromLanguageModel(config, RlaifOnnx.Models.ModelFolder.ReadWeights(model), 5), model, []);
        File.WriteAllText(dir.File("evaluate.yaml"),
            "policies:\n  - {name: only, model: m}\nprompt_sets:\n  - {name: helpfulness, source: builtin:helpful-eval}\n"
            + "limit: 2\nreward_model: pm\nsampling: {max_new_tokens: 4}\noutput_dir: out\n");
        var result = CliProcess.Run("evaluate", "--config", dir.File("evaluate.yaml"));
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("helpfulness (2 prompts, builtin:helpful-eval)", result.Stdout);
        Assert.Contains("Elo (PM)", result.Stdout);
        var report = Evaluate.ReadReport(dir.File("out"));
        Assert.Equal(0.0, report.PromptSets[0].Policies[0].EloByReward);
        Assert.Empty(report.PromptSets[0].Pairwise);
        Assert.Null(report.PromptSets[0].Policies[0].EloByFeedback);
    }
}
