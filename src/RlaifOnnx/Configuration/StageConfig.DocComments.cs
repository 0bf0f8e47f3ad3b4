using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace RlaifOnnx.Configuration;

/// <summary>Doc comments of config records, read from the XML documentation file.</summary>
public static partial class StageConfig
{
    /// <summary>A config key's documentation: its property's doc comment (the text --help-config shows), or null.</summary>
    public static string? DocumentationOf(Type configType, string dottedKey)
    {
        var type = configType;
        PropertyInfo? property = null;
        foreach (var part in dottedKey.Split('.'))
        {
            property = ConfigProperties(type).FirstOrDefault(p => KeyOf(p) == part);
            if (property is null) return null;
            type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
        }
        return property is null ? null : DocComments.For(property.DeclaringType!.Assembly).Summary(property);
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
