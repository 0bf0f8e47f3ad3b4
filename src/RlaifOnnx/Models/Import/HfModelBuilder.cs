using System.Text.Json;
using System.Text.Json.Nodes;
using RlaifOnnx.Core;

namespace RlaifOnnx.Models.Import;

/// <summary>
/// `rlaif model build`: a Hugging Face checkpoint folder → a model folder. Loads and checks everything
/// first (config, tokenizer files, every weight), so bad input writes nothing; then ModelWriter writes
/// the folder atomically.
/// </summary>
public static class HfModelBuilder
{
    public static ModelConfig Build(string hfDir, string outDir, Action<string>? note = null)
    {
        var (config, weights, tokenizerDir) = HfCheckpoint.Load(hfDir, note);
        var hf = HfCheckpoint.ReadConfig(Path.Combine(hfDir, HfCheckpoint.ConfigFile));
        try
        {
            ModelWriter.Write(outDir, config, weights, tokenizerDir, "base",
                [new LineageEntry("model build", Path.GetFullPath(hfDir), DateTimeOffset.UtcNow)]);
        }
        finally { TokenizerConversion.Release(tokenizerDir); }
        if (hf.EosTokenIds.Count > 1) SetEosTokenIds(outDir, hf.EosTokenIds);
        return config;
    }

    /// <summary>
    /// Chat models often end a turn with one of several tokens (config.json's eos_token_id list); GenAI's
    /// genai_config.json takes the list too, so generation stops at any of them.
    /// </summary>
    static void SetEosTokenIds(string outDir, IReadOnlyList<int> ids)
    {
        var path = Path.Combine(outDir, ModelFolder.GenAIConfigFile);
        var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        root["model"]!["eos_token_id"] = new JsonArray(ids.Select(i => (JsonNode?)i).ToArray());
        AtomicFile.WriteAllText(path, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
