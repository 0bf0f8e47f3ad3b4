using System.Globalization;
using System.Text.Json.Nodes;
using Onnx;
using RlaifOnnx.Core;

namespace RlaifOnnx.Models.Import;

/// <summary>
/// Llama-family decoders written in standard ONNX operators, as optimum exports them (model.onnx or the
/// cache branch of decoder_model_merged.onnx; past_key_values.N.key|value inputs): Gather embedding → per
/// layer RMSNorm spelled out (Pow/Mul, ReduceMean, Add ε, Sqrt, Reciprocal/Div, Mul γ), q/k/v MatMul (+ bias
/// Add for Qwen2), RoPE with rotate_half, Softmax attention, o_proj MatMul, residual Add, RMSNorm, SwiGLU
/// MLP, residual Add → final RMSNorm → lm_head MatMul.
///
/// The graph is followed, never its names: the three projections reading a layer's norm are told apart by
/// where they meet inside attention (the query is the left factor of the score MatMul, the key the right
/// one, the value the right factor of the MatMul after Softmax); the attention scale is the product of the
/// constant factors on those paths and must be 1/√d; RoPE's base θ is read off the inverse frequencies (or
/// the cos/sin table) the Cos/Sin feeding the query's rotation come from. Head counts come from the
/// export's config.json and are checked against the weight shapes. Phi-3's packed qkv_proj and gate_up_proj
/// (one MatMul cut by Slice/Split on the last axis) are read by following those cuts. Whatever changes the math (RoPE
/// scaling, partial rotary, a sliding window, soft-capping, another scale) is refused with the reason.
/// </summary>
static class StandardLlamaImport
{
    public static (ModelConfig, WeightSet) FromGraph(GraphIndex g, OnnxImport.ExportInfo info)
    {
        g.Family = "Llama-family";
        var hf = info.HfConfig ?? throw g.Unrecognised("a standard-op decoder (no com.microsoft attention) needs the export's config.json beside it");
        RefuseChangedMath(hf, info.JsonPath);
        int heads = Int(hf, "num_attention_heads", info.JsonPath) ?? throw UserError.At(info.JsonPath, null, "num_attention_heads", "is missing");
        int kvHeads = Int(hf, "num_key_value_heads", info.JsonPath) ?? heads;
        int layers = Int(hf, "num_hidden_layers", info.JsonPath) ?? throw UserError.At(info.JsonPath, null, "num_hidden_layers", "is missing");
        int maxPositions = Int(hf, "max_position_embeddings", info.JsonPath) ?? throw UserError.At(info.JsonPath, null, "max_position_embeddings", "is missing");

        var weights = new WeightSet();
        var eps = new List<float>();
        double? theta = null;

        // Embedding: Gather(embed_tokens, input_ids); its output is the first residual stream.
        var gather = g.Nodes.SingleOrDefault(n => n.OpType == "Gather" && n.Input.Count == 2 && n.Input[1] == "input_ids")
            ?? throw g.Unrecognised("no single Gather reads input_ids (the token embedding)");
        var embed = g.Tensor(gather, 0, "the token embedding");
        weights["model.embed_tokens.weight"] = embed;
        var x = gather.Output[0];
        var norm = RmsNorm(g, x, "the input norm of layer 0");
        long headDim = 0;

        for (var layer = 0; layer < layers; layer++)
        {
            string L(string rest) => WeightNames.LlamaLayer(layer, rest);
            weights[L("input_layernorm.weight")] = norm.Gamma;
            eps.Add(norm.Eps);

            // 1. q, k, v: the projections of the norm, named by where they enter attention.
            var projections = WeightMatMuls(g, norm.Output);
            var linear = projections.Count switch
            {
                3 => projections.Select(p => g.LinearAt(p, norm.Output, $"layer {layer}'s attention projection")).ToList(),
                // Phi-3's qkv_proj: one MatMul whose output is sliced into q, k and v by columns.
                1 => ColumnParts(g, g.LinearAt(projections[0], norm.Output, $"layer {layer}'s packed q/k/v projection"), 3, layer),
                _ => throw g.Unrecognised($"layer {layer}: {projections.Count} projections read the input norm where attention has q, k and v"),
            };
            var paths = linear.Select(l => Follow(g, l.Output)).ToList();
            var (scores, pv) = AttentionMatMuls(g, paths, layer);
            int Role(NodeProto matMul, int input) =>
                Enumerable.Range(0, 3).SingleOrDefault(i => paths[i].Reached.Contains((matMul, input)), -1) is var r and >= 0 ? r
                : throw g.Unrecognised($"layer {layer}: no projection reaches input {input} of {matMul.Name}");
            int qi = Role(scores, 0), ki = Role(scores, 1), vi = Role(pv, 1);
            if (new[] { qi, ki, vi }.Distinct().Count() != 3) throw g.Unrecognised($"layer {layer}: one projection feeds several attention inputs");
            var (q, k, v) = (linear[qi], linear[ki], linear[vi]);

            headDim = q.Weight.Shape[1] / heads;
            if (headDim * heads != q.Weight.Shape[1] || k.Weight.Shape[1] != kvHeads * headDim || v.Weight.Shape[1] != kvHeads * headDim)
                throw UserError.At(info.JsonPath, null, "num_key_value_heads", $"{heads}/{kvHeads} heads do not fit the layer {layer} projections of widths {q.Weight.Shape[1]}/{k.Weight.Shape[1]}/{v.Weight.Shape[1]}");
            if (heads * headDim != embed.Shape[1])
                throw g.Unrecognised($"head size {headDim} × {heads} heads is not the hidden size {embed.Shape[1]} (the canonical graph needs head_dim = hidden/heads)");
            if ((q.Bias is null) != (k.Bias is null) || (q.Bias is null) != (v.Bias is null)) throw g.Unrecognised($"layer {layer}: biases on some of q/k/v but not all");
            weights[L("self_attn.q_proj.weight")] = q.Weight;
            weights[L("self_attn.k_proj.weight")] = k.Weight;
            weights[L("self_attn.v_proj.weight")] = v.Weight;
            if (q.Bias is not null)
            {
                weights[L("self_attn.q_proj.bias")] = q.Bias;
                weights[L("self_attn.k_proj.bias")] = k.Bias!;
                weights[L("self_attn.v_proj.bias")] = v.Bias!;
            }

            // 2. RoPE on q and k (rotate_half, whole head, plain θ), none on v; the scale is 1/√d.
            var layerTheta = Rotary(g, paths[qi], headDim, layer, "query");
            if (Rotary(g, paths[ki], headDim, layer, "key") != layerTheta) throw g.Unrecognised($"layer {layer}: the query and key rotate with different frequencies");
            if (paths[vi].Nodes.Any(n => n.OpType == "Neg")) throw g.Unrecognised($"layer {layer}: the value is rotated");
            if (theta is { } t0 && t0 != layerTheta) throw g.Unrecognised($"layer {layer}: RoPE base {layerTheta} where earlier layers use {t0}");
            theta = layerTheta;
            CheckScores(g, scores, paths[qi], paths[ki], headDim, layer);

            // 3. o_proj on the attention output, then the residual Add.
            var oNode = Follow(g, pv.Output[0]).Weights.SingleOrDefault() ?? throw g.Unrecognised($"layer {layer}: no single output projection after attention");
            var o = g.LinearAt(oNode, oNode.Input[0], "the attention output projection");
            if (o.Bias is not null) throw g.Unrecognised($"layer {layer}: a bias on the attention output projection");
            weights[L("self_attn.o_proj.weight")] = o.Weight;
            x = ResidualAdd(g, o.Output, x, layer);

            // 4. SwiGLU MLP on the post-attention norm, then the residual Add.
            var norm2 = RmsNorm(g, x, $"layer {layer}'s post-attention norm");
            weights[L("post_attention_layernorm.weight")] = norm2.Gamma;
            eps.Add(norm2.Eps);
            var (gate, up, down, mlpOut) = LlamaExportImport.SwiGlu(g, norm2.Output, layer);
            weights[L("mlp.gate_proj.weight")] = gate;
            weights[L("mlp.up_proj.weight")] = up;
            weights[L("mlp.down_proj.weight")] = down;
            x = ResidualAdd(g, mlpOut, x, layer);
            norm = RmsNorm(g, x, layer + 1 < layers ? $"the input norm of layer {layer + 1}" : "the final norm");
        }
        if (WeightMatMuls(g, norm.Output).Count == 3) throw UserError.At(info.JsonPath, null, "num_hidden_layers", $"says {layers} but the graph has more layers");
        weights["model.norm.weight"] = norm.Gamma;
        eps.Add(norm.Eps);

        var tied = g.ReadLmHead(norm.Output, embed, weights);
        if (eps.Distinct().Count() > 1) throw g.Unrecognised($"norms with different epsilons ({string.Join(", ", eps.Distinct())})");

        var config = new ModelConfig
        {
            Architecture = Architecture.Llama, ModelType = info.ModelType is "qwen2" or "mistral" ? info.ModelType : "llama",
            VocabSize = (int)embed.Shape[0], HiddenSize = (int)embed.Shape[1], NumLayers = layers,
            NumHeads = heads, NumKvHeads = kvHeads,
            IntermediateSize = (int)weights[WeightNames.LlamaLayer(0, "mlp.gate_proj.weight")].Shape[1],
            MaxPositions = maxPositions,
            NormEps = double.Parse(eps[0].ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture),
            RopeTheta = theta ?? 10000, TieEmbeddings = tied, AttentionBias = weights.ContainsKey(WeightNames.LlamaLayer(0, "self_attn.q_proj.bias")),
            HiddenAct = "silu",
            BosTokenId = info.BosTokenId ?? 0, EosTokenId = info.EosTokenId ?? 0, PadTokenId = info.PadTokenId ?? info.EosTokenId ?? 0,
        };
        return (config, weights);
    }

