using System.CommandLine;

namespace RlaifOnnx.Cli;

/// <summary>The command tree: model, generate, serve, constitution, one command per stage kind, run.</summary>
public static class Commands
{
    /// <summary>The flag that adds a stack trace to an internal error's one line.</summary>
    public const string Verbose = "--verbose";

    public static RootCommand Build()
    {
        var root = new RootCommand("rlaif: Constitutional AI (RLAIF) training with ONNX models and ONNX Runtime.");
        // Read by Program before anything runs; declared here so every command accepts it.
        root.Options.Add(new Option<bool>(Verbose) { Description = "On an internal error, print the stack trace too", Recursive = true });
        root.Subcommands.Add(ModelCommands.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(ConstitutionCommand.Create());
        root.Subcommands.Add(DataCommand.Create());
        root.Subcommands.Add(SandboxCommand.Create());
        foreach (var command in StageCommands.Create()) root.Subcommands.Add(command);
        root.Subcommands.Add(RunCommand.Create());
        return root;
    }
}
