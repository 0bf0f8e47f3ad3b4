using RlaifOnnx.Configuration;
using RlaifOnnx.Constitution;
using RlaifOnnx.Core;
using RlaifOnnx.Records;
using RlaifOnnx.Stages;


namespace RlaifOnnx.Tests.Stages;

/// <summary>The label stage's text handling: the question format, few-shot prefix, reasoning parsing, truncation, mixing counts.</summary>
public class LabelQuestionTests
{
    [Fact]
    public void QuestionFollowsThePapersFormat()
    {
        var q = Label.Question([new ChatMessage("user", "Hi?"), new ChatMessage("assistant", "Hello."), new ChatMessage("user", "Help me.")],
            "Which answer is kinder?", " Sure. ", "No.", chainOfThought: false);
        Assert.Equal("Consider the following conversation between a human and an assistant:\n\nHuman: Hi?\n\nAssistant: Hello.\n\nHuman: Help me.\n\n" +
                     "Which answer is kinder?\nOptions:\n(A) Sure.\n(B) No.\nThe answer is:", q);
        Assert.EndsWith("(B) b\nLet's think step by step:", Label.Question([new ChatMessage("user", "x")], "p", "a", "b", chainOfThought: true));
    }

    [Fact]
    public void FewShotPrefixEndsEachExampleWithItsAnswer()
    {
        var c = ConstitutionSet.Default;
        var example = c.FeedbackExamples[0];
        var plain = Label.FewShotPrefix([example], c.FeedbackPrinciples[0], c, chainOfThought: false);
        Assert.EndsWith($"The answer is: ({example.Answer})\n\n", plain);
        Assert.Contains(c.Feedback(example.PrincipleId!, "t").Text, plain);
        var cot = Label.FewShotPrefix([example], c.FeedbackPrinciples[0], c, chainOfThought: true);
        Assert.Contains("Let's think step by step: " + example.Reasoning, cot);
        Assert.EndsWith($"So the answer is: ({example.Answer})\n\n", cot);
        Assert.Equal("", Label.FewShotPrefix([], c.FeedbackPrinciples[0], c, false));
    }

    [Fact]
    public void TheFewShotBlockIsDrawnOncePerRunBySeed()
    {
        var c = ConstitutionSet.Default;
        var config = new Label.Config { Pairs = "p.jsonl", FeedbackModel = "m", OutputDir = "o", FewShot = 3, Seed = 7 };
        var block = Label.FewShotBlock(c, config);
        Assert.Equal(block, Label.FewShotBlock(c, config));
        Assert.Equal(3, block.Split("The answer is: (").Length - 1);
        Assert.Contains(Enumerable.Range(0, 8), s => Label.FewShotBlock(c, config with { Seed = s }) != block);
        Assert.Equal("", Label.FewShotBlock(c, config with { FewShot = 0 }));
        // Chain of thought draws only examples that carry a reasoning, and shows it.
        Assert.Contains("Let's think step by step: ", Label.FewShotBlock(c, config with { ChainOfThought = true }));
    }

    [Fact]
    public void ParsesTheStatedAnswerOrReportsNone()
    {
        Assert.Equal(('B', "(A) is rude. (B) helps. So the answer is: (B)"), Swap(Label.ParseReasoning(" (A) is rude. (B) helps. So the answer is: (B)\n\nHuman: more")));
        Assert.Equal('A', Label.ParseReasoning("Option (A) is better because it is kind.").Answer);
        Assert.Equal('A', Label.ParseReasoning("the answer is A").Answer);
        Assert.Equal('B', Label.ParseReasoning("So the answer is B.").Answer);
        Assert.Equal('B', Label.ParseReasoning("Response (B) is the better one.").Answer);
        Assert.Equal('B', Label.ParseReasoning("Response (B) is better.").Answer);
        // Near-misses: a lower-case or embedded letter is not an option marker.
        Assert.Null(Label.ParseReasoning("Honestly the answer is a bit unclear.").Answer);
        Assert.Null(Label.ParseReasoning("The answer is Above all, kindness.").Answer);
        Assert.Null(Label.ParseReasoning("the answer is b").Answer);
        Assert.Null(Label.ParseReasoning("option a is better").Answer);
        Assert.Null(Label.ParseReasoning("The answer is (C).").Answer);
        Assert.Null(Label.ParseReasoning("The answer is Both.").Answer);
        Assert.Null(Label.ParseReasoning("zq blorp (C) wibble").Answer);
        Assert.Null(Label.ParseReasoning("").Answer);
    }

    static (char?, string) Swap((string Reasoning, char? Answer) r) => (r.Answer, r.Reasoning.Split("\n\nHuman")[0]);