    /// <summary>config.json settings that make the model something the canonical graph does not compute.</summary>
    static void RefuseChangedMath(JsonObject hf, string path)
    {
        if (hf["rope_scaling"] is JsonObject scaling)
            throw UserError.At(path, null, "rope_scaling", $"RoPE scaling ({scaling["rope_type"] ?? scaling["type"]}) changes the math; only plain RoPE is imported");
        if (hf["partial_rotary_factor"] is JsonValue partial && partial.GetValue<double>() != 1.0)
            throw UserError.At(path, null, "partial_rotary_factor", "partial rotary embeddings change the math");
        var positions = Int(hf, "max_position_embeddings", path) ?? int.MaxValue;
        var slidingOn = hf["use_sliding_window"] is not JsonValue use || use.GetValue<bool>();
        if (slidingOn && Int(hf, "sliding_window", path) is { } window && window < positions)
            throw UserError.At(path, null, "sliding_window", $"a sliding attention window of {window} (shorter than the {positions} positions) changes the math");
        foreach (var key in new[] { "attn_logit_softcapping", "final_logit_softcapping" })
            if (hf[key] is JsonValue cap && cap.GetValue<double>() != 0) throw UserError.At(path, null, key, "soft-capping changes the math");
        if (hf["head_dim"] is JsonValue hd && Int(hf, "hidden_size", path) is { } hidden && Int(hf, "num_attention_heads", path) is { } h && hd.GetValue<int>() * h != hidden)
            throw UserError.At(path, null, "head_dim", $"head_dim {hd} × {h} heads is not hidden_size {hidden}; the canonical graph needs head_dim = hidden/heads");
    }

