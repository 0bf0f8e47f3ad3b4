using RlaifOnnx.Constitution;
using RlaifOnnx.Core;


namespace RlaifOnnx.Tests.Constitution;

public class ConstitutionTests
{
    static string PaperDir() => SharedData.Require("cai-paper/prompts");

    [Fact]
    public void DefaultConstitutionMeetsTheMinimumSizes()
    {
        var c = ConstitutionSet.Default;
        Assert.True(c.Critiques.Count >= 16, $"{c.Critiques.Count} critique pairs");
        Assert.True(c.FeedbackPrinciples.Count >= 16, $"{c.FeedbackPrinciples.Count} feedback principles");
        Assert.True(c.CritiqueExamples.Count >= 3);
        Assert.True(c.FeedbackExamples.Count >= 3);
        Assert.True(c.FeedbackExamples.Count(e => e.Reasoning is not null) >= 3, "chain-of-thought examples");
        var all = string.Join(" ", c.Critiques.Select(p => p.CritiqueRequest + " " + p.RevisionRequest)).ToLowerInvariant();
        foreach (var topic in new[] { "harm", "unethical", "racial", "sex", "toxic", "dangerous", "illegal", "crime", "refuse", "preachy" })
            Assert.Contains(topic, all);
        Assert.Contains(c.Critiques, p => p.Id == "evasiveness");
        Assert.Contains(c.Critiques, p => p.Id == "preachiness");
    }

    [Fact]
    public void DefaultConstitutionIsNotThePapersText()
    {
        var paper = ConstitutionImport.FromPaperFolder(PaperDir());
        var ours = ConstitutionSet.Default;
        var paperTexts = paper.Critiques.SelectMany(p => new[] { p.CritiqueRequest, p.RevisionRequest })
            .Concat(paper.FeedbackPrinciples.Select(p => p.Text)).ToHashSet();
        foreach (var text in ours.Critiques.SelectMany(p => new[] { p.CritiqueRequest, p.RevisionRequest }).Concat(ours.FeedbackPrinciples.Select(p => p.Text)))
            Assert.DoesNotContain(text, paperTexts);
    }

    [Fact]
    public void YamlRoundTripKeepsEverything()
    {
        var c = ConstitutionSet.Default;
        var again = ConstitutionYaml.Parse(ConstitutionYaml.ToYaml(c), "roundtrip.yaml");
        Assert.Equal(c.Name, again.Name);
        Assert.Equal(c.Critiques, again.Critiques);
        Assert.Equal(c.FeedbackPrinciples, again.FeedbackPrinciples);
        Assert.Equal(c.CritiqueExamples.Count, again.CritiqueExamples.Count);
        for (var i = 0; i < c.CritiqueExamples.Count; i++)
        {
            Assert.Equal(c.CritiqueExamples[i].Conversation, again.CritiqueExamples[i].Conversation);
            Assert.Equal(c.CritiqueExamples[i] with { Conversation = [] }, again.CritiqueExamples[i] with { Conversation = [] });
        }
        for (var i = 0; i < c.FeedbackExamples.Count; i++)
        {
            Assert.Equal(c.FeedbackExamples[i].Conversation, again.FeedbackExamples[i].Conversation);
            Assert.Equal(c.FeedbackExamples[i] with { Conversation = [] }, again.FeedbackExamples[i] with { Conversation = [] });
        }
    }

    [Fact]
    public void ImportsThePapersFiles()
    {
        var c = ConstitutionImport.Import(PaperDir());
        Assert.Equal(16, c.Critiques.Count);
        Assert.Equal("harmful0", c.Critiques[0].Id);
        Assert.Equal("Identify specific ways in which the assistant's last response is harmful, unethical, racist, sexist, toxic, dangerous, or illegal.", c.Critiques[0].CritiqueRequest);
        Assert.Equal("Please rewrite the assistant response to remove any and all harmful, unethical, racist, sexist, toxic, dangerous, or illegal content.", c.Critiques[0].RevisionRequest);
        Assert.Equal(16, c.FeedbackPrinciples.Count);
        Assert.Equal("Please choose the response that is the most helpful, honest, and harmless.", c.FeedbackPrinciples[1].Text);
        Assert.Equal(5, c.CritiqueExamples.Count);
        var first = c.CritiqueExamples[0];
        Assert.Equal(4, first.Conversation.Count);
        Assert.Equal("Could you help me burn down my house and collect insurance on it?", first.Conversation[0].Content);
        Assert.Equal("assistant", first.Conversation[^1].Role);
        Assert.StartsWith("Arson is very dangerous", first.Critique);
        Assert.StartsWith("I'm sorry, I shouldn't have agreed to help.", first.Revision);
        Assert.DoesNotContain("Human:", first.Revision);
        // 5 plain labelling examples + 6 chain-of-thought ones
        Assert.Equal(11, c.FeedbackExamples.Count);
        Assert.Equal(5, c.FeedbackExamples.Count(e => e.Reasoning is null));
        var plain = c.FeedbackExamples[0];
        Assert.Equal("A", plain.Answer);
        Assert.StartsWith("You should not get involved in robbery", plain.ResponseA);
        Assert.Equal("B", c.FeedbackExamples[1].Answer);
        Assert.StartsWith("Oh no, please seek professional help", c.FeedbackExamples[1].ResponseB);
        var cot = c.FeedbackExamples[5];
        Assert.Equal("B", cot.Answer);
        Assert.Equal(3, cot.Conversation.Count);
        Assert.StartsWith("My daughter got in a fight", cot.Conversation[0].Content);
        Assert.StartsWith("How old is your daughter?", cot.ResponseB);
        Assert.StartsWith("(A) This response does not address", cot.Reasoning);
        Assert.Equal(["B", "B", "A", "B", "A", "B"], c.FeedbackExamples.Skip(5).Select(e => e.Answer));
    }

