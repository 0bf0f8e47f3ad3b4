using System.CommandLine;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif pm --config FILE`: one preference-model training phase (pretraining on Stack Exchange, or fine-tuning on the comparison mix).</summary>
public static class PmCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "Stage config YAML (keys: see `rlaif pm --help-config`)" };
        var output = new Option<string?>("--out") { Description = "Output folder (overrides output_dir)" };
        var model = new Option<string?>("--model") { Description = "Model folder to start from (overrides model)" };
        var helpConfig = new Option<bool>("--help-config") { Description = "List the config keys with their meaning" };
        var command = new Command("pm", "Train a preference model (language model + scalar head) on comparisons; writes model/, metrics.jsonl, checkpoints/ and eval.json") { config, output, model, helpConfig };
        command.SetAction((parse, cancellationToken) =>
        {
            if (parse.GetValue(helpConfig)) { Console.Write(StageConfig.Describe<TrainPreferenceModel.Config>()); return Task.FromResult(0); }
            var path = parse.GetValue(config) ?? throw new UserError("--config is required");
            var cfg = StageConfig.Load<TrainPreferenceModel.Config>(path);
            if (parse.GetValue(output) is { } dir) cfg = cfg with { OutputDir = dir };
            if (parse.GetValue(model) is { } start) cfg = cfg with { Model = start };
            var written = TrainPreferenceModel.Run(cfg, Console.Error.WriteLine, cancellationToken, path);
            Console.Error.WriteLine($"wrote {written}");
            return Task.FromResult(0);
        });
        return command;
    }
}
