using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;


namespace RlaifOnnx.Tests.Models.Import;

/// <summary>Tiny Hugging Face checkpoint folders the tests write themselves, for each supported model_type.</summary>
public static class HfFolders
{
    /// <summary>The smallest vocabulary TinyTokenizer makes (3 special tokens + 256 bytes) plus a few merges.</summary>
    public const int VocabSize = 300;

    public static ModelConfig Llama(string modelType = "llama", int kvHeads = 4, bool tie = false) => new()
    {
        Architecture = Architecture.Llama,
        ModelType = modelType,
        VocabSize = VocabSize,
        HiddenSize = 32,
        NumLayers = 2,
        NumHeads = 4,
        NumKvHeads = kvHeads,
        IntermediateSize = 48,
        MaxPositions = 64,
        NormEps = 1e-5,
        RopeTheta = 10000,
        TieEmbeddings = tie,
        AttentionBias = modelType == "qwen2",
        BosTokenId = 1,
        EosTokenId = 2,
        PadTokenId = 2,
    };

    public static ModelConfig Gpt2() => new()
    {
        Architecture = Architecture.Gpt2,
        ModelType = "gpt2",
        VocabSize = VocabSize,
        HiddenSize = 32,
        NumLayers = 2,
        NumHeads = 4,
        NumKvHeads = 4,
        IntermediateSize = 128,
        MaxPositions = 64,
        NormEps = 1e-5,
        TieEmbeddings = true,
        HiddenAct = "gelu_new",
        BosTokenId = 0,
        EosTokenId = 0,
        PadTokenId = 0,
    };

    /// <summary>Random weights whose biases and norm scales are random too, so a mapping that mixes them up shows.</summary>
    public static WeightSet RandomWeights(ModelConfig config, int seed)
    {
        var weights = WeightSet.Random(config, seed);
        var rng = new Random(seed + 1);
        foreach (var (name, t) in weights)
            if (name.EndsWith(".bias") || name.Contains("norm") || name.Contains("ln_"))
                for (var i = 0; i < t.Data.Length; i++) t.Data[i] += (float)(0.1 * (rng.NextDouble() - 0.5));
        return weights;
    }

    /// <summary>Writes a complete HF folder: config.json, safetensors (sharded when <paramref name="maxShardBytes"/> is small) and tokenizer files.</summary>
    public static void Write(string dir, ModelConfig config, WeightSet weights, long? maxShardBytes = null)
    {
        HfCheckpoint.Save(dir, config, weights, maxShardBytes: maxShardBytes);
        WriteTokenizer(dir);
    }

    static readonly Lazy<TinyTokenizer> Tokenizer = new(() => TinyTokenizer.Train(VocabSize));

    /// <summary>The project's own byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json with a ChatML template).</summary>
    public static void WriteTokenizer(string dir) => Tokenizer.Value.Write(dir);
}