    static int? Int(JsonObject o, string key, string path)
    {
        if (o[key] is not { } v) return null;
        if (v is JsonValue value && value.TryGetValue<int>(out var i)) return i;
        throw UserError.At(path, null, key, "must be an integer");
    }

    // ---- walking -----------------------------------------------------------------------------

    /// <summary>Where a value flows: the nodes it passes through, the (MatMul, input) pairs it reaches with a weight-free MatMul, and the weight MatMuls it reaches.</summary>
    internal sealed record Flow(HashSet<NodeProto> Nodes, HashSet<(NodeProto, int)> Reached, List<NodeProto> Weights);

    static bool IsWeightMatMul(GraphIndex g, NodeProto n) =>
        n.OpType is "MatMul" or "MatMulNBits" && (n.OpType == "MatMulNBits" || g.IsConstant(n.Input[1]));

    static List<NodeProto> WeightMatMuls(GraphIndex g, string value) => g.ConsumersOf(value).Where(n => IsWeightMatMul(g, n)).ToList();

    /// <summary>
    /// Follows <paramref name="start"/> forward until each path meets a MatMul. Shape/Size are not followed:
    /// a shape is not the value's data (exports read sequence lengths off q and k to slice the mask).
    /// </summary>
    static Flow Follow(GraphIndex g, string start)
    {
        var path = new Flow([], [], []);
        var queue = new Queue<string>([start]);
        var seen = new HashSet<string> { start };
        while (queue.Count > 0)
        {
            var value = queue.Dequeue();
            foreach (var n in g.ConsumersOf(value))
            {
                if (n.OpType is "Shape" or "Size") continue;
                if (n.OpType is "MatMul" or "MatMulNBits")
                {
                    if (IsWeightMatMul(g, n)) { if (!path.Weights.Contains(n)) path.Weights.Add(n); }
                    else for (var i = 0; i < n.Input.Count; i++) if (n.Input[i] == value) path.Reached.Add((n, i));
                    continue;
                }
                if (!path.Nodes.Add(n)) continue;
                foreach (var o in n.Output) if (o != "" && seen.Add(o)) queue.Enqueue(o);
            }
        }
        return path;
    }

