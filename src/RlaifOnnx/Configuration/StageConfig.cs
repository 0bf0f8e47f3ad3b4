using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

using RlaifOnnx.Core;

namespace RlaifOnnx.Configuration;

/// <summary>
/// YAML stage configs → config records (DESIGN §4 "One config record per stage"). A config record is a
/// class or record with a parameterless constructor and init properties with defaults; `required` marks
/// the ones without. YAML keys are the properties' snake_case names. Everything the user can get wrong
/// is a <see cref="UserError"/> naming file, line and key: an unknown key (with the nearest valid key),
/// a value of the wrong type, an enum value not in the list, a missing required key, a duplicate key.
/// The property's doc comment is the key's documentation: <see cref="Describe{T}"/> reads it from the
/// assembly's XML documentation file, so the same text is the --help output and the YAML reference.
/// </summary>
public static partial class StageConfig
{
    /// <summary>Reads and binds a YAML file; relative <see cref="ConfigPathAttribute"/> paths resolve against its folder.</summary>
    public static T Load<T>(string yamlPath) where T : class
    {
        if (!File.Exists(yamlPath)) throw UserError.At(yamlPath, null, null, "config file not found");
        var folder = Path.GetDirectoryName(Path.GetFullPath(yamlPath))!;
        return Parse<T>(File.ReadAllText(yamlPath), yamlPath, folder);
    }

    /// <summary>
    /// Loads a stage config from its YAML file (or from nothing when <paramref name="yamlPath"/> is null)
    /// with top-level keys replaced by command-line values, e.g. ("steps", "5") from <c>--steps 5</c>. A value
    /// is read as YAML would read it; an error in one names its flag. Relative paths given on the command
    /// line resolve against the current folder.
    /// </summary>
    public static T LoadWithOverrides<T>(string? yamlPath, IReadOnlyList<(string Key, string Flag, string Value)> overrides) where T : class
    {
        if (yamlPath is not null && !File.Exists(yamlPath)) throw UserError.At(yamlPath, null, null, "config file not found");
        var sourceName = yamlPath ?? "command line";
        var root = yamlPath is null ? null : ReadRoot(File.ReadAllText(yamlPath), yamlPath);
        if (root is not null && root is not YamlMappingNode) throw UserError.At(sourceName, null, null, "expected a mapping (key: value lines)");
        var mapping = (YamlMappingNode?)root ?? new YamlMappingNode();
        var origins = new Dictionary<YamlNode, string>(ReferenceEqualityComparer.Instance);
        foreach (var (key, flag, value) in overrides)
        {
            var valueNode = ReadRoot(value, flag) ?? new YamlScalarNode("");
            // "optimizer.learning_rate": into the section's mapping, made when the file has none.
            var parts = key.Split('.');
            var target = mapping;
            foreach (var section in parts[..^1])
            {
                var sectionKey = target.Children.Keys.FirstOrDefault(k => k is YamlScalarNode { Value: { } v } && v == section);
                if (sectionKey is not null && target.Children[sectionKey] is YamlMappingNode inner) target = inner;
                else
                {
                    if (sectionKey is not null) target.Children.Remove(sectionKey);
                    var made = new YamlMappingNode();
                    target.Children.Add(new YamlScalarNode(section), made);
                    target = made;
                }
            }
            var existing = target.Children.Keys.FirstOrDefault(k => k is YamlScalarNode { Value: { } v } && v == parts[^1]);
            if (existing is not null) target.Children.Remove(existing);
            var keyNode = new YamlScalarNode(parts[^1]);
            target.Children.Add(keyNode, valueNode);
            origins[keyNode] = flag;
            origins[valueNode] = flag;
        }
        var folder = yamlPath is null ? Directory.GetCurrentDirectory() : Path.GetDirectoryName(Path.GetFullPath(yamlPath))!;
        var config = (T)new Binder(sourceName, folder, origins).BindRecord(mapping, typeof(T), keyPath: "", whole: null);
        return config;
    }

    /// <summary>Binds YAML text; <paramref name="sourceName"/> names it in error messages. Paths stay as written.</summary>
    public static T Parse<T>(string yaml, string sourceName) where T : class => Parse<T>(yaml, sourceName, baseDirectory: null);

