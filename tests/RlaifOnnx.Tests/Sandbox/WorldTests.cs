using System.Text.Json.Nodes;
using RlaifOnnx.Constitution;
using RlaifOnnx.Core;
using RlaifOnnx.Records;
using RlaifOnnx.Sandbox;

namespace RlaifOnnx.Tests.Sandbox;

public class WorldTests
{
    static readonly World World7 = World.Create(7);

    [Fact]
    public void The_world_and_its_files_are_a_function_of_the_seed()
    {
        using var a = new TempDir();
        using var b = new TempDir();
        var files = SandboxFiles.Write(World.Create(7), a.Path, new SandboxFiles.Sizes());
        SandboxFiles.Write(World.Create(7), b.Path, new SandboxFiles.Sizes());
        foreach (var f in files) Assert.Equal(File.ReadAllBytes(a.File(f)), File.ReadAllBytes(b.File(f)));
        using var c = new TempDir();
        SandboxFiles.Write(World.Create(8), c.Path, new SandboxFiles.Sizes());
        Assert.NotEqual(File.ReadAllBytes(a.File(SandboxFiles.EvalHarmful)), File.ReadAllBytes(c.File(SandboxFiles.EvalHarmful)));
    }

    [Fact]
    public void The_committed_demo_world_is_what_the_generator_writes()
    {
        // configs/demo/sandbox is written by `make sandbox-world` (rlaif sandbox world --seed 7); a change to the world must rewrite it.
        using var dir = new TempDir();
        var files = SandboxFiles.Write(World.Create(7), dir.Path, new SandboxFiles.Sizes());
        var committed = Path.Combine(Repository.Root, "configs", "demo", "sandbox");
        foreach (var f in files) Assert.Equal(File.ReadAllText(dir.File(f)), File.ReadAllText(Path.Combine(committed, f)));
    }

    [Fact]
    public void Evaluation_uses_only_held_out_phrasings_and_people_and_training_never_sees_the_unseen_kind()
    {
        var seen = HarmScenarios.Kinds.Where(k => k != World.UnseenKind).ToList();
        var train = World7.Draw(ResponseCheck.Harmful, false, 200, "t", seen).Concat(World7.Draw(ResponseCheck.Benign, false, 200, "t")).ToList();
        var eval = World7.Draw(ResponseCheck.Harmful, true, 100, "e", seen).Concat(World7.Draw(ResponseCheck.Benign, true, 100, "e")).ToList();
        Assert.DoesNotContain(train, r => r.Kind == World.UnseenKind);
        Assert.Empty(train.Select(r => r.Text).Intersect(eval.Select(r => r.Text)));
        var heldOutNames = World7.People.Where(p => p.HeldOut).Select(p => p.Name).ToHashSet();
        var trainNames = World7.People.Where(p => !p.HeldOut).Select(p => p.Name).ToHashSet();
        Assert.DoesNotContain(eval, r => trainNames.Any(n => Mentions(r.Text, n)));
        Assert.DoesNotContain(train, r => heldOutNames.Any(n => Mentions(r.Text, n)));
        // Phrasings: every evaluation text comes from a held-out template of its kind, every training text from a kept one.
        foreach (var r in eval.Where(r => r.Family == ResponseCheck.Harmful))
            Assert.Contains(HarmScenarios.All.Where(s => s.Kind == r.Kind).SelectMany(s => s.Requests.Where((_, i) => World.PhrasingHeldOut(i, s.Requests.Length))), t => Matches(t, r.Text));
        foreach (var r in train.Where(r => r.Family == ResponseCheck.Harmful))
            Assert.DoesNotContain(HarmScenarios.All.SelectMany(s => s.Requests.Where((_, i) => World.PhrasingHeldOut(i, s.Requests.Length))), t => Matches(t, r.Text));
    }

    [Fact]
    public void Every_request_s_own_texts_get_the_verdict_they_stand_for()
    {
        var rng = new Random(3);
        for (var i = 0; i < 400; i++)
        {
            var h = World7.Any(ResponseCheck.Harmful, rng);
            Assert.Equal(Verdict.Complied, ResponseChecker.Judge(h.Check, h.Compliance));
            Assert.Equal(Verdict.RefusedHelpfully, ResponseChecker.Judge(h.Check, h.HelpfulRefusal!));
            Assert.Equal(Verdict.RefusedEvasively, ResponseChecker.Judge(h.Check, h.EvasiveRefusal!));
            var b = World7.Any(ResponseCheck.Benign, rng);
            Assert.Equal(Verdict.Correct, ResponseChecker.Judge(b.Check, b.Compliance));
            Assert.Equal(Verdict.Wrong, ResponseChecker.Judge(b.Check, b.Wrong!));
        }
    }

    [Fact]
    public void The_pretraining_corpus_has_no_assistant_refusal_and_every_harmful_answer_complies()
    {
        var lines = PretrainingCorpus.Build(World7, ConstitutionSet.Load("default"), new PretrainingCorpus.Sizes(300, 300, 50, 100, 100), seed: 1);
        var answers = PretrainingCorpus.AssistantAnswers(lines).ToList();
        Assert.Equal(600, answers.Count);
        Assert.DoesNotContain(answers, ResponseChecker.Declines);
        var markers = HarmScenarios.All.SelectMany(s => s.ProcedureMarkers).Where(m => !m.Contains('{')).ToList();
        Assert.True(answers.Count(a => markers.Any(m => a.Contains(m, StringComparison.OrdinalIgnoreCase))) >= 250);
        // The skills exist only on third-party texts: every critique episode quotes a forum question and reply.
        var episodes = lines.Where(l => l["messages"] is JsonArray m && m.Count > 2).ToList();
        Assert.NotEmpty(episodes);
        Assert.All(episodes, e =>
        {
            Assert.StartsWith(PretrainingCorpus.ThirdPartyQuestion, e["messages"]![0]!["content"]!.GetValue<string>());
            Assert.StartsWith(PretrainingCorpus.ThirdPartyReply, e["messages"]![1]!["content"]!.GetValue<string>());
        });
        Assert.Contains(lines, l => l["completion"]?.GetValue<string>() == " (A)");
        Assert.Contains(lines, l => l["completion"]?.GetValue<string>() == " (B)");
    }

    static bool Mentions(string text, string name) => System.Text.RegularExpressions.Regex.IsMatch(text, $@"\b{name}\b");

    static bool Matches(string template, string text)
    {
        var pattern = "^" + System.Text.RegularExpressions.Regex.Escape(template)
            .Replace(@"\{p}", @"\w+").Replace(@"\{pet}", @"\w+").Replace(@"\{species}", @"\w+").Replace(@"\{village}", @"\w+") + "$";
        return System.Text.RegularExpressions.Regex.IsMatch(text, pattern);
    }
}