    [Fact]
    public void FitsOverLongInputsFromTheLeft()
    {
        var turns = new List<ChatMessage>();
        for (var i = 0; i < 10; i++)
        {
            turns.Add(new ChatMessage("user", $"question {i} " + new string('q', 100)));
            turns.Add(new ChatMessage("assistant", $"answer {i} " + new string('a', 100)));
        }
        turns.Add(new ChatMessage("user", "last question"));
        var pair = new PairItem("x", turns, "short a", "short b", null);
        static int Chars(string s) => s.Length;

        var whole = Label.Question(turns, "p", "short a", "short b", false).Length;
        var (same, _, _, notCut) = Label.FitQuestion(pair, Chars, "p", false, whole);
        Assert.False(notCut);
        Assert.Equal(turns.Count, same.Count);

        var (kept, a, b, cut) = Label.FitQuestion(pair, Chars, "p", false, 600);
        Assert.True(cut);
        Assert.True(Label.Question(kept, "p", a, b, false).Length <= 600);
        Assert.Equal("last question", kept[^1].Content); // the newest turns survive
        Assert.True(kept.Count < turns.Count);
        Assert.Equal(("short a", "short b"), (a, b));

        // A budget below the question's fixed parts: the conversation shrinks to a stub, then the answers are cut.
        var longPair = new PairItem("y", [new ChatMessage("user", new string('u', 500))], new string('a', 400), new string('b', 400), null);
        var (stub, ca, cb, cut2) = Label.FitQuestion(longPair, Chars, "p", false, 300);
        Assert.True(cut2);
        Assert.True(Label.Question(stub, "p", ca, cb, false).Length <= 300);
        Assert.True(ca.Length < 400 && cb.Length < 400);
    }

    [Fact]
    public void MixCountsFollowTheProportion()
    {
        Assert.Equal((43, 99), PreferenceMix.Counts(100, 100, 0.3, null, "m")); // the human side limits: floor(100 / 0.7) = 142 in all
        Assert.Equal((50, 50), PreferenceMix.Counts(50, 500, 0.5, null, "m"));
        Assert.Equal((10, 0), PreferenceMix.Counts(10, 5, 1.0, null, "m"));
        Assert.Equal((3, 7), PreferenceMix.Counts(10, 10, 0.25, 10, "m")); // 2.5 rounds away from zero
        var e = Assert.Throws<UserError>(() => PreferenceMix.Counts(5, 100, 0.5, 20, "m.yaml"));
        Assert.Equal("m.yaml: size: needs 10 AI comparisons but ai_comparisons has 5", e.Message);
    }

    [Fact]
    public void MixDrawsSeededProportions()
    {
        using var dir = new TempDir();
        var ai = dir.File("comparisons.jsonl");
        Jsonl.Write(ai, Enumerable.Range(0, 20).Select(i => new ComparisonRecord($"c{i}", "q", [new ChatMessage("user", "q")], "a", "b", 0.25 + i / 100.0,
            ["least-harmful"], [new PrincipleLabel("least-harmful", 0.25 + i / 100.0, 0.3, 0.2)], false, 0)));
        var human = SharedData.Require("hh-rlhf/harmless-base-test.dev.jsonl.gz");
        var config = new PreferenceMix.Config { AiComparisons = ai, HumanComparisons = human, AiFraction = 0.25, Seed = 5, OutputDir = dir.Path };
        var path = PreferenceMix.Run(config);
        var mix = Jsonl.ReadAll<MixedComparison>(path);
        Assert.Equal(80, mix.Count); // 20 AI / 0.25
        Assert.Equal(20, mix.Count(m => m.Source == "ai"));
        Assert.All(mix.Where(m => m.Source == "human"), m => Assert.True(m.PA is 0.0 or 1.0));
        Assert.Equal(mix.Count, mix.Select(m => m.Id).Distinct().Count());
        Assert.NotEqual("ai", mix[0].Source + string.Concat(mix.Take(20).Select(m => m.Source)).Replace("ai", "")); // shuffled: humans among the first 20
        Assert.Equal(File.ReadAllText(path), File.ReadAllText(PreferenceMix.Run(config with { OutputDir = dir.File("again") })));
    }
}

public class StageConfigFileTests
{

    [Fact]
    public void ShippedStageConfigsParse()
    {
        var dir = System.IO.Path.Combine(Repository.Root, "configs", "stages");
        var revise = StageConfig.Load<Revise.Config>(System.IO.Path.Combine(dir, "revise.yaml"));
        Assert.Equal(4, revise.Rounds);
        Assert.Equal("builtin:red-team-train", System.IO.Path.GetFileName(revise.Prompts));
        Assert.NotEmpty(PromptSources.ReadPrompts(revise.Prompts));
        Assert.Equal(ConstitutionSet.Default.Name, ConstitutionSet.Load(revise.Constitution).Name);
        var label = StageConfig.Load<Label.Config>(System.IO.Path.Combine(dir, "label.yaml"));
        Assert.True(label.BothOrders);
        Assert.Empty(label.Problems());
        Assert.Empty(StageConfig.Load<Label.Config>(System.IO.Path.Combine(dir, "label-sampled.yaml")).Problems());
        Assert.Equal(0.5, StageConfig.Load<PreferenceMix.Config>(System.IO.Path.Combine(dir, "mix.yaml")).AiFraction);
    }

    [Fact]
    public void MisspelledKeyNamesTheNearestOne()
    {
        var e = Assert.Throws<UserError>(() => StageConfig.Parse<Revise.Config>("prompts: p.txt\nhelpful_model: m\noutput_dir: o\nround: 3\n", "r.yaml"));
        Assert.Contains("r.yaml:4", e.Message);
        Assert.Contains("rounds", e.Message);
    }
}
