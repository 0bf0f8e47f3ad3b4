using System.CommandLine;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif ppo --config FILE`: stage 06, PPO of the SL-CAI policy against the preference model.</summary>
public static class PpoCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "Stage config YAML (keys: see `rlaif ppo --help-config`)" };
        var output = new Option<string?>("--out") { Description = "Output folder (overrides output_dir)" };
        var helpConfig = new Option<bool>("--help-config") { Description = "List the config keys with their meaning" };
        var command = new Command("ppo", "PPO of a policy against a preference model (KL penalty to a reference, value model from the PM); writes model/, value_model/, metrics.jsonl and checkpoints/") { config, output, helpConfig };
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (parse.GetValue(helpConfig)) { Console.Write(StageConfig.Describe<TrainPolicy.Config>()); return 0; }
            var path = parse.GetValue(config) ?? throw new UserError("--config is required");
            var cfg = StageConfig.Load<TrainPolicy.Config>(path);
            if (parse.GetValue(output) is { } dir) cfg = cfg with { OutputDir = dir };
            var summary = await TrainPolicy.Run(cfg, Console.Error.WriteLine, cancellationToken, path);
            if (summary.LastMetrics.TryGetValue("score", out var score))
                Console.Error.WriteLine($"last iteration: score {score:F4}, kl {summary.LastMetrics["kl"]:F4}, β {summary.LastMetrics["beta"]:G4}");
            Console.Error.WriteLine($"wrote {summary.Model} and {summary.ValueModel}");
            return 0;
        });
        return command;
    }
}
