using System.Text;
using Onnx;
using RlaifOnnx.Core;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Models.Import;

/// <summary>
/// Model folders out to the formats other tools serve: a Hugging Face checkpoint (config.json,
/// model.safetensors, tokenizer files — for vLLM, TGI, TRL) for a language model, and a Triton Inference
/// Server model repository (NAME/config.pbtxt, NAME/1/model.onnx + data) for a preference model. Both are
/// written into a temporary folder beside the target and renamed into place.
/// </summary>
public static class ModelExport
{
    public static void ToHuggingFace(string modelDir, string outDir)
    {
        var meta = ModelFolder.ReadMetadata(modelDir);
        if (meta.Role == PreferenceModelFolder.Role)
            throw UserError.At(Path.Combine(modelDir, ModelFolder.MetadataFile), null, "role", "is \"preference\": a preference model exports with --format triton");
        var weights = ModelFolder.ReadWeights(modelDir);
        var target = Path.GetFullPath(outDir);
        CheckEmpty(target);
        ModelWriter.WriteFolder(target, temp =>
        {
            HfCheckpoint.Save(temp, meta.Config, weights, tokenizerSourceDir: modelDir);
            foreach (var extra in new[] { "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.model" })
                if (File.Exists(Path.Combine(modelDir, extra))) File.WriteAllBytes(Path.Combine(temp, extra), File.ReadAllBytes(Path.Combine(modelDir, extra)));
        });
    }

    /// <summary>A Triton repository <paramref name="repoDir"/>/<paramref name="name"/>: config.pbtxt and version 1's model.onnx.</summary>
    public static void ToTriton(string modelDir, string repoDir, string name, int maxBatchSize)
    {
        PreferenceModelFolder.RequirePreferenceModel(modelDir);
        if (maxBatchSize < 1) throw UserError.At("--max-batch-size", null, null, $"must be at least 1, got {maxBatchSize}");
        if (name.Length == 0 || name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.')))
            throw UserError.At("--name", null, null, $"'{name}' is not a Triton model name (letters, digits, _ - .)");
        var model = OnnxFile.Load(Path.Combine(modelDir, ModelFolder.ModelFile));
        var config = TritonConfig(model.Graph, name, maxBatchSize);
        var target = Path.GetFullPath(Path.Combine(repoDir, name));
        CheckEmpty(target);
        ModelWriter.WriteFolder(target, temp =>
        {
            Directory.CreateDirectory(Path.Combine(temp, "1"));
            OnnxFile.Save(model, Path.Combine(temp, "1", "model.onnx"), ModelFolder.DataFile);
            File.WriteAllText(Path.Combine(temp, "config.pbtxt"), config);
        });
    }

    /// <summary>config.pbtxt for an ONNX graph whose every input and output has the batch as its first dimension.</summary>
    public static string TritonConfig(GraphProto graph, string name, int maxBatchSize)
    {
        var text = new StringBuilder();
        text.AppendLine($"name: \"{name}\"");
        text.AppendLine("platform: \"onnxruntime_onnx\"");
        text.AppendLine($"max_batch_size: {maxBatchSize}");
        void Section(string kind, IEnumerable<ValueInfoProto> values)
        {
            text.AppendLine($"{kind} [");
            var list = values.ToList();
            for (var i = 0; i < list.Count; i++)
            {
                var v = list[i];
                var dims = v.Type.TensorType.Shape.Dim.Skip(1).Select(d => d.HasDimValue ? d.DimValue : -1).ToList();
                // Triton wants at least one dimension besides the batch: a [batch] tensor is [1] reshaped to [].
                var shape = dims.Count == 0 ? "dims: [ 1 ]\n    reshape: { shape: [ ] }" : $"dims: [ {string.Join(", ", dims)} ]";
                text.AppendLine($"  {{\n    name: \"{v.Name}\"\n    data_type: {TritonType(v)}\n    {shape}\n  }}{(i < list.Count - 1 ? "," : "")}");
            }
            text.AppendLine("]");
        }
        Section("input", graph.Input.Where(i => graph.Initializer.All(t => t.Name != i.Name)));
        Section("output", graph.Output);
        text.AppendLine("dynamic_batching { }");
        text.AppendLine("instance_group [ { kind: KIND_CPU } ]");
        return text.ToString();
    }

    static string TritonType(ValueInfoProto v) => (TensorProto.Types.DataType)v.Type.TensorType.ElemType switch
    {
        TensorProto.Types.DataType.Int64 => "TYPE_INT64",
        TensorProto.Types.DataType.Int32 => "TYPE_INT32",
        TensorProto.Types.DataType.Float => "TYPE_FP32",
        TensorProto.Types.DataType.Float16 => "TYPE_FP16",
        TensorProto.Types.DataType.Double => "TYPE_FP64",
        var t => throw new InvalidOperationException($"{v.Name}: no Triton type for {t}"),
    };

    static void CheckEmpty(string target)
    {
        if (File.Exists(target) || Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any())
            throw UserError.At(target, null, null, "exists; refusing to overwrite it");
    }
}
