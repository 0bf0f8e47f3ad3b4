using System.Text.Json;
using System.Text.Json.Nodes;
using RlaifOnnx.Core;

namespace RlaifOnnx.Models.Import;

/// <summary>What a Hugging Face config.json says, in our terms, plus what did not fit <see cref="ModelConfig"/>.</summary>
/// <param name="Config">The validated model config.</param>
/// <param name="EosTokenIds">Every end-of-sequence id (config.json may list several; <see cref="ModelConfig.EosTokenId"/> is the first).</param>
/// <param name="Notes">Settings kept in an adapted form, for the user to read.</param>
public sealed record HfConfig(ModelConfig Config, IReadOnlyList<int> EosTokenIds, IReadOnlyList<string> Notes);

/// <summary>
/// Hugging Face checkpoint folders (config.json, *.safetensors with optional shard index, tokenizer.json,
/// tokenizer_config.json) ↔ our <see cref="ModelConfig"/> and canonical <see cref="WeightSet"/>.
/// Supported: model_type llama (incl. SmolLM2, TinyLlama), qwen2, mistral, gpt2. Every nn.Linear weight
/// [out, in] is transposed to MatMul layout [in, out]; GPT-2's Conv1D weights already are [in, out].
/// Settings that would silently change the math (rope scaling, a real sliding window, odd head_dim …)
/// are errors naming the key, never ignored.
/// </summary>
public static class HfCheckpoint
{
    public const string ConfigFile = "config.json";
    public static readonly string[] SupportedModelTypes = ["llama", "qwen2", "mistral", "gpt2"];

    /// <summary>Reads config, weights and checks the tokenizer files of <paramref name="hfDir"/>; <paramref name="note"/> hears about adapted settings.</summary>
    public static (ModelConfig Config, WeightSet Weights, string TokenizerDir) Load(string hfDir, Action<string>? note = null)
    {
        if (!Directory.Exists(hfDir)) throw UserError.At(hfDir, null, null, "no such checkpoint folder");
        var hf = ReadConfig(Path.Combine(hfDir, ConfigFile));
        foreach (var n in hf.Notes) note?.Invoke(n);
        var tokenizerDir = TokenizerConversion.Prepare(hfDir, note);
        CheckTokenizerFiles(tokenizerDir);
        var weights = ReadWeights(hfDir, hf.Config);
        return (hf.Config, weights, tokenizerDir);
    }

    static void CheckTokenizerFiles(string hfDir)
    {
        foreach (var file in new[] { ModelFolder.TokenizerFile, ModelFolder.TokenizerConfigFile })
            if (!File.Exists(Path.Combine(hfDir, file)))
                throw UserError.At(Path.Combine(hfDir, file), null, null, "tokenizer file is missing (a checkpoint folder needs tokenizer.json and tokenizer_config.json)");
    }

    // ---- config.json ----

    /// <summary>Parses a config.json into a validated <see cref="ModelConfig"/>; errors name file:line: key.</summary>
    public static HfConfig ReadConfig(string path)
    {
        if (!File.Exists(path)) throw UserError.At(path, null, null, "config.json is missing (not a Hugging Face checkpoint folder)");
        var bytes = File.ReadAllBytes(path);
        JsonObject root;
        Dictionary<string, int> lines;
        try
        {
            root = JsonNode.Parse(bytes) as JsonObject ?? throw UserError.At(path, 1, null, "config.json must be a JSON object");
            // Before the object is read: JsonObject throws a bare ArgumentException on a duplicate key.
            lines = TopLevelLines(path, bytes);
        }
        catch (JsonException e)
        {
            throw UserError.At(path, (int?)e.LineNumber + 1, null, $"malformed JSON ({FirstSentence(e.Message)})");
        }
        var reader = new ConfigReader(path, root, lines);
        var modelType = reader.String("model_type", null)
            ?? throw UserError.At(path, null, "model_type", $"is missing (supported: {string.Join(", ", SupportedModelTypes)})");
        var result = modelType switch
        {
            "llama" or "mistral" or "qwen2" => LlamaFamily(reader, modelType),
            "gpt2" => Gpt2(reader),
            _ => throw UserError.At(path, reader.Line("model_type"), "model_type",
                $"'{modelType}' is not supported (supported: {string.Join(", ", SupportedModelTypes)})"),
        };
        result.Config.Validate(path);
        return result;
    }

