using System.Globalization;
using Onnx;

namespace RlaifOnnx.Models.Import;

/// <summary>
/// Llama-family decoders (llama, qwen2, mistral, phi3 with plain RoPE) as the ONNX Runtime GenAI model
/// builder writes them: Gather embedding → per layer (Skip)SimplifiedLayerNormalization, q/k/v MatMul or
/// MatMulNBits (+ bias Add for Qwen2), com.microsoft RotaryEmbedding, MultiHeadAttention or
/// GroupQueryAttention, o_proj, SkipSimplifiedLayerNormalization, SwiGLU MLP → final norm → lm_head.
/// Each weight is found by following the graph from the embedding, never by its initializer name.
/// Whatever would change the math (scaled or partial RoPE, interleaved rotation, a sliding window,
/// soft-capping, an attention scale other than 1/√d) is refused with the reason. GroupQueryAttention with rotary
/// inside (do_rotary=1, cos/sin caches as inputs 7 and 8) and packed q/k/v (one MatMul cut by columns) or packed
/// gate/up (one MatMul cut by Slice/Split), as the builder's int4 exports have, are read too.
/// </summary>
static class LlamaExportImport
{
    static readonly string[] Attentions = ["MultiHeadAttention", "GroupQueryAttention"];
    static readonly string[] Linears = ["MatMul", "MatMulNBits"];

