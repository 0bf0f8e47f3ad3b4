using System.CommandLine;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif evaluate --config FILE`: policies answer held-out prompt sets; PM rewards, AI judgments, win rates and Elo scores.</summary>
public static class EvaluateCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "Stage config YAML (keys: see `rlaif evaluate --help-config`)" };
        var output = new Option<string?>("--out") { Description = "Output folder (overrides output_dir)" };
        var helpConfig = new Option<bool>("--help-config") { Description = "List the config keys with their meaning" };
        var command = new Command("evaluate", "Compare policies on prompt sets: generations.jsonl, PM rewards, feedback-model judgments, win rates and Elo scores (report.json, report.md)") { config, output, helpConfig };
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (parse.GetValue(helpConfig)) { Console.Write(StageConfig.Describe<Evaluate.Config>()); return 0; }
            var path = parse.GetValue(config) ?? throw new UserError("--config is required");
            var cfg = StageConfig.Load<Evaluate.Config>(path);
            if (parse.GetValue(output) is { } dir) cfg = cfg with { OutputDir = dir };
            var report = await Evaluate.Run(cfg, Console.Error.WriteLine, cancellationToken, path);
            Console.Error.WriteLine($"wrote {Path.Combine(cfg.OutputDir, Evaluate.ReportFile)} and {Evaluate.ReportMarkdownFile}");
            Console.Write(Evaluate.Describe(report));
            return 0;
        });
        return command;
    }
}