    /// <summary>
    /// A packed projection's output cut by Slice (constant starts/ends, last axis, step 1) or Split on the last
    /// axis into <paramref name="count"/> contiguous column ranges covering it; each part with its weight and bias columns.
    /// </summary>
    static List<(string Output, WeightTensor Weight, WeightTensor? Bias)> ColumnParts(GraphIndex g, (string Output, WeightTensor Weight, WeightTensor? Bias) packed, int count, int layer)
    {
        long rows = packed.Weight.Shape[0], width = packed.Weight.Shape[1];
        var ranges = new List<(string Value, long Start, long End)>();
        foreach (var n in g.ConsumersOf(packed.Output))
        {
            if (n.OpType is "Shape" or "Size") continue;
            if (n.OpType == "Slice" && (g.Has(n, 3) ? g.Ints(n, 3) : [0]) is [-1] or [2] && (!g.Has(n, 4) || g.Ints(n, 4) is [1]))
            {
                long start = g.Ints(n, 1)[0], end = g.Ints(n, 2)[0];
                start = start < 0 ? start + width : Math.Min(start, width);
                end = end < 0 ? end + width : Math.Min(end, width);
                ranges.Add((n.Output[0], start, end));
            }
            else if (n.OpType == "Split" && g.IntAttribute(n, "axis", 0) is -1 or 2 && g.Has(n, 1))
            {
                long start = 0;
                var sizes = g.Ints(n, 1);
                for (var i = 0; i < sizes.Length; i++) { ranges.Add((n.Output[i], start, start + sizes[i])); start += sizes[i]; }
            }
            else throw g.Unrecognised($"layer {layer}: the packed projection feeds {n.OpType} {n.Name}, not a Slice or Split by columns");
        }
        ranges.Sort((a, b) => a.Start.CompareTo(b.Start));
        if (ranges.Count != count || ranges[0].Start != 0 || ranges[^1].End != width || ranges.Zip(ranges.Skip(1)).Any(p => p.First.End != p.Second.Start))
            throw g.Unrecognised($"layer {layer}: the packed projection of width {width} is not cut into {count} contiguous parts");
        return ranges.Select(r =>
        {
            var cols = r.End - r.Start;
            var part = new float[rows * cols];
            for (long i = 0; i < rows; i++) Array.Copy(packed.Weight.Data, i * width + r.Start, part, i * cols, cols);
            var bias = packed.Bias is null ? null : new WeightTensor([cols], packed.Bias.Data.AsSpan((int)r.Start, (int)cols).ToArray());
            return (r.Value, new WeightTensor([rows, cols], part), bias);
        }).ToList();
    }

    /// <summary>The score MatMul (q·kᵀ) and the MatMul after Softmax (probabilities·v) that the three projections meet at.</summary>
    static (NodeProto Scores, NodeProto Pv) AttentionMatMuls(GraphIndex g, List<Flow> paths, int layer)
    {
        var met = paths.SelectMany(p => p.Reached).Select(r => r.Item1).Distinct().ToList();
        var scores = met.Where(m => paths.Any(p => p.Reached.Contains((m, 0))) && paths.Any(p => p.Reached.Contains((m, 1)))).ToList();
        if (scores.Count != 1) throw g.Unrecognised($"layer {layer}: {scores.Count} MatMuls multiply two projections where attention has one score MatMul q·kᵀ");
        var afterScores = Follow(g, scores[0].Output[0]);
        var softmax = afterScores.Nodes.Where(n => n.OpType == "Softmax").ToList();
        if (softmax.Count != 1) throw g.Unrecognised($"layer {layer}: {softmax.Count} Softmax nodes after the attention scores");
        var pv = afterScores.Reached.Where(r => r.Item2 == 0).Select(r => r.Item1).Distinct().ToList();
        if (pv.Count != 1 || !met.Contains(pv[0])) throw g.Unrecognised($"layer {layer}: the attention probabilities do not multiply a projection");
        return (scores[0], pv[0]);
    }

