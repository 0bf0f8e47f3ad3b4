using System.CommandLine;

namespace RlaifOnnx.Cli;

/// <summary>The command tree. Each command file adds itself here.</summary>
public static class Commands
{
    public static RootCommand Build()
    {
        var root = new RootCommand("rlaif: Constitutional AI (RLAIF) training with ONNX models and ONNX Runtime.");
        root.Subcommands.Add(ModelCommands.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        foreach (var command in ConstitutionCommand.DataStageCommands()) root.Subcommands.Add(command);
        root.Subcommands.Add(TrainLmCommand.Build());
        root.Subcommands.Add(PmpDataCommand.Create());
        root.Subcommands.Add(PmCommand.Create());
        root.Subcommands.Add(PpoCommand.Create());
        root.Subcommands.Add(SftCommand.Create());
        root.Subcommands.Add(EvaluateCommand.Create());
        root.Subcommands.Add(RunCommand.Create());
        return root;
    }
}
