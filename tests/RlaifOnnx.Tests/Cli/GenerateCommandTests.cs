using System.Text.Json.Nodes;
using RlaifOnnx.Inference;

namespace RlaifOnnx.Tests.Cli;

/// <summary>`rlaif generate` end to end, as a process, on a copy of the shared GPT-2 export given a chat template.</summary>
public class GenerateCommandTests
{
    [Fact]
    public async Task Writes_one_line_per_prompt_in_input_order_equal_to_the_library()
    {
        using var dir = new TempDir();
        var model = Directory.CreateDirectory(dir.File("model")).FullName;
        TestModels.Gpt2WithTemplate(model);
        var prompts = dir.File("prompts.jsonl");
        File.WriteAllText(prompts, string.Join('\n',
            "{\"prompt\": \"he is in the\"}",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"he\"}, {\"role\": \"assistant\", \"content\": \"is\"}, {\"role\": \"user\", \"content\": \"in\"}]}",
            "{\"prompt\": \"x\"}") + "\n");
        var output = dir.File("out/completions.jsonl");

        var (code, _, stderr) = await CliProcess.RunAsync("generate", "--model", model, "--prompts", prompts, "--out", output,
            "--temperature", "0", "--max-new-tokens", "5", "--batch-size", "2");
        Assert.True(code == 0, stderr);

        var lines = File.ReadAllLines(output).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(3, lines.Count);
        Assert.Equal("he is in the", (string?)lines[0]["prompt"]);
        Assert.Equal("in", (string?)lines[1]["messages"]![2]!["content"]);
        Assert.Equal("x", (string?)lines[2]["prompt"]);

        using var generator = new GenAIGenerator(model);
        var greedy = new SamplingOptions { Temperature = 0, MaxNewTokens = 5 };
        var raw = await generator.CompleteAsync(["he is in the", "x"], greedy, TestContext.Current.CancellationToken);
        var chat = await generator.ChatAsync([[new("user", "he"), new("assistant", "is"), new("user", "in")]], greedy, TestContext.Current.CancellationToken);
        Assert.Equal("he is in", generator.RenderChat([new("user", "he"), new("assistant", "is"), new("user", "in")]));
        Assert.Equal([raw[0], chat[0], raw[1]], lines.Select(l => (string)l["completion"]!));
    }

    [Fact]
    public async Task A_bad_prompt_line_exits_2_with_file_and_line_and_writes_nothing()
    {
        using var dir = new TempDir();
        var prompts = dir.File("prompts.jsonl");
        File.WriteAllText(prompts, "{\"prompt\": \"fine\"}\n{\"messages\": [{\"role\": \"user\", \"content\": 3}]}\n");
        var output = dir.File("out.jsonl");
        // The prompts are checked before the model is opened, so the model folder need not exist.
        var (code, stdout, stderr) = await CliProcess.RunAsync("generate", "--model", dir.File("no-model"), "--prompts", prompts, "--out", output);
        Assert.Equal(2, code);
        Assert.Equal($"error: {prompts}:2: messages[0].content: must be a string", stderr.Trim());
        Assert.False(File.Exists(output));
        Assert.Equal([prompts], Directory.GetFiles(dir.Path));
    }

    [Fact]
    public async Task A_missing_model_folder_exits_2()
    {
        using var dir = new TempDir();
        var prompts = dir.File("prompts.txt");
        File.WriteAllText(prompts, "hello\n");
        var (code, _, stderr) = await CliProcess.RunAsync("generate", "--model", dir.File("no-model"), "--prompts", prompts, "--out", dir.File("o.jsonl"));
        Assert.Equal(2, code);
        Assert.Contains($"{dir.File("no-model")}: no such folder", stderr);
        Assert.False(File.Exists(dir.File("o.jsonl")));
    }
}
