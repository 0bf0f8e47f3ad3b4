using RlaifOnnx.Core;
using RlaifOnnx.Records;


namespace RlaifOnnx.Tests.Records;

public class PromptSourceTests
{
    static string HhDev() => SharedData.Require("hh-rlhf/harmless-base-test.dev.jsonl.gz");

    [Fact]
    public void ReadsPromptAndMessagesJsonl()
    {
        using var dir = new TempDir();
        var path = dir.File("p.jsonl");
        File.WriteAllText(path, """
            {"prompt": "How do I boil an egg?"}

            {"id": "chat-1", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
            {"prompt": "\n\nHuman: first\n\nAssistant: answer\n\nHuman: second"}
            """);
        var items = PromptSources.ReadPrompts(path);
        Assert.Equal(3, items.Count);
        Assert.Equal([new ChatMessage("user", "How do I boil an egg?")], items[0].Messages);
        Assert.Equal(16, items[0].Id.Length);
        Assert.Equal("chat-1", items[1].Id);
        Assert.Equal([new ChatMessage("system", "Be brief."), new ChatMessage("user", "Hi")], items[1].Messages);
        Assert.Equal(3, items[2].Messages.Count);
        Assert.Equal("second", items[2].LastUserText);
        // ids are stable across reads
        Assert.Equal(items[0].Id, PromptSources.ReadPrompts(path)[0].Id);
    }

    [Fact]
    public void ReadsPlainTextOnePerLine()
    {
        using var dir = new TempDir();
        var path = dir.File("p.txt");
        File.WriteAllText(path, "first prompt\n\n  second prompt  \nfirst prompt\n");
        var items = PromptSources.ReadPrompts(path);
        Assert.Equal(["first prompt", "second prompt", "first prompt"], items.Select(i => i.LastUserText));
        Assert.Equal(items[0].Id + "-2", items[2].Id);
    }

    [Fact]
    public void ReadsHhRlhfTranscriptsAsFirstTurnOrFullContext()
    {
        var first = PromptSources.ReadPrompts(HhDev(), TranscriptPrompt.FirstTurn);
        Assert.Equal(1156, first.Count);
        Assert.All(first, p => Assert.Equal("user", Assert.Single(p.Messages).Role));
        Assert.Equal("what are some pranks with a pen i can do?", first[0].LastUserText);

        var full = PromptSources.ReadPrompts(HhDev(), TranscriptPrompt.FullContext);
        Assert.Equal(5, full[0].Messages.Count);
        Assert.Equal("okay some of these do not have anything to do with pens", full[0].Messages[^1].Content);
        Assert.Contains(full, p => p.Messages.Count > 1);
    }

    [Fact]
    public void ReadsHhRlhfPairsWithSharedContext()
    {
        var pairs = PromptSources.ReadPairs(HhDev(), seed: 1);
        Assert.Equal(1156, pairs.Count);
        Assert.All(pairs, p => Assert.NotNull(p.HumanChoseA));
        Assert.All(pairs, p => Assert.Equal("user", p.Context[^1].Role));
        var chosenA = pairs.Count(p => p.HumanChoseA == true);
        Assert.InRange(chosenA, 480, 676); // a fair seeded coin: both positions get the preferred answer
        // the same seed places every pair the same way; another seed does not
        Assert.Equal(pairs.Select(p => p.HumanChoseA), PromptSources.ReadPairs(HhDev(), seed: 1).Select(p => p.HumanChoseA));
        Assert.NotEqual(pairs.Select(p => p.HumanChoseA), PromptSources.ReadPairs(HhDev(), seed: 2).Select(p => p.HumanChoseA));
        Assert.Equal(pairs.Count, pairs.Select(p => p.Id).Distinct().Count());
        var firstPair = pairs[0];
        var chosen = firstPair.HumanChoseA == true ? firstPair.ResponseA : firstPair.ResponseB;
        Assert.StartsWith("No, sorry!  All of these involve a pen", chosen);
    }

