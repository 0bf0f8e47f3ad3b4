using System.Text.Json;
using RlaifOnnx.Constitution;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Stages;
using RlaifOnnx.Records;

namespace RlaifOnnx.Tests.Stages;

/// <summary>The revise stage on a tiny local Llama model folder (real GenAI generation).</summary>
public class ReviseStageTests
{
    static string WritePrompts(TempDir dir, int n = 5)
    {
        var path = dir.File("prompts.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, n).Select(i => JsonSerializer.Serialize(new { id = $"p{i}", prompt = $"How do I do thing {i}?" })));
        return path;
    }

    static Revise.Config Config(TempDir dir, string model, string prompts, string output) => new()
    {
        Prompts = prompts,
        HelpfulModel = model,
        OutputDir = output,
        Rounds = 2,
        FewShot = 1,
        Sampling = new() { Temperature = 0, MaxNewTokens = 6 },
        BatchSize = 2,
        Seed = 11,
    };

    [Fact]
    public async Task WritesEveryRecordWithItsRoundsAndBothSftExports()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("model"));
        var config = Config(dir, model, WritePrompts(dir), dir.File("out"));
        var path = await Revise.Run(config, TestContext.Current.CancellationToken);

        var records = Jsonl.ReadAll<RevisionRecord>(path);
        Assert.Equal(["p0", "p1", "p2", "p3", "p4"], records.Select(r => r.Id).Order());
        var constitution = ConstitutionSet.Default;
        foreach (var r in records)
        {
            Assert.Equal(2, r.Rounds.Count);
            Assert.StartsWith("How do I do thing", r.Prompt);
            Assert.Equal("user", Assert.Single(r.Messages).Role);
            foreach (var round in r.Rounds)
            {
                var principle = constitution.Critique(round.PrincipleId, "test");
                Assert.Equal(principle.CritiqueRequest, round.CritiqueRequest);
                Assert.Equal(principle.RevisionRequest, round.RevisionRequest);
            }
            Assert.Equal(r.Rounds[^1].Revision, r.FinalResponse);
        }
        // the file's keys are the documented snake_case ones
        using (var doc = JsonDocument.Parse(File.ReadLines(path).First()))
        {
            var keys = doc.RootElement.EnumerateObject().Select(p => p.Name).ToHashSet();
            Assert.Superset(new HashSet<string> { "id", "prompt", "messages", "initial_response", "rounds", "final_response" }, keys);
            Assert.Equal(["principle_id", "critique_request", "critique", "revision_request", "revision"],
                doc.RootElement.GetProperty("rounds")[0].EnumerateObject().Select(p => p.Name));
        }
        // principles are drawn independently per round and per prompt: not all the same across the run
        Assert.True(records.SelectMany(r => r.Rounds).Select(x => x.PrincipleId).Distinct().Count() > 1);

        var last = Jsonl.ReadAll<SftPromptCompletion>(Path.Combine(config.OutputDir, Revise.SftPromptCompletionFile));
        Assert.Equal(5, last.Count);
        Assert.All(last, e => Assert.Equal(records.Single(r => r.Id == e.Id).FinalResponse, Assert.Single(e.Completion).Content));
        var messages = Jsonl.ReadAll<SftMessages>(Path.Combine(config.OutputDir, Revise.SftMessagesFile));
        Assert.All(messages, m => Assert.Equal(["user", "assistant"], m.Messages.Select(x => x.Role)));

