using Microsoft.ML.OnnxRuntime;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;
using RlaifOnnx.Tests.Models.Import;

namespace RlaifOnnx.Tests.Cli;

/// <summary>`rlaif model build` and `rlaif model inspect`, run as the real command in its own process.</summary>
public class ModelBuildCommandTests
{
    /// <summary>Logits [B, S, V] of a model folder's model.onnx run from disk by ONNX Runtime, with an empty cache.</summary>
    static float[] RunFromDisk(string modelDir, ModelConfig c, long[][] ids)
    {
        int batch = ids.Length, seq = ids[0].Length;
        using var session = new InferenceSession(Path.Combine(modelDir, ModelFolder.ModelFile));
        var inputs = new Dictionary<string, OrtValue>
        {
            ["input_ids"] = OrtValue.CreateTensorValueFromMemory(ids.SelectMany(r => r).ToArray(), [batch, seq]),
            ["attention_mask"] = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, batch * seq).ToArray(), [batch, seq]),
            ["position_ids"] = OrtValue.CreateTensorValueFromMemory(Enumerable.Range(0, batch * seq).Select(i => (long)(i % seq)).ToArray(), [batch, seq]),
        };
        for (var i = 0; i < c.NumLayers; i++)
        {
            if (c.Architecture == Architecture.Gpt2) // GenAI's GPT-2 layout: past_i [2, B, N, P, D]
                inputs[Gpt2Graph.PastName(i)] = OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [2, batch, c.NumHeads, 0, c.HeadDim]);
            else
                foreach (var kind in new[] { "key", "value" })
                    inputs[$"past_key_values.{i}.{kind}"] = OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [batch, c.NumKvHeads, 0, c.HeadDim]);
        }
        try
        {
            using var runOptions = new RunOptions();
            using var outputs = session.Run(runOptions, inputs.Keys.ToList(), inputs.Values.ToList(), ["logits"]);
            Assert.Equal([batch, seq, (long)c.VocabSize], outputs[0].GetTensorTypeAndShape().Shape);
            return outputs[0].GetTensorDataAsSpan<float>().ToArray();
        }
        finally
        {
            foreach (var v in inputs.Values) v.Dispose();
        }
    }

    [Theory]
    [InlineData("llama", 4, false, false)]
    [InlineData("qwen2", 2, true, true)]
    [InlineData("mistral", 2, false, true)]
    public void BuiltFolderRunsInOnnxRuntimeWithTheReferenceLogits(string modelType, int kvHeads, bool tie, bool sharded)
    {
        using var dir = new TempDir();
        var hf = Path.Combine(dir.Path, "hf");
        var output = Path.Combine(dir.Path, "model");
        var config = HfFolders.Llama(modelType, kvHeads, tie);
        var weights = TinyLlama.Weights(config, seed: 11);
        HfFolders.Write(hf, config, weights, maxShardBytes: sharded ? 8 * 1024 : null);

        var result = CliProcess.Run("model", "build", "--from", hf, "--out", output);
        Assert.True(result.ExitCode == 0, result.Stderr);
        foreach (var file in new[] { "model.onnx", "genai_config.json", "rlaif.json", "tokenizer.json", "tokenizer_config.json" })
            Assert.True(File.Exists(Path.Combine(output, file)), file);

        long[][] ids = [[1, 5, 9, 33, 270, 2], [3, 3, 294, 0, 17, 140]];
        var logits = RunFromDisk(output, config, ids);
        var reference = LlamaReference.Forward(config, weights, ids,
            ids.Select(r => r.Select(_ => 1L).ToArray()).ToArray(),
            ids.Select(r => Enumerable.Range(0, r.Length).Select(i => (long)i).ToArray()).ToArray());
        var maxDiff = 0.0;
        for (var b = 0; b < ids.Length; b++)
            for (var s = 0; s < ids[b].Length; s++)
                for (var v = 0; v < config.VocabSize; v++)
                    maxDiff = Math.Max(maxDiff, Math.Abs(reference[b][s][v] - logits[(b * ids[b].Length + s) * config.VocabSize + v]));
        TestContext.Current.TestOutputHelper?.WriteLine($"max |logit difference| {maxDiff:E2}");
        Assert.True(maxDiff < 1e-4, $"max |logit difference| {maxDiff}");

        var meta = ModelFolder.ReadMetadata(output);
        Assert.Equal(config, meta.Config);
        Assert.Equal("base", meta.Role);
        Assert.Equal(Path.GetFullPath(hf), meta.Lineage.Single().From);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BuiltGpt2FolderRunsInOnnxRuntimeWithTheReferenceLogits(bool sharded)
    {
        using var dir = new TempDir();
        var hf = Path.Combine(dir.Path, "hf");
        var output = Path.Combine(dir.Path, "model");
        var config = HfFolders.Gpt2();
        var weights = HfFolders.RandomWeights(config, seed: 13);
        foreach (var t in weights.Values) for (var i = 0; i < t.Data.Length; i++) t.Data[i] *= 5f; // logits far from uniform
        HfFolders.Write(hf, config, weights, maxShardBytes: sharded ? 16 * 1024 : null);

        var result = CliProcess.Run("model", "build", "--from", hf, "--out", output);
        Assert.True(result.ExitCode == 0, result.Stderr);

        long[][] ids = [[7, 250, 3, 99, 0], [12, 12, 299, 40, 1]];
        var logits = RunFromDisk(output, config, ids);
        var reference = Gpt2Reference.Forward(config, weights, To2D(ids), To2D(ids.Select(r => r.Select(_ => 1L).ToArray()).ToArray()),
            To2D(ids.Select(r => Enumerable.Range(0, r.Length).Select(i => (long)i).ToArray()).ToArray()));
        var maxDiff = 0.0;
        for (var b = 0; b < ids.Length; b++)
            for (var s = 0; s < ids[b].Length; s++)
                for (var v = 0; v < config.VocabSize; v++)
                    maxDiff = Math.Max(maxDiff, Math.Abs(reference[b, s, v] - logits[(b * ids[b].Length + s) * config.VocabSize + v]));
        TestContext.Current.TestOutputHelper?.WriteLine($"max |logit difference| {maxDiff:E2}");
        Assert.True(maxDiff < 1e-4, $"max |logit difference| {maxDiff}");
        Assert.Equal(config, ModelFolder.ReadMetadata(output).Config);
    }

    static long[,] To2D(long[][] rows)
    {
        var result = new long[rows.Length, rows[0].Length];
        for (var i = 0; i < rows.Length; i++) for (var j = 0; j < rows[i].Length; j++) result[i, j] = rows[i][j];
        return result;
    }

    [Fact]
    public void InspectPrintsArchitectureParameterCountRoleLineageAndFiles()
    {
        using var dir = new TempDir();
        var hf = Path.Combine(dir.Path, "hf");
        var output = Path.Combine(dir.Path, "model");
        var config = HfFolders.Llama("mistral", kvHeads: 2, tie: false);
        HfFolders.Write(hf, config, HfFolders.RandomWeights(config, 2));
        Assert.Equal(0, CliProcess.Run("model", "build", "--from", hf, "--out", output).ExitCode);

        var result = CliProcess.Run("model", "inspect", output);
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains($"parameters         {config.ParameterCount:N0} (", result.Stdout);
        Assert.Contains("architecture       Llama", result.Stdout);
        Assert.Contains("model type         mistral", result.Stdout);
        Assert.Contains("embeddings         untied", result.Stdout);
        Assert.Contains("role               base", result.Stdout);
        Assert.Contains($"model build from {Path.GetFullPath(hf)}", result.Stdout);
        Assert.Matches(@"model\.onnx\s+[\d.]+ (B|KiB|MiB)", result.Stdout);
        Assert.Contains("rlaif.json", result.Stdout);
    }

    /// <summary>
    /// config.json's eos_token_id list reaches genai_config.json, and GenAI stops at any id in it: the list
    /// holds the token greedy decoding produces first (from the float64 reference), so generation ends after one token.
    /// </summary>
    [Fact]
    public void EosTokenListReachesGenAIWhichStopsAtAnyOfThem()
    {
        using var dir = new TempDir();
        var hf = Path.Combine(dir.Path, "hf");
        var output = Path.Combine(dir.Path, "model");
        var config = HfFolders.Llama("qwen2", kvHeads: 2, tie: true);
        var weights = TinyLlama.Weights(config, seed: 5);
        long[] prompt = [10, 20, 30, 40];
        var last = LlamaReference.Forward(config, weights, [prompt], [[1, 1, 1, 1]], [[0, 1, 2, 3]])[0][^1];
        var first = Array.IndexOf(last, last.Max());
        Assert.NotEqual(config.EosTokenId, first);
        HfCheckpoint.Save(hf, config, weights, eosTokenIds: [config.EosTokenId, first]);
        HfFolders.WriteTokenizer(hf);

        var result = CliProcess.Run("model", "build", "--from", hf, "--out", output);
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains($"note: eos_token_id lists 2 ids [{config.EosTokenId}, {first}]", result.Stderr);
        var genai = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(output, ModelFolder.GenAIConfigFile)))!;
        Assert.Equal($"[{config.EosTokenId},{first}]", genai["model"]!["eos_token_id"]!.ToJsonString());

        // Without the list GenAI runs on past that token; with it, GenAI stops there (0.18 does not append the stop token).
        var single = Path.Combine(dir.Path, "single");
        HfCheckpoint.Save(Path.Combine(dir.Path, "hf1"), config, weights);
        HfFolders.WriteTokenizer(Path.Combine(dir.Path, "hf1"));
        Assert.Equal(0, CliProcess.Run("model", "build", "--from", Path.Combine(dir.Path, "hf1"), "--out", single).ExitCode);
        var unstopped = GenAI.Greedy(single, prompt.Select(t => (int)t).ToArray(), prompt.Length + 6);
        Assert.Equal(first, unstopped[prompt.Length]);
        Assert.Equal(prompt.Length + 6, unstopped.Length);
        var stopped = GenAI.Greedy(output, prompt.Select(t => (int)t).ToArray(), prompt.Length + 6);
        Assert.True(stopped.Length <= prompt.Length + 1, $"generation went on past eos {first}: [{string.Join(", ", stopped)}]");
        Assert.Equal(prompt, stopped[..prompt.Length].Select(t => (long)t));
    }


    /// <summary>Writes a good llama HF folder, lets <paramref name="spoil"/> break it, and runs `model build` on it.</summary>
    static (CliProcess.Result Result, string Hf, string Out) BuildSpoiled(TempDir dir, Action<string> spoil)
    {
        var hf = Path.Combine(dir.Path, "hf");
        var output = Path.Combine(dir.Path, "out");
        var config = HfFolders.Llama();
        HfFolders.Write(hf, config, HfFolders.RandomWeights(config, 4));
        spoil(hf);
        return (CliProcess.Run("model", "build", "--from", hf, "--out", output), hf, output);
    }

    static void AssertOneLineError(CliProcess.Result result, string output, string expected)
    {
        Assert.Equal(2, result.ExitCode);
        Assert.Equal($"error: {expected}", result.Stderr.TrimEnd('\n'));
        Assert.DoesNotContain('\n', result.Stderr.TrimEnd('\n'));
        Assert.False(Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any(), "something was written to --out");
    }

    [Fact]
    public void MissingCheckpointFolder()
    {
        using var dir = new TempDir();
        var missing = Path.Combine(dir.Path, "nope");
        var output = Path.Combine(dir.Path, "out");
        AssertOneLineError(CliProcess.Run("model", "build", "--from", missing, "--out", output), output, $"{missing}: no such checkpoint folder");
    }

    [Fact]
    public void OutputThatIsNotAModelFolderIsNotOverwritten()
    {
        using var dir = new TempDir();
        var hf = Path.Combine(dir.Path, "hf");
        var config = HfFolders.Llama();
        HfFolders.Write(hf, config, HfFolders.RandomWeights(config, 4));
        var output = Path.Combine(dir.Path, "precious");
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "notes.txt"), "keep me");
        var result = CliProcess.Run("model", "build", "--from", hf, "--out", output);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("refusing to overwrite it", result.Stderr);
        Assert.Equal(["notes.txt"], Directory.GetFiles(output).Select(Path.GetFileName));
    }

    [Fact]
    public void MissingConfigJson()
    {
        using var dir = new TempDir();
        var (result, hf, output) = BuildSpoiled(dir, hf => File.Delete(Path.Combine(hf, "config.json")));
        AssertOneLineError(result, output, $"{Path.Combine(hf, "config.json")}: config.json is missing (not a Hugging Face checkpoint folder)");
    }

    [Fact]
    public void MalformedConfigJsonNamesTheLine()
    {
        using var dir = new TempDir();
        var (result, hf, output) = BuildSpoiled(dir, hf => File.WriteAllText(Path.Combine(hf, "config.json"),
            "{\n  \"model_type\": \"llama\",\n  \"hidden_size\": 32,\n  \"num_hidden_layers\" 2\n}"));
        Assert.StartsWith($"error: {Path.Combine(hf, "config.json")}:4: malformed JSON (", result.Stderr);
        AssertOneLineError(result, output, result.Stderr.TrimEnd('\n')["error: ".Length..]);
    }

    [Fact]
    public void UnsupportedModelTypeListsTheSupportedOnes()
    {
        using var dir = new TempDir();
        var (result, hf, output) = BuildSpoiled(dir, hf =>
        {
            var path = Path.Combine(hf, "config.json");
            File.WriteAllText(path, File.ReadAllText(path).Replace("\"model_type\": \"llama\"", "\"model_type\": \"falcon\""));
        });
        AssertOneLineError(result, output, $"{Path.Combine(hf, "config.json")}:5: model_type: 'falcon' is not supported (supported: llama, qwen2, mistral, gpt2)");
    }

    [Theory]
    [InlineData("tokenizer.json")]
    [InlineData("tokenizer_config.json")]
    public void MissingTokenizerFile(string file)
    {
        using var dir = new TempDir();
        var (result, hf, output) = BuildSpoiled(dir, hf => File.Delete(Path.Combine(hf, file)));
        AssertOneLineError(result, output, file == "tokenizer.json"
            ? $"{Path.Combine(hf, file)}: tokenizer file is missing (a checkpoint folder needs tokenizer.json and tokenizer_config.json, or vocab.json and merges.txt, or a SentencePiece tokenizer.model to build tokenizer.json from)"
            : $"{Path.Combine(hf, file)}: tokenizer file is missing (a checkpoint folder needs tokenizer.json and tokenizer_config.json)");
    }

    [Fact]
    public void WrongWeightShape()
    {
        using var dir = new TempDir();
        var (result, hf, output) = BuildSpoiled(dir, hf =>
        {
            var path = Path.Combine(hf, "model.safetensors");
            var tensors = new Dictionary<string, WeightTensor>();
            using (var file = SafetensorsFile.Open(path))
                foreach (var name in file.Entries.Keys) tensors[name] = file.ReadFloat(name);
            tensors["model.layers.1.mlp.up_proj.weight"] = new([40, 32], new float[40 * 32]); // HF [out 48, in 32] expected
            SafetensorsFile.Write(path, tensors);
        });
        AssertOneLineError(result, output, $"{hf}: model.layers.1.mlp.up_proj.weight: shape [40,32] does not match the config's [48,32]");
    }

    [Fact]
    public void TruncatedSafetensors()
    {
        using var dir = new TempDir();
        var (result, hf, output) = BuildSpoiled(dir, hf =>
        {
            var path = Path.Combine(hf, "model.safetensors");
            var bytes = File.ReadAllBytes(path);
            File.WriteAllBytes(path, bytes[..^100]);
        });
        Assert.Matches(@"^error: .*model\.safetensors: model\.norm\.weight: data_offsets \[\d+, \d+\] lie outside the data section \(\d+ bytes; the file is truncated or corrupt\)\n$", result.Stderr);
        AssertOneLineError(result, output, result.Stderr.TrimEnd('\n')["error: ".Length..]);
    }
}