    static HfConfig LlamaFamily(ConfigReader r, string modelType)
    {
        var notes = new List<string>();
        var hidden = r.Int("hidden_size", null);
        var heads = r.Int("num_attention_heads", null);
        var maxPositions = r.Int("max_position_embeddings", modelType == "qwen2" ? 32768 : modelType == "mistral" ? 4096 * 32 : 2048);

        var act = r.String("hidden_act", "silu");
        if (act is not ("silu" or "swish"))
            throw UserError.At(r.Path, r.Line("hidden_act"), "hidden_act", $"'{act}' is not supported (the Llama family graph uses silu)");
        if (r.Node("head_dim") is not null && heads > 0 && r.Int("head_dim", 0) != hidden / heads)
            throw UserError.At(r.Path, r.Line("head_dim"), "head_dim", $"{r.Int("head_dim", 0)} differs from hidden_size / num_attention_heads = {hidden / heads}, which the graph assumes");
        if (r.Bool("mlp_bias", false)) throw UserError.At(r.Path, r.Line("mlp_bias"), "mlp_bias", "MLP biases are not supported");
        // Llama's attention_bias puts a bias on o_proj too; Qwen2's q/k/v-only bias is what the graph has.
        if (modelType != "qwen2" && r.Bool("attention_bias", false))
            throw UserError.At(r.Path, r.Line("attention_bias"), "attention_bias", "biases on q/k/v/o projections are not supported (only Qwen2's q/k/v biases are)");
        RopeScaling(r, notes);
        // SmolLM2's configs carry nanotron's rope_interleaved; true would rotate (even, odd) pairs instead of halves.
        if (r.Bool("rope_interleaved", false))
            throw UserError.At(r.Path, r.Line("rope_interleaved"), "rope_interleaved", "interleaved RoPE is not supported (the graph rotates the two halves of each head, as transformers does)");

        // A sliding window only changes attention for sequences longer than the window: capping the context at
        // the window keeps the math exact, whichever layers use it. Qwen2 slides on layers ≥ max_window_layers
        // when use_sliding_window is set; newer configs say so per layer in layer_types.
        var slidingWindow = r.Node("sliding_window") is not null ? r.Int("sliding_window", 0) : (int?)null;
        var windowUsed = modelType switch
        {
            "mistral" => slidingWindow is not null,
            "qwen2" => r.Bool("use_sliding_window", false) && r.Int("max_window_layers", 28) < r.Int("num_hidden_layers", null),
            _ => false,
        };
        if (r.Node("layer_types") is JsonArray layerTypes && layerTypes.Any(t => t?.ToString() == "sliding_attention")) windowUsed = true;
        if (windowUsed && slidingWindow is { } window)
        {
            if (window <= 0) throw UserError.At(r.Path, r.Line("sliding_window"), "sliding_window", $"must be positive, got {window}");
            if (window < maxPositions)
            {
                notes.Add($"sliding_window {window} < max_position_embeddings {maxPositions}: context capped at {window} tokens, where the window never slides");
                maxPositions = window;
            }
        }

        var (bos, eosIds, pad) = TokenIds(r, defaultBos: modelType == "qwen2" ? 0 : 1, defaultEos: modelType == "qwen2" ? 0 : 2, notes);
        var config = new ModelConfig
        {
            Architecture = Architecture.Llama,
            ModelType = modelType,
            VocabSize = r.Int("vocab_size", null),
            HiddenSize = hidden,
            NumLayers = r.Int("num_hidden_layers", null),
            NumHeads = heads,
            NumKvHeads = r.Int("num_key_value_heads", heads),
            IntermediateSize = r.Int("intermediate_size", null),
            MaxPositions = maxPositions,
            NormEps = r.Double("rms_norm_eps", 1e-6),
            RopeTheta = r.Double("rope_theta", 10000.0),
            TieEmbeddings = r.Bool("tie_word_embeddings", false),
            AttentionBias = modelType == "qwen2",
            HiddenAct = "silu",
            BosTokenId = bos,
            EosTokenId = eosIds[0],
            PadTokenId = pad,
        };
        return new HfConfig(config, eosIds, notes);
    }

