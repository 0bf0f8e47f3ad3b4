using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Onnx;
using RlaifOnnx.Core;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Models.Import;

/// <summary>
/// Reads an existing ONNX export — an ONNX Runtime GenAI folder (genai_config.json) or an optimum folder
/// (config.json) — and maps its weights to the canonical set (<see cref="WeightNames"/>), so the canonical
/// graphs can be rebuilt from them. Llama-family exports are read by <see cref="LlamaExportImport"/>;
/// GPT-2 exports as below. float16/bfloat16 and MatMulNBits weights become float32 (<see cref="ExportTensors"/>).
///
/// Two graph shapes are recognised:
/// 1. ONNX Runtime's fused transformer export (EmbedLayerNormalization → per layer Attention, MatMul,
///    SkipLayerNormalization, MatMul, FastGelu, MatMul, SkipLayerNormalization → MatMul lm_head). Its
///    initializer names cannot be trusted: the optimiser merges identical tensors (every layer norm of a
///    fresh model may share one weight), so each weight is found by walking the graph from the embedding,
///    op by op, and its values are copied per canonical weight.
/// 2. A plain export whose initializers already carry the canonical names (our own model folders, torch
///    exports of GPT2LMHeadModel).
/// Anything else is a <see cref="UserError"/> naming the file and what was not recognised.
/// </summary>
public static class OnnxImport
{
    /// <summary>What the export's own JSON says; the graph supplies the rest.</summary>
    internal sealed record ExportInfo(string OnnxPath, string JsonPath, string ModelType, int? VocabSize, int? NumHeads, int? HeadSize,
        double? NormEps, string? HiddenAct, int? BosTokenId, int? EosTokenId, int? PadTokenId)
    {
        /// <summary>An optimum export's Hugging Face config.json (heads, key/value heads, positions, RoPE settings); null for GenAI exports.</summary>
        public JsonObject? HfConfig { get; init; }
    }

    /// <summary>Model types whose exports are read; Llama-family ones by <see cref="LlamaExportImport"/>.</summary>
    public static readonly string[] SupportedModelTypes = ["gpt2", "llama", "qwen2", "mistral", "phi3"];

    /// <param name="onnxDir">The export's folder.</param>
    /// <param name="tokenizerDir">Where the tokenizer files are, when the export ships none (e.g. GenAI's fp16 test exports).</param>
    /// <param name="note">Hears what was converted (float16 → float32, int4 dequantised …).</param>
    public static (ModelConfig Config, WeightSet Weights, string TokenizerDir) Import(string onnxDir, string? tokenizerDir = null, Action<string>? note = null)
    {
        var dir = Path.GetFullPath(onnxDir);
        if (!Directory.Exists(dir)) throw UserError.At(onnxDir, null, null, "no such folder");

        // 1. The export's description, its tokenizer and its decoder graph.
        var info = ReadExportInfo(dir);
        if (!SupportedModelTypes.Contains(info.ModelType))
            throw UserError.At(info.JsonPath, null, "model type", $"'{info.ModelType}' exports cannot be imported; supported: {string.Join(", ", SupportedModelTypes)}");
        var tokenizer = tokenizerDir is null ? dir : Path.GetFullPath(tokenizerDir);
        if (Directory.Exists(tokenizer) && !File.Exists(Path.Combine(tokenizer, ModelFolder.TokenizerFile))
            && (File.Exists(Path.Combine(tokenizer, "vocab.json")) || File.Exists(Path.Combine(tokenizer, "tokenizer.model"))))
            tokenizer = TokenizerConversion.Prepare(tokenizer, note);
        if (!File.Exists(Path.Combine(tokenizer, ModelFolder.TokenizerFile)))
            throw UserError.At(Path.Combine(tokenizer, ModelFolder.TokenizerFile), null, null,
                tokenizerDir is null ? "the export has no tokenizer.json (give the folder of its tokenizer with --tokenizer)" : "no tokenizer.json in the given tokenizer folder");
        var model = OnnxFile.Load(info.OnnxPath);

        // 2. Weights by following the graph (fused export) or by canonical name (plain export).
        var graph = DecoderGraph(model.Graph, info.OnnxPath, note);
        var fused = graph.Nodes.Any(n => n.Domain == "com.microsoft" && n.OpType is "MultiHeadAttention" or "GroupQueryAttention");
        var (config, weights) = info.ModelType != "gpt2" ? (fused ? LlamaExportImport.FromGraph(graph, info) : StandardLlamaImport.FromGraph(graph, info))
            : graph.Nodes.Any(n => n.OpType == "Attention" && n.Domain == "com.microsoft") ? FromFusedGraph(graph, info)
            : FromCanonicalGraph(graph, info, dir);
        if (info.ModelType != "gpt2") CheckAgainstInfo(config, info);

        // 3. The result must be a complete, consistent canonical model.
        config.Validate(info.OnnxPath);
        weights.CheckAgainst(config, info.OnnxPath);
        if (graph.SourceWeightTypes.Count > 0 && !graph.SourceWeightTypes.SetEquals(["float"]))
            note?.Invoke($"source weights: {string.Join(", ", graph.SourceWeightTypes)}; converted to float32 for training");
        return (config, weights, tokenizer);
    }