    public static (ModelConfig, WeightSet) FromGraph(GraphIndex g, OnnxImport.ExportInfo info)
    {
        g.Family = "Llama-family";
        var weights = new WeightSet();
        var eps = new List<float>();

        // Embedding: Gather(embed_tokens, input_ids).
        var gather = g.Nodes.SingleOrDefault(n => n.OpType == "Gather" && n.Input.Count == 2 && n.Input[1] == "input_ids")
            ?? throw g.Unrecognised("no single Gather reads input_ids (the token embedding)");
        var embed = g.Tensor(gather, 0, "the token embedding");
        weights["model.embed_tokens.weight"] = embed;
        long hidden = embed.Shape[1];

        // First norm: SimplifiedLayerNormalization(x, γ); the residual stream is x itself.
        var residual = gather.Output[0];
        var first = g.ConsumerOf(residual, "SimplifiedLayerNormalization") ?? throw g.Unrecognised("no SimplifiedLayerNormalization (RMSNorm) after the embedding");
        var normed = first.Output[0];
        var gamma = g.Tensor(first, 1, "the input norm weight");
        eps.Add(g.FloatAttribute(first, "epsilon", 1e-5f));

        var attentions = g.Nodes.Where(n => Attentions.Contains(n.OpType) && n.Domain == "com.microsoft").ToList();
        if (attentions.Count == 0) throw g.Unrecognised("no com.microsoft MultiHeadAttention or GroupQueryAttention node");
        int heads = 0, kvHeads = 0;
        bool? anyBias = null;
        Rope? rope = null;
        for (var layer = 0; layer < attentions.Count; layer++)
        {
            string L(string rest) => WeightNames.LlamaLayer(layer, rest);
            var attention = attentions[layer];
            weights[L("input_layernorm.weight")] = gamma;

            // 1. q, k, v: each attention input traced back through RotaryEmbedding and a bias Add to its projection of `normed`.
            var (layerHeads, layerKv) = HeadCounts(g, attention);
            // GroupQueryAttention with do_rotary=1 rotates q and k itself, from the cos/sin caches it is given.
            var rotaryInside = g.IntAttribute(attention, "do_rotary", 0) != 0;
            if (rotaryInside)
            {
                if (g.IntAttribute(attention, "rotary_interleaved", 0) != 0) throw g.Unrecognised($"{attention.Name}: interleaved rotary embedding (GPT-J style) changes the math");
                rope = CheckRopeCaches(g, attention, 7, 8, rope);
            }
            Proj q, k, v;
            if (g.Has(attention, 1))
            {
                q = Projection(g, attention, 0, normed, "the query projection", ref rope);
                k = Projection(g, attention, 1, normed, "the key projection", ref rope);
                v = Projection(g, attention, 2, normed, "the value projection", ref rope);
            }
            else
            {
                // One packed projection: its columns are q (H·d), then k (kvH·d), then v (kvH·d), as the builder concatenates them.
                if (!rotaryInside || layerKv == 0) throw g.Unrecognised($"{attention.Name}: packed q/k/v is read only for GroupQueryAttention with rotary inside (do_rotary=1)");
                var packed = Projection(g, attention, 0, normed, "the packed q/k/v projection", ref rope);
                (q, k, v) = SplitPacked(g, attention, packed, layerHeads, layerKv);
            }
            if (rotaryInside ? q.Rotated || k.Rotated || v.Rotated : !q.Rotated || !k.Rotated || v.Rotated)
                throw g.Unrecognised($"{attention.Name}: rotary embedding must be applied to the query and key only, once");
            if (rotaryInside) q = q with { Rotated = true };
            var headDim = q.Weight.Shape[1] / layerHeads;
            if (layerKv == 0) layerKv = (int)(k.Weight.Shape[1] / headDim);
            CheckScale(g, attention, headDim);
            if (layer > 0 && (layerHeads != heads || layerKv != kvHeads)) throw g.Unrecognised($"{attention.Name}: {layerHeads}/{layerKv} heads where earlier layers have {heads}/{kvHeads}");
            (heads, kvHeads) = (layerHeads, layerKv);
            var hasBias = q.Bias is not null;
            if ((k.Bias is not null) != hasBias || (v.Bias is not null) != hasBias || (anyBias is { } b0 && b0 != hasBias))
                throw g.Unrecognised($"{attention.Name}: biases on some of q/k/v but not all");
            anyBias = hasBias;
            weights[L("self_attn.q_proj.weight")] = q.Weight;
            weights[L("self_attn.k_proj.weight")] = k.Weight;
            weights[L("self_attn.v_proj.weight")] = v.Weight;
            if (hasBias)
            {
                weights[L("self_attn.q_proj.bias")] = q.Bias!;
                weights[L("self_attn.k_proj.bias")] = k.Bias!;
                weights[L("self_attn.v_proj.bias")] = v.Bias!;
            }

            // 2. o_proj, then SkipSimplifiedLayerNormalization(residual, o) → (post_attention_layernorm(x), …, …, x).
            var (o, oWeight, oBias) = g.Linear(attention.Output[0], "the attention output projection");
            if (oBias is not null) throw g.Unrecognised($"layer {layer}: a bias on the attention output projection");
            weights[L("self_attn.o_proj.weight")] = oWeight;
            var skip1 = SkipNorm(g, o, residual);
            weights[L("post_attention_layernorm.weight")] = g.Tensor(skip1, 2, "the post-attention norm weight");
            eps.Add(g.FloatAttribute(skip1, "epsilon", 1e-5f));
            residual = skip1.Output[3];

            // 3. SwiGLU: down(silu(gate(x)) · up(x)), silu as x·Sigmoid(x).
            var (gate, up, down, mlpOut) = SwiGlu(g, skip1.Output[0], layer);
            weights[L("mlp.gate_proj.weight")] = gate;
            weights[L("mlp.up_proj.weight")] = up;
            weights[L("mlp.down_proj.weight")] = down;

            // 4. The next SkipSimplifiedLayerNormalization is the next layer's input norm or the final norm.
            var skip2 = SkipNorm(g, mlpOut, residual);
            gamma = g.Tensor(skip2, 2, "the norm weight");
            eps.Add(g.FloatAttribute(skip2, "epsilon", 1e-5f));
            normed = skip2.Output[0];
            residual = skip2.Output.Count > 3 ? skip2.Output[3] : "";
        }
        weights["model.norm.weight"] = gamma;

        // lm_head: a MatMul to the logits (possibly through a Cast to float32).
        var tied = g.ReadLmHead(normed, embed, weights);

        if (eps.Distinct().Count() > 1) throw g.Unrecognised($"norms with different epsilons ({string.Join(", ", eps.Distinct())})");
        var modelType = info.ModelType is "qwen2" or "mistral" ? info.ModelType : "llama";
        var config = new ModelConfig
        {
            Architecture = Architecture.Llama, ModelType = modelType,
            VocabSize = (int)embed.Shape[0], HiddenSize = (int)hidden, NumLayers = attentions.Count,
            NumHeads = heads, NumKvHeads = kvHeads,
            IntermediateSize = (int)weights[WeightNames.LlamaLayer(0, "mlp.gate_proj.weight")].Shape[1],
            MaxPositions = rope!.Positions,
            NormEps = double.Parse(eps[0].ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture),
            RopeTheta = rope.Theta, TieEmbeddings = tied, AttentionBias = anyBias == true, HiddenAct = "silu",
            BosTokenId = info.BosTokenId ?? 0, EosTokenId = info.EosTokenId ?? 0, PadTokenId = info.PadTokenId ?? info.EosTokenId ?? 0,
        };
        if (config.HeadDim * heads != hidden) throw g.Unrecognised($"{heads} heads of {q0HeadDim(weights, heads)} do not make the hidden size {hidden}");
        if (rope.Dim != config.HeadDim) throw g.Unrecognised($"the rotary cache covers {rope.Dim} of {config.HeadDim} head dimensions (partial rotary changes the math)");
        return (config, weights);
    }