    /// <summary>Softmax over the last axis; the product of constant factors on the q, k and score paths is 1/√d; no soft-capping.</summary>
    static void CheckScores(GraphIndex g, NodeProto scores, Flow q, Flow k, long headDim, int layer)
    {
        var toSoftmax = Follow(g, scores.Output[0]).Nodes;
        var softmax = toSoftmax.Single(n => n.OpType == "Softmax");
        var axis = g.IntAttribute(softmax, "axis", -1);
        if (axis is not (-1 or 3 or 4)) throw g.Unrecognised($"layer {layer}: Softmax over axis {axis}, not the keys");
        if (toSoftmax.Any(n => n.OpType == "Tanh")) throw g.Unrecognised($"layer {layer}: soft-capped attention scores change the math");
        // Only the nodes between the score MatMul and Softmax count on that side.
        var before = toSoftmax.Where(n => Reaches(g, n, softmax)).ToList();
        double scale = 1;
        foreach (var n in q.Nodes.Concat(k.Nodes).Concat(before))
        {
            if (n.OpType is not ("Mul" or "Div")) continue;
            var constant = Enumerable.Range(0, 2).Where(i => g.IsConstant(n.Input[i]) && g.ConstantValues(n.Input[i]).Length == 1).ToList();
            if (constant.Count != 1) continue;
            var c = g.ConstantValues(n.Input[constant[0]])[0];
            scale *= n.OpType == "Mul" ? c : constant[0] == 1 ? 1.0 / c : double.NaN;
        }
        if (!(Math.Abs(scale * Math.Sqrt(headDim) - 1) < 1e-5))
            throw g.Unrecognised($"layer {layer}: attention scale {scale:G6} is not 1/sqrt(head size {headDim})");
    }

    static bool Reaches(GraphIndex g, NodeProto from, NodeProto to)
    {
        var seen = new HashSet<NodeProto>();
        var stack = new Stack<NodeProto>([from]);
        while (stack.Count > 0)
        {
            var n = stack.Pop();
            if (n == to) return true;
            if (!seen.Add(n) || n.OpType is "MatMul" or "Softmax") continue;
            foreach (var o in n.Output) foreach (var c in g.ConsumersOf(o)) stack.Push(c);
        }
        return false;
    }

    /// <summary>
    /// RoPE along a projection's path: rotate_half (a Neg, halves taken by contiguous Slice/Split) and
    /// cos/sin from inverse frequencies θ^(−2i/d) over the whole head or from a plain cos/sin table. Returns θ.
    /// </summary>
    static double Rotary(GraphIndex g, Flow path, long headDim, int layer, string what)
    {
        if (!path.Nodes.Any(n => n.OpType == "Neg")) throw g.Unrecognised($"layer {layer}: the {what} is not rotated (no rotate_half)");
        foreach (var slice in path.Nodes.Where(n => n.OpType == "Slice"))
            if (g.Has(slice, 4) && g.IsConstant(slice.Input[4]) && g.Ints(slice, 4).Any(s => s != 1))
                throw g.Unrecognised($"layer {layer}: strided slices of the {what} (interleaved, GPT-J-style rotary) change the math");
        double? found = null;
        foreach (var n in path.Nodes.Where(n => n.OpType == "Mul"))
            foreach (var input in n.Input)
            {
                if (g.ProducerOf(input) is not { } p || path.Nodes.Contains(p)) continue;
                if (RotaryTheta(g, input, headDim, layer) is { } t)
                {
                    if (found is { } f && f != t) throw g.Unrecognised($"layer {layer}: the {what}'s cos and sin use different frequencies");
                    found = t;
                }
            }
        return found ?? throw g.Unrecognised($"layer {layer}: no cos/sin of position · inverse frequency multiplies the {what}");
    }

    /// <summary>θ of the cos or sin a value is computed from (searched backwards a few nodes), or null when it is not one.</summary>
    static double? RotaryTheta(GraphIndex g, string value, long headDim, int layer)
    {
        var frontier = new List<string> { value };
        for (var hop = 0; hop < 10 && frontier.Count > 0; hop++)
        {
            var next = new List<string>();
            foreach (var v in frontier)
            {
                if (g.ProducerOf(v) is not { } n) continue;
                if (n.OpType is "Cos" or "Sin") return InverseFrequencyTheta(g, n.Input[0], headDim, layer);
                if (n.OpType == "Gather" && g.IsConstant(n.Input[0])) return TableTheta(g, n, headDim, layer);
                next.AddRange(n.Input.Where(i => i != ""));
            }
            frontier = next;
        }
        return null;
    }