        Revise.WriteSftExports(config.OutputDir, Revise.SftRevisions.All);
        var all = Jsonl.ReadAll<SftPromptCompletion>(Path.Combine(config.OutputDir, Revise.SftPromptCompletionFile));
        Assert.Equal(10, all.Count);
        Assert.Contains(all, e => e.Id == "p3/1");
    }

    [Fact]
    public async Task SameSeedSameFileAndSamplingToo()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("model"));
        var prompts = WritePrompts(dir, 4);
        var first = await Revise.Run(Config(dir, model, prompts, dir.File("a")) with { Sampling = Config(dir, model, prompts, "").Sampling with { Temperature = 0.9 } }, TestContext.Current.CancellationToken);
        var second = await Revise.Run(Config(dir, model, prompts, dir.File("b")) with { Sampling = Config(dir, model, prompts, "").Sampling with { Temperature = 0.9 } }, TestContext.Current.CancellationToken);
        Assert.Equal(File.ReadAllText(first), File.ReadAllText(second));
        var other = await Revise.Run(Config(dir, model, prompts, dir.File("c")) with { Sampling = Config(dir, model, prompts, "").Sampling with { Temperature = 0.9 }, Seed = 12 }, TestContext.Current.CancellationToken);
        Assert.NotEqual(File.ReadAllText(first), File.ReadAllText(other));
    }

    [Fact]
    public async Task ResumesAfterAnInterruptionWithNoLossAndNoDuplicate()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("model"));
        var prompts = WritePrompts(dir, 6);
        var reference = await Revise.Run(Config(dir, model, prompts, dir.File("whole")), TestContext.Current.CancellationToken);

        var config = Config(dir, model, prompts, dir.File("resumed"));
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        using (var inner = new GenAIGenerator(model))
        using (var stopping = new CancelAfterCalls(inner, calls: 7, cts)) // batch 1 takes 1 + 2·2 = 5 calls; stop inside batch 2
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Revise.Run(config, stopping, cts.Token));
        var partial = Jsonl.ReadAll<RevisionRecord>(Path.Combine(config.OutputDir, Revise.RevisionsFile));
        Assert.Equal(2, partial.Count);

        var resumed = await Revise.Run(config, TestContext.Current.CancellationToken);
        var records = Jsonl.ReadAll<RevisionRecord>(resumed);
        Assert.Equal(6, records.Count);
        Assert.Equal(6, records.Select(r => r.Id).Distinct().Count());
        // greedy decoding: the resumed run holds exactly what the uninterrupted one does
        Assert.Equal(File.ReadAllLines(reference).Order(), File.ReadAllLines(resumed).Order());
    }

    [Fact]
    public async Task OverLongPromptIsCutToTheContextAndMarked()
    {
        using var dir = new TempDir();
        var model = TinyModels.Folder(dir.File("model"));
        var prompts = dir.File("long.jsonl");
        File.WriteAllLines(prompts, [JsonSerializer.Serialize(new { id = "long", prompt = string.Concat(Enumerable.Repeat("tell me more ", 2000)) }),
                                     JsonSerializer.Serialize(new { id = "short", prompt = "hi" })]);
        var records = Jsonl.ReadAll<RevisionRecord>(await Revise.Run(Config(dir, model, prompts, dir.File("out")) with { Rounds = 1 }, TestContext.Current.CancellationToken));
        Assert.True(records.Single(r => r.Id == "long").Truncated);
        Assert.False(records.Single(r => r.Id == "short").Truncated);
        Assert.Equal(13 * 2000 - 1, records.Single(r => r.Id == "long").Prompt.Length); // the record keeps the whole (trimmed) prompt
    }

    [Fact]
    public async Task ConstitutionWithAMissingRequestStopsBeforeAnyWork()
    {
        using var dir = new TempDir();
        var constitution = dir.File("c.yaml");
        File.WriteAllText(constitution, "critiques:\n  - id: only\n    critique_request: What is wrong?\n");
        var config = new Revise.Config { Prompts = WritePrompts(dir), HelpfulModel = dir.File("no-model"), OutputDir = dir.File("out"), Constitution = constitution };
        var e = await Assert.ThrowsAsync<UserError>(() => Revise.Run(config, TestContext.Current.CancellationToken));
        Assert.Equal($"{constitution}:2: critiques[0].revision_request: is missing", e.Message);
        Assert.False(Directory.Exists(config.OutputDir));
    }
}

/// <summary>A real generator or scorer that cancels a token after a number of calls: an interruption at a chosen point.</summary>
public sealed class CancelAfterCalls(object inner, int calls, CancellationTokenSource cts) : ITextGenerator, IScorer
{
    int count;

    void Tick()
    {
        if (++count >= calls) cts.Cancel();
        cts.Token.ThrowIfCancellationRequested();
    }

    public async Task<IReadOnlyList<string>> ChatAsync(IReadOnlyList<IReadOnlyList<ChatMessage>> chats, SamplingOptions sampling, CancellationToken cancellationToken = default)
    {
        var result = await ((ITextGenerator)inner).ChatAsync(chats, sampling, cancellationToken);
        Tick();
        return result;
    }

    public async Task<IReadOnlyList<string>> CompleteAsync(IReadOnlyList<string> prompts, SamplingOptions sampling, CancellationToken cancellationToken = default)
    {
        var result = await ((ITextGenerator)inner).CompleteAsync(prompts, sampling, cancellationToken);
        Tick();
        return result;
    }

    public Task<IReadOnlyList<double>> ContinuationLogProbsAsync(IReadOnlyList<(string Prompt, string Continuation)> pairs, CancellationToken cancellationToken = default) =>
        ((IScorer)inner).ContinuationLogProbsAsync(pairs, cancellationToken);

    public async Task<IReadOnlyList<double[]>> CandidateLogProbsAsync(IReadOnlyList<string> prompts, IReadOnlyList<string> candidates, CancellationToken cancellationToken = default)
    {
        var result = await ((IScorer)inner).CandidateLogProbsAsync(prompts, candidates, cancellationToken);
        Tick();
        return result;
    }

    // Forwarded, not left to the interface's default (one pass per question): a stage resumed without this
    // wrapper scores the shared way, and its numbers must be those of the interrupted run.
    public async Task<IReadOnlyList<double[]>> QuestionCandidateLogProbsAsync(string prefix, IReadOnlyList<string> suffixes, IReadOnlyList<string> candidates, CancellationToken cancellationToken = default)
    {
        var result = await ((IScorer)inner).QuestionCandidateLogProbsAsync(prefix, suffixes, candidates, cancellationToken);
        Tick();
        return result;
    }

    public void Dispose() { }
}