    /// <summary>
    /// rope_scaling: "default" (or none) keeps RoPE as built; linear scaling by 1 is the identity; dynamic NTK
    /// scaling only rescales beyond max_position_embeddings, which is the context we keep. Everything else
    /// (linear by ≠ 1, yarn, longrope, llama3 …) changes the rotary frequencies inside the context: an error.
    /// </summary>
    static void RopeScaling(ConfigReader r, List<string> notes)
    {
        if (r.Node("rope_scaling") is not JsonObject scaling) return;
        var type = (scaling["rope_type"] ?? scaling["type"])?.ToString() ?? "?";
        var factor = scaling["factor"] is JsonValue f && f.TryGetValue<double>(out var x) ? x : (double?)null;
        switch (type)
        {
            case "default":
                return;
            case "linear" when factor == 1.0:
                return;
            case "dynamic":
                notes.Add("rope_scaling 'dynamic' only changes RoPE beyond max_position_embeddings, which is the context kept");
                return;
            default:
                throw UserError.At(r.Path, r.Line("rope_scaling"), "rope_scaling",
                    $"RoPE scaling type '{type}'{(factor is { } v ? $" with factor {v}" : "")} is not supported (it changes the rotary frequencies)");
        }
    }

    static HfConfig Gpt2(ConfigReader r)
    {
        var notes = new List<string>();
        var hidden = r.Int("n_embd", null);
        var act = r.String("activation_function", "gelu_new");
        // gelu_pytorch_tanh is the same tanh approximation as gelu_new.
        var hiddenAct = act switch
        {
            "gelu_new" or "gelu_pytorch_tanh" => "gelu_new",
            "gelu" => "gelu",
            _ => throw UserError.At(r.Path, r.Line("activation_function"), "activation_function", $"'{act}' is not supported (gelu_new, gelu_pytorch_tanh, gelu)"),
        };
        if (!r.Bool("tie_word_embeddings", true))
            throw UserError.At(r.Path, r.Line("tie_word_embeddings"), "tie_word_embeddings", "GPT-2 with an untied lm_head is not supported");
        if (!r.Bool("scale_attn_weights", true))
            throw UserError.At(r.Path, r.Line("scale_attn_weights"), "scale_attn_weights", "unscaled attention is not supported");
        if (r.Bool("scale_attn_by_inverse_layer_idx", false))
            throw UserError.At(r.Path, r.Line("scale_attn_by_inverse_layer_idx"), "scale_attn_by_inverse_layer_idx", "per-layer attention scaling is not supported");
        var (bos, eosIds, pad) = TokenIds(r, defaultBos: 50256, defaultEos: 50256, notes);
        var heads = r.Int("n_head", null);
        var config = new ModelConfig
        {
            Architecture = Architecture.Gpt2,
            ModelType = "gpt2",
            VocabSize = r.Int("vocab_size", 50257),
            HiddenSize = hidden,
            NumLayers = r.Int("n_layer", null),
            NumHeads = heads,
            NumKvHeads = heads,
            IntermediateSize = r.Node("n_inner") is null ? 4 * hidden : r.Int("n_inner", null),
            MaxPositions = r.Int("n_positions", 1024),
            NormEps = r.Double("layer_norm_epsilon", 1e-5),
            TieEmbeddings = true,
            HiddenAct = hiddenAct,
            BosTokenId = bos,
            EosTokenId = eosIds[0],
            PadTokenId = pad,
        };
        return new HfConfig(config, eosIds, notes);
    }