    /// <summary>The angles position · inv_freq: a constant of d/2 (or d, duplicated) values θ^(−2i/d) among the inputs a few nodes back.</summary>
    static double InverseFrequencyTheta(GraphIndex g, string angles, long headDim, int layer)
    {
        var frontier = new List<string> { angles };
        for (var hop = 0; hop < 10 && frontier.Count > 0; hop++)
        {
            var next = new List<string>();
            foreach (var v in frontier)
            {
                if (g.IsConstant(v))
                {
                    if (!g.IsFloatConstant(v)) continue;
                    var t = g.ConstantValues(v);
                    if (t.Length == headDim / 2 || t.Length == headDim) return FitInverseFrequencies(g, t, headDim, layer);
                    continue;
                }
                if (g.ProducerOf(v) is { } n && n.OpType is not ("Shape" or "Size")) next.AddRange(n.Input.Where(i => i != ""));
            }
            frontier = next;
        }
        throw g.Unrecognised($"layer {layer}: no inverse-frequency constant of {headDim / 2} values feeds the rotary angles (partial rotary changes the math)");
    }

    static double FitInverseFrequencies(GraphIndex g, float[] f, long headDim, int layer)
    {
        var half = (int)headDim / 2;
        if (f.Length == headDim && !f.AsSpan(0, half).SequenceEqual(f.AsSpan(half))) throw g.Unrecognised($"layer {layer}: rotary frequencies not duplicated over the two halves of the head");
        var theta = half > 1 ? Math.Pow(f[1], -headDim / 2.0) : 10000;
        foreach (var common in new double[] { 10000, 100000, 500000, 1000000, 10000000 })
            if (Math.Abs(theta / common - 1) < 1e-4) theta = common;
        for (var i = 0; i < half; i++)
            if (Math.Abs(f[i] / Math.Pow(theta, -2.0 * i / headDim) - 1) > 1e-5)
                throw g.Unrecognised($"layer {layer}: rotary inverse frequencies are not θ^(-2i/d) for any θ (scaled RoPE changes the math)");
        return theta;
    }

    /// <summary>A cos or sin table [positions, d] gathered by position: its first half must be plain RoPE for one θ.</summary>
    static double TableTheta(GraphIndex g, NodeProto gather, long headDim, int layer)
    {
        var table = g.Tensor(gather, 0, "the rotary table");
        if (table.Shape.Length != 2 || table.Shape[1] != headDim || table.Shape[0] < 2)
            throw g.Unrecognised($"layer {layer}: a rotary table of shape [{string.Join(",", table.Shape)}] for heads of {headDim}");
        int positions = (int)table.Shape[0], half = (int)headDim / 2;
        var isCos = table.Data[0] == 1f;   // position 0: cos 1, sin 0
        double Angle(int p, int i) => isCos ? Math.Acos(table.Data[p * headDim + i]) : Math.Asin(table.Data[p * headDim + i]);
        var candidates = new List<double> { 10000, 100000, 500000, 1000000, 10000000 };
        if (half > 1 && Angle(1, 1) > 0) candidates.Add(Math.Pow(Angle(1, 1), -half)); // at position 1 the angle θ^(−2/d) is below 1 rad
        foreach (var theta in candidates)
        {
            var ok = true;
            for (var p = 0; p < positions && ok; p++)
                for (var i = 0; i < headDim && ok; i++)
                {
                    var angle = p * Math.Pow(theta, -2.0 * (i % half) / headDim);
                    ok = Math.Abs((isCos ? Math.Cos(angle) : Math.Sin(angle)) - table.Data[p * headDim + i]) < 2e-3;
                }
            if (ok) return theta;
        }
        throw g.Unrecognised($"layer {layer}: the rotary table is not plain RoPE for any base θ (scaled RoPE changes the math)");
    }

    /// <summary>The Add of <paramref name="branch"/> to the residual stream <paramref name="residual"/>.</summary>
    static string ResidualAdd(GraphIndex g, string branch, string residual, int layer)
    {
        var add = g.ConsumersOf(branch).SingleOrDefault(n => n.OpType == "Add" && n.Input.Contains(residual))
            ?? throw g.Unrecognised($"layer {layer}: {branch} is not added to the residual stream");
        return add.Output[0];
    }

