using System.Text.Json;
using Onnx;
using RlaifOnnx.Core;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Models;

/// <summary>
/// Where a model folder's tokenizer comes from: a folder holding Hugging Face tokenizer files (a
/// checkpoint, another model folder) or a <see cref="TinyTokenizer"/> the project made. Converts
/// implicitly from either, so callers write <c>ModelWriter.Write(dir, config, weights, hfDir, …)</c>.
/// </summary>
public abstract record TokenizerSource
{
    /// <summary>Files copied from a tokenizer folder when present; the first two are required.</summary>
    public static readonly string[] TokenizerFiles =
        [ModelFolder.TokenizerFile, ModelFolder.TokenizerConfigFile, "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.model"];

    public sealed record Folder(string Path) : TokenizerSource;
    public sealed record Tiny(TinyTokenizer Tokenizer) : TokenizerSource;

    public static implicit operator TokenizerSource(string folder) => new Folder(folder);
    public static implicit operator TokenizerSource(TinyTokenizer tokenizer) => new Tiny(tokenizer);

    /// <summary>Puts the tokenizer files into <paramref name="dir"/>.</summary>
    public void WriteTo(string dir)
    {
        switch (this)
        {
            case Tiny tiny:
                tiny.Tokenizer.Write(dir);
                break;
            case Folder folder:
                foreach (var required in TokenizerFiles[..2])
                    if (!File.Exists(System.IO.Path.Combine(folder.Path, required)))
                        throw UserError.At(System.IO.Path.Combine(folder.Path, required), null, null, "tokenizer file is missing");
                foreach (var name in TokenizerFiles)
                {
                    var source = System.IO.Path.Combine(folder.Path, name);
                    // Copy the bytes, not the file: a read-only source (shared data) must not make the folder's copy read-only.
                    if (File.Exists(source)) File.WriteAllBytes(System.IO.Path.Combine(dir, name), File.ReadAllBytes(source));
                }
                break;
        }
    }
}

/// <summary>
/// Writes a complete model folder (DESIGN §2): model.onnx + model.onnx.data (the inference graph, its
/// initializers the canonical weights), genai_config.json, tokenizer files and rlaif.json. Everything
/// is written into a temporary folder beside the target and renamed into place at the end, so a crash
/// never leaves a half-written model folder behind.
/// </summary>
public static class ModelWriter
{
    /// <summary>
    /// Writes the folder; <paramref name="rewrite"/>, when given, changes the inference graph before it is saved
    /// (e.g. LoRA branches whose adapter values come from ONNX Runtime adapters at run time).
    /// </summary>
    public static void Write(string dir, ModelConfig config, WeightSet weights, TokenizerSource tokenizer,
        string role, IEnumerable<LineageEntry> lineage, Func<ModelProto, ModelProto>? rewrite = null)
    {
        var target = Path.GetFullPath(dir);
        // 1. Check everything before writing anything.
        config.Validate(target);
        weights.CheckAgainst(config, target);
        CheckTarget(target);
        var graph = DecoderGraphs.Inference(config, weights);
        if (rewrite is not null) graph = rewrite(graph);
        var genAIConfig = DecoderGraphs.GenAIConfig(config);

        // 2. Write the whole folder under a temporary name beside the target, then swap it in.
        WriteFolder(target, temp =>
        {
            OnnxFile.Save(graph, Path.Combine(temp, ModelFolder.ModelFile), ModelFolder.DataFile);
            AtomicFile.WriteAllText(Path.Combine(temp, ModelFolder.GenAIConfigFile),
                genAIConfig.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            tokenizer.WriteTo(temp);
            ModelFolder.WriteMetadata(temp, new ModelMetadata { Config = config, Role = role, Lineage = lineage.ToList() });
        });
    }

    /// <summary>Refuses a target that is a file, or a non-empty folder that is not a model folder.</summary>
    internal static void CheckTarget(string target)
    {
        if (File.Exists(target)) throw UserError.At(target, null, null, "is a file, not a model folder");
        if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any() && !IsModelFolder(target))
            throw UserError.At(target, null, null, "exists and is not a model folder; refusing to overwrite it");
    }

    /// <summary>
    /// Runs <paramref name="fill"/> on a temporary folder beside <paramref name="target"/> and renames it into
    /// place; the temporary folder is removed if anything fails, so the target is never half-written.
    /// </summary>
    internal static void WriteFolder(string target, Action<string> fill)
    {
        var parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        var temp = Path.Combine(parent, $".{Path.GetFileName(target)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(temp);
        try
        {
            fill(temp);

            // Swap it in: an existing model folder is moved aside first and removed only after the
            // new one is in place.
            string? old = null;
            if (Directory.Exists(target))
            {
                old = Path.Combine(parent, $".{Path.GetFileName(target)}.{Environment.ProcessId}.{Guid.NewGuid():N}.old");
                Directory.Move(target, old);
            }
            Directory.Move(temp, target);
            if (old is not null) Directory.Delete(old, recursive: true);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }

    static bool IsModelFolder(string dir) =>
        File.Exists(Path.Combine(dir, ModelFolder.MetadataFile)) || File.Exists(Path.Combine(dir, ModelFolder.GenAIConfigFile));
}
