using RlaifOnnx.Models;
using RlaifOnnx.Reporting;

namespace RlaifOnnx.Tests.Cli;

/// <summary>
/// Every real export fixture through the command line: `model import` writes a folder, `model inspect`
/// reports its sizes, GenAI continues a prompt greedily exactly as it does from the original file, and
/// one `train-lm` step runs on it.
/// </summary>
public sealed class ModelImportFixtureTests
{
    public static TheoryData<string, string?, string, int[]> Fixtures => new()
    {
        // fixture, tokenizer folder, "name value" lines inspect must print, prompt ids (< the model's vocabulary)
        { "real-models/ortgenai-tiny-random-LlamaForCausalLM-fp16", null, "layers 2; hidden size 16; heads 1; vocab size 32000; intermediate size 64; parameters 1,032,272", [0, 450, 4996, 17354, 1701] },
        { "real-models/ortgenai-tiny-random-gpt2-fp16-cuda", "genai-models/tiny-random-gpt2-fp32", "layers 5; hidden size 32; heads 4; vocab size 1000; intermediate size 128; parameters 111,968", [3, 141, 592, 65, 358, 979] },
        { "genai-models/tiny-random-gpt2-fp32", null, "layers 5; hidden size 32; heads 4; vocab size 1000; intermediate size 128; parameters 111,968", [3, 141, 592, 65, 358, 979] },
    };

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Imports_inspects_generates_like_the_original_and_trains(string fixture, string? tokenizer, string sizes, int[] prompt)
    {
        var source = SharedData.Require(fixture);
        using var tmp = new TempDir();
        var outDir = tmp.File("imported");
        string[] args = tokenizer is null ? ["model", "import", "--from", source, "--out", outDir]
            : ["model", "import", "--from", source, "--out", outDir, "--tokenizer", SharedData.Require(tokenizer)];
        var imported = CliProcess.Run(args);
        Assert.True(imported.ExitCode == 0, imported.Stderr);

        var inspect = CliProcess.Run("model", "inspect", outDir);
        Assert.True(inspect.ExitCode == 0, inspect.Stderr);
        TestContext.Current.TestOutputHelper?.WriteLine(imported.Stdout + inspect.Stdout);
        // Each "name value" must be an inspect line: the name, spaces, then the value.
        foreach (var item in sizes.Split("; "))
        {
            var cut = item.LastIndexOf(' ');
            Assert.Matches($@"(?m)^{System.Text.RegularExpressions.Regex.Escape(item[..cut])}\s+{System.Text.RegularExpressions.Regex.Escape(item[(cut + 1)..])}\b", inspect.Stdout);
        }

        // The fp16 GPT-2 export asks for CUDA in its genai_config.json: run it on the CPU.
        var original = GenAI.Greedy(source, prompt, prompt.Length + 12, cpuOnly: true);
        var ours = GenAI.Greedy(outDir, prompt, prompt.Length + 12);
        TestContext.Current.TestOutputHelper?.WriteLine($"greedy original: {string.Join(" ", original)}\ngreedy imported: {string.Join(" ", ours)}");
        Assert.Equal(original, ours);
        Assert.True(ours.Length > prompt.Length);

        var data = tmp.File("data.jsonl");
        // Single letters encode below 1,000 in the GPT-2 tokenizer, whose ids go past the tiny model's embedding.
        File.WriteAllText(data, "{\"text\": \"a b c d e\"}\n{\"text\": \"e d c b a\"}\n");
        var run = tmp.File("run");
        var train = CliProcess.Run("train-lm", "--model", outDir, "--data", data, "--out", run, "--steps", "1", "--batch-size", "2",
            "--micro-batch-size", "2", "--max-length", "16", "--save-every", "1");
        Assert.True(train.ExitCode == 0, train.Stderr);
        var metrics = MetricsLog.Read(Path.Combine(run, "metrics.jsonl"));
        Assert.Single(metrics);
        Assert.True(double.IsFinite(metrics[0].Values["loss"]) && metrics[0].Values["loss"] > 0);
    }

    [Fact]
    public void A_tokenizer_larger_than_the_embedding_is_a_warning_and_an_id_past_it_one_line()
    {
        var source = SharedData.Require("genai-models/tiny-random-gpt2-fp32");
        using var tmp = new TempDir();
        var outDir = tmp.File("imported");
        var imported = CliProcess.Run("model", "import", "--from", source, "--out", outDir);
        Assert.True(imported.ExitCode == 0, imported.Stderr);
        Assert.Contains("warning: the tokenizer has 50295 token ids but the model's embedding has 1000 rows", imported.Stderr);
        var inspect = CliProcess.Run("model", "inspect", outDir);
        Assert.Matches(@"(?m)^warning\s+the tokenizer has 50295 token ids but the model's embedding has 1000 rows", inspect.Stdout);

        // " cd" is GPT-2 token 22927.
        var data = tmp.File("data.jsonl");
        File.WriteAllText(data, "{\"text\": \"ab cd\"}\n");
        var train = CliProcess.Run("train-lm", "--model", outDir, "--data", data, "--out", tmp.File("run"), "--steps", "1", "--batch-size", "1",
            "--micro-batch-size", "1", "--max-length", "16");
        Assert.Equal(2, train.ExitCode);
        Assert.Equal("token id 22927 is past this model's vocabulary of 1000", train.Stderr.Trim().Replace("error: ", ""));
        Assert.DoesNotContain("\n", train.Stderr.Trim());

        // Generation stops the same way, before anything is written.
        var prompts = tmp.File("prompts.txt");
        File.WriteAllText(prompts, "ab cd\n");
        var generated = tmp.File("generated.jsonl");
        var generate = CliProcess.Run("generate", "--model", outDir, "--prompts", prompts, "--out", generated, "--max-new-tokens", "4", "--temperature", "0");
        Assert.Equal(2, generate.ExitCode);
        Assert.Equal("token id 22927 is past this model's vocabulary of 1000", generate.Stderr.Trim().Replace("error: ", ""));
        Assert.True(!File.Exists(generated) || File.ReadAllText(generated).Length == 0);
    }
}