    internal sealed record Norm(string Output, WeightTensor Gamma, float Eps);

    /// <summary>
    /// RMSNorm of <paramref name="x"/> as torch exports it: [Cast] → Pow(·, 2) or Mul(·, ·) → ReduceMean(last
    /// axis) → Add ε → Sqrt → Reciprocal / Div(1, ·) then Mul, or Div(x, ·) → [Cast] → Mul γ. Also the fused
    /// SimplifiedLayerNormalization and opset-23 RMSNormalization.
    /// </summary>
    static Norm RmsNorm(GraphIndex g, string x, string what)
    {
        if (g.ConsumerOf(x, "SimplifiedLayerNormalization", "RMSNormalization") is { } fused)
            return new Norm(fused.Output[0], g.Tensor(fused, 1, what), g.FloatAttribute(fused, "epsilon", 1e-5f));
        var xf = g.ConsumerOf(x, "Cast") is { } cast ? cast.Output[0] : x;
        var square = g.ConsumersOf(xf).SingleOrDefault(n =>
            n.OpType == "Pow" && n.Input[0] == xf && g.IsConstant(n.Input[1]) && g.ConstantValues(n.Input[1]) is [2f]
            || n.OpType == "Mul" && n.Input[0] == xf && n.Input[1] == xf)
            ?? throw g.Unrecognised($"{what}: no x² (Pow or Mul) reads {x}; not an RMSNorm");
        var mean = g.ConsumerOf(square.Output[0], "ReduceMean") ?? throw g.Unrecognised($"{what}: no ReduceMean of x²");
        var axes = g.Has(mean, 1) ? g.Ints(mean, 1) : mean.Attribute.FirstOrDefault(a => a.Name == "axes")?.Ints.ToArray() ?? [];
        if (axes is not ([-1] or [2]) || g.IntAttribute(mean, "keepdims", 1) != 1) throw g.Unrecognised($"{what}: the mean of x² is not over the hidden axis");
        var addEps = g.ConsumerOf(mean.Output[0], "Add") ?? throw g.Unrecognised($"{what}: no ε added to the mean of x²");
        var epsIndex = addEps.Input[0] == mean.Output[0] ? 1 : 0;
        var eps = g.Tensor(addEps, epsIndex, "ε").Data is [var e] ? e : throw g.Unrecognised($"{what}: ε is not a scalar");
        var sqrt = g.ConsumerOf(addEps.Output[0], "Sqrt") ?? throw g.Unrecognised($"{what}: no Sqrt of mean(x²) + ε");
        string scaled;
        if (g.ConsumerOf(sqrt.Output[0], "Reciprocal") is { } reciprocal) scaled = MulBy(g, xf, reciprocal.Output[0], what);
        else if (g.ConsumerOf(sqrt.Output[0], "Div") is { } div)
        {
            if (div.Input[1] != sqrt.Output[0]) throw g.Unrecognised($"{what}: the root divides by something");
            if (div.Input[0] == xf) scaled = div.Output[0];
            else if (g.IsConstant(div.Input[0]) && g.ConstantValues(div.Input[0]) is [1f]) scaled = MulBy(g, xf, div.Output[0], what);
            else throw g.Unrecognised($"{what}: {div.Name} does not divide x by the root");
        }
        else throw g.Unrecognised($"{what}: x is not divided by sqrt(mean(x²) + ε)");
        if (g.ConsumerOf(scaled, "Cast") is { } back) scaled = back.Output[0];
        var gammaMul = g.ConsumersOf(scaled).SingleOrDefault(n => n.OpType == "Mul" && n.Input.Any(g.IsConstant))
            ?? throw g.Unrecognised($"{what}: the normalised x is not multiplied by a weight");
        var gamma = g.Tensor(gammaMul, g.IsConstant(gammaMul.Input[0]) ? 0 : 1, $"{what} weight");
        return new Norm(gammaMul.Output[0], gamma, eps);
    }

    static string MulBy(GraphIndex g, string x, string factor, string what) =>
        g.ConsumersOf(factor).SingleOrDefault(n => n.OpType == "Mul" && n.Input.Contains(x))?.Output[0]
            ?? throw g.Unrecognised($"{what}: x is not multiplied by 1/sqrt(mean(x²) + ε)");
}
