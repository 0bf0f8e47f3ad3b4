using System.Text;
using RlaifOnnx.Core;

namespace RlaifOnnx.Records;

/// <summary>
/// The hh-rlhf transcript format: "\n\nHuman: …\n\nAssistant: …" repeated. Turns map to chat messages
/// (Human → user, Assistant → assistant). Also renders conversations back into that format, which is how
/// the feedback model sees a conversation (paper §4.1 prompt).
/// </summary>
public static class Transcript
{
    const string HumanTag = "Human:";
    const string AssistantTag = "Assistant:";

    /// <summary>Splits a transcript into turns. Text before the first tag is an error; an empty turn is kept empty.</summary>
    public static List<ChatMessage> Parse(string transcript, string source, int? line, string field)
    {
        var messages = new List<ChatMessage>();
        var text = transcript;
        var position = 0;
        string? role = null;
        var start = 0;
        while (true)
        {
            var (next, tag) = NextTag(text, position);
            if (role is null)
            {
                if (next < 0 || text[..next].Trim().Length > 0)
                    throw UserError.At(source, line, field, "not an hh-rlhf transcript (expected it to start with \"Human:\")");
            }
            else
            {
                var end = next < 0 ? text.Length : next;
                messages.Add(new ChatMessage(role, text[start..end].Trim()));
            }
            if (next < 0) break;
            role = tag == HumanTag ? "user" : "assistant";
            start = next + tag.Length;
            position = start;
        }
        return messages;
    }

    /// <summary>The next "Human:" or "Assistant:" that starts a line (at the very beginning or after a newline).</summary>
    static (int Index, string Tag) NextTag(string text, int from)
    {
        var best = -1;
        var bestTag = "";
        foreach (var tag in new[] { HumanTag, AssistantTag })
        {
            var i = from;
            while ((i = text.IndexOf(tag, i, StringComparison.Ordinal)) >= 0)
            {
                if (i == 0 || text[i - 1] == '\n') break;
                i += tag.Length;
            }
            if (i >= 0 && (best < 0 || i < best)) { best = i; bestTag = tag; }
        }
        return (best, bestTag);
    }

    /// <summary>Renders turns as "\n\nHuman: …\n\nAssistant: …" (system turns are shown as Human turns).</summary>
    public static string Render(IEnumerable<ChatMessage> messages)
    {
        var sb = new StringBuilder();
        foreach (var m in messages)
            sb.Append("\n\n").Append(m.Role == "assistant" ? AssistantTag : HumanTag).Append(' ').Append(m.Content);
        return sb.ToString();
    }

    /// <summary>
    /// An hh-rlhf chosen/rejected pair: both transcripts share all turns but the last assistant turn.
    /// Returns the shared context (ending with the human turn) and the two final answers. The split is at
    /// the last "Assistant:" tag inside the two texts' common prefix, which also handles the few public
    /// records where one side has two assistant turns in a row.
    /// </summary>
    public static (List<ChatMessage> Context, string Chosen, string Rejected) SplitPair(string chosen, string rejected, string source, int? line)
    {
        var common = 0;
        while (common < chosen.Length && common < rejected.Length && chosen[common] == rejected[common]) common++;
        var split = -1;
        for (var i = Math.Min(common, chosen.Length - AssistantTag.Length); i >= 0; i--)
            if (string.CompareOrdinal(chosen, i, AssistantTag, 0, AssistantTag.Length) == 0 && (i == 0 || chosen[i - 1] == '\n'))
            { split = i; break; }
        if (split < 0)
            throw UserError.At(source, line, "chosen", "chosen and rejected must share a conversation that ends before a final \"Assistant:\" turn");
        var context = Parse(chosen[..split], source, line, "chosen");
        if (context.Count == 0 || context[^1].Role != "user")
            throw UserError.At(source, line, "chosen", "the shared conversation must end with a Human turn");
        return (context, chosen[(split + AssistantTag.Length)..].Trim(), rejected[(split + AssistantTag.Length)..].Trim());
    }
}
