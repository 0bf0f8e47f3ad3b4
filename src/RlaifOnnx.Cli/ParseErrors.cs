using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.RegularExpressions;
using RlaifOnnx.Configuration;

namespace RlaifOnnx.Cli;

/// <summary>
/// The command line's parse errors in the user's words: an unknown command or option with the nearest
/// valid name, a value of the wrong type named as the user typed it. One line, like every other error.
/// </summary>
public static partial class ParseErrors
{
    public static string Describe(ParseResult parse)
    {
        var command = parse.CommandResult.Command;
        var path = CommandPath(parse.CommandResult);
        foreach (var error in parse.Errors)
            if (Unrecognized().Match(error.Message) is { Success: true } m)
            {
                var token = m.Groups[1].Value;
                if (token.StartsWith('-'))
                {
                    var names = command.Options.SelectMany(o => o.Aliases.Prepend(o.Name)).Where(n => n.StartsWith("--", StringComparison.Ordinal)).Distinct().ToList();
                    return StageConfig.Nearest(token, names) is { } near
                        ? $"`{path}` has no option {token}; did you mean {near}? (see `{path} --help`)"
                        : $"`{path}` has no option {token} (see `{path} --help`)";
                }
                var commands = command.Subcommands.Select(c => c.Name).ToList();
                if (commands.Count == 0) return $"`{path}` takes no argument '{token}' (see `{path} --help`)";
                return StageConfig.Nearest(token, commands) is { } nearest
                    ? $"unknown command '{token}'; did you mean `{path} {nearest}`? (see `{path} --help`)"
                    : $"unknown command '{token}'; commands: {string.Join(", ", commands)} (see `{path} --help`)";
            }
        var first = parse.Errors[0].Message;
        if (CannotParse().Match(first) is { Success: true } c)
            return $"{c.Groups[2].Value}: '{c.Groups[1].Value}' is not {TypeWords(c.Groups[3].Value)}";
        if (first.StartsWith("Required command was not provided", StringComparison.Ordinal))
            return $"`{path}` needs a command: {string.Join(", ", command.Subcommands.Select(s => s.Name))} (see `{path} --help`)";
        return $"{first.TrimEnd('.')} (see `{path} --help`)";
    }

    static string CommandPath(CommandResult result)
    {
        var names = new List<string>();
        for (SymbolResult? r = result; r is CommandResult cr; r = cr.Parent) names.Add(cr.Command.Name);
        names.Reverse();
        names[0] = "rlaif";
        return string.Join(' ', names);
    }

    static string TypeWords(string type) => type switch
    {
        "System.Int32" or "System.Int64" => "a whole number",
        "System.Double" or "System.Single" or "System.Decimal" => "a number",
        "System.Boolean" => "true or false",
        _ => $"a {type.Split('.')[^1].ToLowerInvariant()}",
    };

    [GeneratedRegex(@"^Unrecognized command or argument '(.*)'")]
    private static partial Regex Unrecognized();

    [GeneratedRegex(@"^Cannot parse argument '(.*)' for option '(.*)' as expected type '(.*)'")]
    private static partial Regex CannotParse();
}
