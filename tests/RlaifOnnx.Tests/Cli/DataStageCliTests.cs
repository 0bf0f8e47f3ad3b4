using RlaifOnnx.Core;
using RlaifOnnx.Stages;
using RlaifOnnx.Records;


namespace RlaifOnnx.Tests.Cli;

/// <summary>`rlaif constitution|revise|label` as a user runs them: real process, real exit codes.</summary>
public class DataStageCliTests
{
    [Fact]
    public void ConstitutionImportValidateShow()
    {
        using var dir = new TempDir();
        var output = dir.File("paper.yaml");
        var import = CliProcess.Run("constitution", "import", SharedData.Require("cai-paper/prompts"), "--out", output);
        Assert.Equal(0, import.ExitCode);
        Assert.Contains("16 critique/revision pairs, 16 feedback principles", import.Stdout);
        Assert.Equal(0, CliProcess.Run("constitution", "validate", output).ExitCode);
        var show = CliProcess.Run("constitution", "show");
        Assert.Equal(0, show.ExitCode);
        Assert.Contains("evasiveness:", show.Stdout);

        var bad = dir.File("bad.yaml");
        File.WriteAllText(bad, "critiques:\n  - id: a\n    critique_request: x\n");
        var result = CliProcess.Run("constitution", "validate", bad);
        Assert.Equal(2, result.ExitCode);
        Assert.Equal($"error: {bad}:2: critiques[0].revision_request: is missing", result.Stderr.Trim());
    }

    [Fact]
    public void ReviseAndLabelRunFromConfigFiles()
    {
        using var dir = new TempDir();
        TinyModels.Folder(dir.File("tiny"));
        File.WriteAllText(dir.File("revise.yaml"), "prompts: builtin:helpful-eval\nhelpful_model: tiny\noutput_dir: out/revise\nrounds: 1\nsampling: {max_new_tokens: 4}\nlimit: 3\n");
        var revise = CliProcess.Run("revise", "--config", dir.File("revise.yaml"));
        Assert.True(revise.ExitCode == 0, revise.Stderr);
        Assert.Equal(3, Jsonl.ReadAll<RevisionRecord>(dir.File("out/revise/revisions.jsonl")).Count);

        File.WriteAllText(dir.File("label.yaml"), $"pairs: {SharedData.Require("hh-rlhf/harmless-base-test.dev.jsonl.gz")}\nfeedback_model: tiny\noutput_dir: out/label\nprinciples: 1\nlimit: 5\n");
        var label = CliProcess.Run("label", "--config", dir.File("label.yaml"));
        Assert.True(label.ExitCode == 0, label.Stderr);
        Assert.Contains("agreement with people:", label.Stdout);
        Assert.Contains("position consistency:", label.Stdout);
        Assert.Contains("expected calibration error:", label.Stdout);

        File.WriteAllText(dir.File("bad.yaml"), "pairs: p.jsonl\nfeedback_model: tiny\noutput_dir: o\nprincipels: 3\n");
        var bad = CliProcess.Run("label", "--config", dir.File("bad.yaml"));
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("bad.yaml:4: principels: unknown key; did you mean 'principles'?", bad.Stderr);
    }
}
