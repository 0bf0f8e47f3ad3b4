using RlaifOnnx.Core;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Models;

/// <summary>
/// A preference model's folder: model.onnx (+ model.onnx.data) is the reward graph
/// (<see cref="PreferenceModelGraphs.Inference"/>, initializers the canonical weights and score.weight),
/// rlaif.json says role "preference", and the tokenizer files are the base model's. There is no
/// genai_config.json: the reward graph has no logits or cache, so ONNX Runtime GenAI cannot generate
/// with it, and leaving the file out keeps a generator from mistaking the folder for a language model.
/// Written like <see cref="ModelWriter"/>: into a temporary folder beside the target, then renamed.
/// </summary>
public static class PreferenceModelFolder
{
    /// <summary>The rlaif.json role of a preference model folder.</summary>
    public const string Role = "preference";

    /// <summary>Writes the folder; <paramref name="weights"/> are <see cref="PreferenceModelGraphs.Shapes"/> (score.weight included).</summary>
    public static void Write(string dir, ModelConfig config, WeightSet weights, TokenizerSource tokenizer, IEnumerable<LineageEntry> lineage)
    {
        var target = Path.GetFullPath(dir);
        // 1. Check everything before writing anything.
        config.Validate(target);
        weights.CheckAgainst(PreferenceModelGraphs.Shapes(config), target);
        ModelWriter.CheckTarget(target);
        var graph = PreferenceModelGraphs.Inference(config, weights);

        // 2. Write the whole folder under a temporary name beside the target, then swap it in.
        ModelWriter.WriteFolder(target, temp =>
        {
            OnnxFile.Save(graph, Path.Combine(temp, ModelFolder.ModelFile), ModelFolder.DataFile);
            tokenizer.WriteTo(temp);
            ModelFolder.WriteMetadata(temp, new ModelMetadata { Config = config, Role = Role, Lineage = lineage.ToList() });
        });
    }

    /// <summary>True when <paramref name="dir"/> holds an rlaif.json whose role is "preference" (false for anything else, including no folder).</summary>
    public static bool IsPreferenceModel(string dir)
    {
        if (!File.Exists(Path.Combine(dir, ModelFolder.MetadataFile))) return false;
        try { return ModelFolder.ReadMetadata(dir).Role == Role; }
        catch (UserError) { return false; }
    }

    /// <summary>The folder's metadata; a <see cref="UserError"/> when it is not a preference model (e.g. a language model folder).</summary>
    public static ModelMetadata RequirePreferenceModel(string dir)
    {
        var meta = ModelFolder.ReadMetadata(dir);
        if (meta.Role != Role)
            throw UserError.At(Path.Combine(dir, ModelFolder.MetadataFile), null, "role",
                $"is \"{meta.Role}\": this is a language model folder, and a preference model (role \"{Role}\", written by PM training) is needed here");
        return meta;
    }

    /// <summary>The PM's weights (decoder weights and score.weight) from model.onnx, checked against rlaif.json.</summary>
    public static WeightSet ReadWeights(string dir)
    {
        var meta = RequirePreferenceModel(dir);
        var modelPath = Path.Combine(dir, ModelFolder.ModelFile);
        if (!File.Exists(modelPath)) throw UserError.At(modelPath, null, null, "is missing (not a model folder)");
        var model = OnnxFile.Load(modelPath, loadExternalData: false);   // each weight read straight into its array
        var expected = PreferenceModelGraphs.Shapes(meta.Config);
        var set = new WeightSet();
        foreach (var t in model.Graph.Initializer)
            if (expected.ContainsKey(t.Name)) set[t.Name] = new WeightTensor(t.Dims.ToArray(), OnnxFile.ReadFloats(t, modelPath));
        set.CheckAgainst(expected, modelPath);
        return set;
    }

    /// <summary>A <see cref="UserError"/> when <paramref name="dir"/> is a preference model: called where a language model is needed.</summary>
    public static void RefuseWhereLanguageModelNeeded(string dir, ModelMetadata meta)
    {
        if (meta.Role == Role)
            throw UserError.At(Path.Combine(dir, ModelFolder.MetadataFile), null, "role",
                $"is \"{Role}\": this is a preference model (a reward graph without logits), and a language model is needed here");
    }
}