public class HfCheckpointTests
{
    static void AssertSameWeights(WeightSet expected, WeightSet actual)
    {
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, t) in expected)
        {
            Assert.Equal(t.Shape, actual[name].Shape);
            Assert.True(t.Data.AsSpan().SequenceEqual(actual[name].Data), $"{name} differs");
        }
    }

    public static TheoryData<string, int, bool, bool> Families() => new()
    {
        { "llama", 4, false, false },
        { "llama", 4, true, true },
        { "qwen2", 2, true, false },
        { "qwen2", 2, false, true },
        { "mistral", 2, false, false },
        { "mistral", 1, true, true },
    };

    [Theory]
    [MemberData(nameof(Families))]
    public void LlamaFamilyCheckpointLoadsToExactlyTheWeightsWritten(string modelType, int kvHeads, bool tie, bool sharded)
    {
        using var dir = new TempDir();
        var config = HfFolders.Llama(modelType, kvHeads, tie);
        var weights = HfFolders.RandomWeights(config, seed: 7);
        HfFolders.Write(dir.Path, config, weights, maxShardBytes: sharded ? 8 * 1024 : null);
        Assert.Equal(sharded, File.Exists(dir.File("model.safetensors.index.json")));

        var (loaded, loadedWeights, tokenizerDir) = HfCheckpoint.Load(dir.Path);
        Assert.Equal(config, loaded);
        Assert.Equal(dir.Path, tokenizerDir);
        AssertSameWeights(weights, loadedWeights);
        Assert.Equal(modelType == "qwen2", loadedWeights.ContainsKey("model.layers.1.self_attn.k_proj.bias"));
        Assert.Equal(!tie, loadedWeights.ContainsKey("lm_head.weight"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Gpt2CheckpointLoadsToExactlyTheWeightsWritten(bool sharded)
    {
        using var dir = new TempDir();
        var config = HfFolders.Gpt2();
        var weights = HfFolders.RandomWeights(config, seed: 3);
        HfFolders.Write(dir.Path, config, weights, maxShardBytes: sharded ? 16 * 1024 : null);
        var (loaded, loadedWeights, _) = HfCheckpoint.Load(dir.Path);
        Assert.Equal(config, loaded);
        AssertSameWeights(weights, loadedWeights);
    }

    /// <summary>HF tensors written by hand in HF's own layout, value = 1000·row + col, so every transpose is checked on non-square matrices.</summary>
    [Fact]
    public void LinearWeightsAreTransposedFromHfLayoutAndBuffersDropped()
    {
        using var dir = new TempDir();
        var config = HfFolders.Llama("mistral", kvHeads: 2, tie: false);
        var hf = new Dictionary<string, WeightTensor>();
        foreach (var (name, shape) in WeightNames.Shapes(config))
        {
            // Canonical [in, out] → HF nn.Linear [out, in].
            var hfShape = HfCheckpoint.IsLinear(config, name) ? new[] { shape[1], shape[0] } : shape;
            hf[name] = Indexed(hfShape);
        }
        hf["model.layers.0.self_attn.rotary_emb.inv_freq"] = new([4], [1f, 0.1f, 0.01f, 0.001f]);
        SafetensorsFile.Write(dir.File("model.safetensors"), hf);
        File.WriteAllText(dir.File("config.json"), HfCheckpoint.ConfigJson(config).ToJsonString());
        HfFolders.WriteTokenizer(dir.Path);

        var (_, weights, _) = HfCheckpoint.Load(dir.Path);
        Assert.False(weights.ContainsKey("model.layers.0.self_attn.rotary_emb.inv_freq"));
        var k = weights["model.layers.1.self_attn.k_proj.weight"]; // HF [16 out, 32 in] → [32, 16]
        Assert.Equal([32L, 16L], k.Shape);
        for (var i = 0; i < 32; i++)
            for (var o = 0; o < 16; o++)
                Assert.Equal(1000f * o + i, k.Data[i * 16 + o]);
        var down = weights["model.layers.0.mlp.down_proj.weight"]; // HF [32 out, 48 in] → [48, 32]
        Assert.Equal([48L, 32L], down.Shape);
        Assert.Equal(1000f * 5 + 47, down.Data[47 * 32 + 5]);
        var head = weights["lm_head.weight"]; // HF [300 vocab, 32] → [32, 300]
        Assert.Equal([32L, 300L], head.Shape);
        Assert.Equal(1000f * 295 + 3, head.Data[3 * 300 + 295]);
        Assert.Equal(hf["model.embed_tokens.weight"].Data, weights["model.embed_tokens.weight"].Data); // embeddings are not transposed
    }

    /// <summary>Real checkpoints (SmolLM2, Qwen2) ship in bfloat16 or float16: each loads as the float32 values those bits mean.</summary>
    [Theory]
    [InlineData("BF16")]
    [InlineData("F16")]
    public void HalfPrecisionCheckpointLoadsAsFloat32(string dtype)
    {
        using var dir = new TempDir();
        var config = HfFolders.Llama("qwen2", kvHeads: 2, tie: false);
        var weights = HfFolders.RandomWeights(config, seed: 9);
        var raw = new Dictionary<string, RawTensor>();
        var expected = new WeightSet();
        foreach (var (name, t) in weights)
        {
            var linear = HfCheckpoint.IsLinear(config, name);
            var hfData = linear ? HfCheckpoint.Transpose(t.Data, (int)t.Shape[0], (int)t.Shape[1]) : t.Data;
            var bytes = new byte[2 * hfData.Length];
            var rounded = new float[hfData.Length];
            for (var i = 0; i < hfData.Length; i++)
            {
                // bfloat16: the top 16 bits of the float32 (truncation); float16: System.Half's rounding.
                ushort bits = dtype == "BF16" ? (ushort)(BitConverter.SingleToInt32Bits(hfData[i]) >>> 16) : BitConverter.HalfToUInt16Bits((Half)hfData[i]);
                System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), bits);
                rounded[i] = dtype == "BF16" ? BitConverter.Int32BitsToSingle(bits << 16) : (float)BitConverter.UInt16BitsToHalf(bits);
            }
            raw[name] = new RawTensor(dtype, linear ? [t.Shape[1], t.Shape[0]] : t.Shape, bytes);
            expected[name] = new WeightTensor(t.Shape, linear ? HfCheckpoint.Transpose(rounded, (int)t.Shape[1], (int)t.Shape[0]) : rounded);
        }
        SafetensorsFile.WriteRaw(dir.File("model.safetensors"), raw);
        File.WriteAllText(dir.File("config.json"), HfCheckpoint.ConfigJson(config).ToJsonString());
        HfFolders.WriteTokenizer(dir.Path);

        var (_, loaded, _) = HfCheckpoint.Load(dir.Path);
        AssertSameWeights(expected, loaded);
        Assert.NotEqual(weights["model.layers.0.self_attn.q_proj.weight"].Data, loaded["model.layers.0.self_attn.q_proj.weight"].Data); // really rounded
    }

    static WeightTensor Indexed(long[] shape)
    {
        var count = (int)shape.Aggregate(1L, (a, b) => a * b);
        var cols = shape.Length == 2 ? (int)shape[1] : count;
        return new WeightTensor(shape, Enumerable.Range(0, count).Select(i => 1000f * (i / cols) + i % cols).ToArray());
    }

    /// <summary>The original gpt2 checkpoints: no "transformer." prefix, attn.bias / masked_bias buffers, Conv1D [in, out] weights kept as they are.</summary>
    [Fact]
    public void Gpt2WithoutTransformerPrefixAndWithBuffersLoads()
    {
        using var dir = new TempDir();
        var config = HfFolders.Gpt2();
        var weights = HfFolders.RandomWeights(config, seed: 5);
        var hf = weights.ToDictionary(kv => kv.Key["transformer.".Length..], kv => kv.Value);
        hf["h.0.attn.bias"] = new([1, 1, 64, 64], new float[64 * 64]);
        hf["h.0.attn.masked_bias"] = new([], [-1e4f]);
        hf["lm_head.weight"] = weights["transformer.wte.weight"];
        SafetensorsFile.Write(dir.File("model.safetensors"), hf);
        File.WriteAllText(dir.File("config.json"), """
            {"model_type": "gpt2", "vocab_size": 300, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_inner": null,
             "n_positions": 64, "activation_function": "gelu_new", "bos_token_id": 0, "eos_token_id": 0}
            """);
        HfFolders.WriteTokenizer(dir.Path);

        var (loaded, loadedWeights, _) = HfCheckpoint.Load(dir.Path);
        Assert.Equal(config, loaded); // n_inner null → 4·n_embd, pad → eos, layer_norm_epsilon default 1e-5
        AssertSameWeights(weights, loadedWeights);
        Assert.Equal([32L, 96L], loadedWeights["transformer.h.1.attn.c_attn.weight"].Shape);
    }

    [Fact]
    public void ConfigDefaultsAndEosListsFollowTransformers()
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, """
            {"model_type": "qwen2", "vocab_size": 96, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
             "num_attention_heads": 4, "max_position_embeddings": 64, "bos_token_id": 5, "eos_token_id": [7, 9],
             "rope_scaling": null, "sliding_window": 32, "use_sliding_window": false, "tie_word_embeddings": true}
            """);
        var hf = HfCheckpoint.ReadConfig(path);
        Assert.Equal(4, hf.Config.NumKvHeads); // defaults to the attention heads
        Assert.Equal(1e-6, hf.Config.NormEps);
        Assert.Equal(10000.0, hf.Config.RopeTheta);
        Assert.True(hf.Config.AttentionBias);
        Assert.True(hf.Config.TieEmbeddings);
        Assert.Equal(64, hf.Config.MaxPositions); // the window is off
        Assert.Equal((5, 7, 7), (hf.Config.BosTokenId, hf.Config.EosTokenId, hf.Config.PadTokenId));
        Assert.Equal([7, 9], hf.EosTokenIds);
        Assert.Contains(hf.Notes, n => n.Contains("eos_token_id lists 2 ids [7, 9]"));
    }

    [Theory]
    [InlineData("\"use_sliding_window\": true, \"max_window_layers\": 0", 40)]
    [InlineData("\"use_sliding_window\": true, \"max_window_layers\": 1", 40)]
    [InlineData("\"use_sliding_window\": true, \"max_window_layers\": 2", 64)]
    [InlineData("\"use_sliding_window\": false, \"max_window_layers\": 0", 64)]
    [InlineData("\"layer_types\": [\"full_attention\", \"sliding_attention\"]", 40)]
    public void Qwen2SlidingWindowCapsTheContextOnlyWhenSomeLayerSlides(string window, int expectedContext)
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, "{\"model_type\": \"qwen2\", \"vocab_size\": 96, \"hidden_size\": 32, \"intermediate_size\": 48, \"num_hidden_layers\": 2,"
            + "\"num_attention_heads\": 4, \"max_position_embeddings\": 64, \"sliding_window\": 40, " + window + "}");
        Assert.Equal(expectedContext, HfCheckpoint.ReadConfig(path).Config.MaxPositions);
    }

    [Fact]
    public void ZeroHeadsIsAnErrorNotACrash()
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, "{\"model_type\": \"llama\", \"vocab_size\": 96, \"hidden_size\": 32, \"intermediate_size\": 48, \"num_hidden_layers\": 2,"
            + "\"num_attention_heads\": 0, \"head_dim\": 8}");
        Assert.Equal($"{path}: num_attention_heads: must be positive, got 0", Assert.Throws<UserError>(() => HfCheckpoint.ReadConfig(path)).Message);
    }

    /// <summary>The config.json keys of SmolLM2-135M (sizes as published), including nanotron's extra keys.</summary>
    [Fact]
    public void SmolLM2ConfigReadsAsTiedGqaLlama()
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, """
            {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 0,
             "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 576, "initializer_range": 0.041666666666666664,
             "intermediate_size": 1536, "is_llama_config": true, "max_position_embeddings": 8192, "model_type": "llama",
             "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3, "pretraining_tp": 1,
             "rms_norm_eps": 1e-05, "rope_interleaved": false, "rope_scaling": null, "rope_theta": 100000,
             "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.40.1", "use_cache": true,
             "vocab_size": 49152}
            """);
        var c = HfCheckpoint.ReadConfig(path).Config;
        Assert.Equal((576, 30, 9, 3, 64, 1536, 8192), (c.HiddenSize, c.NumLayers, c.NumHeads, c.NumKvHeads, c.HeadDim, c.IntermediateSize, c.MaxPositions));
        Assert.True(c.TieEmbeddings);
        Assert.Equal(100000.0, c.RopeTheta);
        Assert.Equal(1e-5, c.NormEps);
        Assert.Equal((0, 0, 0), (c.BosTokenId, c.EosTokenId, c.PadTokenId));
        Assert.Equal(134_515_008, c.ParameterCount); // SmolLM2-135M's published parameter count
    }

    [Fact]
    public void MistralSlidingWindowCapsTheContext()
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, """
            {"model_type": "mistral", "vocab_size": 96, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128, "sliding_window": 48,
             "rope_theta": 1000000.0, "bos_token_id": 1, "eos_token_id": 2}
            """);
        var hf = HfCheckpoint.ReadConfig(path);
        Assert.Equal(48, hf.Config.MaxPositions);
        Assert.Equal(1e6, hf.Config.RopeTheta);
        Assert.Contains(hf.Notes, n => n.Contains("sliding_window 48 < max_position_embeddings 128"));
    }

    [Theory]
    [InlineData("{\"type\": \"linear\", \"factor\": 1.0}", null)]
    [InlineData("{\"rope_type\": \"default\"}", null)]
    [InlineData("{\"type\": \"dynamic\", \"factor\": 2.0}", "rope_scaling 'dynamic' only changes RoPE beyond max_position_embeddings")]
    public void RopeScalingThatKeepsTheMathIsAccepted(string scaling, string? note)
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, "{\"model_type\": \"llama\", \"vocab_size\": 96, \"hidden_size\": 32, \"intermediate_size\": 48,"
            + "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"rope_scaling\": " + scaling + "}");
        var hf = HfCheckpoint.ReadConfig(path);
        if (note is null) Assert.Empty(hf.Notes);
        else Assert.Contains(hf.Notes, n => n.StartsWith(note));
    }

    [Theory]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}", "rope_scaling: RoPE scaling type 'llama3' with factor 8 is not supported (it changes the rotary frequencies)")]
    [InlineData("\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", "rope_scaling: RoPE scaling type 'linear' with factor 2 is not supported (it changes the rotary frequencies)")]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}", "rope_scaling: RoPE scaling type 'yarn' with factor 4 is not supported (it changes the rotary frequencies)")]
    [InlineData("\"rope_interleaved\": true", "rope_interleaved: interleaved RoPE is not supported (the graph rotates the two halves of each head, as transformers does)")]
    [InlineData("\"head_dim\": 16", "head_dim: 16 differs from hidden_size / num_attention_heads = 8, which the graph assumes")]
    [InlineData("\"attention_bias\": true", "attention_bias: biases on q/k/v/o projections are not supported (only Qwen2's q/k/v biases are)")]
    [InlineData("\"hidden_act\": \"gelu\"", "hidden_act: 'gelu' is not supported (the Llama family graph uses silu)")]
    [InlineData("\"num_key_value_heads\": 3", "num_key_value_heads: 4 attention heads are not divisible by 3 key/value heads")]
    [InlineData("\"rms_norm_eps\": \"small\"", "rms_norm_eps: must be a number, got \"small\"")]
    [InlineData("\"num_key_value_heads\": 2.5", "num_key_value_heads: must be an integer, got 2.5")]
    [InlineData("\"hidden_size\": 32", "hidden_size: duplicate key (first on line 1)")]
    public void SettingsThatWouldChangeTheMathAreErrorsNamingTheKey(string extra, string expected)
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, "{\"model_type\": \"llama\", \"vocab_size\": 96, \"hidden_size\": 32, \"intermediate_size\": 48,\n"
            + "\"num_hidden_layers\": 2, \"num_attention_heads\": 4,\n" + extra + "}");
        var error = Assert.Throws<UserError>(() => HfCheckpoint.ReadConfig(path));
        var line = expected.StartsWith("num_key_value_heads: 4") ? "" : ":3";
        Assert.Equal($"{path}{line}: {expected}", error.Message);
    }

    [Fact]
    public void TransposeIsRowMajorTranspose()
    {
        // [[1, 2, 3], [4, 5, 6]] → [[1, 4], [2, 5], [3, 6]]
        Assert.Equal([1f, 4f, 2f, 5f, 3f, 6f], HfCheckpoint.Transpose([1f, 2f, 3f, 4f, 5f, 6f], 2, 3));
    }
}

