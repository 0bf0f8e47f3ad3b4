using System.Text.Json;
using System.Text.RegularExpressions;
using RlaifOnnx.Core;
using RlaifOnnx.Records;

namespace RlaifOnnx.Constitution;

/// <summary>
/// Importers for constitutions that others publish:
/// <list type="bullet">
/// <item>the Constitutional AI paper's prompt files (a folder with CritiqueRevisionInstructions.json,
/// RLMadisonInstructions.json and, optionally, CritiqueRevisionFewShotPrompts.json,
/// RLMadisonFewShotPrompts.json, RLMadisonPrecogFewShotPrompts.json);</item>
/// <item>the <c>{critic, revision}</c> JSON of open reproductions: either a bare list of
/// <c>{"critic": …, "revision": …}</c> or an object with that list under "constitutions" and, optionally,
/// few-shot chats under "system_chat" (lists of {role, content}: user, assistant, user critic,
/// assistant critique, user revision, assistant revision).</item>
/// </list>
/// The result is validated by a YAML round trip, so an import is held to the same rules as a hand-written file.
/// </summary>
public static partial class ConstitutionImport
{
    public const string PaperCritiques = "CritiqueRevisionInstructions.json";
    public const string PaperCritiqueExamples = "CritiqueRevisionFewShotPrompts.json";
    public const string PaperFeedback = "RLMadisonInstructions.json";
    public const string PaperFeedbackExamples = "RLMadisonFewShotPrompts.json";
    public const string PaperChainOfThoughtExamples = "RLMadisonPrecogFewShotPrompts.json";

    /// <summary>A folder → the paper's files; a .json file → the {critic, revision} format.</summary>
    public static ConstitutionSet Import(string source, string? name = null)
    {
        var imported = Directory.Exists(source) ? FromPaperFolder(source, name)
            : File.Exists(source) ? FromCriticRevisionJson(source, name)
            : throw UserError.At(source, null, null, "no such file or folder to import");
        return ConstitutionYaml.Parse(ConstitutionYaml.ToYaml(imported), source);
    }

    public static ConstitutionSet FromPaperFolder(string dir, string? name = null)
    {
        // 1. Critique/revision pairs: {"harmful0": {"prompt": ["\n\nCritiqueRequest: …\n\nCritique:"], "edit_request": "\n\nRevisionRequest: …\n\nRevision:"}, …}
        var critiquesPath = Path.Combine(dir, PaperCritiques);
        var critiques = new List<CritiquePrinciple>();
        using (var doc = ReadJson(critiquesPath))
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw UserError.At(critiquesPath, null, null, "expected an object of id → {prompt, edit_request}");
            foreach (var entry in doc.RootElement.EnumerateObject())
            {
                var field = entry.Name;
                if (!entry.Value.TryGetProperty("prompt", out var prompt)) throw UserError.At(critiquesPath, null, $"{field}.prompt", "is missing");
                var critique = prompt.ValueKind == JsonValueKind.Array ? prompt.EnumerateArray().Select(e => e.GetString()).FirstOrDefault() : prompt.GetString();
                if (!entry.Value.TryGetProperty("edit_request", out var edit)) throw UserError.At(critiquesPath, null, $"{field}.edit_request", "is missing");
                critiques.Add(new CritiquePrinciple(entry.Name,
                    Between(critique ?? "", "CritiqueRequest:", "Critique:", critiquesPath, $"{field}.prompt"),
                    Between(edit.GetString() ?? "", "RevisionRequest:", "Revision:", critiquesPath, $"{field}.edit_request")));
            }
        }

        // 2. Feedback principles: ["\nPlease choose the assistant response that … Options:", …]; the trailing
        //    "Options:" belongs to the question template, not to the principle.
        var feedbackPath = Path.Combine(dir, PaperFeedback);
        var feedback = new List<FeedbackPrinciple>();
        using (var doc = ReadJson(feedbackPath))
        {
            var i = 0;
            foreach (var item in Array(doc, feedbackPath))
            {
                var text = (item.GetString() ?? "").Trim();
                if (text.EndsWith("Options:", StringComparison.Ordinal)) text = text[..^"Options:".Length].TrimEnd();
                if (text.Length == 0) throw UserError.At(feedbackPath, null, $"[{i}]", "is empty");
                feedback.Add(new FeedbackPrinciple($"feedback{i++}", text));
            }
        }

