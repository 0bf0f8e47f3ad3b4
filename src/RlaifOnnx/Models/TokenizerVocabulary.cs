using System.Text.Json;
using RlaifOnnx.Core;

namespace RlaifOnnx.Models;

/// <summary>
/// The tokenizer's id range against the model's embedding. Exported test models often have a small
/// embedding and a full tokenizer (GenAI's tiny GPT-2: 1,000 rows, 50,257 tokens); such a model imports
/// and runs on ids below its vocabulary, but any text that encodes past it must stop with one line
/// instead of an ONNX Runtime Gather error.
/// </summary>
public static class TokenizerVocabulary
{
    /// <summary>One more than the highest id tokenizer.json can produce (model vocab and added tokens); null when unreadable.</summary>
    public static int? IdCount(string tokenizerJsonPath)
    {
        if (!File.Exists(tokenizerJsonPath)) return null;
        try
        {
            using var stream = File.OpenRead(tokenizerJsonPath);
            using var doc = JsonDocument.Parse(stream);
            var highest = -1;
            if (doc.RootElement.TryGetProperty("model", out var model) && model.TryGetProperty("vocab", out var vocab))
            {
                if (vocab.ValueKind == JsonValueKind.Object)
                    foreach (var p in vocab.EnumerateObject()) if (p.Value.TryGetInt32(out var id)) highest = Math.Max(highest, id);
                if (vocab.ValueKind == JsonValueKind.Array) highest = Math.Max(highest, vocab.GetArrayLength() - 1); // Unigram: [piece, score] by id
            }
            if (doc.RootElement.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
                foreach (var t in added.EnumerateArray()) if (t.TryGetProperty("id", out var id) && id.TryGetInt32(out var i)) highest = Math.Max(highest, i);
            return highest < 0 ? null : highest + 1;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The warning for a tokenizer with more ids than the embedding has rows; null when they fit.</summary>
    public static string? MismatchWarning(string modelDir, int vocabSize) =>
        IdCount(Path.Combine(modelDir, ModelFolder.TokenizerFile)) is { } ids && ids > vocabSize
            ? $"the tokenizer has {ids} token ids but the model's embedding has {vocabSize} rows: text that encodes to an id of {vocabSize} or more cannot be used with this model"
            : null;

    /// <summary>Throws the one-line error for the first id past the vocabulary.</summary>
    public static void Check(ReadOnlySpan<int> ids, int vocabSize)
    {
        foreach (var id in ids)
            if (id < 0 || id >= vocabSize) throw new UserError($"token id {id} is past this model's vocabulary of {vocabSize}");
    }
}