public class ModelInspectorTests
{
    [Fact]
    public void HfCheckpointFolderShowsConfigAndParameterCount()
    {
        using var dir = new TempDir();
        var config = HfFolders.Llama("qwen2", kvHeads: 2, tie: true);
        HfFolders.Write(dir.Path, config, HfFolders.RandomWeights(config, 1), maxShardBytes: 8 * 1024);
        var text = ModelInspector.Describe(dir.Path);
        Assert.Contains($"parameters         {config.ParameterCount:N0} (", text);
        Assert.Contains("model type         qwen2", text);
        Assert.Contains("heads              4 (key/value 2, head size 8)", text);
        Assert.Contains("embeddings         tied", text);
        Assert.Contains("model.safetensors.index.json", text);
        Assert.Contains("model-00001-of-", text);
    }

    [Fact]
    public void GenAIExportShowsItsConfigAndInitializerCount()
    {
        var dir = SharedData.Require("genai-models/tiny-random-gpt2-fp32");
        var text = ModelInspector.Describe(dir);
        Assert.Contains("ONNX Runtime GenAI folder", text);
        Assert.Contains("type", text);
        Assert.Matches(@"parameters\s+[\d,]+ \(", text);
        Assert.Contains("genai_config.json", text);
    }

    [Fact]
    public void AFolderWithoutAnyConfigIsAnError()
    {
        using var dir = new TempDir();
        Assert.Equal($"{dir.Path}: not a model folder (no rlaif.json, config.json or genai_config.json)",
            Assert.Throws<UserError>(() => ModelInspector.Describe(dir.Path)).Message);
    }
}

