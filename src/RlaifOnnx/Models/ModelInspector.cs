using System.Globalization;
using System.Text;
using System.Text.Json;
using RlaifOnnx.Core;
using RlaifOnnx.Models.Import;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Models;

/// <summary>
/// A readable summary of a model folder for `rlaif model inspect`: architecture, sizes, parameter count,
/// tied or not, role and lineage, and every file with its size. Reads our own folders (rlaif.json),
/// Hugging Face checkpoint folders (config.json + safetensors) and bare ONNX Runtime GenAI exports
/// (genai_config.json + model.onnx), so one command answers "what is in this folder?".
/// </summary>
public static class ModelInspector
{
    public static string Describe(string dir)
    {
        ModelFolder.RequireExists(dir);
        var rows = new List<(string Key, string Value)> { ("folder", Path.GetFullPath(dir)) };
        var tail = new StringBuilder();
        if (File.Exists(Path.Combine(dir, ModelFolder.MetadataFile)))
        {
            var meta = ModelFolder.ReadMetadata(dir);
            // The loaders' own checks: missing, truncated or misshapen weights are an error, not an "OK".
            ModelFolder.Validate(dir);
            rows.Add(("format", "rlaif model folder"));
            // A preference model has no LM head but a scalar one: count its own weights.
            var parameters = meta.Role == PreferenceModelFolder.Role
                ? PreferenceModelGraphs.Shapes(meta.Config).Values.Sum(s => s.Aggregate(1L, (a, b) => a * b))
                : meta.Config.ParameterCount;
            AddConfig(rows, meta.Config, parameters, isPreferenceModel: meta.Role == PreferenceModelFolder.Role);
            rows.Add(("role", meta.Role));
            if (TokenizerVocabulary.MismatchWarning(dir, meta.Config.VocabSize) is { } warning) rows.Add(("warning", warning));
            tail.AppendLine("lineage:");
            if (meta.Lineage.Count == 0) tail.AppendLine("  (none)");
            foreach (var step in meta.Lineage)
                tail.AppendLine($"  {step.At.ToUniversalTime():yyyy-MM-dd HH:mm:ss}Z  {step.Step}{(step.From is null ? "" : $" from {step.From}")}");
        }
        else if (File.Exists(Path.Combine(dir, HfCheckpoint.ConfigFile)))
        {
            var hf = HfCheckpoint.ReadConfig(Path.Combine(dir, HfCheckpoint.ConfigFile));
            rows.Add(("format", "Hugging Face checkpoint (`rlaif model build` converts it)"));
            AddConfig(rows, hf.Config, SafetensorsCheckpoint.Exists(dir) ? CheckpointParameters(dir, hf.Config) : null);
            foreach (var note in hf.Notes) rows.Add(("note", note));
        }
        else if (File.Exists(Path.Combine(dir, ModelFolder.GenAIConfigFile)))
        {
            rows.Add(("format", "ONNX Runtime GenAI folder without rlaif.json (`rlaif model import` converts it)"));
            AddGenAIConfig(rows, dir);
        }
        else
        {
            throw UserError.At(dir, null, null, "not a model folder (no rlaif.json, config.json or genai_config.json)");
        }

        var width = rows.Max(r => r.Key.Length) + 2;
        var text = new StringBuilder();
        foreach (var (key, value) in rows) text.AppendLine($"{key.PadRight(width)}{value}");
        text.Append(tail);
        text.AppendLine("files:");
        var files = new DirectoryInfo(dir).GetFiles().OrderBy(f => f.Name, StringComparer.Ordinal).ToList();
        var nameWidth = files.Count == 0 ? 0 : files.Max(f => f.Name.Length) + 2;
        foreach (var f in files) text.AppendLine($"  {f.Name.PadRight(nameWidth)}{Size(f.Length),10}  ({f.Length.ToString("N0", CultureInfo.InvariantCulture)} bytes)");
        text.AppendLine($"  total {Size(files.Sum(f => f.Length))}");
        return text.ToString();
    }