    static long q0HeadDim(WeightSet w, int heads) => w[WeightNames.LlamaLayer(0, "self_attn.q_proj.weight")].Shape[1] / heads;

    sealed record Rope(string Cos, string Sin, int Positions, int Dim, double Theta);
    sealed record Proj(WeightTensor Weight, WeightTensor? Bias, bool Rotated);

    static (int Heads, int KvHeads) HeadCounts(GraphIndex g, NodeProto attention)
    {
        var heads = (int)g.IntAttribute(attention, "num_heads", 0);
        if (heads <= 0) throw g.Unrecognised($"{attention.Name}: num_heads {heads}");
        if (attention.OpType == "MultiHeadAttention") return (heads, 0);
        if (g.IntAttribute(attention, "local_window_size", -1) != -1) throw g.Unrecognised($"{attention.Name}: a sliding attention window (local_window_size) changes the math");
        if (g.FloatAttribute(attention, "softcap", 0f) != 0f) throw g.Unrecognised($"{attention.Name}: attention soft-capping changes the math");
        return (heads, (int)g.IntAttribute(attention, "kv_num_heads", heads));
    }

    static void CheckScale(GraphIndex g, NodeProto attention, long headDim)
    {
        var scale = g.FloatAttribute(attention, "scale", 0f);
        if (scale != 0f && Math.Abs(scale * Math.Sqrt(headDim) - 1) > 1e-6)
            throw g.Unrecognised($"{attention.Name}: attention scale {scale} is not 1/sqrt(head size {headDim})");
    }

    /// <summary>Attention input <paramref name="input"/> traced back: [RotaryEmbedding] ← [Add bias] ← MatMul(normed, W).</summary>
    static Proj Projection(GraphIndex g, NodeProto attention, int input, string normed, string what, ref Rope? rope)
    {
        var value = attention.Input[input];
        var rotated = false;
        if (g.ProducerOf(value) is { OpType: "RotaryEmbedding" } rotary)
        {
            rope = CheckRope(g, rotary, rope);
            rotated = true;
            value = rotary.Input[0];
        }
        WeightTensor? bias = null;
        if (g.ProducerOf(value) is { OpType: "Add" } add)
        {
            var constant = g.Initializers.ContainsKey(add.Input[1]) || g.ProducerOf(add.Input[1]) is { OpType: "Constant" } ? 1 : 0;
            bias = g.Tensor(add, constant, $"{what} bias");
            value = add.Input[1 - constant];
        }
        var matMul = g.ProducerOf(value) is { } p && Linears.Contains(p.OpType) ? p : throw g.Unrecognised($"{attention.Name}: {what} is not a MatMul");
        if (matMul.Input[0] != normed) throw g.Unrecognised($"{matMul.Name}: {what} does not read the layer's input norm");
        var (_, weight, fusedBias) = g.LinearAt(matMul, normed, what);
        return new Proj(weight, bias ?? fusedBias, rotated);
    }