public class HfCheckpointWeightErrorTests
{
    [Fact]
    public void UntiedCheckpointWithoutLmHeadNamesTheMissingWeight()
    {
        using var dir = new TempDir();
        var config = HfFolders.Llama(tie: false);
        var weights = HfFolders.RandomWeights(config, 1);
        HfFolders.Write(dir.Path, config, weights);
        var hf = new Dictionary<string, WeightTensor>();
        using (var file = SafetensorsFile.Open(dir.File("model.safetensors")))
            foreach (var name in file.Entries.Keys.Where(n => n != "lm_head.weight")) hf[name] = file.ReadFloat(name);
        SafetensorsFile.Write(dir.File("model.safetensors"), hf);
        Assert.Equal($"{dir.Path}: lm_head.weight: weight is missing", Assert.Throws<UserError>(() => HfCheckpoint.Load(dir.Path)).Message);
    }

    [Fact]
    public void UnknownTensorIsNotSilentlyDropped()
    {
        using var dir = new TempDir();
        var config = HfFolders.Llama();
        HfFolders.Write(dir.Path, config, HfFolders.RandomWeights(config, 1));
        var hf = new Dictionary<string, WeightTensor>();
        using (var file = SafetensorsFile.Open(dir.File("model.safetensors")))
            foreach (var name in file.Entries.Keys) hf[name] = file.ReadFloat(name);
        hf["model.layers.0.self_attn.o_proj.bias"] = new([32], new float[32]);
        SafetensorsFile.Write(dir.File("model.safetensors"), hf);
        Assert.Equal($"{dir.Path}: model.layers.0.self_attn.o_proj.bias: weight is not part of this architecture", Assert.Throws<UserError>(() => HfCheckpoint.Load(dir.Path)).Message);
    }
}

