namespace RlaifOnnx.Configuration;

/// <summary>
/// Marks a string (or list of strings) property of a config record as a file or folder path: <see
/// cref="StageConfig.Load{T}"/> resolves a relative value against the YAML file's folder, so a config
/// means the same thing whatever the current directory. Values with a scheme (http://…, builtin:name) are left alone, and
/// so are the keywords given to the attribute: <c>[ConfigPath("default")]</c> keeps "default" as written.
/// </summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class ConfigPathAttribute(params string[] keywords) : Attribute
{
    /// <summary>Values that name something other than a path (e.g. "default") and are never resolved.</summary>
    public IReadOnlyList<string> Keywords { get; } = keywords;
}

/// <summary>
/// Marks a list property whose YAML value may also be a single item: <c>posts: a.xml</c> means
/// <c>posts: [a.xml]</c>. Only where one value is the common case; other lists stay strict.
/// </summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class ConfigOneOrListAttribute : Attribute;

/// <summary>A problem a config record finds in its own values, reported at the key's line.</summary>
public sealed record ConfigProblem(string Key, string Problem);

/// <summary>
/// A config record that checks its values after loading (ranges, exact divisions, combinations).
/// Keys are the record's own snake_case keys; the loader adds file, line and the nesting path.
/// </summary>
public interface IValidatableConfig
{
    IEnumerable<ConfigProblem> Problems();
}

/// <summary>
/// A key of this config record that an earlier release spelled otherwise (for renames particular to one
/// stage; <see cref="StageConfig.RenamedKeys"/> holds the ones shared by every stage). The old key is
/// refused with the new name.
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true)]
public sealed class ConfigRenamedAttribute(string oldKey, string newKey) : Attribute
{
    public string OldKey { get; } = oldKey;
    public string NewKey { get; } = newKey;
}
