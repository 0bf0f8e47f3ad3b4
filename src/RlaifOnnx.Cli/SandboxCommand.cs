using System.CommandLine;
using RlaifOnnx.Sandbox;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif sandbox`: the generated world with exact ground truth that the demo runs the pipeline in.</summary>
public static class SandboxCommand
{
    public static Command Create()
    {
        var sandbox = new Command("sandbox", "The sandbox world: generated requests with exact truth, its pretraining corpus and checker");
        sandbox.Subcommands.Add(World());
        return sandbox;
    }

    static Command World()
    {
        var output = new Option<string>("--out") { Description = "Folder for the prompt sets, evaluation sets and checks.jsonl.", Required = true };
        var corpus = new Option<string?>("--corpus") { Description = "Also write the base model's pretraining corpus (JSONL) to this file." };
        var seed = new Option<int>("--seed") { Description = "Seed of the world, the draws and the corpus.", DefaultValueFactory = _ => 7 };
        var command = new Command("world", "Write the sandbox world's prompt sets, held-out evaluation sets, checks and (optionally) pretraining corpus") { output, corpus, seed };
        command.SetAction(parse =>
        {
            var world = Sandbox.World.Create(parse.GetValue(seed));
            var dir = parse.GetValue(output)!;
            var files = SandboxFiles.Write(world, dir, new SandboxFiles.Sizes());
            Console.WriteLine($"wrote {dir}: {string.Join(", ", files)}");
            if (parse.GetValue(corpus) is { } corpusPath)
            {
                var lines = SandboxFiles.WriteCorpus(world, corpusPath, new PretrainingCorpus.Sizes(), parse.GetValue(seed));
                Console.WriteLine($"wrote {corpusPath}: {lines} lines");
            }
            return 0;
        });
        return command;
    }
}
