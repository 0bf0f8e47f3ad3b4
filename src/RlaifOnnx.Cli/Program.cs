using System.CommandLine;
using RlaifOnnx.Cli;
using RlaifOnnx.Core;

// The `rlaif` command: maps commands to library calls and draws progress; no logic of its own.
// Bad input (UserError, arguments that do not parse, files the machine refuses) prints one line and exits 2;
// an internal error prints one line and exits 1 (its stack trace only with --verbose). Never a stack trace otherwise.
HugePages.RestartWithHugePagesIfUseful();   // before anything else: glibc reads its tunables only at start
var parse = Commands.Build().Parse(args);
if (parse.Errors.Count > 0)
{
    Console.Error.WriteLine($"error: {ParseErrors.Describe(parse)}");
    return 2;
}
var verbose = args.Contains(Commands.Verbose);
try
{
    return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (UserError e)
{
    Console.Error.WriteLine($"error: {OneLine(e.Message)}");
    return 2;
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("cancelled; rerun the same command to resume");
    return 130;
}
catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or System.Text.DecoderFallbackException)
{
    // The machine or a file said no (missing, unreadable, full disk, not gzip, not UTF-8): the user's to fix.
    Console.Error.WriteLine($"error: {OneLine(e.Message)}");
    if (verbose) Console.Error.WriteLine(e);
    return 2;
}
catch (Exception e)
{
    // Not bad input: our bug. One line unless asked for more.
    Console.Error.WriteLine($"internal error: {e.GetType().Name}: {OneLine(e.Message)}; please report it{(verbose ? "" : " (rerun with --verbose for the stack trace)")}");
    if (verbose) Console.Error.WriteLine(e);
    return 1;
}

static string OneLine(string message) => string.Join(" ", message.ReplaceLineEndings("\n").Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
