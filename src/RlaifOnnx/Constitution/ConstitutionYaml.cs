using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;
using RlaifOnnx.Core;

namespace RlaifOnnx.Constitution;

/// <summary>
/// Constitution YAML in and out. Reading walks the YAML node tree (not a serializer) so that every
/// problem names the file, the line and the field: a missing request, a duplicate id, an example that
/// refers to a principle that does not exist, an unknown key.
/// </summary>
/// <example>
/// name: my-constitution
/// critiques:
///   - id: harm
///     critique_request: Point out anything harmful in the assistant's last answer.
///     revision_request: Rewrite the answer without the harmful content.
/// feedback_principles:
///   - id: less-harmful
///     text: Which of these answers is less harmful?
/// critique_examples:
///   - conversation: [{role: user, content: ...}, {role: assistant, content: ...}]
///     principle_id: harm
///     critique: ...
///     revision: ...
/// feedback_examples:
///   - conversation: [{role: user, content: ...}]
///     response_a: ...
///     response_b: ...
///     answer: B
///     reasoning: ...   # optional, used in chain-of-thought mode
/// </example>
public static class ConstitutionYaml
{
    const string DefaultResource = "RlaifOnnx.Constitution.default-constitution.yaml";

    public static ConstitutionSet Load(string path)
    {
        if (!File.Exists(path)) throw UserError.At(path, null, null, "constitution file not found");
        return Parse(File.ReadAllText(path), path);
    }

    public static ConstitutionSet LoadDefault()
    {
        using var stream = typeof(ConstitutionYaml).Assembly.GetManifestResourceStream(DefaultResource)
            ?? throw new InvalidOperationException($"embedded resource {DefaultResource} is missing from the build");
        using var reader = new StreamReader(stream);
        return Parse(reader.ReadToEnd(), "default-constitution.yaml");
    }

