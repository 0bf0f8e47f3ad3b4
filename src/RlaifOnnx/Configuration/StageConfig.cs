using System.Collections;
using System.Globalization;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;
using RlaifOnnx.Core;

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

    sealed class Binder(string source, string? baseDirectory)
    {
        readonly NullabilityInfoContext nullability = new();

        public object BindRecord(YamlNode? node, Type type, string keyPath, string? whole)
        {
            if (type.GetConstructor(Type.EmptyTypes) is null)
                throw new InvalidOperationException($"config type {type.Name} needs a parameterless constructor (use init properties, not a positional record)");
            var instance = Activator.CreateInstance(type)!;
            var properties = ConfigProperties(type);
            var byKey = properties.ToDictionary(KeyOf, StringComparer.Ordinal);
            var seen = new Dictionary<string, int>(StringComparer.Ordinal);

            if (node is not null && !IsNull(node))
            {
                if (node is not YamlMappingNode mapping)
                    throw UserError.At(source, Line(node), whole ?? NullIfEmpty(keyPath), $"expected a mapping (key: value lines), got {Shown(node)}");
                foreach (var (keyNode, valueNode) in mapping.Children)
                {
                    if (keyNode is not YamlScalarNode { Value: { } key })
                        throw UserError.At(source, Line(keyNode), NullIfEmpty(keyPath), "a key must be a plain name");
                    var path = Join(keyPath, key);
                    if (!byKey.TryGetValue(key, out var property))
                        throw UserError.At(source, Line(keyNode), path, UnknownKeyProblem(key, byKey.Keys));
                    if (seen.TryGetValue(key, out var firstLine))
                        throw UserError.At(source, Line(keyNode), path, $"duplicate key (first given on line {firstLine})");
                    seen[key] = Line(keyNode);
                    var given = valueNode is YamlScalarNode && !IsNull(valueNode) && property.IsDefined(typeof(ConfigOneOrListAttribute))
                        ? new YamlSequenceNode(valueNode)
                        : valueNode;
                    var value = BindValue(given, property.PropertyType, path, nullability.Create(property), property.GetCustomAttribute<ConfigPathAttribute>());
                    property.SetValue(instance, value);
                }
            }

            foreach (var property in properties)
                if (IsRequired(property) && !seen.ContainsKey(KeyOf(property)))
                    throw UserError.At(source, null, Join(keyPath, KeyOf(property)), "is required");

            if (instance is IValidatableConfig validatable)
                foreach (var problem in validatable.Problems())
                {
                    var line = seen.TryGetValue(problem.Key, out var l) ? l : node is null ? (int?)null : Line(node);
                    throw UserError.At(source, line, Join(keyPath, problem.Key), problem.Problem);
                }
            return instance;
        }

        object? BindValue(YamlNode node, Type type, string path, NullabilityInfo? nullInfo, ConfigPathAttribute? pathAttribute)
        {
            var underlying = Nullable.GetUnderlyingType(type);
            if (IsNull(node))
            {
                var mayBeNull = underlying is not null || (!type.IsValueType && nullInfo?.WriteState != NullabilityState.NotNull);
                if (mayBeNull) return null;
                throw UserError.At(source, Line(node), path, $"expected {TypeWords(type)}, got nothing");
            }
            type = underlying ?? type;

            if (IsScalarType(type))
            {
                if (node is not YamlScalarNode scalar)
                    throw UserError.At(source, Line(node), path, $"expected {TypeWords(type)}, got {Shown(node)}");
                var value = ParseScalar(scalar, type, path);
                return pathAttribute is not null && value is string s && baseDirectory is not null && !pathAttribute.Keywords.Contains(s)
                    ? ResolveAgainst(baseDirectory, s)
                    : value;
            }
            if (ElementTypeOfList(type) is { } element)
            {
                if (node is not YamlSequenceNode sequence)
                    throw UserError.At(source, Line(node), path, $"expected a list, got {Shown(node)}");
                var elementNull = nullInfo?.GenericTypeArguments is [var g] ? g : nullInfo?.ElementType;
                var items = (IList)Activator.CreateInstance(typeof(List<>).MakeGenericType(element))!;
                var i = 0;
                foreach (var child in sequence.Children)
                    items.Add(BindValue(child, element, $"{path}[{i++}]", elementNull, pathAttribute));
                if (type.IsArray)
                {
                    var array = Array.CreateInstance(element, items.Count);
                    items.CopyTo(array, 0);
                    return array;
                }
                return items;
            }
            if (ValueTypeOfDictionary(type) is { } valueType)
            {
                if (node is not YamlMappingNode mapping)
                    throw UserError.At(source, Line(node), path, $"expected a mapping, got {Shown(node)}");
                var valueNull = nullInfo?.GenericTypeArguments is [_, var v] ? v : null;
                var dictionary = (IDictionary)Activator.CreateInstance(typeof(Dictionary<,>).MakeGenericType(typeof(string), valueType))!;
                foreach (var (keyNode, valueNode) in mapping.Children)
                {
                    if (keyNode is not YamlScalarNode { Value: { } key })
                        throw UserError.At(source, Line(keyNode), path, "a key must be a plain name");
                    if (dictionary.Contains(key))
                        throw UserError.At(source, Line(keyNode), $"{path}.{key}", "duplicate key");
                    dictionary[key] = BindValue(valueNode, valueType, $"{path}.{key}", valueNull, pathAttribute);
                }
                return dictionary;
            }
            if (type.IsClass) return BindRecord(node, type, path, path);
            throw new InvalidOperationException($"config property {path} has type {type.Name}, which configs do not support");
        }

        object ParseScalar(YamlScalarNode scalar, Type type, string path)
        {
            var text = scalar.Value ?? "";
            var c = CultureInfo.InvariantCulture;
            if (type == typeof(string)) return text;
            if (type.IsEnum)
            {
                foreach (var name in Enum.GetNames(type))
                    if (SameName(name, text)) return Enum.Parse(type, name);
                throw UserError.At(source, Line(scalar), path, $"expected one of {EnumNames(type)}; got '{text}'");
            }
            if (type == typeof(bool))
            {
                if (text is "true" or "True" or "TRUE") return true;
                if (text is "false" or "False" or "FALSE") return false;
                throw UserError.At(source, Line(scalar), path, $"expected true or false, got '{text}'");
            }
            var digits = text.Replace("_", "", StringComparison.Ordinal);
            if (type == typeof(int) || type == typeof(long))
            {
                if (long.TryParse(digits, NumberStyles.AllowLeadingSign, c, out var l))
                {
                    if (type == typeof(long)) return l;
                    if (l is >= int.MinValue and <= int.MaxValue) return (int)l;
                    throw UserError.At(source, Line(scalar), path, $"expected an integer between {int.MinValue} and {int.MaxValue}, got '{text}'");
                }
                // 1e6 is a common way to write a step count; accept it when it is a whole number.
                if (double.TryParse(digits, NumberStyles.Float, c, out var d) && d == Math.Floor(d) && Math.Abs(d) <= (type == typeof(int) ? int.MaxValue : 9e15))
                    return type == typeof(int) ? (int)d : (long)d;
                throw UserError.At(source, Line(scalar), path, $"expected an integer, got '{text}'");
            }
            if (type == typeof(double) || type == typeof(float) || type == typeof(decimal))
            {
                var normal = digits switch { ".inf" or ".Inf" or "+.inf" => "Infinity", "-.inf" or "-.Inf" => "-Infinity", ".nan" or ".NaN" => "NaN", _ => digits };
                if (double.TryParse(normal, NumberStyles.Float, c, out var d))
                {
                    if (type == typeof(double)) return d;
                    if (type == typeof(float)) return (float)d;
                    if (double.IsFinite(d)) return (decimal)d;
                }
                throw UserError.At(source, Line(scalar), path, $"expected a number, got '{text}'");
            }
            throw new InvalidOperationException($"config property {path} has type {type.Name}, which configs do not support");
        }
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
        var keys = validKeys.ToList();
        if (Nearest(key, keys) is { } nearest) return $"unknown key; did you mean '{nearest}'?";
        return keys.Count == 0 ? "unknown key; this section takes no keys" : $"unknown key; valid keys: {string.Join(", ", keys)}";
    }

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

    // ---- writing ---------------------------------------------------------------------------------

    /// <summary>
    /// The config as YAML with the same snake_case keys <see cref="Parse{T}(string, string)"/> reads: what
    /// a pipeline writes as its resolved config.yaml. Parsing the result gives an equal config.
    /// </summary>
    public static string ToYaml<T>(T config) where T : class
    {
        var lines = new List<string>();
        EmitRecord(lines, config, config.GetType(), indent: 0, docs: null);
        return string.Join('\n', lines) + "\n";
    }

    /// <summary>
    /// The YAML reference of a config record: every key with its default value, its type and its doc
    /// comment, nested records indented under their key. The output is itself a valid config holding the
    /// defaults (required keys are left empty), so it doubles as a template.
    /// </summary>
    public static string Describe<T>() where T : class => Describe(typeof(T));

    /// <inheritdoc cref="Describe{T}"/>
    public static string Describe(Type configType)
    {
        var docs = DocComments.For(configType.Assembly);
        var lines = new List<string>();
        if (docs.Summary(configType) is { } summary)
        {
            foreach (var l in Wrap(summary, 96)) lines.Add("# " + l);
            lines.Add("");
        }
        var defaults = Activator.CreateInstance(configType) ?? throw new InvalidOperationException($"{configType.Name} needs a parameterless constructor");
        EmitRecord(lines, defaults, configType, indent: 0, docs);
        return string.Join('\n', lines) + "\n";
    }

    static void EmitRecord(List<string> lines, object record, Type type, int indent, DocComments? docs)
    {
        var pad = new string(' ', indent);
        var first = true;
        foreach (var property in ConfigProperties(type))
        {
            var key = KeyOf(property);
            var value = property.GetValue(record);
            var propertyType = property.PropertyType;
            if (docs is not null)
            {
                if (!first) lines.Add("");
                foreach (var l in Wrap(DocComments.For(property.DeclaringType!.Assembly).Summary(property) ?? "", 96 - indent)) lines.Add($"{pad}# {l}");
            }
            first = false;
            var trailer = docs is null ? "" : $"  # {TypeLabel(property)}";
            var bare = Nullable.GetUnderlyingType(propertyType) ?? propertyType;

            if (value is null)
            {
                lines.Add($"{pad}{key}:{trailer}");
                // Describe: show the keys of an absent nested record as a commented example.
                if (docs is not null && IsRecordType(bare))
                {
                    var nested = new List<string>();
                    EmitRecord(nested, Activator.CreateInstance(bare)!, bare, 0, docs: null);
                    foreach (var l in nested) lines.Add($"{pad}#   {l}");
                }
                continue;
            }
            if (IsScalarType(bare))
            {
                lines.Add($"{pad}{key}: {ScalarText(value)}{trailer}");
            }
            else if (ElementTypeOfList(bare) is { } element)
            {
                var items = ((IEnumerable)value).Cast<object?>().ToList();
                if (items.Count == 0) lines.Add($"{pad}{key}: []{trailer}");
                else if (IsScalarType(Nullable.GetUnderlyingType(element) ?? element))
                    lines.Add($"{pad}{key}: [{string.Join(", ", items.Select(i => i is null ? "null" : ScalarText(i)))}]{trailer}");
                else
                {
                    lines.Add($"{pad}{key}:{trailer}");
                    foreach (var item in items) EmitListItem(lines, item, element, indent + 2);
                }
                if (docs is not null && items.Count == 0 && IsRecordType(element))
                {
                    var nested = new List<string>();
                    EmitListItem(nested, Activator.CreateInstance(element)!, element, 0);
                    foreach (var l in nested) lines.Add($"{pad}#   {l}");
                }
            }
            else if (ValueTypeOfDictionary(bare) is { } valueType)
            {
                var dictionary = (IDictionary)value;
                if (dictionary.Count == 0) { lines.Add($"{pad}{key}: {{}}{trailer}"); continue; }
                lines.Add($"{pad}{key}:{trailer}");
                foreach (DictionaryEntry entry in dictionary)
                    EmitNamedValue(lines, ScalarText((string)entry.Key), entry.Value, valueType, indent + 2);
            }
            else
            {
                lines.Add($"{pad}{key}:{trailer}");
                EmitRecord(lines, value, bare, indent + 2, docs);
            }
        }
        if (first) lines.Add($"{pad}{{}}");
    }

    static void EmitNamedValue(List<string> lines, string key, object? value, Type type, int indent)
    {
        var pad = new string(' ', indent);
        var bare = Nullable.GetUnderlyingType(type) ?? type;
        if (value is null) lines.Add($"{pad}{key}:");
        else if (IsScalarType(bare)) lines.Add($"{pad}{key}: {ScalarText(value)}");
        else if (ElementTypeOfList(bare) is { } element)
        {
            var items = ((IEnumerable)value).Cast<object?>().ToList();
            if (items.Count == 0) { lines.Add($"{pad}{key}: []"); return; }
            lines.Add($"{pad}{key}:");
            foreach (var item in items) EmitListItem(lines, item, element, indent + 2);
        }
        else if (ValueTypeOfDictionary(bare) is { } valueType)
        {
            var dictionary = (IDictionary)value;
            if (dictionary.Count == 0) { lines.Add($"{pad}{key}: {{}}"); return; }
            lines.Add($"{pad}{key}:");
            foreach (DictionaryEntry entry in dictionary) EmitNamedValue(lines, ScalarText((string)entry.Key), entry.Value, valueType, indent + 2);
        }
        else
        {
            lines.Add($"{pad}{key}:");
            EmitRecord(lines, value, bare, indent + 2, docs: null);
        }
    }

    /// <summary>"- value", or a record whose first key sits on the dash line and the rest under it.</summary>
    static void EmitListItem(List<string> lines, object? item, Type element, int indent)
    {
        var pad = new string(' ', indent);
        var bare = Nullable.GetUnderlyingType(element) ?? element;
        if (item is null) { lines.Add($"{pad}- null"); return; }
        if (IsScalarType(bare)) { lines.Add($"{pad}- {ScalarText(item)}"); return; }
        var nested = new List<string>();
        if (ElementTypeOfList(bare) is { } inner)
        {
            var items = ((IEnumerable)item).Cast<object?>().ToList();
            if (items.Count == 0) { lines.Add($"{pad}- []"); return; }
            foreach (var i in items) EmitListItem(nested, i, inner, indent + 2);
        }
        else if (ValueTypeOfDictionary(bare) is { } valueType)
        {
            var dictionary = (IDictionary)item;
            if (dictionary.Count == 0) { lines.Add($"{pad}- {{}}"); return; }
            foreach (DictionaryEntry entry in dictionary) EmitNamedValue(nested, ScalarText((string)entry.Key), entry.Value, valueType, indent + 2);
        }
        else EmitRecord(nested, item, bare, indent + 2, docs: null);
        nested[0] = pad + "- " + nested[0][(indent + 2)..];
        lines.AddRange(nested);
    }

    static bool IsRecordType(Type t) => t.IsClass && t != typeof(string) && ElementTypeOfList(t) is null && ValueTypeOfDictionary(t) is null;

    static string ScalarText(object value) => value switch
    {
        string s => QuoteIfNeeded(s),
        bool b => b ? "true" : "false",
        double d => double.IsPositiveInfinity(d) ? ".inf" : double.IsNegativeInfinity(d) ? "-.inf" : double.IsNaN(d) ? ".nan" : d.ToString("R", CultureInfo.InvariantCulture),
        float f => float.IsPositiveInfinity(f) ? ".inf" : float.IsNegativeInfinity(f) ? "-.inf" : float.IsNaN(f) ? ".nan" : f.ToString("R", CultureInfo.InvariantCulture),
        decimal m => m.ToString(CultureInfo.InvariantCulture),
        int i => i.ToString(CultureInfo.InvariantCulture),
        long l => l.ToString(CultureInfo.InvariantCulture),
        Enum e => EnumName(e),
        _ => QuoteIfNeeded(Convert.ToString(value, CultureInfo.InvariantCulture) ?? ""),
    };

    /// <summary>
    /// Plain when unambiguous; otherwise double-quoted with JSON escapes (valid YAML). Strings that a
    /// YAML reader would take for null, a boolean or a number are quoted so other tools read them as text.
    /// </summary>
    static string QuoteIfNeeded(string s)
    {
        var looksTyped = s is "null" or "Null" or "NULL" or "~" or "true" or "True" or "TRUE" or "false" or "False" or "FALSE" or "yes" or "no" or "on" or "off"
            || double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out _);
        return !looksTyped && PlainScalar().IsMatch(s) ? s : JsonSerializer.Serialize(s, Jsonl.JsonlOptions);
    }

    [GeneratedRegex(@"^[A-Za-z0-9_./\\][A-Za-z0-9_./\\ +=@()-]*(?<! )$")]
    private static partial Regex PlainScalar();

    static string TypeLabel(PropertyInfo property)
    {
        var type = property.PropertyType;
        var bare = Nullable.GetUnderlyingType(type) ?? type;
        var words = property.IsDefined(typeof(ConfigPathAttribute)) ? (ElementTypeOfList(bare) is null ? "path" : "list of paths") : Label(bare);
        if (property.IsDefined(typeof(ConfigOneOrListAttribute)) && ElementTypeOfList(bare) is { } one)
            words = $"{(property.IsDefined(typeof(ConfigPathAttribute)) ? "path" : Label(one))} or {words}";
        if (IsRequired(property)) words += ", required";
        else if (Nullable.GetUnderlyingType(type) is not null || (!type.IsValueType && new NullabilityInfoContext().Create(property).WriteState == NullabilityState.Nullable))
            words += ", optional";
        return words;

        static string Label(Type t)
        {
            t = Nullable.GetUnderlyingType(t) ?? t;
            if (t == typeof(string)) return "string";
            if (t == typeof(bool)) return "true|false";
            if (t == typeof(int) || t == typeof(long)) return "integer";
            if (t == typeof(double) || t == typeof(float) || t == typeof(decimal)) return "number";
            if (t.IsEnum) return $"one of: {EnumNames(t)}";
            if (ElementTypeOfList(t) is { } e) return IsRecordType(e) ? "list of sections" : $"list of {Label(e)}";
            if (ValueTypeOfDictionary(t) is { } v) return $"map of name to {Label(v)}";
            return "section";
        }
    }

    static IEnumerable<string> Wrap(string text, int width)
    {
        width = Math.Max(width, 40);
        foreach (var paragraph in text.Split('\n'))
        {
            var line = new StringBuilder();
            foreach (var word in paragraph.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                if (line.Length > 0 && line.Length + 1 + word.Length > width)
                {
                    yield return line.ToString();
                    line.Clear();
                }
                if (line.Length > 0) line.Append(' ');
                line.Append(word);
            }
            if (line.Length > 0) yield return line.ToString();
        }
    }

    // ---- doc comments ----------------------------------------------------------------------------

    /// <summary>The summaries in an assembly's XML documentation file (beside the .dll), by member id.</summary>
    sealed class DocComments
    {
        static readonly System.Collections.Concurrent.ConcurrentDictionary<Assembly, DocComments> Cache = new();
        readonly Dictionary<string, string> summaries = new(StringComparer.Ordinal);

        public static DocComments For(Assembly assembly) => Cache.GetOrAdd(assembly, a => new DocComments(a));

        DocComments(Assembly assembly)
        {
            if (string.IsNullOrEmpty(assembly.Location)) return;
            var xml = Path.ChangeExtension(assembly.Location, ".xml");
            if (!File.Exists(xml)) return;
            var doc = XDocument.Load(xml);
            foreach (var member in doc.Descendants("member"))
            {
                var name = (string?)member.Attribute("name");
                var summary = member.Element("summary");
                if (name is null || summary is null) continue;
                summaries[name] = Text(summary);
            }
        }

        public string? Summary(Type type) => summaries.GetValueOrDefault("T:" + TypeId(type));

        public string? Summary(PropertyInfo property)
        {
            for (var t = property.DeclaringType; t is not null; t = t.BaseType)
                if (summaries.TryGetValue($"P:{TypeId(t)}.{property.Name}", out var s)) return s;
            return null;
        }

        static string TypeId(Type t) => (t.FullName ?? t.Name).Replace('+', '.');

        /// <summary>Flattens a summary to text: cref and paramref names, c and code text, whitespace collapsed; para breaks kept.</summary>
        static string Text(XElement element)
        {
            var paragraphs = Raw(element).Split(ParagraphBreak).Select(l => Whitespace().Replace(l, " ").Trim()).Where(l => l.Length > 0);
            return string.Join('\n', paragraphs);
        }

        const char ParagraphBreak = '\u2029';

        static string Raw(XElement element)
        {
            var text = new StringBuilder();
            foreach (var node in element.Nodes())
            {
                switch (node)
                {
                    case XText t: text.Append(t.Value); break;
                    case XElement { Name.LocalName: "see" or "seealso" } e:
                        var target = (string?)e.Attribute("cref") ?? (string?)e.Attribute("langword") ?? (string?)e.Attribute("href") ?? "";
                        text.Append(e.IsEmpty ? ShortName(target) : Raw(e));
                        break;
                    case XElement { Name.LocalName: "paramref" or "typeparamref" } e: text.Append((string?)e.Attribute("name")); break;
                    case XElement { Name.LocalName: "para" or "br" } e: text.Append(ParagraphBreak).Append(Raw(e)).Append(ParagraphBreak); break;
                    case XElement e: text.Append(Raw(e)); break;
                }
            }
            return text.ToString();
        }

        static string ShortName(string cref)
        {
            var name = cref.Contains(':') ? cref[(cref.IndexOf(':') + 1)..] : cref;
            var paren = name.IndexOf('(');
            if (paren >= 0) name = name[..paren];
            var backtick = name.IndexOf('`');
            if (backtick >= 0) name = name[..backtick];
            return name[(name.LastIndexOf('.') + 1)..];
        }
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();
}
