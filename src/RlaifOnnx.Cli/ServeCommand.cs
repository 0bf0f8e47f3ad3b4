using System.CommandLine;
using RlaifOnnx.Inference;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif serve`: a model folder behind an OpenAI-compatible API on 127.0.0.1.</summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "The model folder to serve", Required = true };
        var port = new Option<int>("--port") { Description = "Port on 127.0.0.1; 0 takes any free port", DefaultValueFactory = _ => 8000 };
        var batchSize = new Option<int>("--batch-size") { Description = "Sequences per generation or scoring batch", DefaultValueFactory = _ => 8 };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads for scoring; 0 lets it choose", DefaultValueFactory = _ => 0 };
        var provider = new Option<string>("--execution-provider") { Description = "cpu or cuda (cuda needs the CUDA build)", DefaultValueFactory = _ => "cpu" };
        var modelName = new Option<string?>("--model-name") { Description = "The name /v1/models reports (default: the folder's name)" };

        var command = new Command("serve", "Serve a model folder with an OpenAI-compatible API (/v1/models, /v1/completions, /v1/chat/completions)")
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
            await using var server = await OpenAIServer.StartAsync(parse.GetValue(model)!, parse.GetValue(port), options, parse.GetValue(modelName), cancellationToken);
            // The first line on stdout is the address, so scripts can read the port when they asked for 0.
            Console.WriteLine($"listening on {server.BaseUrl}v1");
            Console.Error.WriteLine("press Ctrl+C to stop");
            await server.WaitAsync(cancellationToken);
            return 0;
        });
        return command;
    }
}
