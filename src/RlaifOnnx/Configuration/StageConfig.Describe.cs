using System.Collections;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

using RlaifOnnx.Core;

namespace RlaifOnnx.Configuration;

/// <summary>Writing configs back as YAML and describing their keys (--help-config).</summary>
public static partial class StageConfig
{
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
}
