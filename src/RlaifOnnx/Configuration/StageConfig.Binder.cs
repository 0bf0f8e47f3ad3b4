using System.Collections;
using System.Globalization;
using System.Reflection;
using YamlDotNet.RepresentationModel;

using RlaifOnnx.Core;

namespace RlaifOnnx.Configuration;

/// <summary>Binding YAML nodes to config records: types, nullability, paths, enums, numbers.</summary>
public static partial class StageConfig
{
    sealed class Binder(string source, string? baseDirectory, IReadOnlyDictionary<YamlNode, string>? origins = null)
    {
        /// <summary>An error at a node: file and line, or the command-line flag the node came from.</summary>
        UserError At(YamlNode node, string? field, string problem) =>
            origins is not null && origins.TryGetValue(node, out var flag)
                ? UserError.At(flag, null, null, FlagWords(problem))
                : UserError.At(source, Line(node), field, problem);

        readonly NullabilityInfoContext nullability = new();

        /// <summary>A value problem as said of a flag: "'abc' is not a whole number" rather than "expected an integer, got 'abc'".</summary>
        static string FlagWords(string problem)
        {
            var m = System.Text.RegularExpressions.Regex.Match(problem, "^expected (an integer|a number|true or false), got '(.*)'$");
            if (!m.Success) return problem;
            var words = m.Groups[1].Value == "an integer" ? "a whole number" : m.Groups[1].Value;
            return $"'{m.Groups[2].Value}' is not {words}";
        }

        /// <summary>
        /// Binds a mapping onto a new instance of <paramref name="type"/>, or onto <paramref name="existing"/>:
        /// a nested section starts from the default its parent gives it (a stage's own learning rate, say),
        /// and the YAML changes only the keys it names.
        /// </summary>
        public object BindRecord(YamlNode? node, Type type, string keyPath, string? whole, object? existing = null)
        {
            if (type.GetConstructor(Type.EmptyTypes) is null)
                throw new InvalidOperationException($"config type {type.Name} needs a parameterless constructor (use init properties, not a positional record)");
            var instance = existing ?? Activator.CreateInstance(type)!;
            var properties = ConfigProperties(type);
            var byKey = properties.ToDictionary(KeyOf, StringComparer.Ordinal);
            var seen = new Dictionary<string, int>(StringComparer.Ordinal);
            var keyNodes = new Dictionary<string, YamlNode>(StringComparer.Ordinal);

            if (node is not null && !IsNull(node))
            {
                if (node is not YamlMappingNode mapping)
                    throw At(node, whole ?? NullIfEmpty(keyPath), $"expected a mapping (key: value lines), got {Shown(node)}");
                foreach (var (keyNode, valueNode) in mapping.Children)
                {
                    if (keyNode is not YamlScalarNode { Value: { } key })
                        throw At(keyNode, NullIfEmpty(keyPath), "a key must be a plain name");
                    var path = Join(keyPath, key);
                    if (!byKey.TryGetValue(key, out var property))
                        throw At(keyNode, path, type.GetCustomAttributes<ConfigRenamedAttribute>().FirstOrDefault(r => r.OldKey == key) is { } renamed
                            ? $"this key is now '{renamed.NewKey}'"
                            : UnknownKeyProblem(key, byKey.Keys));
                    if (seen.TryGetValue(key, out var firstLine))
                        throw At(keyNode, path, $"duplicate key (first given on line {firstLine})");
                    seen[key] = Line(keyNode);
                    keyNodes[key] = keyNode;
                    var given = valueNode is YamlScalarNode && !IsNull(valueNode) && property.IsDefined(typeof(ConfigOneOrListAttribute))
                        ? new YamlSequenceNode(valueNode)
                        : valueNode;
                    var value = IsRecordType(Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType) && property.GetValue(instance) is { } section && valueNode is YamlMappingNode
                        ? BindRecord(valueNode, property.PropertyType, path, path, section)
                        : BindValue(given, property.PropertyType, path, nullability.Create(property), property.GetCustomAttribute<ConfigPathAttribute>());
                    property.SetValue(instance, value);
                }
            }

            foreach (var property in properties)
                if (IsRequired(property) && !seen.ContainsKey(KeyOf(property)))
                    throw UserError.At(source, null, Join(keyPath, KeyOf(property)), "is required");

            if (instance is IValidatableConfig validatable)
                foreach (var problem in validatable.Problems())
                {
                    if (keyNodes.TryGetValue(problem.Key, out var problemNode) && origins is not null && origins.ContainsKey(problemNode))
                        throw At(problemNode, Join(keyPath, problem.Key), problem.Problem);
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
                throw At(node, path, $"expected {TypeWords(type)}, got nothing");
            }
            type = underlying ?? type;

            if (IsScalarType(type))
            {
                if (node is not YamlScalarNode scalar)
                    throw At(node, path, $"expected {TypeWords(type)}, got {Shown(node)}");
                var value = ParseScalar(scalar, type, path);
                return pathAttribute is not null && value is string s && baseDirectory is not null && !pathAttribute.Keywords.Contains(s)
                    ? ResolveAgainst(origins is not null && origins.ContainsKey(node) ? Directory.GetCurrentDirectory() : baseDirectory, s)
                    : value;
            }
            if (ElementTypeOfList(type) is { } element)
            {
                if (node is not YamlSequenceNode sequence)
                    throw At(node, path, $"expected a list, got {Shown(node)}");
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
                    throw At(node, path, $"expected a mapping, got {Shown(node)}");
                var valueNull = nullInfo?.GenericTypeArguments is [_, var v] ? v : null;
                var dictionary = (IDictionary)Activator.CreateInstance(typeof(Dictionary<,>).MakeGenericType(typeof(string), valueType))!;
                foreach (var (keyNode, valueNode) in mapping.Children)
                {
                    if (keyNode is not YamlScalarNode { Value: { } key })
                        throw At(keyNode, path, "a key must be a plain name");
                    if (dictionary.Contains(key))
                        throw At(keyNode, $"{path}.{key}", "duplicate key");
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
                throw At(scalar, path, $"expected one of {EnumNames(type)}; got '{text}'");
            }
            if (type == typeof(bool))
            {
                if (text is "true" or "True" or "TRUE") return true;
                if (text is "false" or "False" or "FALSE") return false;
                throw At(scalar, path, $"expected true or false, got '{text}'");
            }
            var digits = text.Replace("_", "", StringComparison.Ordinal);
            if (type == typeof(int) || type == typeof(long))
            {
                if (long.TryParse(digits, NumberStyles.AllowLeadingSign, c, out var l))
                {
                    if (type == typeof(long)) return l;
                    if (l is >= int.MinValue and <= int.MaxValue) return (int)l;
                    throw At(scalar, path, $"expected an integer between {int.MinValue} and {int.MaxValue}, got '{text}'");
                }
                // 1e6 is a common way to write a step count; accept it when it is a whole number.
                if (double.TryParse(digits, NumberStyles.Float, c, out var d) && d == Math.Floor(d) && Math.Abs(d) <= (type == typeof(int) ? int.MaxValue : 9e15))
                    return type == typeof(int) ? (int)d : (long)d;
                throw At(scalar, path, $"expected an integer, got '{text}'");
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
                throw At(scalar, path, $"expected a number, got '{text}'");
            }
            throw new InvalidOperationException($"config property {path} has type {type.Name}, which configs do not support");
        }
    }
}
