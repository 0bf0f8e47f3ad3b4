using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Tests.Models.Import;

/// <summary>Import of existing ONNX exports: the fused GenAI GPT-2 test model and our own canonical folders.</summary>
public sealed class OnnxImportTests
{
    static string SharedGpt2 => SharedData.Require("genai-models/tiny-random-gpt2-fp32");

    [Fact]
    public void Fused_export_maps_to_the_canonical_weights_and_config()
    {
        var (config, weights, tokenizerDir) = OnnxImport.Import(SharedGpt2);

        Assert.Equal(Architecture.Gpt2, config.Architecture);
        Assert.Equal((1000, 32, 5, 4, 128, 512), (config.VocabSize, config.HiddenSize, config.NumLayers, config.NumHeads, config.IntermediateSize, config.MaxPositions));
        Assert.Equal(1e-5, config.NormEps);
        Assert.Equal("gelu_new", config.HiddenAct);
        Assert.Equal((98, 98, 98), (config.BosTokenId, config.EosTokenId, config.PadTokenId));
        Assert.Equal(Path.GetFullPath(SharedGpt2), tokenizerDir);
        weights.CheckAgainst(config, "import");

        // The export merged every layer norm into one tensor: each canonical weight still gets its own copy.
        var scales = Enumerable.Range(0, 5).SelectMany(i => new[] { WeightNames.Gpt2Layer(i, "ln_1.weight"), WeightNames.Gpt2Layer(i, "ln_2.weight") })
            .Append("transformer.ln_f.weight").Select(n => weights[n].Data).ToList();
        Assert.All(scales, s => Assert.All(s, v => Assert.Equal(1f, v)));
        Assert.Equal(scales.Count, scales.Distinct(ReferenceEqualityComparer.Instance).Count());
        // Per-layer weights come from their own layer's node: layer 3's c_fc is the export's transformer.h.3.mlp.c_fc.weight.
        var source = OnnxFile.Load(Path.Combine(SharedGpt2, "past.onnx"));
        var h3 = OnnxFile.ToFloats(source.Graph.Initializer.Single(t => t.Name == "transformer.h.3.mlp.c_fc.weight"));
        Assert.Equal(h3, weights[WeightNames.Gpt2Layer(3, "mlp.c_fc.weight")].Data);
    }

    static OrtValue Int32s(int[,] a) => OrtValue.CreateTensorValueFromMemory(a.Cast<int>().ToArray(), [a.GetLength(0), a.GetLength(1)]);
    static OrtValue Int64s(int[,] a) => OrtValue.CreateTensorValueFromMemory(a.Cast<int>().Select(v => (long)v).ToArray(), [a.GetLength(0), a.GetLength(1)]);

    [Fact]
    public void Imported_model_logits_equal_the_original_graph()
    {
        var (config, weights, _) = OnnxImport.Import(SharedGpt2);
        const int batch = 3, seq = 9;
        var rng = new Random(42);
        int[] pads = [0, 2, 5];
        var ids = new int[batch, seq];
        var mask = new int[batch, seq];
        var positions = new int[batch, seq];
        for (var b = 0; b < batch; b++)
            for (var s = 0; s < seq; s++)
            {
                ids[b, s] = rng.Next(1000);
                mask[b, s] = s < pads[b] ? 0 : 1;
                positions[b, s] = Math.Max(0, s - pads[b]);
            }

        // The original fused graph: int32 inputs and combined past tensors with zero cached tokens.
        using var original = new InferenceSession(Path.Combine(SharedGpt2, "past.onnx"));
        var originalInputs = new Dictionary<string, OrtValue>
        {
            ["input_ids"] = Int32s(ids), ["position_ids"] = Int32s(positions), ["attention_mask"] = Int32s(mask),
        };
        for (var i = 0; i < config.NumLayers; i++)
            originalInputs[$"past_{i}"] = OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [2, batch, config.NumHeads, 0, config.HeadDim]);
        var expected = Gpt2GraphTests.Run(original, originalInputs)["logits"].Data;
        foreach (var v in originalInputs.Values) v.Dispose();

