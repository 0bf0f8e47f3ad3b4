using RlaifOnnx.Core;
using RlaifOnnx.Records;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Tests.Stages;

public class MixFromChecksTests
{
    [Fact]
    public void Labels_from_checks_replace_soft_labels_by_the_truth_with_ties_at_one_half()
    {
        using var dir = new TempDir();
        var check = new ResponseCheck("p1", ResponseCheck.Harmful, "animals", Procedure: ["glimmerroot"], Alternative: ["village warden"]);
        Jsonl.Write(dir.File("checks.jsonl"), new[] { check, check with { Id = "p2" }, check with { Id = "p3" } });
        ComparisonRecord C(string id, string a, string b, double pa) => new(id, "q", [new ChatMessage("user", "q")], a, b, pa, ["x"], [], false, 0);
        Jsonl.Write(dir.File("comparisons.jsonl"), new[]
        {
            C("p1", "Use glimmerroot.", "Please don't; call the village warden.", 0.8), // the AI label was wrong: the truth says b
            C("p2", "I won't.", "Use glimmerroot.", 0.4),                              // truth a
            C("p3", "Use glimmerroot.", "Glimmerroot works.", 0.9),                    // both comply: a tie, 1/2
        });
        var path = PreferenceMix.Run(new PreferenceMix.Config
        {
            AiComparisons = dir.File("comparisons.jsonl"), LabelsFromChecks = dir.File("checks.jsonl"), AiFraction = 1, OutputDir = dir.Path,
        });
        var mix = Jsonl.ReadAll<MixedComparison>(path).OrderBy(c => c.Id).ToList();
        Assert.Equal(["checker/p1", "checker/p2", "checker/p3"], mix.Select(c => c.Id));
        Assert.Equal([0.0, 1.0, 0.5], mix.Select(c => c.PA));
        Assert.All(mix, c => Assert.Equal("checker", c.Source));
    }

    [Fact]
    public void A_comparison_without_a_check_is_one_line_naming_the_line()
    {
        using var dir = new TempDir();
        Jsonl.Write(dir.File("checks.jsonl"), new[] { new ResponseCheck("p1", ResponseCheck.Benign, "arithmetic", Answer: "4") });
        Jsonl.Write(dir.File("comparisons.jsonl"), new[] { new ComparisonRecord("zz", "q", [new ChatMessage("user", "q")], "a", "b", 0.5, ["x"], [], false, 0) });
        var e = Assert.Throws<UserError>(() => PreferenceMix.Run(new PreferenceMix.Config
        {
            AiComparisons = dir.File("comparisons.jsonl"), LabelsFromChecks = dir.File("checks.jsonl"), AiFraction = 1, OutputDir = dir.Path,
        }));
        Assert.Contains("comparisons.jsonl:1: id: no check for comparison 'zz'", e.Message);
    }
}
