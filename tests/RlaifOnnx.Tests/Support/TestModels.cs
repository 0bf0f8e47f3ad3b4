using System.Text.Json.Nodes;

namespace RlaifOnnx.Tests;

/// <summary>Model folders for the inference tests.</summary>
public static class TestModels
{
    // Renders a conversation as its contents joined by spaces: with short English words every token
    // stays inside the shared GPT-2's 1,000 ids.
    const string PlainTemplate = "{% for message in messages %}{{ message['content'] }}{% if not loop.last %}{{ ' ' }}{% endif %}{% endfor %}";

    /// <summary>A copy of the shared GPT-2 export (GenAI-only: no rlaif.json) given a chat template.</summary>
    public static void Gpt2WithTemplate(string target)
    {
        foreach (var f in Directory.GetFiles(SharedData.Require("genai-models/tiny-random-gpt2-fp32")))
            File.Copy(f, Path.Combine(target, Path.GetFileName(f)));
        var configPath = Path.Combine(target, "tokenizer_config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!;
        config["chat_template"] = PlainTemplate;
        File.WriteAllText(configPath, config.ToJsonString());
    }
}
