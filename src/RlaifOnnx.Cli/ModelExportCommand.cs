using System.CommandLine;
using RlaifOnnx.Models.Import;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif model export DIR --format hf|triton --out OUT`: a model folder out to other serving tools.</summary>
public static class ModelExportCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("DIR") { Description = "The model folder to export." };
        var format = new Option<string>("--format") { Description = "hf: a Hugging Face checkpoint (language models); triton: a Triton model repository (preference models).", Required = true };
        var output = new Option<string>("--out") { Description = "hf: the checkpoint folder to write; triton: the model repository (NAME/ is written inside it).", Required = true };
        var name = new Option<string>("--name") { Description = "triton: the model's name in the repository.", DefaultValueFactory = _ => "reward" };
        var maxBatch = new Option<int>("--max-batch-size") { Description = "triton: max_batch_size in config.pbtxt.", DefaultValueFactory = _ => 8 };
        var command = new Command("export", "Export a model folder as a Hugging Face checkpoint or a Triton model repository.") { dir, format, output, name, maxBatch };
        command.SetAction(parse =>
        {
            var source = parse.GetValue(dir)!;
            var outDir = parse.GetValue(output)!;
            switch (parse.GetValue(format))
            {
                case "hf":
                    ModelExport.ToHuggingFace(source, outDir);
                    Console.WriteLine($"wrote {outDir}: Hugging Face checkpoint (config.json, model.safetensors, tokenizer files)");
                    return 0;
                case "triton":
                    ModelExport.ToTriton(source, outDir, parse.GetValue(name)!, parse.GetValue(maxBatch));
                    Console.WriteLine($"wrote {Path.Combine(outDir, parse.GetValue(name)!)}: Triton model (config.pbtxt, 1/model.onnx)");
                    return 0;
                default:
                    throw new Core.UserError($"--format: '{parse.GetValue(format)}' is not a format; use hf or triton");
            }
        });
        return command;
    }
}
