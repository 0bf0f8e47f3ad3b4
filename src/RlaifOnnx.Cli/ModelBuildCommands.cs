using System.CommandLine;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif model build` (Hugging Face checkpoint → model folder) and `rlaif model inspect`.</summary>
public static class ModelBuildCommands
{
    public static Command Build()
    {
        var from = new Option<string>("--from") { Description = "Hugging Face checkpoint folder: config.json, model.safetensors (or shards with model.safetensors.index.json), tokenizer.json, tokenizer_config.json.", Required = true };
        var output = new Option<string>("--out") { Description = "Model folder to write (genai_config.json, model.onnx, model.onnx.data, tokenizer files, rlaif.json).", Required = true };
        var command = new Command("build", "Build a model folder from a Hugging Face checkpoint (llama, qwen2, mistral, gpt2).") { from, output };
        command.SetAction(parse =>
        {
            var source = parse.GetValue(from)!;
            var dir = parse.GetValue(output)!;
            var config = HfModelBuilder.Build(source, dir, note => Console.Error.WriteLine($"note: {note}"));
            Console.WriteLine($"wrote {dir}: {config.ModelType}, {config.NumLayers} layers, hidden {config.HiddenSize}, {config.ParameterCount:N0} parameters");
            if (TokenizerVocabulary.MismatchWarning(dir, config.VocabSize) is { } warning) Console.Error.WriteLine($"warning: {warning}");
            return 0;
        });
        return command;
    }

    public static Command Inspect()
    {
        var dir = new Argument<string>("DIR") { Description = "A model folder (or a Hugging Face checkpoint, or an ONNX Runtime GenAI export)." };
        var command = new Command("inspect", "Show a model folder's architecture, sizes, parameter count, role, lineage and files.") { dir };
        command.SetAction(parse =>
        {
            Console.Write(ModelInspector.Describe(parse.GetValue(dir)!));
            return 0;
        });
        return command;
    }
}
