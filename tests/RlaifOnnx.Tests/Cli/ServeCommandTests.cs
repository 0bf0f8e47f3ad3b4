using System.Diagnostics;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;

namespace RlaifOnnx.Tests.Cli;

/// <summary>`rlaif serve` as a process on any free port, answered by `rlaif generate --model URL`.</summary>
public class ServeCommandTests
{
    [Fact]
    public async Task Generate_through_a_served_model_equals_local_generation()
    {
        using var model = new LlamaFolder();
        using var dir = new TempDir();
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "rlaif.dll"), "serve", "--model", model.Dir, "--port", "0" }) start.ArgumentList.Add(a);
        using var serve = Process.Start(start)!;
        try
        {
            var first = await serve.StandardOutput.ReadLineAsync(TestContext.Current.CancellationToken);
            Assert.NotNull(first);
            Assert.StartsWith("listening on http://127.0.0.1:", first);
            var url = first["listening on ".Length..];

            var prompts = dir.File("prompts.jsonl");
            File.WriteAllText(prompts, "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi!\"}]}\n{\"prompt\": \"Tea is\"}\n");
            var output = dir.File("out.jsonl");
            var (code, _, stderr) = await CliProcess.RunAsync("generate", "--model", url, "--prompts", prompts, "--out", output, "--temperature", "0", "--max-new-tokens", "6");
            Assert.True(code == 0, stderr);

            using var generator = new GenAIGenerator(model.Dir);
            var greedy = new SamplingOptions { Temperature = 0, MaxNewTokens = 6 };
            var chat = await generator.ChatAsync([[new ChatMessage("user", "Hi!")]], greedy, TestContext.Current.CancellationToken);
            var raw = await generator.CompleteAsync(["Tea is"], greedy, TestContext.Current.CancellationToken);
            var lines = File.ReadAllLines(output).Select(l => System.Text.Json.Nodes.JsonNode.Parse(l)!["completion"]!.GetValue<string>()).ToList();
            Assert.Equal([chat[0], raw[0]], lines);
        }
        finally
        {
            serve.Kill();
            await serve.WaitForExitAsync(TestContext.Current.CancellationToken);
        }
    }
}