    /// <summary>The packed q/k/v weight [h, (H + 2·kvH)·d] (and bias) split by columns into q, k and v.</summary>
    static (Proj Q, Proj K, Proj V) SplitPacked(GraphIndex g, NodeProto attention, Proj packed, int heads, int kvHeads)
    {
        long hidden = packed.Weight.Shape[0], width = packed.Weight.Shape[1];
        if (width % (heads + 2 * kvHeads) != 0) throw g.Unrecognised($"{attention.Name}: a packed q/k/v projection of width {width} does not split into {heads} + 2·{kvHeads} heads");
        var d = width / (heads + 2 * kvHeads);
        long[] starts = [0, heads * d, (heads + kvHeads) * d], widths = [heads * d, kvHeads * d, kvHeads * d];
        Proj Part(int i)
        {
            var weight = new float[hidden * widths[i]];
            for (long r = 0; r < hidden; r++)
                Array.Copy(packed.Weight.Data, r * width + starts[i], weight, r * widths[i], widths[i]);
            var bias = packed.Bias is null ? null : new WeightTensor([widths[i]], packed.Bias.Data.AsSpan((int)starts[i], (int)widths[i]).ToArray());
            return new Proj(new WeightTensor([hidden, widths[i]], weight), bias, packed.Rotated);
        }
        return (Part(0), Part(1), Part(2));
    }

    /// <summary>RotaryEmbedding must be HF's rotate-half RoPE over the whole head with an unscaled cos/sin cache; returns its base θ.</summary>
    static Rope CheckRope(GraphIndex g, NodeProto rotary, Rope? known)
    {
        if (g.IntAttribute(rotary, "interleaved", 0) != 0) throw g.Unrecognised($"{rotary.Name}: interleaved rotary embedding (GPT-J style) changes the math");
        if (rotary.Input.Count < 4 || rotary.Input[1] != "position_ids") throw g.Unrecognised($"{rotary.Name}: rotary positions are not the position_ids input");
        return CheckRopeCaches(g, rotary, 2, 3, known);
    }

    /// <summary>The cos/sin caches [positions, d/2] at inputs <paramref name="cosInput"/> and <paramref name="sinInput"/> must be plain RoPE; returns it with its θ.</summary>
    static Rope CheckRopeCaches(GraphIndex g, NodeProto rotary, int cosInput, int sinInput, Rope? known)
    {
        if (!g.Has(rotary, cosInput) || !g.Has(rotary, sinInput)) throw g.Unrecognised($"{rotary.Name}: no cos/sin caches");
        if (known is not null && known.Cos == rotary.Input[cosInput] && known.Sin == rotary.Input[sinInput]) return known;
        var cos = g.Tensor(rotary, cosInput, "the cos cache");
        var sin = g.Tensor(rotary, sinInput, "the sin cache");
        if (cos.Shape.Length != 2 || !cos.Shape.SequenceEqual(sin.Shape)) throw g.Unrecognised($"{rotary.Name}: cos/sin caches of shapes [{string.Join(",", cos.Shape)}], [{string.Join(",", sin.Shape)}]");
        var theta = RopeFit.Theta(cos.Data, sin.Data, (int)cos.Shape[0], (int)cos.Shape[1])
            ?? throw g.Unrecognised($"{rotary.Name}: the cos/sin cache is not plain RoPE for any base θ (scaled RoPE, e.g. Llama 3.1 or LongRoPE, changes the math)");
        var rope = new Rope(rotary.Input[cosInput], rotary.Input[sinInput], (int)cos.Shape[0], 2 * (int)cos.Shape[1], theta);
        if (known is not null && known != rope with { Cos = known.Cos, Sin = known.Sin }) throw g.Unrecognised($"{rotary.Name}: layers use different rotary caches");
        return rope;
    }

