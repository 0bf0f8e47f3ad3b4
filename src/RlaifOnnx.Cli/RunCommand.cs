using System.CommandLine;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif run --config PIPELINE.yaml`: the pipeline's stages in order, each from its own stage config.</summary>
public static class RunCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "Pipeline YAML: stages [{name, stage, config}], optional only or from (keys: see `rlaif run --help-config`)" };
        var helpConfig = new Option<bool>("--help-config") { Description = "List the pipeline keys and the stage kinds" };
        var command = new Command("run", "Run the pipeline's stages in order (every stage config is checked first; rerunning resumes each stage)") { config, helpConfig };
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (parse.GetValue(helpConfig))
            {
                Console.Write(StageConfig.Describe<Pipeline.Config>());
                Console.WriteLine("\n# Each entry of stages:");
                Console.Write(StageConfig.Describe<Pipeline.StageEntry>());
                Console.WriteLine($"\n# Stage kinds: {string.Join(", ", Pipeline.Kinds.Select(k => k.Name))}");
                return 0;
            }
            var path = parse.GetValue(config) ?? throw new UserError("--config is required");
            var ran = await Pipeline.Run(path, Console.WriteLine, cancellationToken);
            Console.WriteLine($"== done: {ran.Count} stage{(ran.Count == 1 ? "" : "s")} ({string.Join(", ", ran)})");
            return 0;
        });
        return command;
    }
}
