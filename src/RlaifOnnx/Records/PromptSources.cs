using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using RlaifOnnx.Core;

namespace RlaifOnnx.Records;

/// <summary>A prompt for the revise stage or for sampling: the conversation the assistant answers next.</summary>
public sealed record PromptItem(string Id, IReadOnlyList<ChatMessage> Messages)
{
    /// <summary>The last user turn: what the assistant is asked.</summary>
    public string LastUserText => Messages.LastOrDefault(m => m.Role == "user")?.Content ?? "";
}

/// <summary>
/// Two candidate answers to one conversation, for the label stage. <see cref="HumanChoseA"/> is the human
/// preference when the input had one (chosen/rejected), else null.
/// </summary>
public sealed record PairItem(string Id, IReadOnlyList<ChatMessage> Context, string ResponseA, string ResponseB, bool? HumanChoseA);

/// <summary>How an hh-rlhf transcript becomes a prompt.</summary>
public enum TranscriptPrompt
{
    /// <summary>Only the first human turn (the paper's red-team prompts are first turns).</summary>
    FirstTurn,
    /// <summary>Every turn before the last assistant answer.</summary>
    FullContext,
}

/// <summary>
/// Prompt and pair sources. Files:
/// <list type="bullet">
/// <item>JSONL (.jsonl or .jsonl.gz), one record per line: <c>{"prompt": "…"}</c>; <c>{"messages": [{role, content}…]}</c>
/// in TRL's chat format (trailing assistant turns are dropped: the prompt is what comes before the answer);
/// or hh-rlhf <c>{"chosen": "\n\nHuman: …\n\nAssistant: …", …}</c> transcripts. An optional "id" names the record.</item>
/// <item>plain text (any other extension): one prompt per non-empty line.</item>
/// <item><c>builtin:NAME</c>: the project's own prompt sets (<see cref="BuiltinSets"/>).</item>
/// </list>
/// Records without an id get one from a hash of their content, so a rerun over the same file finds the
/// same ids (resume) and a reordered file keeps them.
/// </summary>
public static class PromptSources
{
    public const string BuiltinPrefix = "builtin:";

    /// <summary>The project's own prompt sets, each with a held-out split for evaluation.</summary>
    public static readonly string[] BuiltinSets = ["red-team-train", "red-team-eval", "helpful-train", "helpful-eval"];

    /// <summary>"builtin:NAME" survives a config loader that resolved it against the config's folder.</summary>
    static string Normalize(string source)
    {
        var name = Path.GetFileName(source);
        return !source.StartsWith(BuiltinPrefix, StringComparison.Ordinal) && name.StartsWith(BuiltinPrefix, StringComparison.Ordinal) && !File.Exists(source)
            ? name
            : source;
    }

    public static List<PromptItem> ReadPrompts(string source, TranscriptPrompt transcriptPrompt = TranscriptPrompt.FirstTurn)
    {
        source = Normalize(source);
        var items = new List<PromptItem>();
        var ids = new IdAssigner();
        if (!source.StartsWith(BuiltinPrefix, StringComparison.Ordinal) && !IsJsonl(source))
        {
            if (!File.Exists(source)) throw UserError.At(source, null, null, "prompt file not found");
            var lineNumber = 0;
            foreach (var line in File.ReadLines(source))
            {
                lineNumber++;
                if (line.Trim().Length == 0) continue;
                var messages = new List<ChatMessage> { new("user", line.Trim()) };
                items.Add(new PromptItem(ids.Assign(null, messages, source, lineNumber), messages));
            }
        }
        else
        {
            foreach (var (line, record) in ReadJsonl(source))
            {
                var messages = PromptMessages(record, source, line, transcriptPrompt);
                items.Add(new PromptItem(ids.Assign(OptionalId(record, source, line), messages, source, line), messages));
            }
        }
        if (items.Count == 0) throw UserError.At(source, null, null, "no prompts in the file");
        return items;
    }