    static NodeProto SkipNorm(GraphIndex g, string x, string residual)
    {
        var node = g.ConsumerOf(x, "SkipSimplifiedLayerNormalization") ?? throw g.Unrecognised($"no SkipSimplifiedLayerNormalization reads {x}");
        if (residual == "" || !(node.Input[0] == x && node.Input[1] == residual || node.Input[1] == x && node.Input[0] == residual))
            throw g.Unrecognised($"{node.Name}: does not add {x} to the residual stream");
        if (g.Has(node, 3)) throw g.Unrecognised($"{node.Name}: a bias in the residual norm");
        return node;
    }

    /// <summary>
    /// SwiGLU down(silu(gate(x)) · up(x)), silu as x·Sigmoid(x): two projections of x, or one packed projection
    /// [h, 2·I] whose output is cut in two by Slice/Split on the last axis; the half that goes through the SiLU is
    /// the gate, whichever half it is.
    /// </summary>
    internal static (WeightTensor Gate, WeightTensor Up, WeightTensor Down, string Output) SwiGlu(GraphIndex g, string x, int layer)
    {
        var projections = g.ConsumersOf(x).Where(n => Linears.Contains(n.OpType)).ToList();
        var halves = projections.Count switch
        {
            2 => projections.Select(p => LinearNoBias(g, p, x, layer)).ToList(),
            1 => PackedHalves(g, projections[0], x, layer),
            _ => throw g.Unrecognised($"layer {layer}: {projections.Count} projections read the post-attention norm where SwiGLU has gate and up"),
        };
        (string Value, WeightTensor Weight)? gateHalf = null;
        foreach (var h in halves)
            if (g.ConsumerOf(h.Value, "Sigmoid") is { } sigmoid && g.ConsumersOf(h.Value).Any(m => m.OpType == "Mul" && m.Input.Contains(sigmoid.Output[0])))
                gateHalf = h;
        if (gateHalf is not { } gate) throw g.Unrecognised($"layer {layer}: no x·sigmoid(x) (SiLU) after either MLP projection");
        var up = halves.Single(h => h.Value != gate.Value);
        var sigmoidOut = g.ConsumerOf(gate.Value, "Sigmoid")!.Output[0];
        var silu = g.ConsumersOf(gate.Value).Single(m => m.OpType == "Mul" && m.Input.Contains(sigmoidOut));
        var product = g.ConsumersOf(silu.Output[0]).SingleOrDefault(m => m.OpType == "Mul" && m.Input.Contains(up.Value))
            ?? throw g.Unrecognised($"layer {layer}: SiLU(gate) is not multiplied by the up projection");
        var (output, down, downBias) = g.Linear(product.Output[0], "the MLP down projection");
        if (downBias is not null) throw g.Unrecognised($"layer {layer}: biases in the MLP");
        return (gate.Weight, up.Weight, down, output);
    }

    static (string Value, WeightTensor Weight) LinearNoBias(GraphIndex g, NodeProto p, string x, int layer)
    {
        var (output, weight, bias) = g.LinearAt(p, x, "an MLP projection");
        if (bias is not null) throw g.Unrecognised($"layer {layer}: biases in the MLP");
        return (output, weight);
    }

