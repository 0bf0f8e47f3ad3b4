using System.CommandLine;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif revise --config FILE`: the critique → revision stage.</summary>
public static class ReviseCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "Stage config YAML (keys: see `rlaif revise --help-config`)" };
        var output = new Option<string?>("--out") { Description = "Output folder (overrides output_dir)" };
        var helpConfig = new Option<bool>("--help-config") { Description = "List the config keys with their meaning" };
        var command = new Command("revise", "Answer prompts, then critique and revise the answers against the constitution (writes revisions.jsonl and SFT exports)") { config, output, helpConfig };
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (parse.GetValue(helpConfig)) { Console.Write(StageConfig.Describe<Revise.Config>()); return 0; }
            var path = parse.GetValue(config) ?? throw new UserError("--config is required");
            var cfg = StageConfig.Load<Revise.Config>(path);
            if (parse.GetValue(output) is { } dir) cfg = cfg with { OutputDir = dir };
            var written = await Revise.Run(cfg, cancellationToken, path);
            Console.Error.WriteLine($"wrote {written} and the SFT exports beside it");
            return 0;
        });
        return command;
    }
}
