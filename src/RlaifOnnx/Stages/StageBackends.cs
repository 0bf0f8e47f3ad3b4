using System.Text.Json;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;

namespace RlaifOnnx.Stages;

/// <summary>
/// Opens the model a data stage talks to: a local model folder (ONNX Runtime GenAI for generation, the
/// ONNX Runtime scorer for log-probs) or an OpenAI-compatible server when the value is a URL.
/// </summary>
public static class StageBackends
{
    public static bool IsUrl(string model) => model.Contains("://", StringComparison.Ordinal);

    public static ITextGenerator OpenGenerator(string model, string? serverModelName, InferenceOptions options, string source, string field)
    {
        if (IsUrl(model)) return new OpenAIBackend(Server(model, serverModelName, options, source, field));
        CheckFolder(model, source, field);
        return new GenAIGenerator(model, options);
    }

    public static IScorer OpenScorer(string model, string? serverModelName, InferenceOptions options, string source, string field)
    {
        if (IsUrl(model)) return new OpenAIBackend(Server(model, serverModelName, options, source, field));
        CheckFolder(model, source, field);
        return new OrtScorer(model, options);
    }

    /// <summary>
    /// A token counter for truncation: the scorer's own tokenizer for a local model; for a server, the UTF-8
    /// byte count, an upper bound on the token count of byte-level BPE tokenizers (so the budget is safe).
    /// </summary>
    public static Func<string, int> TokenCounter(IScorer scorer) => scorer switch
    {
        OrtScorer ort => text => ort.Encode(text).Length,
        _ => text => System.Text.Encoding.UTF8.GetByteCount(text),
    };

    /// <summary>
    /// Tokens a chat takes once the model's chat template is applied, for a local GenAI model; null for a
    /// server (it reports its own limit).
    /// </summary>
    public static Func<IReadOnlyList<ChatMessage>, int>? ChatTokenCounter(ITextGenerator generator) => generator switch
    {
        GenAIGenerator genAI => chat =>
        {
            using var ids = genAI.Tokenizer.Encode(genAI.RenderChat(chat));
            return ids[0].Length;
        },
        _ => null,
    };

    /// <summary>The model's context length from genai_config.json (model.context_length), or null for a server or a folder without it.</summary>
    public static int? ContextLength(string model)
    {
        if (IsUrl(model)) return null;
        var path = Path.Combine(model, "genai_config.json");
        if (!File.Exists(path)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            return doc.RootElement.TryGetProperty("model", out var m) && m.TryGetProperty("context_length", out var c) && c.TryGetInt32(out var n) ? n : null;
        }
        catch (JsonException) { return null; }
    }

    /// <summary>Checks a model value before anything is loaded: an http(s) URL, or a folder with genai_config.json; a <see cref="UserError"/> otherwise.</summary>
    public static void CheckModel(string model, string source, string field)
    {
        if (IsUrl(model)) Server(model, null, new InferenceOptions(), source, field);
        else CheckFolder(model, source, field);
    }

    /// <summary>
    /// Where the server is and how patiently to talk to it: the stage's http_timeout_seconds and
    /// http_deadline_seconds when given, else $RLAIF_HTTP_TIMEOUT / $RLAIF_HTTP_DEADLINE, else 60 s and 5 min.
    /// </summary>
    static OpenAIOptions Server(string url, string? name, InferenceOptions options, string source, string field)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || (uri.Scheme != "http" && uri.Scheme != "https"))
            throw UserError.At(source, null, field, $"'{url}' is not an http(s) URL");
        foreach (var problem in HttpLimits.Problems(options.HttpTimeoutSeconds, options.HttpDeadlineSeconds))
            throw UserError.At(source, null, problem.Key, problem.Problem);
        return new OpenAIOptions { BaseUrl = uri, Model = name }.WithLimits(options.HttpTimeoutSeconds, options.HttpDeadlineSeconds);
    }

    static void CheckFolder(string dir, string source, string field)
    {
        if (!Directory.Exists(dir)) throw UserError.At(source, null, field, $"model folder '{dir}' not found (give a model folder or an http(s):// URL)");
        if (!File.Exists(Path.Combine(dir, "genai_config.json")))
            throw UserError.At(source, null, field, $"'{dir}' is not a model folder (genai_config.json is missing)");
    }
}