    /// <summary>The embedded default constitution's YAML text, for `rlaif constitution show --yaml`.</summary>
    public static string DefaultText()
    {
        using var stream = typeof(ConstitutionYaml).Assembly.GetManifestResourceStream(DefaultResource)!;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    public static ConstitutionSet Parse(string yaml, string source)
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(yaml)); }
        catch (YamlException e) { throw UserError.At(source, (int)e.Start.Line, null, $"malformed YAML ({e.Message})"); }
        if (stream.Documents.Count == 0) throw UserError.At(source, null, null, "the file is empty");
        var root = AsMap(stream.Documents[0].RootNode, source, "(root)");
        CheckKeys(root, source, "name", "critiques", "feedback_principles", "critique_examples", "feedback_examples");

        var name = OptionalString(root, "name", source) ?? Path.GetFileNameWithoutExtension(source);

        var critiques = new List<CritiquePrinciple>();
        var critiqueLines = new Dictionary<string, int>();
        foreach (var (item, i) in Items(root, "critiques", source))
        {
            var field = $"critiques[{i}]";
            var map = AsMap(item, source, field);
            CheckKeys(map, source, "id", "critique_request", "revision_request");
            var id = RequiredString(map, "id", source, field);
            if (!critiqueLines.TryAdd(id, Line(map)))
                throw UserError.At(source, Line(map), $"{field}.id", $"duplicate id '{id}' (first defined on line {critiqueLines[id]})");
            critiques.Add(new CritiquePrinciple(id, RequiredString(map, "critique_request", source, field), RequiredString(map, "revision_request", source, field)));
        }

        var feedback = new List<FeedbackPrinciple>();
        var feedbackLines = new Dictionary<string, int>();
        foreach (var (item, i) in Items(root, "feedback_principles", source))
        {
            var field = $"feedback_principles[{i}]";
            var map = AsMap(item, source, field);
            CheckKeys(map, source, "id", "text");
            var id = RequiredString(map, "id", source, field);
            if (!feedbackLines.TryAdd(id, Line(map)))
                throw UserError.At(source, Line(map), $"{field}.id", $"duplicate id '{id}' (first defined on line {feedbackLines[id]})");
            feedback.Add(new FeedbackPrinciple(id, RequiredString(map, "text", source, field)));
        }

        var critiqueExamples = new List<CritiqueExample>();
        foreach (var (item, i) in Items(root, "critique_examples", source))
        {
            var field = $"critique_examples[{i}]";
            var map = AsMap(item, source, field);
            CheckKeys(map, source, "conversation", "principle_id", "critique_request", "revision_request", "critique", "revision");
            var conversation = Conversation(map, source, field);
            if (conversation[^1].Role != "assistant")
                throw UserError.At(source, Line(map), $"{field}.conversation", "must end with the assistant answer that the example critiques");
            var principleId = OptionalString(map, "principle_id", source);
            string critiqueRequest, revisionRequest;
            if (principleId is not null)
            {
                var principle = critiques.FirstOrDefault(c => c.Id == principleId)
                    ?? throw UserError.At(source, Line(map["principle_id"]), $"{field}.principle_id", $"unknown critique principle id '{principleId}'");
                critiqueRequest = OptionalString(map, "critique_request", source) ?? principle.CritiqueRequest;
                revisionRequest = OptionalString(map, "revision_request", source) ?? principle.RevisionRequest;
            }
            else
            {
                critiqueRequest = RequiredString(map, "critique_request", source, field, "(or give principle_id)");
                revisionRequest = RequiredString(map, "revision_request", source, field, "(or give principle_id)");
            }
            critiqueExamples.Add(new CritiqueExample(conversation, principleId, critiqueRequest,
                RequiredString(map, "critique", source, field), revisionRequest, RequiredString(map, "revision", source, field)));
        }

        var feedbackExamples = new List<FeedbackExample>();
        foreach (var (item, i) in Items(root, "feedback_examples", source))
        {
            var field = $"feedback_examples[{i}]";
            var map = AsMap(item, source, field);
            CheckKeys(map, source, "conversation", "principle_id", "response_a", "response_b", "answer", "reasoning");
            var conversation = Conversation(map, source, field);
            var principleId = OptionalString(map, "principle_id", source);
            if (principleId is not null && !feedbackLines.ContainsKey(principleId))
                throw UserError.At(source, Line(map["principle_id"]), $"{field}.principle_id", $"unknown feedback principle id '{principleId}'");
            var answer = RequiredString(map, "answer", source, field).Trim().Trim('(', ')').ToUpperInvariant();
            if (answer is not ("A" or "B"))
                throw UserError.At(source, Line(map["answer"]), $"{field}.answer", "must be A or B");
            feedbackExamples.Add(new FeedbackExample(conversation, principleId,
                RequiredString(map, "response_a", source, field), RequiredString(map, "response_b", source, field),
                answer, OptionalString(map, "reasoning", source)));
        }

        if (critiques.Count == 0 && feedback.Count == 0)
            throw UserError.At(source, Line(root), null, "the constitution has neither critiques nor feedback_principles");
        return new ConstitutionSet(name, critiques, feedback, critiqueExamples, feedbackExamples);
    }

    /// <summary>Writes a constitution as YAML (multi-line texts as literal blocks), atomically.</summary>
    public static void Save(ConstitutionSet constitution, string path) => AtomicFile.WriteAllText(path, ToYaml(constitution));

    public static string ToYaml(ConstitutionSet c)
    {
        var root = new YamlMappingNode { { "name", Scalar(c.Name) } };
        var critiques = new YamlSequenceNode();
        foreach (var p in c.Critiques)
            critiques.Add(new YamlMappingNode { { "id", Scalar(p.Id) }, { "critique_request", Scalar(p.CritiqueRequest) }, { "revision_request", Scalar(p.RevisionRequest) } });
        root.Add("critiques", critiques);
        var feedback = new YamlSequenceNode();
        foreach (var p in c.FeedbackPrinciples)
            feedback.Add(new YamlMappingNode { { "id", Scalar(p.Id) }, { "text", Scalar(p.Text) } });
        root.Add("feedback_principles", feedback);

        var critiqueExamples = new YamlSequenceNode();
        foreach (var e in c.CritiqueExamples)
        {
            var map = new YamlMappingNode { { "conversation", Conversation(e.Conversation) } };
            if (e.PrincipleId is not null) map.Add("principle_id", Scalar(e.PrincipleId));
            var principle = e.PrincipleId is null ? null : c.Critiques.FirstOrDefault(p => p.Id == e.PrincipleId);
            if (principle?.CritiqueRequest != e.CritiqueRequest) map.Add("critique_request", Scalar(e.CritiqueRequest));
            map.Add("critique", Scalar(e.Critique));
            if (principle?.RevisionRequest != e.RevisionRequest) map.Add("revision_request", Scalar(e.RevisionRequest));
            map.Add("revision", Scalar(e.Revision));
            critiqueExamples.Add(map);
        }
        root.Add("critique_examples", critiqueExamples);

        var feedbackExamples = new YamlSequenceNode();
        foreach (var e in c.FeedbackExamples)
        {
            var map = new YamlMappingNode { { "conversation", Conversation(e.Conversation) } };
            if (e.PrincipleId is not null) map.Add("principle_id", Scalar(e.PrincipleId));
            map.Add("response_a", Scalar(e.ResponseA));
            map.Add("response_b", Scalar(e.ResponseB));
            map.Add("answer", Scalar(e.Answer));
            if (e.Reasoning is not null) map.Add("reasoning", Scalar(e.Reasoning));
            feedbackExamples.Add(map);
        }
        root.Add("feedback_examples", feedbackExamples);

        var writer = new StringWriter();
        new YamlStream(new YamlDocument(root)).Save(writer, assignAnchors: false);
        // YamlDotNet ends a saved stream with a document-end marker; a plain file reads better without it.
        var text = writer.ToString().TrimEnd();
        if (text.EndsWith("...", StringComparison.Ordinal)) text = text[..^3].TrimEnd();
        return text + "\n";
    }

    static YamlSequenceNode Conversation(IReadOnlyList<ChatMessage> messages)
    {
        var seq = new YamlSequenceNode();
        foreach (var m in messages) seq.Add(new YamlMappingNode { { "role", Scalar(m.Role) }, { "content", Scalar(m.Content) } });
        return seq;
    }

    static YamlScalarNode Scalar(string text) => new(text)
    {
        // Literal blocks keep long multi-line texts readable; the emitter falls back to quoting when a text cannot be one.
        Style = text.Contains('\n') ? ScalarStyle.Literal : ScalarStyle.Any,
    };

    // ---- reading helpers: every failure names file:line and the field path ----

    static int Line(YamlNode node) => (int)node.Start.Line;

    static YamlMappingNode AsMap(YamlNode node, string source, string field) =>
        node as YamlMappingNode ?? throw UserError.At(source, Line(node), field, "must be a mapping of keys to values");

    static void CheckKeys(YamlMappingNode map, string source, params string[] known)
    {
        foreach (var key in map.Children.Keys)
        {
            var name = (key as YamlScalarNode)?.Value ?? "";
            if (!known.Contains(name))
                throw UserError.At(source, Line(key), name, $"unknown key (expected one of: {string.Join(", ", known)})");
        }
    }

    static IEnumerable<(YamlNode Item, int Index)> Items(YamlMappingNode map, string key, string source)
    {
        if (!map.Children.TryGetValue(new YamlScalarNode(key), out var node)) yield break;
        if (node is YamlScalarNode { Value: null or "" or "~" or "null" }) yield break;
        if (node is not YamlSequenceNode seq) throw UserError.At(source, Line(node), key, "must be a list");
        for (var i = 0; i < seq.Children.Count; i++) yield return (seq.Children[i], i);
    }

    static string? OptionalString(YamlMappingNode map, string key, string source)
    {
        if (!map.Children.TryGetValue(new YamlScalarNode(key), out var node)) return null;
        if (node is not YamlScalarNode scalar) throw UserError.At(source, Line(node), key, "must be text");
        return scalar.Value;
    }

    static string RequiredString(YamlMappingNode map, string key, string source, string field, string hint = "")
    {
        var value = OptionalString(map, key, source);
        var suffix = hint.Length > 0 ? " " + hint : "";
        if (value is null) throw UserError.At(source, Line(map), $"{field}.{key}", "is missing" + suffix);
        if (string.IsNullOrWhiteSpace(value)) throw UserError.At(source, Line(map[key]), $"{field}.{key}", "is empty" + suffix);
        return value;
    }

    static List<ChatMessage> Conversation(YamlMappingNode map, string source, string field)
    {
        if (!map.Children.TryGetValue(new YamlScalarNode("conversation"), out var node))
            throw UserError.At(source, Line(map), $"{field}.conversation", "is missing");
        if (node is not YamlSequenceNode seq || seq.Children.Count == 0)
            throw UserError.At(source, Line(node), $"{field}.conversation", "must be a non-empty list of {role, content} turns");
        var messages = new List<ChatMessage>();
        for (var i = 0; i < seq.Children.Count; i++)
        {
            var turnField = $"{field}.conversation[{i}]";
            var turn = AsMap(seq.Children[i], source, turnField);
            CheckKeys(turn, source, "role", "content");
            var role = RequiredString(turn, "role", source, turnField);
            if (role is not ("system" or "user" or "assistant"))
                throw UserError.At(source, Line(turn), $"{turnField}.role", $"'{role}' is not one of system, user, assistant");
            messages.Add(new ChatMessage(role, RequiredString(turn, "content", source, turnField)));
        }
        return messages;
    }
}
