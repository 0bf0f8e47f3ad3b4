using System.CommandLine;

namespace RlaifOnnx.Cli;

/// <summary>The command tree: model, generate, serve, constitution, one command per stage kind, run.</summary>
public static class Commands
{
    public static RootCommand Build()
    {
        var root = new RootCommand("rlaif: Constitutional AI (RLAIF) training with ONNX models and ONNX Runtime.");
        root.Subcommands.Add(ModelCommands.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(ConstitutionCommand.Create());
        root.Subcommands.Add(DataCommand.Create());
        foreach (var command in StageCommands.Create()) root.Subcommands.Add(command);
        root.Subcommands.Add(RunCommand.Create());
        return root;
    }
}
