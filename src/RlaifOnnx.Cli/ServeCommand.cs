using System.CommandLine;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Serving;

namespace RlaifOnnx.Cli;

/// <summary>
/// `rlaif serve`: a language model folder behind an OpenAI-compatible API on 127.0.0.1, or a preference
/// model folder (rlaif.json role "preference") behind the reward API (<see cref="RewardServer"/>).
/// </summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "The model folder to serve: a language model, or a preference model (served with the reward API)", Required = true };
        var port = new Option<int>("--port") { Description = "Port on 127.0.0.1; 0 takes any free port", DefaultValueFactory = _ => 8000 };
        var batchSize = new Option<int>("--batch-size") { Description = "Sequences per generation, scoring or reward batch", DefaultValueFactory = _ => 8 };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads for scoring; 0 lets it choose", DefaultValueFactory = _ => 0 };
        var provider = new Option<string>("--execution-provider") { Description = "cpu or cuda (cuda needs the CUDA build)", DefaultValueFactory = _ => "cpu" };
        var modelName = new Option<string?>("--model-name") { Description = "The name /v1/models reports (default: the folder's name, or the stage folder above a stage's model/, e.g. 05_pm)" };

        var command = new Command("serve", "Serve a model folder on 127.0.0.1: a language model with an OpenAI-compatible API (/v1/models, /v1/completions, /v1/chat/completions); a preference model with a reward API (/v1/models, /v1/rewards, /health)")
        {
            model, port, batchSize, threads, provider, modelName,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
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
                await using var rewards = await RewardServer.StartAsync(dir, parse.GetValue(port), options, parse.GetValue(modelName), cancellationToken);
                await ListenAsync(rewards.BaseUrl, "reward model: POST /v1/rewards", rewards.WaitAsync, cancellationToken);
            }
            else
            {
                await using var server = await OpenAIServer.StartAsync(dir, parse.GetValue(port), options, parse.GetValue(modelName), cancellationToken);
                await ListenAsync(server.BaseUrl, "language model: /v1/completions, /v1/chat/completions", server.WaitAsync, cancellationToken);
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
