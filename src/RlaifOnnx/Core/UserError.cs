namespace RlaifOnnx.Core;

/// <summary>
/// Bad input from the user: a malformed file, config or argument. The CLI prints the message on one
/// line and exits with code 2. Messages name the file, the line (where there is one) and the field.
/// </summary>
public sealed class UserError(string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>"file:line: field: problem" — the one shape every bad-input message takes.</summary>
    public static UserError At(string file, int? line, string? field, string problem)
    {
        var where = line is { } l ? $"{file}:{l}" : file;
        return new UserError(field is null ? $"{where}: {problem}" : $"{where}: {field}: {problem}");
    }
}
