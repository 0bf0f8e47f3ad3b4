using System.CommandLine;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;

namespace RlaifOnnx.Cli;

/// <summary>
/// `rlaif model import --from ONNX_DIR --out DIR`: an existing ONNX export (ONNX Runtime GenAI or optimum
/// layout) → a model folder. The export's weights are found by following its graph (<see cref="OnnxImport"/>)
/// and rebuilt as the canonical graph, so the folder trains and generates like any other.
/// </summary>
public static class ModelImportCommand
{
    public static Command Create()
    {
        var from = new Option<string>("--from") { Description = "Folder of the export: genai_config.json (ONNX Runtime GenAI) or config.json (optimum), its .onnx and tokenizer files.", Required = true };
        var output = new Option<string>("--out") { Description = "Model folder to write.", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Folder holding tokenizer.json (and tokenizer_config.json) for an export that ships without them." };
        var command = new Command("import", "Import an existing ONNX export (GPT-2, Llama, Qwen2, Mistral, Phi-3; float32, float16, bfloat16, int4/int8 MatMulNBits) into a model folder.") { from, output, tokenizer };
        command.SetAction(parse =>
        {
            var source = parse.GetValue(from)!;
            var outDir = parse.GetValue(output)!;
            var notes = new List<string>();
            var (config, weights, tokenizerDir) = OnnxImport.Import(source, parse.GetValue(tokenizer), notes.Add);
            try
            {
                ModelWriter.Write(outDir, config, weights, tokenizerDir, "base",
                    [new LineageEntry("model import", Path.GetFullPath(source), DateTimeOffset.UtcNow)]);
            }
            finally { TokenizerConversion.Release(tokenizerDir); }
            Console.WriteLine($"wrote {outDir}: {config.ModelType}, {config.NumLayers} layers, hidden {config.HiddenSize}, " +
                $"{config.NumHeads} heads, vocab {config.VocabSize}, {config.ParameterCount:N0} parameters (imported from {source})");
            foreach (var n in notes) Console.WriteLine($"note: {n}");
            if (TokenizerVocabulary.MismatchWarning(outDir, config.VocabSize) is { } warning) Console.Error.WriteLine($"warning: {warning}");
            return 0;
        });
        return command;
    }
}