    /// <summary>Binds YAML text, resolving relative <see cref="ConfigPathAttribute"/> paths against <paramref name="baseDirectory"/> when given.</summary>
    public static T Parse<T>(string yaml, string sourceName, string? baseDirectory) where T : class
    {
        var root = ReadRoot(yaml, sourceName);
        var binder = new Binder(sourceName, baseDirectory);
        return (T)binder.BindRecord(root, typeof(T), keyPath: "", whole: null);
    }

    /// <summary>
    /// A path from a config, made absolute: relative values resolve against the folder of
    /// <paramref name="configFile"/>; absolute paths are normalised; "~/" means the home folder. Values
    /// with a scheme of two or more letters (http://…, builtin:name) are not paths and come back unchanged.
    /// </summary>
    public static string ResolvePath(string configFile, string value)
    {
        if (string.IsNullOrEmpty(value) || HasScheme().IsMatch(value)) return value;
        var folder = Path.GetDirectoryName(Path.GetFullPath(configFile))!;
        return ResolveAgainst(folder, value);
    }

    static string ResolveAgainst(string folder, string value)
    {
        if (string.IsNullOrEmpty(value) || HasScheme().IsMatch(value)) return value;
        if (value == "~" || value.StartsWith("~/", StringComparison.Ordinal))
            value = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), value.Length > 2 ? value[2..] : "");
        return Path.GetFullPath(Path.IsPathRooted(value) ? value : Path.Combine(folder, value));
    }

    // "http://", "https://", "builtin:" …; one letter is a Windows drive ("C:\"), which is a path.
    [GeneratedRegex(@"^[A-Za-z][A-Za-z0-9+.\-]+:")]
    private static partial Regex HasScheme();

    /// <summary>
    /// Checks a config record built in code (from command-line flags, say) as loading checks one from YAML:
    /// the first problem is a <see cref="UserError"/> naming <paramref name="source"/> and the key.
    /// </summary>
    public static void Check(IValidatableConfig config, string source)
    {
        foreach (var problem in config.Problems()) throw UserError.At(source, null, problem.Key, problem.Problem);
    }

    /// <summary>
    /// Every file or folder path a loaded config names (its <see cref="ConfigPathAttribute"/> values, in nested
    /// sections and lists too), with its key path ("policies[1].model"); values that are not paths (a URL,
    /// builtin:NAME, a keyword such as "default") are left out.
    /// </summary>
    public static IEnumerable<(string Key, string Path)> PathValues(object config, string keyPath = "")
    {
        foreach (var property in ConfigProperties(config.GetType()))
        {
            var key = keyPath.Length == 0 ? KeyOf(property) : $"{keyPath}.{KeyOf(property)}";
            var value = property.GetValue(config);
            if (value is null) continue;
            if (property.GetCustomAttribute<ConfigPathAttribute>() is { } attribute)
            {
                var items = value is string one ? [one] : value is IEnumerable<string> many ? many.ToList() : [];
                for (var i = 0; i < items.Count; i++)
                    if (items[i].Length > 0 && !HasScheme().IsMatch(items[i]) && !attribute.Keywords.Contains(items[i]))
                        yield return (value is string ? key : $"{key}[{i}]", items[i]);
            }
            else if (value is System.Collections.IEnumerable list and not string && ElementTypeOfList(property.PropertyType) is { } element && IsRecordType(element))
            {
                var i = 0;
                foreach (var item in list)
                    if (item is not null)
                        foreach (var inner in PathValues(item, $"{key}[{i++}]")) yield return inner;
            }
            else if (IsRecordType(property.PropertyType))
                foreach (var inner in PathValues(value, key)) yield return inner;
        }
    }

    /// <summary>Whether a config record type has the key, top-level ("steps") or in a section ("optimizer.learning_rate").</summary>
    public static bool HasKey(Type configType, string dottedKey)
    {
        var type = configType;
        foreach (var part in dottedKey.Split('.'))
        {
            var property = ConfigProperties(type).FirstOrDefault(p => KeyOf(p) == part);
            if (property is null) return false;
            type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        }
        return true;
    }

    /// <summary>A config record as JSON with its YAML keys (for the settings a checkpoint records).</summary>
    public static System.Text.Json.Nodes.JsonObject ToJson(object record) =>
        (System.Text.Json.Nodes.JsonObject)JsonSerializer.SerializeToNode(record, record.GetType(), SnakeCase)!;

    static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, IgnoreReadOnlyProperties = true };

    /// <summary>The YAML key of a property: its snake_case name.</summary>
    public static string KeyOf(PropertyInfo property) => JsonNamingPolicy.SnakeCaseLower.ConvertName(property.Name);

    /// <summary>The YAML spelling of an enum value: its snake_case name.</summary>
    public static string EnumName(Enum value) => JsonNamingPolicy.SnakeCaseLower.ConvertName(value.ToString());

    /// <summary>The config properties of a record type: public, instance, with a setter (init counts), in declaration order.</summary>
    public static IReadOnlyList<PropertyInfo> ConfigProperties(Type type) => PropertyCache.GetOrAdd(type, t =>
        t.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.SetMethod is { IsPublic: true } && p.GetIndexParameters().Length == 0 && p.Name != "EqualityContract")
            .OrderBy(p => p.MetadataToken)
            .ToArray());

    static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, PropertyInfo[]> PropertyCache = new();

    static bool IsRequired(PropertyInfo p) => p.GetCustomAttribute<RequiredMemberAttribute>() is not null;

    // ---- reading ---------------------------------------------------------------------------------

    static YamlNode? ReadRoot(string yaml, string sourceName)
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(yaml)); }
        catch (YamlException e)
        {
            var reason = (e.InnerException?.Message ?? e.Message).Split('\n')[0].Trim();
            var cut = reason.IndexOf("): ", StringComparison.Ordinal);
            if (reason.StartsWith('(') && cut > 0) reason = reason[(cut + 3)..];
            throw UserError.At(sourceName, (int)e.Start.Line, null, $"invalid YAML: {reason}");
        }
        catch (InvalidOperationException)
        {
            // YamlDotNet's scanner throws this on some unterminated flow collections; find the line by
            // scanning tokens up to the failure.
            throw UserError.At(sourceName, LastGoodLine(yaml), null, "invalid YAML: unterminated list or mapping ([ or { without its closing bracket)");
        }
        if (stream.Documents.Count > 1) throw UserError.At(sourceName, (int)stream.Documents[1].RootNode.Start.Line, null, "more than one YAML document (---); a config is one document");
        return stream.Documents.Count == 0 ? null : stream.Documents[0].RootNode;
    }

    static int LastGoodLine(string yaml)
    {
        var line = 1;
        var scanner = new Scanner(new StringReader(yaml));
        try
        {
            while (scanner.MoveNext())
                if (scanner.Current is { } token) line = (int)token.Start.Line;
        }
        catch (Exception e) when (e is InvalidOperationException or YamlException) { }
        return line;
    }

    static bool IsNull(YamlNode node) =>
        node is YamlScalarNode { Style: ScalarStyle.Plain or ScalarStyle.Any } s && s.Value is null or "" or "~" or "null" or "Null" or "NULL";

    static int Line(YamlNode node) => (int)node.Start.Line;

    static string? NullIfEmpty(string s) => s.Length == 0 ? null : s;

    static string Join(string path, string key) => path.Length == 0 ? key : $"{path}.{key}";

    static string Shown(YamlNode node) => node switch
    {
        YamlScalarNode s => $"'{s.Value}'",
        YamlSequenceNode => "a list",
        YamlMappingNode => "a mapping",
        _ => "something else",
    };

    /// <summary>Enum names match ignoring case, '_' and '-': top_p, TopP and top-p are one value.</summary>
    static bool SameName(string enumName, string text) =>
        string.Equals(Squash(enumName), Squash(text), StringComparison.OrdinalIgnoreCase);

    static string Squash(string s) => s.Replace("_", "", StringComparison.Ordinal).Replace("-", "", StringComparison.Ordinal);

    static string EnumNames(Type enumType) => string.Join(", ", Enum.GetNames(enumType).Select(JsonNamingPolicy.SnakeCaseLower.ConvertName));

    static bool IsScalarType(Type t) =>
        t == typeof(string) || t == typeof(bool) || t == typeof(int) || t == typeof(long) || t == typeof(double) || t == typeof(float) || t == typeof(decimal) || t.IsEnum;

    static Type? ElementTypeOfList(Type t)
    {
        if (t.IsArray) return t.GetElementType();
        if (!t.IsGenericType) return null;
        var def = t.GetGenericTypeDefinition();
        return def == typeof(List<>) || def == typeof(IList<>) || def == typeof(IReadOnlyList<>) || def == typeof(IEnumerable<>) || def == typeof(IReadOnlyCollection<>) || def == typeof(ICollection<>)
            ? t.GetGenericArguments()[0]
            : null;
    }

    static Type? ValueTypeOfDictionary(Type t)
    {
        if (!t.IsGenericType) return null;
        var def = t.GetGenericTypeDefinition();
        if (def != typeof(Dictionary<,>) && def != typeof(IDictionary<,>) && def != typeof(IReadOnlyDictionary<,>)) return null;
        var args = t.GetGenericArguments();
        return args[0] == typeof(string) ? args[1] : null;
    }

    static string TypeWords(Type t)
    {
        t = Nullable.GetUnderlyingType(t) ?? t;
        if (t == typeof(string)) return "a string";
        if (t == typeof(bool)) return "true or false";
        if (t == typeof(int) || t == typeof(long)) return "an integer";
        if (t == typeof(double) || t == typeof(float) || t == typeof(decimal)) return "a number";
        if (t.IsEnum) return $"one of {EnumNames(t)}";
        if (ElementTypeOfList(t) is not null) return "a list";
        return "a mapping";
    }

    // ---- unknown keys ----------------------------------------------------------------------------

    /// <summary>"unknown key; did you mean 'temperature'?" — or the list of valid keys when none is close.</summary>
    internal static string UnknownKeyProblem(string key, IEnumerable<string> validKeys)
    {
        if (RenamedKeys.TryGetValue(key, out var renamed)) return $"this key is now '{renamed}'";
        var keys = validKeys.ToList();
        // A misspelt old key ("learning_rat") points at its new name ("optimizer.learning_rate").
        var candidates = keys.Concat(RenamedKeys.Keys.Where(k => RenamedKeys[k].Contains('.') && keys.Contains(RenamedKeys[k].Split('.')[0]))).ToList();
        if (Nearest(key, candidates) is { } nearest) return $"unknown key; did you mean '{(keys.Contains(nearest) ? nearest : RenamedKeys[nearest])}'?";
        return keys.Count == 0 ? "unknown key; this section takes no keys" : $"unknown key; valid keys: {string.Join(", ", keys)}";
    }

    /// <summary>
    /// Keys that an earlier release spelled otherwise, with their name now: one name per setting across
    /// every stage. An old key is refused with its new name rather than silently ignored.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string> RenamedKeys = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["sample_temperature"] = "sampling.temperature", ["sample_top_p"] = "sampling.top_p", ["sample_max_new_tokens"] = "sampling.max_new_tokens",
        ["sample_batch_size"] = "generation_batch_size", ["temperature"] = "sampling.temperature", ["top_p"] = "sampling.top_p",
        ["max_new_tokens"] = "sampling.max_new_tokens", ["response_max_new_tokens"] = "sampling.max_new_tokens",
        ["lora_rank"] = "lora.rank", ["lora_alpha"] = "lora.alpha", ["lora_targets"] = "lora.targets", ["lora_dropout"] = "lora.dropout",
        ["learning_rate"] = "optimizer.learning_rate", ["policy_learning_rate"] = "optimizer.learning_rate", ["warmup"] = "optimizer.warmup",
        ["schedule"] = "optimizer.schedule", ["weight_decay"] = "optimizer.weight_decay", ["max_grad_norm"] = "optimizer.max_grad_norm",
        ["seq_len"] = "max_length", ["out"] = "output_dir", ["server_model"] = "helpful_server_model",
    };

    /// <summary>The valid key closest to <paramref name="key"/> by edit distance, if it is close enough to be a typo.</summary>
    public static string? Nearest(string key, IReadOnlyCollection<string> validKeys)
    {
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var candidate in validKeys)
        {
            // Different spellings of the same name (maxNewTokens, max-new-tokens) count as distance 0.
            var d = SameName(candidate, key) ? 0 : EditDistance(key.ToLowerInvariant(), candidate);
            if (d < bestDistance) (best, bestDistance) = (candidate, d);
        }
        if (best is null) return null;
        var limit = Math.Max(2, Math.Max(key.Length, best.Length) / 3);
        return bestDistance <= limit ? best : null;
    }

    /// <summary>Levenshtein distance (insert, delete, substitute each cost 1).</summary>
    public static int EditDistance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) previous[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var substitute = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
                current[j] = Math.Min(substitute, Math.Min(previous[j] + 1, current[j - 1] + 1));
            }
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
