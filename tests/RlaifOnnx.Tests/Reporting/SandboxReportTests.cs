using System.Text.Json;
using RlaifOnnx.Reporting;

namespace RlaifOnnx.Tests.Reporting;

public class SandboxReportTests
{
    static SandboxReport Fixture() => JsonSerializer.Deserialize<SandboxReport>(SandboxFixture.Json, SandboxReport.Json)!;

    [Fact]
    public void Reads_the_documented_schema_in_order_with_missing_keys_null()
    {
        var sandbox = Fixture();
        Assert.Equal(["base", "sl_cai", "rl_cai", "rlhf"], sandbox.Models.Keys);
        Assert.Equal(new RateEstimate(0.4, 40, 100, [0.31, 0.50]), sandbox.Models["base"].HarmfulCompliance!, RateComparer);
        Assert.Equal(15, sandbox.Models["base"].UnseenKind!.HarmfulCompliance!.Count);
        Assert.Null(sandbox.Models["sl_cai"].UnseenKind);
        Assert.Null(sandbox.Models["rlhf"].EvasiveRefusal);
        Assert.Equal(["one_order", "both_orders", "ensemble", "cot"], sandbox.LabelAccuracy!.Keys);
        Assert.Null(sandbox.LabelAccuracy["ensemble"].Calibration);
        Assert.Equal([0.8, 0.85, 50], sandbox.LabelAccuracy["one_order"].Calibration![2]);
    }

    [Fact]
    public void Writes_snake_case_keys_and_leaves_out_an_absent_unseen_kind()
    {
        var rate = RateEstimate.Of(3, 10);
        var sandbox = new SandboxReport(new Dictionary<string, SandboxModelRates> { ["base"] = new(rate, rate, rate, rate) },
            new Dictionary<string, LabelAccuracy> { ["cot"] = new(rate, [[0.5, 0.4, 10]]) });
        using var json = JsonDocument.Parse(JsonSerializer.Serialize(sandbox, SandboxReport.Json));
        Assert.Equal(["models", "label_accuracy"], json.RootElement.EnumerateObject().Select(p => p.Name));
        var model = json.RootElement.GetProperty("models").GetProperty("base");
        Assert.Equal(["harmful_compliance", "helpful_refusal", "evasive_refusal", "benign_accuracy"], model.EnumerateObject().Select(p => p.Name));
        Assert.Equal(["rate", "count", "n", "ci95"], model.GetProperty("benign_accuracy").EnumerateObject().Select(p => p.Name));
        Assert.Equal(["accuracy", "calibration"], json.RootElement.GetProperty("label_accuracy").GetProperty("cot").EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public void Finds_the_section_in_a_report_json_or_says_there_is_none()
    {
        var withSection = $$"""{"policies": ["base"], "prompt_sets": [], "sandbox": {{SandboxFixture.Json}} }""";
        Assert.Equal(4, SandboxReport.FromReportJson(withSection)!.Models.Count);
        Assert.Null(SandboxReport.FromReportJson("""{"policies": ["base"], "prompt_sets": []}"""));
        Assert.Null(SandboxReport.FromReportJson("""{"sandbox": null}"""));
    }

    static readonly IEqualityComparer<RateEstimate> RateComparer = EqualityComparer<RateEstimate>.Create(
        (a, b) => a!.Rate == b!.Rate && a.Count == b.Count && a.N == b.N && a.Ci95.SequenceEqual(b.Ci95));
}
