using System.Collections;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

using RlaifOnnx.Core;

namespace RlaifOnnx.Configuration;

/// <summary>Binding YAML nodes to config records: types, nullability, paths, enums, numbers.</summary>
public static partial class StageConfig
{
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
}