    /// <summary>
    /// The graph holding the decoder. optimum's merged decoder (decoder_model_merged.onnx) is one If on
    /// use_cache_branch whose two branches hold the same decoder with and without the cache, both reading the
    /// outer graph's initializers; the cache branch (then_branch) is read.
    /// </summary>
    static GraphIndex DecoderGraph(GraphProto top, string path, Action<string>? note)
    {
        var ifs = top.Node.Where(n => n.OpType == "If").ToList();
        if (ifs.Count != 1 || top.Node.Any(n => n.OpType is "MatMul" or "Gather" or "Attention")) return new GraphIndex(top, path);
        var branch = ifs[0].Attribute.FirstOrDefault(a => a.Name == "then_branch")?.G
            ?? throw UserError.At(path, null, null, $"not a decoder graph this importer recognises: If node {ifs[0].Name} has no then_branch");
        note?.Invoke($"merged decoder: read the cache branch of If({ifs[0].Input[0]})");
        return new GraphIndex(branch, path, top);
    }

    // ---- export description -------------------------------------------------------------------

    static ExportInfo ReadExportInfo(string dir)
    {
        var genaiPath = Path.Combine(dir, ModelFolder.GenAIConfigFile);
        var hfPath = Path.Combine(dir, "config.json");
        if (File.Exists(genaiPath))
        {
            var root = ParseJson(genaiPath);
            var m = root["model"] as JsonObject ?? throw UserError.At(genaiPath, null, "model", "is missing");
            var decoder = m["decoder"] as JsonObject ?? throw UserError.At(genaiPath, null, "model.decoder", "is missing");
            var file = Str(decoder, "filename", genaiPath, "model.decoder.filename") ?? throw UserError.At(genaiPath, null, "model.decoder.filename", "is missing");
            int? heads = Int(decoder, "num_attention_heads", genaiPath, "model.decoder.num_attention_heads");
            return new ExportInfo(InsideFolder(dir, file, genaiPath, "model.decoder.filename"), genaiPath,
                Str(m, "type", genaiPath, "model.type") ?? throw UserError.At(genaiPath, null, "model.type", "is missing"),
                Int(m, "vocab_size", genaiPath, "model.vocab_size"), heads, Int(decoder, "head_size", genaiPath, "model.decoder.head_size"),
                null, null, Int(m, "bos_token_id", genaiPath, "model.bos_token_id"),
                FirstInt(m, "eos_token_id", genaiPath, "model.eos_token_id"), Int(m, "pad_token_id", genaiPath, "model.pad_token_id"));
        }
        if (File.Exists(hfPath))
        {
            // optimum layout: a Hugging Face config.json beside the decoder graph.
            var c = ParseJson(hfPath);
            var onnx = new[] { "model.onnx", "decoder_model.onnx", "decoder_model_merged.onnx" }
                .Select(f => Path.Combine(dir, f)).FirstOrDefault(File.Exists)
                ?? throw UserError.At(hfPath, null, null, "no model.onnx, decoder_model.onnx or decoder_model_merged.onnx beside it");
            var eos = FirstInt(c, "eos_token_id", hfPath, "eos_token_id");
            return new ExportInfo(onnx, hfPath, Str(c, "model_type", hfPath, "model_type") ?? throw UserError.At(hfPath, null, "model_type", "is missing"),
                Int(c, "vocab_size", hfPath, "vocab_size"), Int(c, "n_head", hfPath, "n_head") ?? Int(c, "num_attention_heads", hfPath, "num_attention_heads"), null,
                Num(c, "layer_norm_epsilon", hfPath), Str(c, "activation_function", hfPath, "activation_function"),
                Int(c, "bos_token_id", hfPath, "bos_token_id"), eos, Int(c, "pad_token_id", hfPath, "pad_token_id") ?? eos) { HfConfig = c };
        }
        throw UserError.At(genaiPath, null, null, "is missing (an ONNX Runtime GenAI export has genai_config.json, an optimum export config.json)");
    }

