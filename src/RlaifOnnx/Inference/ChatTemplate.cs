using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Core;

namespace RlaifOnnx.Inference;

/// <summary>
/// A model's chat template: the Jinja string in its tokenizer_config.json ("chat_template", either a
/// string or Hugging Face's list of named templates, of which "default" is used), rendered by ONNX
/// Runtime GenAI's own template engine so local generation and the template agree byte for byte.
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>The Jinja source.</summary>
    public string Source { get; }
    /// <summary>Where it came from, for error messages (a tokenizer_config.json path).</summary>
    public string Origin { get; }

    public ChatTemplate(string source, string origin)
    {
        Source = source;
        Origin = origin;
    }

    /// <summary>Reads the template of a model folder; null when tokenizer_config.json has none.</summary>
    public static ChatTemplate? FromFolder(string modelDir)
    {
        var path = Path.Combine(modelDir, "tokenizer_config.json");
        if (!File.Exists(path)) throw UserError.At(path, null, null, "is missing (a model folder needs its tokenizer files)");
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw UserError.At(path, (int?)e.LineNumber + 1, null, $"malformed JSON ({e.Message.Split('.')[0]})"); }
        var node = root?["chat_template"];
        switch (node)
        {
            case null:
                return null;
            case JsonValue v when v.TryGetValue(out string? s):
                return new ChatTemplate(s, path);
            case JsonArray named:
                // Hugging Face's multi-template form: [{"name": "default", "template": "..."}, {"name": "tool_use", ...}].
                foreach (var entry in named)
                    if (entry?["name"]?.GetValue<string>() == "default" && entry["template"]?.GetValue<string>() is { } t)
                        return new ChatTemplate(t, path);
                throw UserError.At(path, null, "chat_template", "is a list of named templates without one named \"default\"");
            default:
                throw UserError.At(path, null, "chat_template", "must be a string or a list of {name, template}");
        }
    }

    /// <summary>The messages as the JSON array the template engine reads: [{"role": ..., "content": ...}].</summary>
    public static string MessagesJson(IReadOnlyList<ChatMessage> messages)
    {
        var array = new JsonArray();
        foreach (var m in messages) array.Add(new JsonObject { ["role"] = m.Role, ["content"] = m.Content });
        return array.ToJsonString();
    }

    /// <summary>
    /// A conversation and the turn(s) that follow it as the template renders them: the prompt is the
    /// conversation with the generation prompt appended, the completion is what the whole rendering adds
    /// to it. Null when the template does not render the whole as the prompt followed by more text.
    /// Language-model training (loss on the completion) and the preference model (a response scored in
    /// its context) both read conversations through here.
    /// </summary>
    public (string Prompt, string Completion)? RenderPromptAndCompletion(Tokenizer tokenizer, IReadOnlyList<ChatMessage> promptMessages,
        IReadOnlyList<ChatMessage> completionMessages)
    {
        var promptText = Render(tokenizer, promptMessages, addGenerationPrompt: true);
        var fullText = Render(tokenizer, [.. promptMessages, .. completionMessages], addGenerationPrompt: false);
        return fullText.StartsWith(promptText, StringComparison.Ordinal) ? (promptText, fullText[promptText.Length..]) : null;
    }

    /// <summary>
    /// Renders a conversation to the prompt text. A template GenAI's engine cannot render (an unsupported
    /// Jinja feature, or the template raising an exception for these messages) is a UserError naming the
    /// tokenizer_config.json and GenAI's reason.
    /// </summary>
    public string Render(Tokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        try
        {
            return tokenizer.ApplyChatTemplate(Source, MessagesJson(messages), "", addGenerationPrompt);
        }
        catch (OnnxRuntimeGenAIException e)
        {
            // GenAI's message carries a caret diagram over several lines; its first line is the reason.
            var reason = e.Message.Split('\n', 2)[0].Trim();
            throw UserError.At(Origin, null, "chat_template", $"ONNX Runtime GenAI cannot render this chat template: {reason}");
        }
    }
}
