using System.CommandLine;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif pmp-data --config FILE`: preference-model pretraining comparisons from Stack Exchange dumps.</summary>
public static class PmpDataCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "Config YAML (keys: see `rlaif pmp-data --help-config`)" };
        var output = new Option<string?>("--out") { Description = "Output folder (overrides output_dir)" };
        var helpConfig = new Option<bool>("--help-config") { Description = "List the config keys with their meaning" };
        var command = new Command("pmp-data", "Preference-model pretraining pairs from Stack Exchange Posts.xml dumps (writes pmp_train.jsonl, pmp_eval.jsonl, stats.json)") { config, output, helpConfig };
        command.SetAction((parse, cancellationToken) =>
        {
            if (parse.GetValue(helpConfig)) { Console.Write(StageConfig.Describe<StackExchange.Config>()); return Task.FromResult(0); }
            var path = parse.GetValue(config) ?? throw new UserError("--config is required");
            var cfg = StageConfig.Load<StackExchange.Config>(path);
            if (parse.GetValue(output) is { } dir) cfg = cfg with { OutputDir = dir };
            var stats = StackExchange.Run(cfg, cancellationToken, path);
            Console.Error.WriteLine($"wrote {Path.Combine(cfg.OutputDir, StackExchange.TrainFile)}, {StackExchange.EvalFile}, {StackExchange.StatsFile}");
            Console.Write(StackExchange.Describe(stats));
            return Task.FromResult(0);
        });
        return command;
    }
}
