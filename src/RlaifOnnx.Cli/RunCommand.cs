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
        var set = new Option<string[]>("--set") { Description = "KEY=VALUE for every stage whose config has KEY, e.g. --set steps=2 --set optimizer.learning_rate=1e-3 (repeatable)", AllowMultipleArgumentsPerToken = false };
        var command = new Command("run", "Run the pipeline's stages in order (every stage config and input is checked first; rerunning resumes each stage)") { config, helpConfig, set };
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
            var settings = (parse.GetValue(set) ?? []).Select(ParseSetting).ToList();
            var ran = await Pipeline.Run(path, Console.WriteLine, cancellationToken, settings);
            Console.WriteLine($"== done: {ran.Count} stage{(ran.Count == 1 ? "" : "s")} ({string.Join(", ", ran)})");
            return 0;
        });
        return command;
    }

    static (string Key, string Value) ParseSetting(string text)
    {
        var at = text.IndexOf('=');
        if (at <= 0) throw new UserError($"--set {text}: expected KEY=VALUE, e.g. --set steps=2");
        return (text[..at].Trim(), text[(at + 1)..]);
    }
}
