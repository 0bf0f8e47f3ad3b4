using System.Text.RegularExpressions;
using Microsoft.ML.OnnxRuntime;
using RlaifOnnx.Models;

namespace RlaifOnnx.Tests.Cli;

/// <summary>`rlaif model export`: Hugging Face round trips with identical weights, and a Triton repository for a preference model.</summary>
public sealed class ModelExportCommandTests
{
    [Theory]
    [InlineData("build", "real-models/lmbuddy-fake_gpt2")]
    [InlineData("import", "real-models/ortgenai-tiny-random-LlamaForCausalLM-fp16")]
    public void Hf_export_then_build_gives_identical_weights(string how, string fixture)
    {
        using var tmp = new TempDir();
        var first = tmp.File("first");
        var made = CliProcess.Run("model", how, "--from", SharedData.Require(fixture), "--out", first);
        Assert.True(made.ExitCode == 0, made.Stderr);

        var hf = tmp.File("hf");
        var exported = CliProcess.Run("model", "export", first, "--format", "hf", "--out", hf);
        Assert.True(exported.ExitCode == 0, exported.Stderr);
        foreach (var f in new[] { "config.json", "model.safetensors", ModelFolder.TokenizerFile, ModelFolder.TokenizerConfigFile })
            Assert.True(File.Exists(Path.Combine(hf, f)), $"{f} is missing");

        var second = tmp.File("second");
        var rebuilt = CliProcess.Run("model", "build", "--from", hf, "--out", second);
        Assert.True(rebuilt.ExitCode == 0, rebuilt.Stderr);
        var a = ModelFolder.ReadWeights(first);
        var b = ModelFolder.ReadWeights(second);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, w) in a)
        {
            Assert.Equal(w.Shape, b[name].Shape);
            Assert.Equal(w.Data, b[name].Data);
        }
        Assert.Equal(ModelFolder.ReadMetadata(first).Config, ModelFolder.ReadMetadata(second).Config);
    }

    [Fact]
    public void Triton_repository_loads_with_the_configured_shapes_and_gives_the_same_rewards()
    {
        using var pm = new PmFolder();
        using var tmp = new TempDir();
        var repo = tmp.File("repo");
        var exported = CliProcess.Run("model", "export", pm.Dir, "--format", "triton", "--out", repo, "--name", "harmless_rm", "--max-batch-size", "4");
        Assert.True(exported.ExitCode == 0, exported.Stderr);
        var config = File.ReadAllText(Path.Combine(repo, "harmless_rm", "config.pbtxt"));
        TestContext.Current.TestOutputHelper?.WriteLine(config);
        Assert.Contains("platform: \"onnxruntime_onnx\"", config);
        Assert.Contains("max_batch_size: 4", config);
        Assert.Contains("dynamic_batching { }", config);

        // Each config entry: name, type, dims after the batch dimension.
        var entries = Regex.Matches(config, @"name: ""(?<n>[^""]+)""\s+data_type: (?<t>\w+)\s+dims: \[ (?<d>[^\]]*) \](?<r>\s+reshape: \{ shape: \[ \] \})?")
            .ToDictionary(m => m.Groups["n"].Value, m => (Type: m.Groups["t"].Value, Dims: m.Groups["r"].Success ? [] : m.Groups["d"].Value.Split(", ").Select(long.Parse).ToArray()));
        using var session = new InferenceSession(Path.Combine(repo, "harmless_rm", "1", "model.onnx"));
        Assert.Equal(session.InputMetadata.Keys.Concat(session.OutputMetadata.Keys).Order(), entries.Keys.Order());
        foreach (var (name, meta) in session.InputMetadata.Concat(session.OutputMetadata))
        {
            var expectedType = meta.ElementDataType == Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int64 ? "TYPE_INT64" : "TYPE_FP32";
            Assert.Equal(expectedType, entries[name].Type);
            Assert.Equal(meta.Dimensions.Skip(1).Select(d => (long)d), entries[name].Dims);
        }

        // The same rewards as the folder's own graph on a padded batch.
        long[] ids = [5, 17, 42, 3, 88, 61, 7, 29, 11, 2, 96, 40, 0, 0, 0, 0];
        long[] mask = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0];
        float[] Rewards(InferenceSession s)
        {
            using var i = OrtValue.CreateTensorValueFromMemory(ids, [2, 8]);
            using var m = OrtValue.CreateTensorValueFromMemory(mask, [2, 8]);
            using var options = new RunOptions();
            using var outputs = s.Run(options, ["input_ids", "attention_mask"], [i, m], ["rewards"]);
            return outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }
        using var original = new InferenceSession(Path.Combine(pm.Dir, ModelFolder.ModelFile));
        var expected = Rewards(original);
        Assert.Equal(expected, Rewards(session));
        Assert.NotEqual(expected[0], expected[1]);

        var refused = CliProcess.Run("model", "export", pm.Dir, "--format", "hf", "--out", tmp.File("hf"));
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("--format triton", refused.Stderr);
    }
}