        // 3. Few-shot critique/revision dialogues: one transcript string each, with CritiqueRequest:, Critique:,
        //    RevisionRequest:, Revision: sections after the conversation, ending with "\n\nHuman:".
        var critiqueExamples = new List<CritiqueExample>();
        var examplesPath = Path.Combine(dir, PaperCritiqueExamples);
        if (File.Exists(examplesPath))
        {
            using var doc = ReadJson(examplesPath);
            var i = 0;
            foreach (var item in Array(doc, examplesPath))
            {
                var field = $"[{i++}]";
                var text = item.GetString() ?? "";
                var m = CritiqueExampleRegex().Match(text);
                if (!m.Success) throw UserError.At(examplesPath, null, field, "expected a transcript followed by CritiqueRequest:, Critique:, RevisionRequest: and Revision: sections");
                var conversation = Transcript.Parse(m.Groups["conv"].Value, examplesPath, null, field);
                var critiqueRequest = m.Groups["creq"].Value.Trim();
                var revisionRequest = m.Groups["rreq"].Value.Trim();
                var principle = critiques.FirstOrDefault(c => c.CritiqueRequest == critiqueRequest && c.RevisionRequest == revisionRequest);
                critiqueExamples.Add(new CritiqueExample(conversation, principle?.Id, critiqueRequest, m.Groups["crit"].Value.Trim(), revisionRequest, m.Groups["rev"].Value.Trim()));
            }
        }

        // 4. Few-shot labelling examples: {"prompt": transcript ending in "Assistant:", "corrects": [...], "incorrects": [...]}.
        //    The correct answer alternates between (A) and (B) so the examples themselves carry no position bias.
        var feedbackExamples = new List<FeedbackExample>();
        var labelPath = Path.Combine(dir, PaperFeedbackExamples);
        if (File.Exists(labelPath))
        {
            using var doc = ReadJson(labelPath);
            var i = 0;
            foreach (var item in Array(doc, labelPath))
            {
                var field = $"[{i}]";
                var prompt = Property(item, "prompt", labelPath, field);
                var correct = FirstString(item, "corrects", labelPath, field);
                var incorrect = FirstString(item, "incorrects", labelPath, field);
                var conversation = Transcript.Parse(prompt, labelPath, null, $"{field}.prompt");
                if (conversation.Count > 0 && conversation[^1] is { Role: "assistant", Content: "" }) conversation.RemoveAt(conversation.Count - 1);
                var correctIsA = i % 2 == 0;
                feedbackExamples.Add(new FeedbackExample(conversation, null, correctIsA ? correct : incorrect, correctIsA ? incorrect : correct, correctIsA ? "A" : "B", null));
                i++;
            }
        }

        // 5. Chain-of-thought labelling examples: the whole question as one transcript, with the conversation
        //    as "H:"/"A:" lines, the options as " (A) [[[…]]]" / " (B) [[[…]]]", reasoning after "Let's think
        //    step by step:", and "So the answer is: (X)" at the end.
        var cotPath = Path.Combine(dir, PaperChainOfThoughtExamples);
        if (File.Exists(cotPath))
        {
            using var doc = ReadJson(cotPath);
            var i = 0;
            foreach (var item in Array(doc, cotPath))
            {
                var field = $"[{i++}].prompt";
                var text = Property(item, "prompt", cotPath, $"[{i - 1}]");
                var m = ChainOfThoughtRegex().Match(text);
                if (!m.Success) throw UserError.At(cotPath, null, field, "expected a conversation, options (A) [[[…]]] and (B) [[[…]]], reasoning and \"So the answer is: (X)\"");
                var conversation = ShortTranscript(m.Groups["conv"].Value, cotPath, field);
                feedbackExamples.Add(new FeedbackExample(conversation, null, m.Groups["a"].Value.Trim(), m.Groups["b"].Value.Trim(),
                    m.Groups["ans"].Value, m.Groups["why"].Value.Trim()));
            }
        }