    static void AddConfig(List<(string, string)> rows, ModelConfig c, long? parameters, bool isPreferenceModel = false)
    {
        var inv = CultureInfo.InvariantCulture;
        rows.Add(("architecture", c.Architecture.ToString()));
        rows.Add(("model type", c.ModelType));
        rows.Add(("vocab size", c.VocabSize.ToString(inv)));
        rows.Add(("hidden size", c.HiddenSize.ToString(inv)));
        rows.Add(("layers", c.NumLayers.ToString(inv)));
        rows.Add(("heads", $"{c.NumHeads} (key/value {c.NumKvHeads}, head size {c.HeadDim})"));
        rows.Add(("intermediate size", c.IntermediateSize.ToString(inv)));
        rows.Add(("context length", c.MaxPositions.ToString(inv)));
        rows.Add(("activation", c.HiddenAct));
        rows.Add(("norm eps", c.NormEps.ToString("R", inv)));
        if (c.Architecture == Architecture.Llama) rows.Add(("rope theta", c.RopeTheta.ToString("R", inv)));
        if (c.AttentionBias) rows.Add(("attention bias", "q/k/v"));
        rows.Add(("embeddings", isPreferenceModel ? "scalar head score.weight (no lm_head)"
            : c.TieEmbeddings ? "tied (output projection reuses the token embedding)" : "untied (separate lm_head)"));
        rows.Add(("special tokens", $"bos {c.BosTokenId}, eos {c.EosTokenId}, pad {c.PadTokenId}"));
        if (parameters is { } p) rows.Add(("parameters", $"{p.ToString("N0", inv)} ({Millions(p)})"));
    }

    /// <summary>Parameters stored in the checkpoint that map to canonical weights (buffers and a tied lm_head not counted).</summary>
    static long CheckpointParameters(string dir, ModelConfig config)
    {
        using var checkpoint = SafetensorsCheckpoint.Open(dir);
        return checkpoint.Names.Where(n => HfCheckpoint.CanonicalName(config, n) is not null).Sum(n => checkpoint.Entry(n).Count);
    }

    static void AddGenAIConfig(List<(string, string)> rows, string dir)
    {
        var path = Path.Combine(dir, ModelFolder.GenAIConfigFile);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw UserError.At(path, (int?)e.LineNumber + 1, null, $"malformed JSON ({e.Message.Split('.')[0]})"); }
        using var _ = doc;
        var onnxName = ModelFolder.ModelFile;
        if (doc.RootElement.TryGetProperty("model", out var model) && model.ValueKind == JsonValueKind.Object)
        {
            if (model.TryGetProperty("decoder", out var d) && d.ValueKind == JsonValueKind.Object
                && d.TryGetProperty("filename", out var f) && f.ValueKind == JsonValueKind.String) onnxName = f.GetString()!;
            foreach (var key in new[] { "type", "vocab_size", "context_length", "bos_token_id", "eos_token_id", "pad_token_id" })
                if (model.TryGetProperty(key, out var v)) rows.Add((key.Replace('_', ' '), v.ToString()));
            if (model.TryGetProperty("decoder", out var decoder) && decoder.ValueKind == JsonValueKind.Object)
                foreach (var key in new[] { "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_size" })
                    if (decoder.TryGetProperty(key, out var v)) rows.Add((key.Replace('_', ' '), v.ToString()));
        }
        var onnx = Path.Combine(dir, onnxName);
        if (Path.GetFileName(onnxName) == onnxName && File.Exists(onnx))
        {
            // Initializer shapes are in the protobuf; the external data need not be read to count them.
            var graph = OnnxFile.Load(onnx, loadExternalData: false).Graph;
            var count = graph.Initializer.Sum(t => t.Dims.Aggregate(1L, (a, b) => a * b));
            rows.Add(("parameters", $"{count.ToString("N0", CultureInfo.InvariantCulture)} ({Millions(count)}, initializer elements in {onnxName})"));
        }
    }

    static string Millions(long count) => count >= 1_000_000_000
        ? $"{(count / 1e9).ToString("0.00", CultureInfo.InvariantCulture)}B"
        : $"{(count / 1e6).ToString("0.###", CultureInfo.InvariantCulture)}M";

    static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{(bytes / (double)(1L << 30)).ToString("0.0", CultureInfo.InvariantCulture)} GiB",
        >= 1L << 20 => $"{(bytes / (double)(1L << 20)).ToString("0.0", CultureInfo.InvariantCulture)} MiB",
        >= 1L << 10 => $"{(bytes / (double)(1L << 10)).ToString("0.0", CultureInfo.InvariantCulture)} KiB",
        _ => $"{bytes} B",
    };
}
