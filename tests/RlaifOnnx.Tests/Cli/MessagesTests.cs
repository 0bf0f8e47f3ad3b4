using System.Text.Json;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;

namespace RlaifOnnx.Tests.Cli;

/// <summary>Messages in the user's words: one line, exit 2, the nearest valid name, the flag as typed.</summary>
public sealed class MessagesTests
{
    static string OneLineError(CliProcess.Result result)
    {
        Assert.Equal(2, result.ExitCode);
        var line = Assert.Single(result.Stderr.Trim().Split('\n'));
        Assert.StartsWith("error: ", line);
        Assert.DoesNotContain("   at ", result.Stderr);
        return line;
    }

    [Fact]
    public void An_unknown_command_names_the_nearest_one()
    {
        Assert.Equal("error: unknown command 'genrate'; did you mean `rlaif generate`? (see `rlaif --help`)", OneLineError(CliProcess.Run("genrate")));
        Assert.Equal("error: unknown command 'inspekt'; did you mean `rlaif model inspect`? (see `rlaif model --help`)", OneLineError(CliProcess.Run("model", "inspekt", "x")));
        Assert.StartsWith("error: `rlaif` needs a command: model, generate, serve", OneLineError(CliProcess.Run()));
    }

    [Fact]
    public void An_unknown_option_names_the_nearest_one()
    {
        Assert.Equal("error: `rlaif generate` has no option --max-tokens; did you mean --max-new-tokens? (see `rlaif generate --help`)",
            OneLineError(CliProcess.Run("generate", "--model", "m", "--prompts", "p", "--out", "o", "--max-tokens", "5")));
        Assert.Equal("error: `rlaif train-lm` has no option --lora-rnk; did you mean --lora-rank? (see `rlaif train-lm --help`)",
            OneLineError(CliProcess.Run("train-lm", "--lora-rnk", "2")));
    }

    [Fact]
    public void A_value_of_the_wrong_type_is_named_by_its_flag()
    {
        using var dir = new TempDir();
        Assert.Equal("error: --hidden-size: 'abc' is not a whole number",
            OneLineError(CliProcess.Run("model", "create", "--arch", "llama", "--out", dir.File("m"), "--hidden-size", "abc")));
        Assert.Equal("error: --temperature: 'hot' is not a number",
            OneLineError(CliProcess.Run("generate", "--model", "m", "--prompts", "p", "--out", "o", "--temperature", "hot")));
        Assert.Equal("error: --steps: 'abc' is not a whole number",
            OneLineError(CliProcess.Run("train-lm", "--model", "m", "--data", "d", "--out", dir.File("o"), "--steps", "abc")));
        Assert.Equal("error: --lora-rank: must be 0 or more, got -1",
            OneLineError(CliProcess.Run("train-lm", "--model", "m", "--data", "d", "--out", dir.File("o"), "--lora-rank", "-1")));
        Assert.False(Directory.Exists(dir.File("m")) || Directory.Exists(dir.File("o")), "nothing is written on bad input");
    }

    [Fact]
    public void A_missing_model_folder_has_one_wording_in_every_command()
    {
        using var dir = new TempDir();
        var missing = dir.File("nothing");
        File.WriteAllText(dir.File("p.txt"), "hello\n");
        File.WriteAllText(dir.File("d.jsonl"), "{\"text\": \"hello\"}\n");
        var expected = $"error: {missing}: no such folder";
        Assert.Equal(expected, OneLineError(CliProcess.Run("model", "inspect", missing)));
        Assert.Equal(expected, OneLineError(CliProcess.Run("generate", "--model", missing, "--prompts", dir.File("p.txt"), "--out", dir.File("o.jsonl"))));
        Assert.Equal(expected, OneLineError(CliProcess.Run("train-lm", "--model", missing, "--data", dir.File("d.jsonl"), "--out", dir.File("run"))));
    }

    [Fact]
    public void A_renamed_key_names_its_new_name()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("t.yaml"), "model: m\ndata: d\noutput_dir: o\nlora_rank: 4\n");
        Assert.Equal($"error: {dir.File("t.yaml")}:4: lora_rank: this key is now 'lora.rank'", OneLineError(CliProcess.Run("train-lm", "--config", dir.File("t.yaml"))));
    }

    [Fact]
    public void Data_lists_the_real_data_sets_with_their_licences()
    {
        var result = CliProcess.Run("data");
        Assert.Equal(0, result.ExitCode);
        foreach (var set in RlaifOnnx.Records.PublicDataSets.All) Assert.Contains(set.Name, result.Stdout);
        Assert.Contains("licence:  MIT", result.Stdout);
        Assert.Contains("CC BY-SA", result.Stdout);
    }

    [Fact]
    public void A_served_model_is_named_after_its_stage_folder()
    {
        Assert.Equal("05_pm", ModelFolder.ServedName("/runs/demo/05_pm/model"));
        Assert.Equal("02_sft", ModelFolder.ServedName("/runs/demo/02_sft/train/model"));
        Assert.Equal("06_ppo", ModelFolder.ServedName("/runs/demo/06_ppo/value_model"));
        Assert.Equal("my-pm", ModelFolder.ServedName("/models/my-pm/"));
    }

    [Fact]
    public void Error_json_escapes_no_more_than_json_needs()
    {
        var json = JsonSerializer.Serialize(new ErrorResponse(new ErrorBody("unknown key \"n\"; it's not <supported>", "invalid_request_error")), OpenAIJson.Options);
        Assert.Contains("unknown key \\\"n\\\"; it's not <supported>", json);
        Assert.DoesNotContain("\\u0022", json);
        Assert.DoesNotContain("\\u0027", json);
    }
}
