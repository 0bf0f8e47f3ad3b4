using System.Text.Json;
using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Training;

namespace RlaifOnnx.Stages;

/// <summary>
/// Prompt + completion pairs as the token ids a model folder trains on, with the completion's tokens marked
/// as targets: plain strings are encoded as they are (the completion followed by the end-of-sequence token),
/// message lists are rendered with the folder's chat template (the prompt with the generation prompt, the
/// completion as what the whole conversation adds to it, its end-of-turn included). Tokenised by ONNX Runtime
/// GenAI, so training sees exactly the ids generation will. TRL's SFT and preference formats both come down
/// to this (a preference line is two completions of one prompt).
/// </summary>
public sealed class CompletionEncoder : IDisposable
{
    readonly Config genaiConfig;
    readonly Model genaiModel;
    readonly Tokenizer tokenizer;
    readonly ChatTemplate? template;
    readonly int eosTokenId;
    readonly int vocabSize;

    public CompletionEncoder(string modelDir, ModelConfig model)
    {
        try
        {
            genaiConfig = new Config(modelDir);
            genaiModel = new Model(genaiConfig);
            tokenizer = new Tokenizer(genaiModel);
        }
        catch (OnnxRuntimeGenAIException e)
        {
            // A folder whose files GenAI cannot read is the user's to fix: named, one line.
            throw UserError.At(modelDir, null, null, $"ONNX Runtime GenAI cannot load this model folder: {e.Message.Split('\n', 2)[0]}");
        }
        template = ChatTemplate.FromFolder(modelDir);
        eosTokenId = model.EosTokenId;
        vocabSize = model.VocabSize;
    }

    /// <summary>The ids of a text, with no special token added; an id past the model's embedding is a <see cref="UserError"/>.</summary>
    public int[] Encode(string text)
    {
        using var s = tokenizer.Encode(text);
        var ids = s[0].ToArray();
        TokenizerVocabulary.Check(ids, vocabSize);
        return ids;
    }

    /// <summary>
    /// One prompt + completion (each a string or a list of {role, content} messages) as ids and a target mask
    /// (1 on the completion); a value of the wrong shape is a <see cref="UserError"/> naming file, line and field.
    /// </summary>
    public TokenSequence Encode(JsonElement prompt, JsonElement completion, string file, int line, string promptField = "prompt", string completionField = "completion")
    {
        if (prompt.ValueKind == JsonValueKind.String && completion.ValueKind == JsonValueKind.String)
            return Join(Encode(prompt.GetString()!), [.. Encode(completion.GetString()!), eosTokenId]);
        return Encode(Messages(prompt, file, line, promptField), Messages(completion, file, line, completionField), file, line, completionField);
    }

    /// <summary>A conversation and the turns that answer it, rendered with the chat template.</summary>
    public TokenSequence Encode(IReadOnlyList<ChatMessage> prompt, IReadOnlyList<ChatMessage> completion, string file, int line, string completionField = "completion")
    {
        if (template is null) throw UserError.At(file, line, completionField, "the model folder's tokenizer_config.json has no chat_template to render messages with");
        var (promptText, completionText) = template.RenderPromptAndCompletion(tokenizer, prompt, completion)
            ?? throw UserError.At(file, line, completionField, "the chat template does not render the conversation as the prompt followed by the answer");
        // The template ends the assistant turn itself: no end-of-sequence token is added.
        return Join(Encode(promptText), Encode(completionText));
    }

    static TokenSequence Join(int[] prompt, int[] completion) =>
        new([.. prompt, .. completion], [.. prompt.Select(_ => (byte)0), .. completion.Select(_ => (byte)1)]);

    /// <summary>A JSON list of {role, content} messages, checked.</summary>
    public static List<ChatMessage> Messages(JsonElement value, string file, int line, string field)
    {
        if (value.ValueKind != JsonValueKind.Array)
            throw UserError.At(file, line, field, "must be a string or a list of {role, content} messages");
        var list = new List<ChatMessage>();
        var i = 0;
        foreach (var m in value.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                || !m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                throw UserError.At(file, line, $"{field}[{i}]", "must be an object with string role and content");
            list.Add(new ChatMessage(role.GetString()!, content.GetString()!));
            i++;
        }
        if (list.Count == 0) throw UserError.At(file, line, field, "is an empty message list");
        return list;
    }

    public void Dispose()
    {
        tokenizer.Dispose();
        genaiModel.Dispose();
        genaiConfig.Dispose();
    }
}
