using System.Text.Json;
using System.Text.Json.Serialization;
using RlaifOnnx.Core;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Models;

/// <summary>One step in a model's history: which stage or command made it, from what, when.</summary>
public sealed record LineageEntry(string Step, string? From, DateTimeOffset At);

/// <summary>Our own metadata in a model folder (rlaif.json).</summary>
public sealed record ModelMetadata
{
    public int FormatVersion { get; init; } = 1;
    public required ModelConfig Config { get; init; }
    /// <summary>What the model is for: "base", "sl-cai", "feedback", "preference", "policy" …</summary>
    public string Role { get; init; } = "base";
    public List<LineageEntry> Lineage { get; init; } = [];
}

/// <summary>
/// The folder every stage reads and writes: model.onnx (+ model.onnx.data) is the inference graph whose
/// initializers are the canonical weights, genai_config.json lets ONNX Runtime GenAI load it unchanged,
/// tokenizer.json and tokenizer_config.json are Hugging Face's, rlaif.json is ours.
/// </summary>
public static class ModelFolder
{
    /// <summary>The folder a training stage exports its model to (output_dir/model).</summary>
    public const string ModelSubfolder = "model";

    public const string ModelFile = "model.onnx";
    public const string DataFile = "model.onnx.data";
    public const string GenAIConfigFile = "genai_config.json";
    public const string MetadataFile = "rlaif.json";
    public const string TokenizerFile = "tokenizer.json";
    public const string TokenizerConfigFile = "tokenizer_config.json";

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>
    /// The name a served model goes by when none is given: the folder's name, or for the folders a stage
    /// writes ("model", "value_model", "train") the stage's folder above it ("05_pm" for runs/x/05_pm/model).
    /// </summary>
    public static string ServedName(string dir)
    {
        var full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar);
        var name = Path.GetFileName(full);
        var parent = Path.GetFileName(Path.GetDirectoryName(full) ?? "");
        if (name is ModelSubfolder or "value_model" && parent == "train") parent = Path.GetFileName(Path.GetDirectoryName(Path.GetDirectoryName(full)) ?? "");
        return name is ModelSubfolder or "value_model" && parent.Length > 0 ? parent : name;
    }

    /// <summary>The one wording for a model folder that is not there, whichever command meets it.</summary>
    public static void RequireExists(string dir)
    {
        if (!Directory.Exists(dir)) throw UserError.At(dir, null, null, "no such folder");
    }

    public static ModelMetadata ReadMetadata(string dir)
    {
        RequireExists(dir);
        var path = Path.Combine(dir, MetadataFile);
        if (!File.Exists(path)) throw UserError.At(path, null, null, "not a model folder (rlaif.json is missing; `rlaif model import` or `rlaif model build` makes one)");
        ModelMetadata? meta;
        try { meta = JsonSerializer.Deserialize<ModelMetadata>(File.ReadAllText(path), Json); }
        catch (JsonException e) { throw UserError.At(path, (int?)e.LineNumber + 1, e.Path, $"malformed JSON ({e.Message.Split('.')[0]})"); }
        if (meta?.Config is null) throw UserError.At(path, null, "config", "is missing");
        meta.Config.Validate(path);
        return meta;
    }

    public static void WriteMetadata(string dir, ModelMetadata meta) =>
        AtomicFile.WriteAllText(Path.Combine(dir, MetadataFile), JsonSerializer.Serialize(meta, Json));

    /// <summary>
    /// The files ONNX Runtime GenAI reads (genai_config.json, tokenizer.json, tokenizer_config.json when
    /// present) exist and parse as JSON, so a broken one is named with its line instead of surfacing as a
    /// GenAI exception deep in a stage.
    /// </summary>
    public static void CheckGenAIFiles(string dir)
    {
        foreach (var (name, required) in new[] { (GenAIConfigFile, true), (TokenizerFile, true), (TokenizerConfigFile, false) })
        {
            var path = Path.Combine(dir, name);
            if (!File.Exists(path))
            {
                if (required) throw UserError.At(path, null, null, "is missing");
                continue;
            }
            try { using var _ = JsonDocument.Parse(File.ReadAllBytes(path)); }
            catch (JsonException e) { throw UserError.At(path, (int?)e.LineNumber + 1, null, $"malformed JSON ({e.Message.Split(". ")[0]})"); }
        }
    }

    /// <summary>
    /// Everything a loader checks, without keeping anything: rlaif.json, the weights against it (shapes,
    /// sizes, the external data file's length), and for a language model the files GenAI reads.
    /// </summary>
    public static void Validate(string dir)
    {
        var meta = ReadMetadata(dir);
        if (meta.Role == PreferenceModelFolder.Role) { PreferenceModelFolder.ReadWeights(dir); return; }
        ReadWeights(dir);
        CheckGenAIFiles(dir);
    }

    /// <summary>Reads the canonical weights from the folder's model.onnx initializers and checks them against rlaif.json.</summary>
    public static WeightSet ReadWeights(string dir)
    {
        var meta = ReadMetadata(dir);
        PreferenceModelFolder.RefuseWhereLanguageModelNeeded(dir, meta);
        var modelPath = Path.Combine(dir, ModelFile);
        var model = OnnxFile.Load(modelPath, loadExternalData: false);   // each weight read straight into its array
        var expected = WeightNames.Shapes(meta.Config);
        var set = new WeightSet();
        foreach (var t in model.Graph.Initializer)
            if (expected.ContainsKey(t.Name)) set[t.Name] = new WeightTensor(t.Dims.ToArray(), OnnxFile.ReadFloats(t, modelPath));
        set.CheckAgainst(meta.Config, modelPath);
        return set;
    }
}