    /// <summary>
    /// Pairs from JSONL: <c>{prompt, response_a, response_b[, preferred: "a"|"b"]}</c>,
    /// <c>{prompt, chosen, rejected}</c> (prompt text or TRL messages; answers text or messages), or hh-rlhf
    /// <c>{chosen, rejected}</c> transcripts. Chosen/rejected pairs are placed as a/b by a seeded coin per
    /// record so the human-preferred answer is not always in the same position.
    /// </summary>
    public static List<PairItem> ReadPairs(string source, int seed)
    {
        source = Normalize(source);
        var items = new List<PairItem>();
        var ids = new IdAssigner();
        foreach (var (line, record) in ReadJsonl(source))
        {
            IReadOnlyList<ChatMessage> context;
            string a, b;
            bool? humanChoseA = null;
            if (record.TryGetProperty("response_a", out _))
            {
                context = PromptMessages(record, source, line, TranscriptPrompt.FullContext);
                a = Answer(record, "response_a", source, line);
                b = Answer(record, "response_b", source, line);
                if (record.TryGetProperty("preferred", out var pref))
                {
                    var value = pref.ValueKind == JsonValueKind.String ? pref.GetString()?.Trim().ToLowerInvariant() : null;
                    humanChoseA = value switch
                    {
                        "a" => true,
                        "b" => false,
                        _ => throw UserError.At(source, line, "preferred", "must be \"a\" or \"b\""),
                    };
                }
            }
            else if (record.TryGetProperty("chosen", out _))
            {
                string chosen, rejected;
                if (record.TryGetProperty("prompt", out _) || record.TryGetProperty("messages", out _))
                {
                    context = PromptMessages(record, source, line, TranscriptPrompt.FullContext);
                    chosen = Answer(record, "chosen", source, line);
                    rejected = Answer(record, "rejected", source, line);
                }
                else
                {
                    var (ctx, c, r) = Transcript.SplitPair(Text(record, "chosen", source, line), Text(record, "rejected", source, line), source, line);
                    context = ctx;
                    chosen = c;
                    rejected = r;
                }
                var key = ids.Peek(OptionalId(record, source, line), [.. context, new("assistant", chosen), new("assistant", rejected)]);
                var chosenIsA = (StableHash(seed, key) & 1) == 0;
                (a, b, humanChoseA) = chosenIsA ? (chosen, rejected, true) : (rejected, chosen, false);
            }
            else throw UserError.At(source, line, "response_a", "is missing (a pair needs response_a/response_b or chosen/rejected)");
            // An empty answer is kept: the public hh-rlhf data has a few, and "said nothing" is a legitimate (bad) answer.
            var id = ids.Assign(OptionalId(record, source, line), [.. context, new("assistant", a), new("assistant", b)], source, line);
            items.Add(new PairItem(id, context, a, b, humanChoseA));
        }
        if (items.Count == 0) throw UserError.At(source, null, null, "no pairs in the file");
        return items;
    }

    // ---- records ----

    static List<ChatMessage> PromptMessages(JsonElement record, string source, int line, TranscriptPrompt transcriptPrompt)
    {
        List<ChatMessage> messages;
        if (record.TryGetProperty("messages", out _) && !record.TryGetProperty("prompt", out _))
            messages = Messages(record.GetProperty("messages"), source, line, "messages");
        else if (record.TryGetProperty("prompt", out var prompt) && prompt.ValueKind == JsonValueKind.Array)
            messages = Messages(prompt, source, line, "prompt");
        else if (record.TryGetProperty("prompt", out _))
        {
            var text = Text(record, "prompt", source, line);
            messages = LooksLikeTranscript(text) ? Transcript.Parse(text, source, line, "prompt") : [new ChatMessage("user", text.Trim())];
        }
        else if (record.TryGetProperty("chosen", out _))
            messages = Transcript.Parse(Text(record, "chosen", source, line), source, line, "chosen");
        else throw UserError.At(source, line, "prompt", "is missing (give prompt, messages, or an hh-rlhf chosen transcript)");

        // The prompt is what comes before an answer: drop trailing assistant turns.
        while (messages.Count > 0 && messages[^1].Role == "assistant") messages.RemoveAt(messages.Count - 1);
        if (transcriptPrompt == TranscriptPrompt.FirstTurn && messages.Count > 1 && record.TryGetProperty("chosen", out _))
        {
            var first = messages.FindIndex(m => m.Role == "user");
            messages = [messages[first]];
        }
        if (messages.Count == 0 || messages.All(m => m.Content.Trim().Length == 0))
            throw UserError.At(source, line, "prompt", "is empty");
        if (messages.FindLastIndex(m => m.Role == "user") is var lastUser && (lastUser < 0 || messages[lastUser].Content.Trim().Length == 0))
            throw UserError.At(source, line, "prompt", "is empty (the last user turn has no text)");
        return messages;
    }

    static bool LooksLikeTranscript(string text) => text.TrimStart().StartsWith("Human:", StringComparison.Ordinal);