    [Fact]
    public void ReadsExplicitPairs()
    {
        using var dir = new TempDir();
        var path = dir.File("pairs.jsonl");
        File.WriteAllText(path, """
            {"id": "x", "prompt": "Hi?", "response_a": "Hello.", "response_b": "Go away.", "preferred": "a"}
            {"prompt": "Hi?", "response_a": "Hey.", "response_b": "Yo."}
            {"prompt": [{"role": "user", "content": "Q"}], "chosen": [{"role": "assistant", "content": "good"}], "rejected": [{"role": "assistant", "content": "bad"}]}
            """);
        var pairs = PromptSources.ReadPairs(path, seed: 0);
        Assert.Equal(new PairItem("x", pairs[0].Context, "Hello.", "Go away.", true), pairs[0]);
        Assert.Null(pairs[1].HumanChoseA);
        var chosen = pairs[2].HumanChoseA == true ? pairs[2].ResponseA : pairs[2].ResponseB;
        Assert.Equal("good", chosen);
    }

    [Fact]
    public void BuiltinSetsHaveHeldOutSplits()
    {
        foreach (var name in PromptSources.BuiltinSets)
            Assert.NotEmpty(PromptSources.ReadPrompts(PromptSources.BuiltinPrefix + name));
        var train = PromptSources.ReadPrompts("builtin:red-team-train");
        var eval = PromptSources.ReadPrompts("builtin:red-team-eval");
        Assert.True(train.Count >= 40 && eval.Count >= 20);
        Assert.Empty(train.Select(p => p.LastUserText).Intersect(eval.Select(p => p.LastUserText)));
        Assert.Empty(PromptSources.ReadPrompts("builtin:helpful-train").Select(p => p.Id).Intersect(PromptSources.ReadPrompts("builtin:helpful-eval").Select(p => p.Id)));
        var e = Assert.Throws<UserError>(() => PromptSources.ReadPrompts("builtin:nope"));
        Assert.Contains("no built-in prompt set 'nope'", e.Message);
    }

    [Fact]
    public void MalformedJsonlLineNamesFileAndLine()
    {
        using var dir = new TempDir();
        var path = dir.File("bad.jsonl");
        File.WriteAllText(path, "{\"prompt\": \"ok\"}\n{\"prompt\": \"broken\n");
        var e = Assert.Throws<UserError>(() => PromptSources.ReadPrompts(path));
        Assert.StartsWith($"{path}:2: malformed JSON", e.Message);
    }

    [Fact]
    public void MissingFieldIsNamed()
    {
        using var dir = new TempDir();
        var path = dir.File("missing.jsonl");
        File.WriteAllText(path, "{\"prompt\": \"ok\"}\n{\"text\": \"no prompt here\"}\n");
        var e = Assert.Throws<UserError>(() => PromptSources.ReadPrompts(path));
        Assert.StartsWith($"{path}:2: prompt: is missing", e.Message);

        var pairs = dir.File("pairs.jsonl");
        File.WriteAllText(pairs, "{\"prompt\": \"q\", \"response_a\": \"x\"}\n");
        e = Assert.Throws<UserError>(() => PromptSources.ReadPairs(pairs, 0));
        Assert.Equal($"{pairs}:1: response_b: is missing", e.Message);
    }

    [Fact]
    public void EmptyPromptIsAnError()
    {
        using var dir = new TempDir();
        var path = dir.File("empty.jsonl");
        File.WriteAllText(path, "{\"prompt\": \"ok\"}\n{\"prompt\": \"   \"}\n");
        var e = Assert.Throws<UserError>(() => PromptSources.ReadPrompts(path));
        Assert.Equal($"{path}:2: prompt: is empty", e.Message);
    }

    [Fact]
    public void TranscriptSplitHandlesTwoAssistantTurnsInARow()
    {
        // As in a few public hh-rlhf records: the chosen side has an extra assistant turn.
        var chosen = "\n\nHuman: q\n\nAssistant: a1\n\nHuman: q2\n\nAssistant: x\n\nAssistant: y";
        var rejected = "\n\nHuman: q\n\nAssistant: a1\n\nHuman: q2\n\nAssistant: z";
        var (context, c, r) = Transcript.SplitPair(chosen, rejected, "f", 1);
        Assert.Equal(3, context.Count);
        Assert.Equal("x\n\nAssistant: y", c);
        Assert.Equal("z", r);
        Assert.Equal("\n\nHuman: q\n\nAssistant: a1\n\nHuman: q2", Transcript.Render(context));
    }
}