    static JsonObject ParseJson(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw UserError.At(path, null, null, "is not a JSON object");
        }
        catch (JsonException e)
        {
            throw UserError.At(path, (int?)e.LineNumber + 1, null, $"malformed JSON ({e.Message.Split('.')[0]})");
        }
    }

    static string? Str(JsonObject o, string key, string path, string field)
    {
        if (o[key] is not { } v) return null;
        if (v is JsonValue value && value.TryGetValue<string>(out var s)) return s;
        throw UserError.At(path, null, field, "must be a string");
    }

    static int? Int(JsonObject o, string key, string path, string field)
    {
        if (o[key] is not { } v) return null;
        if (v is JsonValue value && value.TryGetValue<int>(out var i)) return i;
        throw UserError.At(path, null, field, "must be an integer");
    }

    /// <summary>An integer, or the first of a list of them (models with several end-of-sequence tokens).</summary>
    static int? FirstInt(JsonObject o, string key, string path, string field) =>
        o[key] is JsonArray { Count: > 0 } list && list[0] is JsonValue first && first.TryGetValue<int>(out var i) ? i : Int(o, key, path, field);

    static double? Num(JsonObject o, string key, string path)
    {
        if (o[key] is not { } v) return null;
        if (v is JsonValue value && value.TryGetValue<double>(out var d)) return d;
        throw UserError.At(path, null, key, "must be a number");
    }

    static string InsideFolder(string dir, string file, string jsonPath, string field)
    {
        var root = dir.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        var full = Path.GetFullPath(Path.Combine(root, file));
        if (Path.IsPathRooted(file) || !full.StartsWith(root, StringComparison.Ordinal))
            throw UserError.At(jsonPath, null, field, $"'{file}' escapes the export's folder");
        return full;
    }

    // ---- fused ONNX Runtime export ------------------------------------------------------------

    static (ModelConfig, WeightSet) FromFusedGraph(GraphIndex g, ExportInfo info)
    {
        var weights = new WeightSet();
        var eps = new List<float>();

        // Embedding: EmbedLayerNormalization(input_ids, segment_ids, word_emb, pos_emb, segment_emb, γ, β, mask, position_ids)
        // → (LayerNorm(word + pos) = ln_1 of layer 0's output, mask_index, word + pos = the first residual).
        var embed = g.Single("EmbedLayerNormalization");
        if (g.Has(embed, 4)) throw g.Unrecognised($"{embed.Name}: segment embeddings are not part of GPT-2");
        var wte = g.Tensor(embed, 2, "the word embedding");
        var wpe = g.Tensor(embed, 3, "the position embedding");
        weights["transformer.wte.weight"] = wte;
        weights["transformer.wpe.weight"] = wpe;
        eps.Add(g.FloatAttribute(embed, "epsilon", 1e-12f));
        var (gamma, beta) = (g.Tensor(embed, 5, "the layer-norm scale"), g.Tensor(embed, 6, "the layer-norm shift"));
        var normed = embed.Output[0];
        var residual = embed.Output.Count > 2 ? embed.Output[2] : "";
        long hidden = wte.Shape[1];

        int? heads = null;
        string act = "gelu_new";
        var layer = 0;
        for (; g.ConsumerOf(normed, "Attention") is { } attention; layer++)
        {
            string L(string rest) => WeightNames.Gpt2Layer(layer, rest);
            weights[L("ln_1.weight")] = gamma;
            weights[L("ln_1.bias")] = beta;

            // 1. Attention(x, W_qkv [H,3H], b_qkv, mask, past) → (context, present); then c_proj as MatMul.
            if (g.IntAttribute(attention, "unidirectional", 0) != 1) throw g.Unrecognised($"{attention.Name}: attention is not causal (unidirectional=0)");
            if (attention.Attribute.Any(a => a.Name == "qkv_hidden_sizes")) throw g.Unrecognised($"{attention.Name}: unequal q/k/v sizes (qkv_hidden_sizes)");
            if (g.IntAttribute(attention, "do_rotary", 0) != 0) throw g.Unrecognised($"{attention.Name}: rotary embeddings are not part of GPT-2");
            var layerHeads = (int)g.IntAttribute(attention, "num_heads", 0);
            if (layerHeads <= 0 || hidden % layerHeads != 0) throw g.Unrecognised($"{attention.Name}: num_heads {layerHeads} does not divide the hidden size {hidden}");
            // A scale other than 1/√D would change the math; 0 or absent means the default.
            var scale = g.FloatAttribute(attention, "scale", 0f);
            if (scale != 0f && Math.Abs(scale * Math.Sqrt(hidden / layerHeads) - 1) > 1e-6)
                throw g.Unrecognised($"{attention.Name}: attention scale {scale} is not 1/sqrt(head size)");
            if (heads is { } h0 && h0 != layerHeads) throw g.Unrecognised($"{attention.Name}: {layerHeads} heads where earlier layers have {h0}");
            heads = layerHeads;
            weights[L("attn.c_attn.weight")] = g.Tensor(attention, 1, "the fused q/k/v weight");
            weights[L("attn.c_attn.bias")] = g.Has(attention, 2) ? g.Tensor(attention, 2, "the fused q/k/v bias") : Zeros(3 * hidden);
            var (projected, projWeight, projBias) = g.Linear(attention.Output[0], "the attention output projection");
            weights[L("attn.c_proj.weight")] = projWeight;

            // 2. SkipLayerNormalization(projected, residual, γ, β, bias) → (ln_2(x), …, …, x = residual + projected + bias).
            var skip1 = g.SkipLayerNorm(projected, residual);
            weights[L("attn.c_proj.bias")] = Bias(g, projBias, skip1, hidden);
            weights[L("ln_2.weight")] = g.Tensor(skip1, 2, "the layer-norm scale");
            weights[L("ln_2.bias")] = g.Has(skip1, 3) ? g.Tensor(skip1, 3, "the layer-norm shift") : Zeros(hidden);
            eps.Add(g.FloatAttribute(skip1, "epsilon", 1e-12f));
            residual = skip1.Output.Count > 3 ? skip1.Output[3] : "";

            // 3. MLP: MatMul c_fc → GELU (bias fused in FastGelu / BiasGelu) → MatMul c_proj.
            var (up, fcWeight, fcBias) = g.Linear(skip1.Output[0], "the MLP input projection");
            weights[L("mlp.c_fc.weight")] = fcWeight;
            var gelu = g.ConsumerOf(up, "FastGelu", "Gelu", "BiasGelu") ?? throw g.Unrecognised($"no GELU (FastGelu, Gelu, BiasGelu) after layer {layer}'s MLP input projection");
            act = gelu.OpType == "FastGelu" ? "gelu_new" : "gelu";
            if (gelu.Domain != "com.microsoft") throw g.Unrecognised($"{gelu.Name}: {gelu.OpType} from domain '{gelu.Domain}'");
            var fusedBias = g.Has(gelu, 1) ? g.Tensor(gelu, 1, "the GELU bias") : null;
            if (fcBias is not null && fusedBias is not null) throw g.Unrecognised($"{gelu.Name}: two biases on layer {layer}'s MLP input projection");
            weights[L("mlp.c_fc.bias")] = fcBias ?? fusedBias ?? Zeros(fcWeight.Shape[1]);
            var (down, downWeight, downBias) = g.Linear(gelu.Output[0], "the MLP output projection");
            weights[L("mlp.c_proj.weight")] = downWeight;

            // 4. SkipLayerNormalization(down, residual, γ, β, bias) → (next layer's ln_1 or ln_f, …, …, residual).
            var skip2 = g.SkipLayerNorm(down, residual);
            weights[L("mlp.c_proj.bias")] = Bias(g, downBias, skip2, hidden);
            (gamma, beta) = (g.Tensor(skip2, 2, "the layer-norm scale"), g.Has(skip2, 3) ? g.Tensor(skip2, 3, "the layer-norm shift") : Zeros(hidden));
            eps.Add(g.FloatAttribute(skip2, "epsilon", 1e-12f));
            normed = skip2.Output[0];
            residual = skip2.Output.Count > 3 ? skip2.Output[3] : "";
        }
        if (layer == 0) throw g.Unrecognised($"no com.microsoft Attention node reads {embed.Name}'s output");
        weights["transformer.ln_f.weight"] = gamma;
        weights["transformer.ln_f.bias"] = beta;

        // The output projection must be the transposed word embedding: canonical GPT-2 ties them.
        var lmHead = g.ConsumerOf(normed, "MatMul") ?? throw g.Unrecognised("no MatMul (lm_head) after the final layer norm");
        var lm = g.Tensor(lmHead, 1, "the lm_head weight");
        if (!g.IsGraphOutput(lmHead.Output[0])) throw g.Unrecognised($"{lmHead.Name}: the lm_head output is not a graph output");
        if (!IsTranspose(lm, wte)) throw g.Unrecognised($"{lmHead.Name}: the lm_head weight is not the transposed word embedding (untied output projections are not supported)");

        if (eps.Distinct().Count() > 1) throw g.Unrecognised($"layer norms with different epsilons ({string.Join(", ", eps.Distinct())})");
        var config = new ModelConfig
        {
            Architecture = Architecture.Gpt2, ModelType = "gpt2",
            VocabSize = (int)wte.Shape[0], HiddenSize = (int)hidden, NumLayers = layer,
            NumHeads = heads!.Value, NumKvHeads = heads.Value,
            IntermediateSize = (int)weights[WeightNames.Gpt2Layer(0, "mlp.c_fc.weight")].Shape[1],
            MaxPositions = (int)wpe.Shape[0],
            // The attribute is a float32: print it shortest-round-trip so 1e-5 stays 1e-5.
            NormEps = double.Parse(eps[0].ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture),
            TieEmbeddings = true, HiddenAct = act,
            BosTokenId = info.BosTokenId ?? 0, EosTokenId = info.EosTokenId ?? 0, PadTokenId = info.PadTokenId ?? info.EosTokenId ?? 0,
        };
        CheckAgainstInfo(config, info);
        return (config, weights);
    }

    /// <summary>A projection's bias lives either in an Add after its MatMul or in the SkipLayerNormalization's bias input.</summary>
    static WeightTensor Bias(GraphIndex g, WeightTensor? addBias, NodeProto skip, long size)
    {
        var skipBias = g.Has(skip, 4) ? g.Tensor(skip, 4, "the skip bias") : null;
        if (addBias is not null && skipBias is not null) throw g.Unrecognised($"{skip.Name}: a projection with two biases");
        return addBias ?? skipBias ?? Zeros(size);
    }

    static WeightTensor Zeros(long size) => new([size], new float[size]);

    /// <summary>Whether <paramref name="a"/> [H,V] is exactly <paramref name="b"/> [V,H] transposed.</summary>
    internal static bool IsTranspose(WeightTensor a, WeightTensor b)
    {
        if (a.Shape.Length != 2 || b.Shape.Length != 2 || a.Shape[0] != b.Shape[1] || a.Shape[1] != b.Shape[0]) return false;
        int rows = (int)b.Shape[0], cols = (int)b.Shape[1];
        for (var r = 0; r < rows; r++)
            for (var c = 0; c < cols; c++)
                if (a.Data[c * rows + r] != b.Data[r * cols + c]) return false;
        return true;
    }

    static void CheckAgainstInfo(ModelConfig config, ExportInfo info)
    {
        if (info.VocabSize is { } v && v != config.VocabSize)
            throw UserError.At(info.JsonPath, null, "vocab_size", $"says {v} but the graph's word embedding has {config.VocabSize} rows");
        if (info.NumHeads is { } n && n != config.NumHeads)
            throw UserError.At(info.JsonPath, null, "num_attention_heads", $"says {n} but the graph's attention has {config.NumHeads} heads");
        if (info.HeadSize is { } d && d != config.HeadDim)
            throw UserError.At(info.JsonPath, null, "head_size", $"says {d} but the graph's attention heads are {config.HeadDim} wide");
    }

    // ---- plain export with canonical names ----------------------------------------------------

    static (ModelConfig, WeightSet) FromCanonicalGraph(GraphIndex g, ExportInfo info, string dir)
    {
        const string Wte = "transformer.wte.weight", Wpe = "transformer.wpe.weight";
        if (!g.Initializers.ContainsKey(Wte) || !g.Initializers.ContainsKey(Wpe))
            throw g.Unrecognised($"neither ONNX Runtime's fused GPT-2 operators (EmbedLayerNormalization, Attention) nor initializers named {Wte} and {Wpe}");
        var wte = g.Initializer(Wte);
        var wpe = g.Initializer(Wpe);
        var layers = 0;
        while (g.Initializers.ContainsKey(WeightNames.Gpt2Layer(layers, "attn.c_attn.weight"))) layers++;
        if (layers == 0) throw g.Unrecognised($"no initializer named {WeightNames.Gpt2Layer(0, "attn.c_attn.weight")}");
        var fc = WeightNames.Gpt2Layer(0, "mlp.c_fc.weight");
        if (!g.Initializers.ContainsKey(fc)) throw g.Unrecognised($"no initializer named {fc}");

        // Our own folders carry the exact config; other plain exports state heads and epsilon in their JSON.
        var metaPath = Path.Combine(dir, ModelFolder.MetadataFile);
        ModelConfig config;
        if (File.Exists(metaPath)) config = ModelFolder.ReadMetadata(dir).Config;
        else
        {
            var heads = info.NumHeads ?? (info.HeadSize is { } hs && hs > 0 ? (int?)(wte.Shape[1] / hs) : null)
                ?? throw UserError.At(info.JsonPath, null, "num_attention_heads", "is needed to import a plain (unfused) graph");
            config = new ModelConfig
            {
                Architecture = Architecture.Gpt2, ModelType = "gpt2",
                VocabSize = (int)wte.Shape[0], HiddenSize = (int)wte.Shape[1], NumLayers = layers,
                NumHeads = heads, NumKvHeads = heads, IntermediateSize = (int)g.Initializer(fc).Shape[1],
                MaxPositions = (int)wpe.Shape[0], NormEps = info.NormEps ?? 1e-5, TieEmbeddings = true,
                HiddenAct = info.HiddenAct ?? (g.Nodes.Any(n => n.OpType == "Erf") ? "gelu" : "gelu_new"),
                BosTokenId = info.BosTokenId ?? 0, EosTokenId = info.EosTokenId ?? 0, PadTokenId = info.PadTokenId ?? info.EosTokenId ?? 0,
            };
        }
        CheckAgainstInfo(config, info);

        var weights = new WeightSet();
        foreach (var name in WeightNames.Shapes(config).Keys)
        {
            if (!g.Initializers.ContainsKey(name)) throw g.Unrecognised($"no initializer named {name}");
            if (!g.IsConsumed(name)) throw g.Unrecognised($"initializer {name} is not used by any node");
            weights[name] = g.Initializer(name);
        }
        return (config, weights);
    }
}