    /// <summary>bos/eos/pad ids: eos may be a list (the first is the model's, the rest are kept in <see cref="HfConfig.EosTokenIds"/>); pad defaults to eos.</summary>
    static (int Bos, int[] EosIds, int Pad) TokenIds(ConfigReader r, int defaultBos, int defaultEos, List<string> notes)
    {
        var bos = r.Node("bos_token_id") is null ? defaultBos : r.Int("bos_token_id", null);
        int[] eos;
        if (r.Node("eos_token_id") is JsonArray list)
        {
            if (list.Count == 0) throw UserError.At(r.Path, r.Line("eos_token_id"), "eos_token_id", "is an empty list");
            eos = list.Select(n => n is JsonValue v && v.TryGetValue<int>(out var id) ? id
                : throw UserError.At(r.Path, r.Line("eos_token_id"), "eos_token_id", $"must list integers, got {list.ToJsonString()}")).ToArray();
            if (eos.Length > 1) notes.Add($"eos_token_id lists {eos.Length} ids [{string.Join(", ", eos)}]; {eos[0]} is the model's end-of-sequence token");
        }
        else eos = [r.Node("eos_token_id") is null ? defaultEos : r.Int("eos_token_id", null)];
        var pad = r.Node("pad_token_id") is null ? eos[0] : r.Int("pad_token_id", null);
        return (bos, eos, pad);
    }

    static string FirstSentence(string message)
    {
        var i = message.IndexOf(". ", StringComparison.Ordinal);
        return (i < 0 ? message : message[..i]).TrimEnd('.');
    }