    static List<ChatMessage> Messages(JsonElement array, string source, int line, string field)
    {
        if (array.ValueKind != JsonValueKind.Array) throw UserError.At(source, line, field, "must be a list of {role, content}");
        var messages = new List<ChatMessage>();
        var i = 0;
        foreach (var m in array.EnumerateArray())
        {
            var f = $"{field}[{i++}]";
            if (m.ValueKind != JsonValueKind.Object) throw UserError.At(source, line, f, "must be {role, content}");
            var role = Text(m, "role", source, line, f + ".");
            if (role is not ("system" or "user" or "assistant")) throw UserError.At(source, line, f + ".role", $"'{role}' is not one of system, user, assistant");
            if (!m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                throw UserError.At(source, line, f + ".content", "is missing");
            messages.Add(new ChatMessage(role, content.GetString()!));
        }
        return messages;
    }

    /// <summary>An answer: text, or TRL's conversational form (a list of messages; the last assistant turn's text).</summary>
    static string Answer(JsonElement record, string field, string source, int line)
    {
        if (record.TryGetProperty(field, out var value) && value.ValueKind == JsonValueKind.Array)
        {
            var turns = Messages(value, source, line, field);
            return turns.LastOrDefault(t => t.Role == "assistant")?.Content ?? throw UserError.At(source, line, field, "has no assistant turn");
        }
        return Text(record, field, source, line);
    }

    static string Text(JsonElement record, string field, string source, int line, string prefix = "")
    {
        if (!record.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) throw UserError.At(source, line, prefix + field, "is missing");
        if (value.ValueKind != JsonValueKind.String) throw UserError.At(source, line, prefix + field, "must be text");
        return value.GetString()!;
    }

    static string? OptionalId(JsonElement record, string source, int line)
    {
        if (!record.TryGetProperty("id", out var id) || id.ValueKind == JsonValueKind.Null) return null;
        return id.ValueKind switch
        {
            JsonValueKind.String when id.GetString()!.Trim().Length > 0 => id.GetString()!,
            JsonValueKind.Number => id.GetRawText(),
            _ => throw UserError.At(source, line, "id", "must be non-empty text or a number"),
        };
    }

    // ---- files ----

    static bool IsJsonl(string path) => path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".jsonl.gz", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".json", StringComparison.OrdinalIgnoreCase);

    /// <summary>Every non-blank line as a JSON object, with its 1-based line number. A malformed line → file:line error.</summary>
    public static IEnumerable<(int Line, JsonElement Record)> ReadJsonl(string source)
    {
        using var reader = OpenText(source);
        var lineNumber = 0;
        while (Jsonl.ReadLine(reader, source, lineNumber + 1) is { } line)
        {
            lineNumber++;
            if (line.Trim().Length == 0) continue;
            JsonElement record;
            try
            {
                using var doc = JsonDocument.Parse(line);
                record = doc.RootElement.Clone();
            }
            catch (JsonException e) { throw UserError.At(source, lineNumber, null, $"malformed JSON ({e.Message.Split(". ")[0]})"); }
            if (record.ValueKind != JsonValueKind.Object) throw UserError.At(source, lineNumber, null, "each line must be a JSON object");
            yield return (lineNumber, record);
        }
    }

    static TextReader OpenText(string source)
    {
        if (source.StartsWith(BuiltinPrefix, StringComparison.Ordinal))
        {
            var name = source[BuiltinPrefix.Length..];
            var stream = typeof(PromptSources).Assembly.GetManifestResourceStream($"RlaifOnnx.Records.Prompts.{name}.jsonl")
                ?? throw UserError.At(source, null, null, $"no built-in prompt set '{name}' (known: {string.Join(", ", BuiltinSets)})");
            return new StreamReader(stream);
        }
        if (!File.Exists(source)) throw UserError.At(source, null, null, "file not found");
        return Jsonl.OpenText(source);
    }

    // ---- ids ----

    /// <summary>A stable integer from (seed, text), for per-record coin flips that survive a rerun.</summary>
    public static ulong StableHash(int seed, string text)
    {
        var bytes = SHA256.HashData(Encoding.UTF8.GetBytes($"{seed}\u0000{text}"));
        return BitConverter.ToUInt64(bytes, 0);
    }

    /// <summary>Explicit ids must be unique; content-hash ids get "-2", "-3"… when the same content repeats.</summary>
    sealed class IdAssigner
    {
        readonly Dictionary<string, int> _seen = [];

        public string Peek(string? explicitId, IReadOnlyList<ChatMessage> content) => explicitId ?? ContentHash(content);

        public string Assign(string? explicitId, IReadOnlyList<ChatMessage> content, string source, int line)
        {
            if (explicitId is not null)
            {
                if (!_seen.TryAdd(explicitId, line)) throw UserError.At(source, line, "id", $"duplicate id '{explicitId}' (also on line {_seen[explicitId]})");
                return explicitId;
            }
            var id = ContentHash(content);
            var candidate = id;
            for (var n = 2; !_seen.TryAdd(candidate, line); n++) candidate = $"{id}-{n}";
            return candidate;
        }

        static string ContentHash(IReadOnlyList<ChatMessage> content)
        {
            var sb = new StringBuilder();
            foreach (var m in content) sb.Append(m.Role).Append('\u0001').Append(m.Content).Append('\u0002');
            return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())))[..16];
        }
    }
}
