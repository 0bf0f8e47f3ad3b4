using Google.Protobuf;
using Onnx;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Tests.Cli;

/// <summary>`rlaif model import` run as a real process: the folder it writes, and its bad-input errors.</summary>
public sealed class ModelImportCommandTests
{
    static string SharedGpt2 => SharedData.Require("genai-models/tiny-random-gpt2-fp32");

    [Fact]
    public void Import_writes_a_model_folder_that_GenAI_runs_like_the_original()
    {
        using var tmp = new TempDir();
        var outDir = tmp.File("imported");
        var result = CliProcess.Run("model", "import", "--from", SharedGpt2, "--out", outDir);
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("5 layers", result.Stdout);

        foreach (var f in new[] { ModelFolder.ModelFile, ModelFolder.DataFile, ModelFolder.GenAIConfigFile, ModelFolder.MetadataFile, ModelFolder.TokenizerFile, ModelFolder.TokenizerConfigFile })
            Assert.True(File.Exists(Path.Combine(outDir, f)), $"{f} is missing");
        var meta = ModelFolder.ReadMetadata(outDir);
        var (config, weights, _) = OnnxImport.Import(SharedGpt2);
        Assert.Equal(config, meta.Config);
        var written = ModelFolder.ReadWeights(outDir);
        foreach (var (name, w) in weights) Assert.Equal(w.Data, written[name].Data);

        // GenAI runs the written folder and continues a prompt exactly as it does the original export.
        int[] prompt = [3, 141, 592, 65, 358, 979];
        Assert.Equal(GenAI.Greedy(SharedGpt2, prompt, 14), GenAI.Greedy(outDir, prompt, 14));

        // A model folder is itself an importable export (canonical names, no fused operators).
        var again = tmp.File("again");
        var second = CliProcess.Run("model", "import", "--from", outDir, "--out", again);
        Assert.True(second.ExitCode == 0, second.Stderr);
        var rewritten = ModelFolder.ReadWeights(again);
        foreach (var (name, w) in weights) Assert.Equal(w.Data, rewritten[name].Data);
        Assert.Equal(config, ModelFolder.ReadMetadata(again).Config);
    }

    [Fact]
    public void Model_create_gpt2_writes_a_folder_GenAI_runs_as_the_reference_predicts()
    {
        using var tmp = new TempDir();
        var dir = tmp.File("gpt2");
        var result = CliProcess.Run("model", "create", "--arch", "gpt2", "--out", dir, "--vocab-size", "300", "--hidden-size", "32",
            "--heads", "4", "--layers", "2", "--max-positions", "64", "--seed", "5");
        Assert.True(result.ExitCode == 0, result.Stderr);
        var config = ModelFolder.ReadMetadata(dir).Config;
        Assert.Equal((Architecture.Gpt2, "gpt2", 128, "gelu_new", true), (config.Architecture, config.ModelType, config.IntermediateSize, config.HiddenAct, config.TieEmbeddings));
        var weights = ModelFolder.ReadWeights(dir);

        int[] prompt = [40, 41, 42, 43];
        var generated = GenAI.Greedy(dir, prompt, prompt.Length + 5);
        Assert.True(generated.Length > prompt.Length);
        for (var t = prompt.Length; t < generated.Length; t++)
        {
            var ids = new long[1, t];
            var mask = new long[1, t];
            var positions = new long[1, t];
            for (var s = 0; s < t; s++) (ids[0, s], mask[0, s], positions[0, s]) = (generated[s], 1, s);
            var logits = Gpt2Reference.Forward(config, weights, ids, mask, positions);
            var best = 0;
            for (var v = 1; v < config.VocabSize; v++) if (logits[0, t - 1, v] > logits[0, t - 1, best]) best = v;
            Assert.Equal(best, generated[t]);
        }
    }

    static string BrokenCopy(TempDir tmp, Action<string> damage)
    {
        var dir = tmp.File("export");
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(SharedGpt2))
        {
            var copy = Path.Combine(dir, Path.GetFileName(f));
            File.Copy(f, copy);
            File.SetAttributes(copy, FileAttributes.Normal);
        }
        damage(dir);
        return dir;
    }

    static void AssertRefused(TempDir tmp, string export, string expected)
    {
        var outDir = tmp.File("out");
        var result = CliProcess.Run("model", "import", "--from", export, "--out", outDir);
        Assert.Equal(2, result.ExitCode);
        var message = result.Stderr.TrimEnd('\n');
        Assert.DoesNotContain('\n', message);
        Assert.StartsWith("error: ", message);
        Assert.Contains(expected, message);
        Assert.False(Directory.Exists(outDir), "a refused import must write nothing");
        Assert.DoesNotContain(Directory.GetFileSystemEntries(tmp.Path), p => Path.GetFileName(p).StartsWith('.'));
    }

    [Fact]
    public void Corrupt_onnx_is_refused_with_exit_2_and_nothing_written()
    {
        using var tmp = new TempDir();
        var export = BrokenCopy(tmp, dir => File.WriteAllBytes(Path.Combine(dir, "past.onnx"), [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
        AssertRefused(tmp, export, "past.onnx: not a valid ONNX model");
    }

    [Fact]
    public void Missing_genai_config_is_refused_with_exit_2_and_nothing_written()
    {
        using var tmp = new TempDir();
        var export = BrokenCopy(tmp, dir => File.Delete(Path.Combine(dir, "genai_config.json")));
        AssertRefused(tmp, export, "genai_config.json: is missing");
    }

    [Fact]
    public void Escaping_external_data_is_refused_with_exit_2_and_nothing_written()
    {
        using var tmp = new TempDir();
        var export = BrokenCopy(tmp, dir =>
        {
            var path = Path.Combine(dir, "past.onnx");
            var model = OnnxFile.Load(path);
            var wpe = model.Graph.Initializer.Single(t => t.Name == "transformer.wpe.weight");
            wpe.RawData = ByteString.Empty;
            wpe.DataLocation = TensorProto.Types.DataLocation.External;
            wpe.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "../secret.bin" });
            File.WriteAllBytes(path, model.ToByteArray());
        });
        File.WriteAllBytes(tmp.File("secret.bin"), new byte[512 * 32 * 4]);
        AssertRefused(tmp, export, "escapes the model folder");
    }
}