    /// <summary>The 1-based line of each top-level key, so errors about a key point at it.</summary>
    static Dictionary<string, int> TopLevelLines(string path, byte[] json)
    {
        var lines = new Dictionary<string, int>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip });
        int line = 1, counted = 0;
        while (reader.Read())
        {
            if (reader.TokenType != JsonTokenType.PropertyName || reader.CurrentDepth != 1) continue;
            var upTo = (int)reader.TokenStartIndex;
            line += json.AsSpan(counted, upTo - counted).Count((byte)'\n');
            counted = upTo;
            if (!lines.TryAdd(reader.GetString()!, line))
                throw UserError.At(path, line, reader.GetString(), $"duplicate key (first on line {lines[reader.GetString()!]})");
        }
        return lines;
    }

    /// <summary>Typed access to config.json keys: a missing required key or a wrong type is a one-line error naming file:line: key.</summary>
    sealed class ConfigReader(string path, JsonObject root, Dictionary<string, int> lines)
    {
        public string Path => path;
        public int? Line(string key) => lines.TryGetValue(key, out var l) ? l : null;
        public bool Has(string key) => root.ContainsKey(key);
        public JsonNode? Node(string key) => root.TryGetPropertyValue(key, out var n) ? n : null;

        public int Int(string key, int? fallback)
        {
            var n = Node(key);
            if (n is null) return fallback ?? throw UserError.At(path, Line(key), key, "is missing");
            if (n is JsonValue v && v.TryGetValue<double>(out var d) && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue) return (int)d;
            throw UserError.At(path, Line(key), key, $"must be an integer, got {n.ToJsonString()}");
        }

        public double Double(string key, double fallback)
        {
            var n = Node(key);
            if (n is null) return fallback;
            if (n is JsonValue v && v.TryGetValue<double>(out var d)) return d;
            throw UserError.At(path, Line(key), key, $"must be a number, got {n.ToJsonString()}");
        }

        public bool Bool(string key, bool fallback)
        {
            var n = Node(key);
            if (n is null) return fallback;
            if (n is JsonValue v && v.TryGetValue<bool>(out var b)) return b;
            throw UserError.At(path, Line(key), key, $"must be true or false, got {n.ToJsonString()}");
        }

        public string? String(string key, string? fallback)
        {
            var n = Node(key);
            if (n is null) return fallback;
            if (n is JsonValue v && v.TryGetValue<string>(out var s)) return s;
            throw UserError.At(path, Line(key), key, $"must be a string, got {n.ToJsonString()}");
        }
    }

    // ---- weights ----

    /// <summary>Reads the checkpoint's tensors, maps HF names to canonical ones, transposes nn.Linear weights, and checks the set against the config.</summary>
    public static WeightSet ReadWeights(string hfDir, ModelConfig config)
    {
        using var checkpoint = SafetensorsCheckpoint.Open(hfDir);
        var expected = WeightNames.Shapes(config);
        var weights = new WeightSet();
        var sources = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var hfName in checkpoint.Names)
        {
            var canonical = CanonicalName(config, hfName);
            if (canonical is null) continue;
            if (weights.ContainsKey(canonical))
                throw UserError.At(hfDir, null, hfName, $"duplicates {sources[canonical]} (both map to {canonical})");
            // Shapes are checked in the checkpoint's own layout before any data is read, so the message matches what the user sees in the file.
            var linear = IsLinear(config, canonical);
            if (expected.TryGetValue(canonical, out var shape))
            {
                var hfShape = linear ? [shape[1], shape[0]] : shape;
                var actual = checkpoint.Entry(hfName).Shape;
                if (!actual.SequenceEqual(hfShape))
                    throw UserError.At(hfDir, null, hfName, $"shape [{string.Join(",", actual)}] does not match the config's [{string.Join(",", hfShape)}]");
            }
            var t = checkpoint.ReadFloat(hfName);
            weights[canonical] = linear ? TransposeWeight(t, hfDir, hfName) : t;
            sources[canonical] = hfName;
        }
        weights.CheckAgainst(config, hfDir);
        return weights;
    }

    /// <summary>The canonical name of an HF tensor, or null for buffers and for an lm_head that tied embeddings make redundant.</summary>
    public static string? CanonicalName(ModelConfig config, string hfName)
    {
        if (config.Architecture == Architecture.Gpt2)
        {
            // Buffers: the causal mask (attn.bias) and masked_bias are not parameters.
            if (hfName.EndsWith(".attn.bias", StringComparison.Ordinal) || hfName.EndsWith(".attn.masked_bias", StringComparison.Ordinal)) return null;
            if (hfName == "lm_head.weight") return null; // always tied to wte
            // The original gpt2 checkpoints hold GPT2Model's names, without the "transformer." prefix.
            return hfName.StartsWith("transformer.", StringComparison.Ordinal) ? hfName : "transformer." + hfName;
        }
        if (hfName.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)) return null;
        if (hfName == "lm_head.weight") return config.TieEmbeddings ? null : hfName;
        // A bare LlamaModel checkpoint lacks the "model." prefix of LlamaForCausalLM.
        return hfName.StartsWith("model.", StringComparison.Ordinal) ? hfName : "model." + hfName;
    }

    /// <summary>Whether a canonical weight is an nn.Linear weight (stored [out, in] by HF, [in, out] by us).</summary>
    public static bool IsLinear(ModelConfig config, string canonicalName) =>
        config.Architecture == Architecture.Llama
        && (canonicalName == "lm_head.weight" || canonicalName.EndsWith("_proj.weight", StringComparison.Ordinal));

    static WeightTensor TransposeWeight(WeightTensor t, string source, string name)
    {
        if (t.Shape.Length != 2) throw UserError.At(source, null, name, $"a linear weight must be 2-D, got shape [{string.Join(",", t.Shape)}]");
        return new WeightTensor([t.Shape[1], t.Shape[0]], Transpose(t.Data, (int)t.Shape[0], (int)t.Shape[1]));
    }

    /// <summary>Row-major [rows, cols] → [cols, rows].</summary>
    public static float[] Transpose(float[] data, int rows, int cols)
    {
        var result = new float[data.Length];
        for (var r = 0; r < rows; r++)
            for (var c = 0; c < cols; c++)
                result[c * rows + r] = data[r * cols + c];
        return result;
    }

    // ---- writing an HF folder ----

    /// <summary>
    /// Writes <paramref name="dir"/> as a Hugging Face checkpoint: config.json, model.safetensors (or shards
    /// with an index when <paramref name="maxShardBytes"/> is exceeded), and the tokenizer files copied
    /// from <paramref name="tokenizerSourceDir"/> when given. The reverse of <see cref="Load"/>.
    /// </summary>
    public static void Save(string dir, ModelConfig config, WeightSet weights, string? tokenizerSourceDir = null, long? maxShardBytes = null, IReadOnlyList<int>? eosTokenIds = null)
    {
        config.Validate("model config");
        weights.CheckAgainst(config, "weights");
        // Only Qwen2's config.json can say "q/k/v biases"; a Llama or Mistral folder with them would not load in transformers.
        if (config.Architecture == Architecture.Llama && config.AttentionBias != (config.ModelType == "qwen2"))
            throw UserError.At(dir, null, "model_type", $"'{config.ModelType}' cannot express attention_bias={config.AttentionBias.ToString().ToLowerInvariant()} (only qwen2 has q/k/v biases)");
        Directory.CreateDirectory(dir);
        var hfWeights = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        foreach (var (name, t) in weights)
            hfWeights[name] = IsLinear(config, name)
                ? new WeightTensor([t.Shape[1], t.Shape[0]], Transpose(t.Data, (int)t.Shape[0], (int)t.Shape[1]))
                : t;
        SafetensorsCheckpoint.Write(dir, hfWeights, maxShardBytes);
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFile), ConfigJson(config, eosTokenIds).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        if (tokenizerSourceDir is not null)
        {
            foreach (var file in new[] { ModelFolder.TokenizerFile, ModelFolder.TokenizerConfigFile })
                AtomicFile.WriteAllBytes(Path.Combine(dir, file), File.ReadAllBytes(Path.Combine(tokenizerSourceDir, file)));
        }
    }

    /// <summary>The config.json Hugging Face transformers reads for <paramref name="config"/>.</summary>
    public static JsonObject ConfigJson(ModelConfig config, IReadOnlyList<int>? eosTokenIds = null)
    {
        JsonNode eos = eosTokenIds is { Count: > 1 } ? new JsonArray(eosTokenIds.Select(i => (JsonNode?)i).ToArray()) : config.EosTokenId;
        if (config.Architecture == Architecture.Gpt2)
            return new JsonObject
            {
                ["architectures"] = new JsonArray("GPT2LMHeadModel"),
                ["model_type"] = "gpt2",
                ["vocab_size"] = config.VocabSize,
                ["n_embd"] = config.HiddenSize,
                ["n_layer"] = config.NumLayers,
                ["n_head"] = config.NumHeads,
                ["n_inner"] = config.IntermediateSize,
                ["n_positions"] = config.MaxPositions,
                ["n_ctx"] = config.MaxPositions,
                ["layer_norm_epsilon"] = config.NormEps,
                ["activation_function"] = config.HiddenAct,
                ["tie_word_embeddings"] = true,
                ["bos_token_id"] = config.BosTokenId,
                ["eos_token_id"] = eos,
                ["pad_token_id"] = config.PadTokenId,
                ["torch_dtype"] = "float32",
            };
        var architecture = config.ModelType switch
        {
            "qwen2" => "Qwen2ForCausalLM",
            "mistral" => "MistralForCausalLM",
            _ => "LlamaForCausalLM",
        };
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray(architecture),
            ["model_type"] = config.ModelType,
            ["vocab_size"] = config.VocabSize,
            ["hidden_size"] = config.HiddenSize,
            ["intermediate_size"] = config.IntermediateSize,
            ["num_hidden_layers"] = config.NumLayers,
            ["num_attention_heads"] = config.NumHeads,
            ["num_key_value_heads"] = config.NumKvHeads,
            ["max_position_embeddings"] = config.MaxPositions,
            ["rms_norm_eps"] = config.NormEps,
            ["rope_theta"] = config.RopeTheta,
            ["rope_scaling"] = null,
            ["hidden_act"] = config.HiddenAct,
            ["tie_word_embeddings"] = config.TieEmbeddings,
            ["bos_token_id"] = config.BosTokenId,
            ["eos_token_id"] = eos,
            ["pad_token_id"] = config.PadTokenId,
            ["torch_dtype"] = "float32",
        };
        if (config.ModelType == "mistral") json["sliding_window"] = null;
        if (config.ModelType == "qwen2") json["use_sliding_window"] = false;
        if (config.ModelType == "llama") { json["attention_bias"] = false; json["mlp_bias"] = false; }
        return json;
    }
}
