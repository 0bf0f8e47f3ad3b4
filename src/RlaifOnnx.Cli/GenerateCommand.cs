using System.CommandLine;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif generate`: answers a prompts file with a local model folder or an OpenAI-compatible server.</summary>
public static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "A model folder, or the URL of an OpenAI-compatible server (http://host:port[/v1])", Required = true };
        var prompts = new Option<string>("--prompts") { Description = "JSONL with \"prompt\" or \"messages\" per line, or .txt with one prompt per line", Required = true };
        var output = new Option<string>("--out") { Description = "Output JSONL: one {\"prompt\"|\"messages\", \"completion\"} line per prompt, in input order", Required = true };
        var maxNewTokens = new Option<int>("--max-new-tokens") { Description = "Most tokens to generate per prompt", DefaultValueFactory = _ => 128 };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature; 0 is greedy", DefaultValueFactory = _ => 1.0 };
        var topP = new Option<double>("--top-p") { Description = "Nucleus sampling mass; 1 is off", DefaultValueFactory = _ => 1.0 };
        var topK = new Option<int>("--top-k") { Description = "Sample among the k most likely tokens; 0 is off", DefaultValueFactory = _ => 0 };
        var seed = new Option<int>("--seed") { Description = "Random seed (same seed, same batch: same output)", DefaultValueFactory = _ => 0 };
        var batchSize = new Option<int>("--batch-size") { Description = "Prompts per generation batch (local models) or requests in flight (servers)", DefaultValueFactory = _ => 8 };
        var chat = new Option<bool>("--chat") { Description = "Apply the chat template to plain \"prompt\" lines too (as one user turn)" };
        var provider = new Option<string>("--execution-provider") { Description = "cpu or cuda (local models; cuda needs the CUDA build)", DefaultValueFactory = _ => "cpu" };
        var modelName = new Option<string?>("--model-name") { Description = "Model name sent to a server (default: the first of its /v1/models)" };
        var apiKeyEnv = new Option<string>("--api-key-env") { Description = "Environment variable holding the server's API key", DefaultValueFactory = _ => "OPENAI_API_KEY" };
        var httpTimeout = new Option<double?>("--http-timeout-seconds") { Description = "For a server: seconds one HTTP attempt may take before it is retried (default: $RLAIF_HTTP_TIMEOUT, else 60)" };
        var httpDeadline = new Option<double?>("--http-deadline-seconds") { Description = "For a server: seconds one request may take in all, retries included (default: $RLAIF_HTTP_DEADLINE, else 300)" };

        var command = new Command("generate", "Generate a completion for every prompt of a file")
        {
            model, prompts, output, maxNewTokens, temperature, topP, topK, seed, batchSize, chat, provider, modelName, apiKeyEnv, httpTimeout, httpDeadline,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var sampling = new SamplingOptions
            {
                MaxNewTokens = parse.GetValue(maxNewTokens),
                Temperature = parse.GetValue(temperature),
                TopP = parse.GetValue(topP),
                TopK = parse.GetValue(topK),
                Seed = parse.GetValue(seed),
            };
            foreach (var problem in HttpLimits.Problems(parse.GetValue(httpTimeout), parse.GetValue(httpDeadline)))
                throw new UserError($"--{problem.Key.Replace('_', '-')}: {problem.Problem}");
            // Read and check every prompt before loading anything: a bad line fails fast and writes nothing.
            var entries = PromptGeneration.Read(parse.GetValue(prompts)!);
            var target = parse.GetValue(model)!;
            using ITextGenerator generator = target.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || target.StartsWith("https://", StringComparison.OrdinalIgnoreCase)
                ? new OpenAIBackend(new OpenAIOptions
                {
                    BaseUrl = new Uri(target), Model = parse.GetValue(modelName), ApiKeyEnvironmentVariable = parse.GetValue(apiKeyEnv)!,
                    MaxConcurrency = parse.GetValue(batchSize),
                }.WithLimits(parse.GetValue(httpTimeout), parse.GetValue(httpDeadline)))
                : new GenAIGenerator(target, new InferenceOptions { BatchSize = parse.GetValue(batchSize), ExecutionProvider = parse.GetValue(provider)! });
            var outPath = parse.GetValue(output)!;
            var count = await PromptGeneration.RunAsync(generator, entries, outPath, sampling, parse.GetValue(chat), cancellationToken);
            Console.Error.WriteLine($"wrote {count} completion{(count == 1 ? "" : "s")} to {outPath}");
            return 0;
        });
        return command;
    }
}
