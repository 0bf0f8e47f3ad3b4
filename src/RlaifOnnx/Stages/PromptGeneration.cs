using System.Text.Json;
using System.Text.Json.Nodes;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;

namespace RlaifOnnx.Stages;

/// <summary>One prompt of a prompts file: raw text or a conversation, with the line it came from.</summary>
public sealed record PromptEntry(int Line, string? Prompt, IReadOnlyList<ChatMessage>? Messages);

/// <summary>
/// `rlaif generate`: answers every prompt of a file and writes one JSONL line per prompt, in input order.
/// Input: JSONL where each line holds "prompt" (text, continued as is unless <c>chat</c> is set) or
/// "messages" ([{role, content}] as TRL's conversational format; the chat template is applied), or a
/// .txt file with one prompt per line. Blank lines are skipped. Output lines are
/// {"prompt": ..., "completion": ...} or {"messages": [...], "completion": ...}, written atomically
/// once everything is generated, so a failure leaves no half file.
/// </summary>
public static class PromptGeneration
{
    static readonly JsonSerializerOptions OutputJson = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    static readonly HashSet<string> Roles = ["system", "user", "assistant"];

    /// <summary>Reads and checks the whole file first: a bad line is a UserError "file:line: field: problem".</summary>
    public static IReadOnlyList<PromptEntry> Read(string path)
    {
        if (!File.Exists(path)) throw UserError.At(path, null, null, "does not exist");
        var entries = new List<PromptEntry>();
        var plainText = path.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".txt.gz", StringComparison.OrdinalIgnoreCase);
        var number = 0;
        using var reader = Jsonl.OpenText(path);   // .gz decompressed; invalid UTF-8 refused, not replaced
        while (Jsonl.ReadLine(reader, path, number + 1) is { } line)
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            entries.Add(plainText ? new PromptEntry(number, line, null) : ParseJsonLine(path, number, line));
        }
        if (entries.Count == 0) throw UserError.At(path, null, null, "holds no prompts");
        return entries;
    }

    static PromptEntry ParseJsonLine(string path, int number, string line)
    {
        JsonNode? node;
        try { node = JsonNode.Parse(line); }
        catch (JsonException e) { throw UserError.At(path, number, null, $"malformed JSON ({e.Message.Split('.')[0]})"); }
        if (node is not JsonObject obj) throw UserError.At(path, number, null, "must be a JSON object with \"prompt\" or \"messages\"");
        var hasPrompt = obj.TryGetPropertyValue("prompt", out var prompt);
        var hasMessages = obj.TryGetPropertyValue("messages", out var messages);
        if (hasPrompt && hasMessages) throw UserError.At(path, number, "prompt", "give either \"prompt\" or \"messages\", not both");
        if (hasPrompt)
        {
            if (prompt is JsonValue v && v.TryGetValue(out string? text)) return new PromptEntry(number, text, null);
            throw UserError.At(path, number, "prompt", "must be a string");
        }
        if (!hasMessages) throw UserError.At(path, number, "prompt", "is missing (each line needs \"prompt\" or \"messages\")");
        if (messages is not JsonArray array || array.Count == 0)
            throw UserError.At(path, number, "messages", "must be a non-empty array of {\"role\", \"content\"}");
        var turns = new List<ChatMessage>();
        for (var i = 0; i < array.Count; i++)
        {
            var field = $"messages[{i}]";
            if (array[i] is not JsonObject turn) throw UserError.At(path, number, field, "must be an object {\"role\", \"content\"}");
            var role = turn["role"] is JsonValue r && r.TryGetValue(out string? rs) ? rs : null;
            if (role is null) throw UserError.At(path, number, $"{field}.role", "must be a string");
            if (!Roles.Contains(role)) throw UserError.At(path, number, $"{field}.role", $"'{role}' is not one of system, user, assistant");
            var content = turn["content"] is JsonValue c && c.TryGetValue(out string? cs) ? cs : null;
            if (content is null) throw UserError.At(path, number, $"{field}.content", "must be a string");
            turns.Add(new ChatMessage(role, content));
        }
        return new PromptEntry(number, null, turns);
    }

    /// <summary>
    /// Generates for every entry (raw prompts and conversations in one batch each) and writes the output
    /// atomically. With <paramref name="chat"/>, a raw prompt becomes one user turn of a conversation.
    /// </summary>
    public static async Task<int> RunAsync(ITextGenerator generator, IReadOnlyList<PromptEntry> entries, string outPath, SamplingOptions sampling, bool chat, CancellationToken cancellationToken)
    {
        var asChat = entries.Select(e => e.Messages ?? (chat ? [new ChatMessage("user", e.Prompt!)] : null)).ToList();
        var rawIndices = Enumerable.Range(0, entries.Count).Where(i => asChat[i] is null).ToList();
        var chatIndices = Enumerable.Range(0, entries.Count).Where(i => asChat[i] is not null).ToList();

        var completions = new string[entries.Count];
        if (rawIndices.Count > 0)
        {
            var outputs = await generator.CompleteAsync(rawIndices.Select(i => entries[i].Prompt!).ToList(), sampling, cancellationToken);
            for (var k = 0; k < rawIndices.Count; k++) completions[rawIndices[k]] = outputs[k];
        }
        if (chatIndices.Count > 0)
        {
            var outputs = await generator.ChatAsync(chatIndices.Select(i => asChat[i]!).ToList(), sampling, cancellationToken);
            for (var k = 0; k < chatIndices.Count; k++) completions[chatIndices[k]] = outputs[k];
        }

        AtomicFile.Write(outPath, stream =>
        {
            using var writer = new StreamWriter(stream, new System.Text.UTF8Encoding(false), leaveOpen: true) { NewLine = "\n" };
            for (var i = 0; i < entries.Count; i++) writer.WriteLine(OutputLine(entries[i], completions[i]));
        });
        return entries.Count;
    }

    static string OutputLine(PromptEntry entry, string completion)
    {
        var line = new JsonObject();
        if (entry.Messages is null) line["prompt"] = entry.Prompt;
        else line["messages"] = new JsonArray(entry.Messages.Select(m => (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content }).ToArray());
        line["completion"] = completion;
        return line.ToJsonString(OutputJson);
    }
}
