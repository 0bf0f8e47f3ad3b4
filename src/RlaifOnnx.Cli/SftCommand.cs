using System.Globalization;
using System.CommandLine;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif sft --config FILE`: SL-CAI fine-tuning on the revisions mixed with helpfulness data.</summary>
public static class SftCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "Stage config YAML (keys: see `rlaif sft --help-config`)" };
        var output = new Option<string?>("--out") { Description = "Output folder (overrides output_dir)" };
        var helpConfig = new Option<bool>("--help-config") { Description = "List the config keys with their meaning" };
        var command = new Command("sft", "Fine-tune the pretrained model on the final revisions mixed with helpfulness data (writes sft_mix.jsonl and train/model)") { config, output, helpConfig };
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (parse.GetValue(helpConfig)) { Console.Write(StageConfig.Describe<Sft.Config>()); return 0; }
            var path = parse.GetValue(config) ?? throw new UserError("--config is required");
            var cfg = StageConfig.Load<Sft.Config>(path);
            if (parse.GetValue(output) is { } dir) cfg = cfg with { OutputDir = dir };
            var summary = await Sft.Run(cfg, Console.Error.WriteLine, cancellationToken, path);
            Console.WriteLine($"examples: {summary.RevisionExamples} revision, {summary.HelpfulnessExamples} helpfulness ({summary.Mix})");
            Console.WriteLine($"final loss: {summary.FinalLoss.ToString("F4", CultureInfo.InvariantCulture)} at step {summary.Steps}");
            Console.WriteLine($"model: {summary.Model}");
            return 0;
        });
        return command;
    }
}