    /// <summary>The two column ranges of a packed gate/up projection, each as the value its Slice (or Split output) yields and its weight columns.</summary>
    static List<(string Value, WeightTensor Weight)> PackedHalves(GraphIndex g, NodeProto packed, string x, int layer)
    {
        var (output, weight) = LinearNoBias(g, packed, x, layer);
        long rows = weight.Shape[0], width = weight.Shape[1];
        var ranges = new List<(string Value, long Start, long End)>();
        foreach (var n in g.ConsumersOf(output))
        {
            if (n.OpType == "Slice")
            {
                var axes = g.Has(n, 3) ? g.Ints(n, 3) : [0];
                if (axes is not ([-1] or [2]) || (g.Has(n, 4) && g.Ints(n, 4) is not [1]))
                    throw g.Unrecognised($"layer {layer}: {n.Name} cuts the packed gate/up projection other than by contiguous columns");
                long start = g.Ints(n, 1)[0], end = Math.Min(g.Ints(n, 2)[0], width);
                ranges.Add((n.Output[0], start < 0 ? start + width : start, end < 0 ? end + width : end));
            }
            else if (n.OpType == "Split" && n.Output.Count == 2 && g.IntAttribute(n, "axis", 0) is -1 or 2)
            {
                var sizes = g.Has(n, 1) ? g.Ints(n, 1) : [width / 2, width / 2];
                ranges.Add((n.Output[0], 0, sizes[0]));
                ranges.Add((n.Output[1], sizes[0], sizes[0] + sizes[1]));
            }
            else throw g.Unrecognised($"layer {layer}: the packed gate/up projection feeds {n.OpType} {n.Name}, not Slice or Split");
        }
        ranges.Sort((a, b) => a.Start.CompareTo(b.Start));
        if (ranges.Count != 2 || ranges[0].Start != 0 || ranges[0].End != ranges[1].Start || ranges[1].End != width || ranges[0].End * 2 != width)
            throw g.Unrecognised($"layer {layer}: the packed gate/up projection of width {width} is not cut into two halves");
        return ranges.Select(r =>
        {
            var cols = r.End - r.Start;
            var part = new float[rows * cols];
            for (long i = 0; i < rows; i++) Array.Copy(weight.Data, i * width + r.Start, part, i * cols, cols);
            return (r.Value, new WeightTensor([rows, cols], part));
        }).ToList();
    }
}

/// <summary>Recovering RoPE's base θ from an exported cos/sin cache, and checking the cache is exactly that RoPE.</summary>
public static class RopeFit
{
    static readonly double[] CommonBases = [10000, 100000, 500000, 1000000, 2000000, 5000000, 10000000, 1e8];

    /// <summary>
    /// θ such that cos[p, i] = cos(p·θ^(−2i/d)) and sin likewise for every cached position (d = 2·half), within
    /// float16 rounding; null when no θ fits (scaled or otherwise modified RoPE). Common bases are tried
    /// first, then the θ read off the cache itself.
    /// </summary>
    public static double? Theta(float[] cos, float[] sin, int positions, int half)
    {
        if (positions < 2 || half < 1) return null;
        var candidates = CommonBases.ToList();
        if (half > 1)
        {
            // The slowest-but-one frequency at the last position pins θ best: angle = p·θ^(−2/d).
            var p = Math.Min(positions - 1, 64);
            var angle = Math.Atan2(sin[p * half + 1], cos[p * half + 1]);
            if (angle > 0) candidates.Add(Math.Pow(angle / p, -half));
        }
        return candidates.Select(t => (Theta: t, Error: MaxError(cos, sin, positions, half, t))).Where(c => c.Error < 2e-3)
            .OrderBy(c => c.Error).Select(c => (double?)c.Theta).FirstOrDefault();
    }

    static double MaxError(float[] cos, float[] sin, int positions, int half, double theta)
    {
        double worst = 0;
        for (var p = 0; p < positions; p++)
            for (var i = 0; i < half; i++)
            {
                var angle = p * Math.Pow(theta, -2.0 * i / (2 * half));
                worst = Math.Max(worst, Math.Max(Math.Abs(Math.Cos(angle) - cos[p * half + i]), Math.Abs(Math.Sin(angle) - sin[p * half + i])));
            }
        return worst;
    }
}