        return new ConstitutionSet(name ?? "cai-paper", critiques, feedback, critiqueExamples, feedbackExamples);
    }

    public static ConstitutionSet FromCriticRevisionJson(string path, string? name = null)
    {
        using var doc = ReadJson(path);
        var root = doc.RootElement;
        JsonElement list;
        JsonElement? chats = null;
        if (root.ValueKind == JsonValueKind.Array) list = root;
        else if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("constitutions", out var c))
        {
            list = c;
            if (root.TryGetProperty("system_chat", out var s)) chats = s;
        }
        else throw UserError.At(path, null, null, "expected a list of {critic, revision} or an object with \"constitutions\"");
        if (list.ValueKind != JsonValueKind.Array) throw UserError.At(path, null, "constitutions", "must be a list");

        var critiques = new List<CritiquePrinciple>();
        var i = 0;
        foreach (var item in list.EnumerateArray())
        {
            var field = $"constitutions[{i}]";
            critiques.Add(new CritiquePrinciple($"critique{i++}", Property(item, "critic", path, field), Property(item, "revision", path, field)));
        }

        var examples = new List<CritiqueExample>();
        if (chats is { ValueKind: JsonValueKind.Array } chatList)
        {
            var k = 0;
            foreach (var chat in chatList.EnumerateArray())
            {
                var field = $"system_chat[{k++}]";
                var turns = chat.ValueKind == JsonValueKind.Array
                    ? chat.EnumerateArray().Select((t, j) => new ChatMessage(Property(t, "role", path, $"{field}[{j}]"), Property(t, "content", path, $"{field}[{j}]"))).ToList()
                    : throw UserError.At(path, null, field, "must be a list of {role, content}");
                // user prompt, assistant answer, user critique request, assistant critique, user revision request, assistant revision
                if (turns.Count < 6 || turns.Count % 2 != 0 || turns[^1].Role != "assistant")
                    throw UserError.At(path, null, field, "expected a chat ending with: critique request, critique, revision request, revision");
                var n = turns.Count;
                var critiqueRequest = turns[n - 4].Content;
                var revisionRequest = turns[n - 2].Content;
                var principle = critiques.FirstOrDefault(p => p.CritiqueRequest == critiqueRequest && p.RevisionRequest == revisionRequest);
                examples.Add(new CritiqueExample(turns.Take(n - 4).ToList(), principle?.Id, critiqueRequest, turns[n - 3].Content, revisionRequest, turns[n - 1].Content));
            }
        }
        return new ConstitutionSet(name ?? Path.GetFileNameWithoutExtension(path), critiques, [], examples, []);
    }

    // ---- helpers ----

    static JsonDocument ReadJson(string path)
    {
        if (!File.Exists(path)) throw UserError.At(path, null, null, "file not found");
        try { return JsonDocument.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw UserError.At(path, (int?)e.LineNumber + 1, null, $"malformed JSON ({e.Message.Split('.')[0]})"); }
    }

    static JsonElement.ArrayEnumerator Array(JsonDocument doc, string path) =>
        doc.RootElement.ValueKind == JsonValueKind.Array ? doc.RootElement.EnumerateArray() : throw UserError.At(path, null, null, "expected a JSON list");

    static string Property(JsonElement item, string name, string path, string field)
    {
        if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty(name, out var value)) throw UserError.At(path, null, $"{field}.{name}", "is missing");
        if (value.ValueKind != JsonValueKind.String) throw UserError.At(path, null, $"{field}.{name}", "must be text");
        var text = value.GetString()!;
        if (string.IsNullOrWhiteSpace(text)) throw UserError.At(path, null, $"{field}.{name}", "is empty");
        return text;
    }

    static string FirstString(JsonElement item, string name, string path, string field)
    {
        if (!item.TryGetProperty(name, out var value) || value.ValueKind != JsonValueKind.Array || value.GetArrayLength() == 0)
            throw UserError.At(path, null, $"{field}.{name}", "must be a non-empty list of texts");
        return value[0].GetString()?.Trim() ?? throw UserError.At(path, null, $"{field}.{name}[0]", "must be text");
    }

    /// <summary>The text between "Tag:" and the trailing "Next:" (e.g. "\n\nCritiqueRequest: X\n\nCritique:" → "X").</summary>
    static string Between(string text, string tag, string trailer, string path, string field)
    {
        var start = text.IndexOf(tag, StringComparison.Ordinal);
        if (start < 0) throw UserError.At(path, null, field, $"expected \"{tag}\"");
        var body = text[(start + tag.Length)..];
        var end = body.LastIndexOf("\n\n" + trailer, StringComparison.Ordinal);
        if (end >= 0) body = body[..end];
        body = body.Trim();
        if (body.Length == 0) throw UserError.At(path, null, field, "is empty");
        return body;
    }

    /// <summary>"H: …\n\nA: …" lines (the paper's chain-of-thought examples) → chat turns.</summary>
    static List<ChatMessage> ShortTranscript(string text, string path, string field)
    {
        var turns = new List<ChatMessage>();
        foreach (Match m in ShortTurnRegex().Matches(text))
            turns.Add(new ChatMessage(m.Groups["who"].Value == "H" ? "user" : "assistant", m.Groups["text"].Value.Trim()));
        if (turns.Count == 0) throw UserError.At(path, null, field, "no H:/A: turns in the conversation");
        return turns;
    }

    [GeneratedRegex(@"^(?<conv>.*?)\n\nCritiqueRequest:(?<creq>.*?)\n\nCritique:(?<crit>.*?)\n\nRevisionRequest:(?<rreq>.*?)\n\nRevision:(?<rev>.*?)(\n\nHuman:\s*)?$", RegexOptions.Singleline)]
    private static partial Regex CritiqueExampleRegex();

    [GeneratedRegex(@"Consider the following conversation[^\n]*\n(?<conv>.*?)\n\{\}\n\s*\(A\)\s*\[\[\[(?<a>.*?)\]\]\]\s*\(B\)\s*\[\[\[(?<b>.*?)\]\]\]\s*\n\s*Assistant:\s*Let's think step by step:(?<why>.*?)\n\s*Human:\s*\n?So the answer is:\s*\((?<ans>[AB])\)", RegexOptions.Singleline)]
    private static partial Regex ChainOfThoughtRegex();

    [GeneratedRegex(@"(?:^|\n)(?<who>[HA]):(?<text>.*?)(?=\n[HA]:|\z)", RegexOptions.Singleline)]
    private static partial Regex ShortTurnRegex();
}
