using System.CommandLine;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Serving;

namespace RlaifOnnx.Cli;

/// <summary>
/// `rlaif serve`: a language model folder behind an OpenAI-compatible API (127.0.0.1 unless --host), or a preference
/// model folder (rlaif.json role "preference") behind the reward API (<see cref="RewardServer"/>).
/// </summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "The model folder to serve: a language model, or a preference model (served with the reward API)", Required = true };
        var host = new Option<string>("--host") { Description = "The address to listen on: 127.0.0.1 (this machine only), 0.0.0.0 or :: (every interface; needs --api-key-env or --allow-unauthenticated)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port to listen on; 0 takes any free port", DefaultValueFactory = _ => 8000 };
        var apiKeyEnv = new Option<string?>("--api-key-env") { Description = "An environment variable holding the API key: /v1 requests without \"Authorization: Bearer KEY\" get 401" };
        var allowUnauthenticated = new Option<bool>("--allow-unauthenticated") { Description = "Serve beyond this machine (--host 0.0.0.0) without an API key" };
        var maxConcurrent = new Option<int>("--max-concurrent-requests") { Description = "Requests worked on at once", DefaultValueFactory = _ => new ServingOptions().MaxConcurrentRequests };
        var maxQueued = new Option<int>("--max-queued-requests") { Description = "Requests that may wait for a slot; more get 429 with Retry-After", DefaultValueFactory = _ => new ServingOptions().MaxQueuedRequests };
        var maxBatchTokens = new Option<int>("--max-batch-tokens") { Description = "The most tokens one request may need (prompts plus max_tokens); more get 400", DefaultValueFactory = _ => new ServingOptions().MaxBatchTokens };
        var maxBody = new Option<long>("--max-request-bytes") { Description = "The largest request body; bigger ones get 413", DefaultValueFactory = _ => new ServingOptions().MaxRequestBodyBytes };
        var batchSize = new Option<int>("--batch-size") { Description = "Sequences per generation, scoring or reward batch", DefaultValueFactory = _ => 8 };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads for scoring; 0 lets it choose", DefaultValueFactory = _ => 0 };
        var provider = new Option<string>("--execution-provider") { Description = "cpu or cuda (cuda needs the CUDA build)", DefaultValueFactory = _ => "cpu" };
        var modelName = new Option<string?>("--model-name") { Description = "The name /v1/models reports (default: the folder's name, or the stage folder above a stage's model/, e.g. 05_pm)" };

        var command = new Command("serve", "Serve a model folder (on 127.0.0.1 unless --host says otherwise): a language model with an OpenAI-compatible API (/v1/models, /v1/completions, /v1/chat/completions); a preference model with a reward API (/v1/models, /v1/rewards); both with /health and /metrics")
        {
            model, host, port, apiKeyEnv, allowUnauthenticated, batchSize, threads, provider, modelName, maxConcurrent, maxQueued, maxBatchTokens, maxBody,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (parse.GetValue(batchSize) <= 0) throw UserError.At("serve", null, "--batch-size", $"must be positive, got {parse.GetValue(batchSize)}");
            if (parse.GetValue(threads) < 0) throw UserError.At("serve", null, "--threads", $"must be 0 (let ONNX Runtime choose) or positive, got {parse.GetValue(threads)}");
            string? key = null;
            if (parse.GetValue(apiKeyEnv) is { } variable)
            {
                key = Environment.GetEnvironmentVariable(variable);
                if (string.IsNullOrEmpty(key)) throw UserError.At("serve", null, "--api-key-env", $"${variable} is not set or empty");
            }
            var serving = new ServingOptions
            {
                Host = parse.GetValue(host)!,
                ApiKey = key,
                AllowUnauthenticated = parse.GetValue(allowUnauthenticated),
                MaxConcurrentRequests = parse.GetValue(maxConcurrent),
                MaxQueuedRequests = parse.GetValue(maxQueued),
                MaxBatchTokens = parse.GetValue(maxBatchTokens),
                MaxRequestBodyBytes = parse.GetValue(maxBody),
            };
            // Everything about the address and limits is checked before a model loads.
            HttpHost.Check(parse.GetValue(port), serving);
            var options = new InferenceOptions
            {
                BatchSize = parse.GetValue(batchSize),
                IntraOpThreads = parse.GetValue(threads),
                ExecutionProvider = parse.GetValue(provider)!,
            };
            var dir = parse.GetValue(model)!;
            // A preference model has no logits to generate with: it gets the reward API instead.
            if (PreferenceModelFolder.IsPreferenceModel(dir))
            {
                await using var rewards = await RewardServer.StartAsync(dir, parse.GetValue(port), options, parse.GetValue(modelName), serving, cancellationToken);
                await ListenAsync(rewards.BaseUrl, "reward model: POST /v1/rewards, GET /health, GET /metrics", rewards.WaitAsync, cancellationToken);
            }
            else
            {
                await using var server = await OpenAIServer.StartAsync(dir, parse.GetValue(port), options, parse.GetValue(modelName), serving, cancellationToken);
                await ListenAsync(server.BaseUrl, "language model: /v1/completions, /v1/chat/completions, GET /health, GET /metrics", server.WaitAsync, cancellationToken);
            }
            return 0;
        });
        return command;
    }

    static async Task ListenAsync(Uri baseUrl, string what, Func<CancellationToken, Task> wait, CancellationToken cancellationToken)
    {
        // The first line on stdout is the address, so scripts can read the port when they asked for 0.
        Console.WriteLine($"listening on {baseUrl}v1");
        Console.Error.WriteLine($"{what}; press Ctrl+C to stop");
        await wait(cancellationToken);
    }
}
