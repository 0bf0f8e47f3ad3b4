using System.CommandLine;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif label --config FILE`: AI feedback labels; `rlaif mix --config FILE`: the preference-model training mix.</summary>
public static class LabelCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "Stage config YAML (keys: see `rlaif label --help-config`)" };
        var output = new Option<string?>("--out") { Description = "Output folder (overrides output_dir)" };
        var helpConfig = new Option<bool>("--help-config") { Description = "List the config keys with their meaning" };
        var command = new Command("label", "Label pairs of answers with the feedback model's multiple-choice probabilities (writes comparisons.jsonl, preferences.jsonl, metrics.json)") { config, output, helpConfig };
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (parse.GetValue(helpConfig)) { Console.Write(StageConfig.Describe<Label.Config>()); return 0; }
            var path = parse.GetValue(config) ?? throw new UserError("--config is required");
            var cfg = StageConfig.Load<Label.Config>(path);
            if (parse.GetValue(output) is { } dir) cfg = cfg with { OutputDir = dir };
            var written = await Label.Run(cfg, cancellationToken, path);
            Console.Error.WriteLine($"wrote {written}");
            Console.Write(Label.Describe(Label.ReadMetrics(cfg.OutputDir)));
            return 0;
        });
        return command;
    }

    public static Command CreateMix()
    {
        var config = new Option<string>("--config") { Description = "Mix config YAML (ai_comparisons, human_comparisons, ai_fraction, size, seed, output_dir)", Required = true };
        var command = new Command("mix", "Build the preference-model training set from AI and human comparisons in set proportions") { config };
        command.SetAction(parse =>
        {
            var path = parse.GetValue(config)!;
            var written = PreferenceMix.Run(StageConfig.Load<PreferenceMix.Config>(path), path);
            Console.Error.WriteLine($"wrote {written}");
            return 0;
        });
        return command;
    }
}