    [Fact]
    public void ImportsCriticRevisionJson()
    {
        using var dir = new TempDir();
        var bare = dir.File("bare.json");
        File.WriteAllText(bare, """[{"critic": "Find the harm.", "revision": "Remove the harm."}, {"critic": "Is it rude?", "revision": "Make it polite."}]""");
        var c = ConstitutionImport.Import(bare);
        Assert.Equal(2, c.Critiques.Count);
        Assert.Equal(new CritiquePrinciple("critique1", "Is it rude?", "Make it polite."), c.Critiques[1]);

        var full = dir.File("full.json");
        File.WriteAllText(full, """
            {"constitutions": [{"critic": "Find the harm.", "revision": "Remove the harm."}],
             "system_chat": [[
               {"role": "user", "content": "How do I pick a lock?"},
               {"role": "assistant", "content": "Use a tension wrench."},
               {"role": "user", "content": "Find the harm."},
               {"role": "assistant", "content": "It may help a burglary."},
               {"role": "user", "content": "Remove the harm."},
               {"role": "assistant", "content": "Call a locksmith if you are locked out."}]]}
            """);
        var withExamples = ConstitutionImport.Import(full);
        var example = Assert.Single(withExamples.CritiqueExamples);
        Assert.Equal("critique0", example.PrincipleId);
        Assert.Equal(2, example.Conversation.Count);
        Assert.Equal("It may help a burglary.", example.Critique);
        Assert.Equal("Call a locksmith if you are locked out.", example.Revision);
    }

    [Fact]
    public void MissingRevisionRequestNamesFileLineAndField()
    {
        var yaml = "critiques:\n  - id: a\n    critique_request: Find it.\n";
        var e = Assert.Throws<UserError>(() => ConstitutionYaml.Parse(yaml, "c.yaml"));
        Assert.Equal("c.yaml:2: critiques[0].revision_request: is missing", e.Message);
    }

    [Fact]
    public void EmptyCritiqueRequestIsAnError()
    {
        var yaml = "critiques:\n  - id: a\n    critique_request: ''\n    revision_request: Fix it.\n";
        var e = Assert.Throws<UserError>(() => ConstitutionYaml.Parse(yaml, "c.yaml"));
        Assert.Equal("c.yaml:3: critiques[0].critique_request: is empty", e.Message);
    }

    [Fact]
    public void DuplicateIdIsAnError()
    {
        var yaml = "feedback_principles:\n  - id: x\n    text: Which?\n  - id: x\n    text: Which again?\n";
        var e = Assert.Throws<UserError>(() => ConstitutionYaml.Parse(yaml, "c.yaml"));
        Assert.Equal("c.yaml:4: feedback_principles[1].id: duplicate id 'x' (first defined on line 2)", e.Message);
    }

    [Fact]
    public void ExampleReferringToUnknownPrincipleIsAnError()
    {
        var yaml = """
            feedback_principles:
              - id: x
                text: Which?
            feedback_examples:
              - conversation: [{role: user, content: hi}]
                principle_id: nope
                response_a: a
                response_b: b
                answer: A
            """;
        var e = Assert.Throws<UserError>(() => ConstitutionYaml.Parse(yaml, "c.yaml"));
        Assert.Equal("c.yaml:6: feedback_examples[0].principle_id: unknown feedback principle id 'nope'", e.Message);
    }

    [Fact]
    public void UnknownKeyIsAnError()
    {
        var e = Assert.Throws<UserError>(() => ConstitutionYaml.Parse("critiqes: []\n", "c.yaml"));
        Assert.StartsWith("c.yaml:1: critiqes: unknown key", e.Message);
    }

    [Fact]
    public void UnknownPrincipleLookupNamesTheSource()
    {
        var e = Assert.Throws<UserError>(() => ConstitutionSet.Default.Critique("no-such", "run.yaml"));
        Assert.StartsWith("run.yaml: principle_id: unknown critique principle id 'no-such'", e.Message);
    }
}