public class HfExportTests
{
    /// <summary>A model folder's weights exported back to a Hugging Face folder load to exactly the same weights and config.</summary>
    [Theory]
    [InlineData("mistral")]
    [InlineData("gpt2")]
    public void ModelFolderExportsToHfAndLoadsBack(string modelType)
    {
        using var dir = new TempDir();
        var config = modelType == "gpt2" ? HfFolders.Gpt2() : HfFolders.Llama(modelType, kvHeads: 2);
        var weights = HfFolders.RandomWeights(config, 21);
        var modelDir = Path.Combine(dir.Path, "model");
        var hfDir = Path.Combine(dir.Path, "hf");
        ModelWriter.Write(modelDir, config, weights, TinyTokenizer.Train(HfFolders.VocabSize), "base", []);

        HfCheckpoint.Save(hfDir, ModelFolder.ReadMetadata(modelDir).Config, ModelFolder.ReadWeights(modelDir), tokenizerSourceDir: modelDir);
        var (loaded, loadedWeights, tokenizerDir) = HfCheckpoint.Load(hfDir);
        Assert.Equal(config, loaded);
        Assert.Equal(File.ReadAllText(Path.Combine(modelDir, "tokenizer.json")), File.ReadAllText(Path.Combine(tokenizerDir, "tokenizer.json")));
        foreach (var (name, t) in weights) Assert.Equal(t.Data, loadedWeights[name].Data);
    }
}