        // Our canonical graph rebuilt from the imported weights.
        using var rebuilt = Gpt2GraphTests.Session(Gpt2Graph.Inference(config, weights));
        var inputs = new Dictionary<string, OrtValue>
        {
            ["input_ids"] = Int64s(ids), ["position_ids"] = Int64s(positions), ["attention_mask"] = Int64s(mask),
        };
        for (var i = 0; i < config.NumLayers; i++)
            inputs[Gpt2Graph.PastName(i)] = OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [2, batch, config.NumHeads, 0, config.HeadDim]);
        var actual = Gpt2GraphTests.Run(rebuilt, inputs)["logits"].Data;
        foreach (var v in inputs.Values) v.Dispose();

        Assert.Equal(expected.Length, actual.Length);
        double max = 0, spread = 0;
        for (var b = 0; b < batch; b++)
            for (var s = pads[b]; s < seq; s++)
                for (var v = 0; v < config.VocabSize; v++)
                {
                    var k = (b * seq + s) * config.VocabSize + v;
                    max = Math.Max(max, Math.Abs(expected[k] - actual[k]));
                    spread = Math.Max(spread, Math.Abs(expected[k]));
                }
        TestContext.Current.TestOutputHelper?.WriteLine($"imported vs original: max |Δlogit| = {max:E2}, max |logit| = {spread:F3}");
        Assert.True(max < 1e-4, $"max |Δlogit| = {max}");
        Assert.True(spread > 0.01, "the logits are too small for the comparison to mean anything");
    }

    [Fact]
    public void GenAI_generates_the_same_tokens_from_the_imported_model_as_from_the_original()
    {
        var (config, weights, _) = OnnxImport.Import(SharedGpt2);
        using var dir = new TempDir();
        Gpt2GenAITests.WriteGenAIFolder(dir.Path, config, weights);
        int[] prompt = [11, 250, 7, 999, 40];
        var original = GenAI.Greedy(SharedGpt2, prompt, 16);
        var imported = GenAI.Greedy(dir.Path, prompt, 16);
        TestContext.Current.TestOutputHelper?.WriteLine($"GenAI greedy: {string.Join(" ", imported)}");
        Assert.Equal(original, imported);
        Assert.True(imported.Length > prompt.Length);
    }

    [Fact]
    public void Canonical_folder_reimports_to_the_same_weights()
    {
        var config = Gpt2GraphTests.TinyConfig();
        var weights = Gpt2GraphTests.NoisyWeights(config, 31);
        using var dir = new TempDir();
        Gpt2GenAITests.WriteGenAIFolder(dir.Path, config, weights);
        File.WriteAllText(dir.File(ModelFolder.TokenizerFile), "{}");
        ModelFolder.WriteMetadata(dir.Path, new RlaifOnnx.Models.ModelMetadata { Config = config });

        var (config2, weights2, _) = OnnxImport.Import(dir.Path);
        Assert.Equal(config, config2);
        Assert.Equal(weights.Keys.Order(), weights2.Keys.Order());
        foreach (var (name, w) in weights) Assert.Equal(w.Data, weights2[name].Data);

        // Without rlaif.json the config comes from genai_config.json and the graph.
        File.Delete(dir.File(ModelFolder.MetadataFile));
        var (config3, _, _) = OnnxImport.Import(dir.Path);
        Assert.Equal(config, config3);
    }

    [Fact]
    public void Optimum_layout_with_config_json_imports()
    {
        // The fused graph as model.onnx beside a Hugging Face config.json, no genai_config.json.
        using var dir = new TempDir();
        CopyOfShared(dir);
        File.Move(dir.File("past.onnx"), dir.File("model.onnx"));
        File.Delete(dir.File("genai_config.json"));
        File.WriteAllText(dir.File("config.json"), """
            { "model_type": "gpt2", "n_layer": 5, "n_head": 4, "n_embd": 32, "vocab_size": 1000, "n_positions": 512,
              "layer_norm_epsilon": 1e-05, "activation_function": "gelu_new", "bos_token_id": 98, "eos_token_id": [98, 99] }
            """);
        var (config, weights, _) = OnnxImport.Import(dir.Path);
        var (expectedConfig, expectedWeights, _) = OnnxImport.Import(SharedGpt2);
        Assert.Equal(expectedConfig, config);
        foreach (var (name, w) in expectedWeights) Assert.Equal(w.Data, weights[name].Data);

        // A config.json that disagrees with the graph is refused.
        File.WriteAllText(dir.File("config.json"), """{ "model_type": "gpt2", "n_head": 8, "vocab_size": 1000, "eos_token_id": 98 }""");
        var e = Assert.Throws<UserError>(() => OnnxImport.Import(dir.Path));
        Assert.Contains("config.json", e.Message);
        Assert.Contains("8", e.Message);
    }

    [Fact]
    public void Decoder_filename_outside_the_folder_is_a_user_error()
    {
        using var dir = new TempDir();
        CopyOfShared(dir);
        File.WriteAllText(dir.File("genai_config.json"), File.ReadAllText(dir.File("genai_config.json")).Replace("\"past.onnx\"", "\"../past.onnx\""));
        var e = Assert.Throws<UserError>(() => OnnxImport.Import(dir.Path));
        Assert.Contains("escapes", e.Message);
    }

    [Fact]
    public void Malformed_genai_config_names_the_line()
    {
        using var dir = new TempDir();
        CopyOfShared(dir);
        File.WriteAllText(dir.File("genai_config.json"), "{\n  \"model\": {\n    \"type\": gpt2\n  }\n}");
        var e = Assert.Throws<UserError>(() => OnnxImport.Import(dir.Path));
        Assert.Contains("genai_config.json:3", e.Message);
    }

    static string CopyOfShared(TempDir dir)
    {
        // The shared files are read-only; the copies must be writable for the tests to damage them.
        foreach (var f in Directory.GetFiles(SharedGpt2))
        {
            File.Copy(f, dir.File(Path.GetFileName(f)));
            File.SetAttributes(dir.File(Path.GetFileName(f)), FileAttributes.Normal);
        }
        return dir.Path;
    }

    [Fact]
    public void Missing_genai_config_is_a_user_error()
    {
        using var dir = new TempDir();
        CopyOfShared(dir);
        File.Delete(dir.File("genai_config.json"));
        var e = Assert.Throws<UserError>(() => OnnxImport.Import(dir.Path));
        Assert.Contains("genai_config.json", e.Message);
        Assert.Contains("is missing", e.Message);
    }

    [Fact]
    public void Corrupt_onnx_is_a_user_error()
    {
        using var dir = new TempDir();
        CopyOfShared(dir);
        File.WriteAllBytes(dir.File("past.onnx"), [0x08, 0x07, 0xff, 0xff, 0xff, 0x12, 0x99]);
        var e = Assert.Throws<UserError>(() => OnnxImport.Import(dir.Path));
        Assert.Contains("past.onnx", e.Message);
        Assert.Contains("not a valid ONNX model", e.Message);
    }

    [Fact]
    public void Escaping_external_data_is_a_user_error()
    {
        using var dir = new TempDir();
        CopyOfShared(dir);
        var model = OnnxFile.Load(dir.File("past.onnx"));
        var wte = model.Graph.Initializer.Single(t => t.Name == "transformer.wte.weight");
        wte.RawData = ByteString.Empty;
        wte.DataLocation = TensorProto.Types.DataLocation.External;
        wte.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "../../etc/passwd" });
        File.WriteAllBytes(dir.File("past.onnx"), model.ToByteArray());
        var e = Assert.Throws<UserError>(() => OnnxImport.Import(dir.Path));
        Assert.Contains("escapes the model folder", e.Message);
    }

    [Fact]
    public void Unrecognised_graph_names_the_file_and_what_is_missing()
    {
        using var dir = new TempDir();
        CopyOfShared(dir);
        var model = OnnxFile.Load(dir.File("past.onnx"));
        // Drop the FastGelu nodes: the MLP no longer has the activation the walk expects.
        foreach (var n in model.Graph.Node.Where(n => n.OpType == "FastGelu").ToList()) n.OpType = "Relu";
        File.WriteAllBytes(dir.File("past.onnx"), model.ToByteArray());
        var e = Assert.Throws<UserError>(() => OnnxImport.Import(dir.Path));
        Assert.Contains("past.onnx", e.Message);
        Assert.Contains("no GELU", e.Message);
    }

    [Fact]
    public void Missing_folder_and_missing_tokenizer_are_user_errors()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<UserError>(() => OnnxImport.Import(dir.File("nowhere")));
        Assert.Contains("no such folder", e.Message);
        CopyOfShared(dir);
        File.Delete(dir.File("tokenizer.json"));
        e = Assert.Throws<UserError>(() => OnnxImport.Import(dir.Path));
        Assert.Contains("tokenizer.json", e.Message);
    }

    [Fact]
    public void Plain_graph_with_an_unused_canonical_weight_is_refused()
    {
        var config = Gpt2GraphTests.TinyConfig();
        using var dir = new TempDir();
        Gpt2GenAITests.WriteGenAIFolder(dir.Path, config, Gpt2GraphTests.NoisyWeights(config, 2));
        File.WriteAllText(dir.File(ModelFolder.TokenizerFile), "{}");
        var model = OnnxFile.Load(dir.File(ModelFolder.ModelFile));
        // Rewire layer 1's MLP output projection to read another tensor: its canonical weight is left dangling.
        var node = model.Graph.Node.Single(n => n.Input.Contains(WeightNames.Gpt2Layer(1, "mlp.c_proj.weight")));
        var copy = model.Graph.Initializer.Single(t => t.Name == WeightNames.Gpt2Layer(1, "mlp.c_proj.weight")).Clone();
        copy.Name = "renamed";
        model.Graph.Initializer.Add(copy);
        node.Input[node.Input.IndexOf(WeightNames.Gpt2Layer(1, "mlp.c_proj.weight"))] = "renamed";
        OnnxFile.Save(model, dir.File(ModelFolder.ModelFile), ModelFolder.DataFile);
        var e = Assert.Throws<UserError>(() => OnnxImport.Import(dir.Path));
        Assert.Contains("transformer.h.1.mlp.c_proj.weight is not used by any node", e.Message);
    }

    [Fact]
    public void Untied_output_projection_is_refused()
    {
        using var dir = new TempDir();
        CopyOfShared(dir);
        var model = OnnxFile.Load(dir.File("past.onnx"));
        var lmHead = model.Graph.Initializer.Single(t => t.Name == "onnx::MatMul_1400");
        var values = OnnxFile.ToFloats(lmHead);
        values[17] += 0.5f;
        lmHead.RawData = OnnxFile.FloatTensor(lmHead.Name, values, lmHead.Dims.ToArray()).RawData;
        File.WriteAllBytes(dir.File("past.onnx"), model.ToByteArray());
        var e = Assert.Throws<UserError>(() => OnnxImport.Import(dir.Path));
        Assert.Contains("not the transposed word embedding", e.Message);
    }

    [Fact]
    public void Other_model_types_are_refused_naming_what_is_supported()
    {
        using var dir = new TempDir();
        CopyOfShared(dir);
        var original = File.ReadAllText(dir.File("genai_config.json"));
        File.WriteAllText(dir.File("genai_config.json"), original.Replace("\"gpt2\"", "\"gemma\""));
        var e = Assert.Throws<UserError>(() => OnnxImport.Import(dir.Path));
        Assert.Contains("supported: gpt2, llama, qwen2, mistral, phi3", e.Message);

        // A GPT-2 graph that calls itself llama is read as a Llama-family graph, and is not one.
        File.WriteAllText(dir.File("genai_config.json"), original.Replace("\"gpt2\"", "\"llama\""));
        e = Assert.Throws<UserError>(() => OnnxImport.Import(dir.Path));
        Assert.Contains("not a Llama-family graph this importer recognises", e.Message);
    }
}
