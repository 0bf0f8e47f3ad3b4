using System.CommandLine;
using RlaifOnnx.Cli;
using RlaifOnnx.Core;

// The `rlaif` command: maps commands to library calls and draws progress; no logic of its own.
// Bad input (UserError, or arguments that do not parse) prints one line and exits 2.
var parse = Commands.Build().Parse(args);
if (parse.Errors.Count > 0)
{
    Console.Error.WriteLine($"error: {ParseErrors.Describe(parse)}");
    return 2;
}
try
{
    return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (UserError e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("cancelled; rerun the same command to resume");
    return 130;
}
