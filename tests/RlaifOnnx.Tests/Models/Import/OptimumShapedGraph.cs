using Google.Protobuf;
using Onnx;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace RlaifOnnx.Tests.Models.Import;

/// <summary>
/// A canonical Llama-family model written the way torch.onnx / optimum spell the Hugging Face eager
/// LlamaAttention: weights as torch names them (embedding and norms by parameter name, every linear a
/// transposed "onnx::MatMul_N" copy, numbered in a shuffled order), RMSNorm as Pow/ReduceMean/Add/Sqrt/
/// Reciprocal/Mul, RoPE from inv_freq (MatMul with the positions, Concat, Cos/Sin) or from cos/sin tables
/// gathered by position, rotate_half by Slice/Neg/Concat, repeat_kv by Unsqueeze/Expand/Reshape with shapes
/// read off the tensors (Shape), scores MatMul / √d + a finfo.min mask, Softmax, and — for
/// decoder_model_merged.onnx — one If on use_cache_branch whose branches (with and without the cache) read
/// the hoisted initializers. No public optimum Llama export is among the test fixtures, so this is what
/// the standard-op importer is tested on.
/// </summary>
static class OptimumShapedGraph
{
    public static ModelProto Model(ModelConfig c, WeightSet w, bool merged, bool cosTable = false, bool packed = false)
    {
        var names = LinearNames(c);
        var top = new GraphBuilder("main_graph");
        top.Input("input_ids", DataType.Int64, "batch_size", "sequence_length");
        top.Input("attention_mask", DataType.Int64, "batch_size", "past_sequence_length + 1");
        top.Input("position_ids", DataType.Int64, "batch_size", "sequence_length");
        for (var i = 0; i < c.NumLayers; i++)
        {
            top.Input($"past_key_values.{i}.key", DataType.Float, "batch_size", c.NumKvHeads, "past_sequence_length", c.HeadDim);
            top.Input($"past_key_values.{i}.value", DataType.Float, "batch_size", c.NumKvHeads, "past_sequence_length", c.HeadDim);
        }
        AddWeights(top, c, w, names, cosTable, packed);
        if (!merged)
        {
            var outputs = Decoder(top, c, names, withPast: true, cosTable, packed);
            Declare(top, c, outputs, rename: true);
            return Finish(top);
        }

        top.Input("use_cache_branch", DataType.Bool, 1);
        var withCache = new GraphBuilder("optimum::then_branch") { NamePrefix = "then/" };
        Declare(withCache, c, Decoder(withCache, c, names, withPast: true, cosTable, packed), rename: false);
        var noCache = new GraphBuilder("optimum::else_branch") { NamePrefix = "else/" };
        Declare(noCache, c, Decoder(noCache, c, names, withPast: false, cosTable, packed), rename: false);
        // optimum hoists the branches' initializers into the main graph, where both read them.
        foreach (var branch in new[] { withCache.Graph, noCache.Graph })
        {
            top.Graph.Initializer.AddRange(branch.Initializer);
            branch.Initializer.Clear();
        }
        var outputNames = new List<string> { "logits" };
        for (var i = 0; i < c.NumLayers; i++) outputNames.AddRange([$"present.{i}.key", $"present.{i}.value"]);
        var ifNode = new NodeProto { OpType = "If", Name = "optimum::if" };
        ifNode.Input.Add("use_cache_branch");
        ifNode.Output.AddRange(outputNames);
        ifNode.Attribute.Add(new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = withCache.Graph });
        ifNode.Attribute.Add(new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = noCache.Graph });
        top.Graph.Node.Add(ifNode);
        Declare(top, c, outputNames, rename: false, outputsOnly: true);
        return Finish(top);
    }

    static ModelProto Finish(GraphBuilder g)
    {
        var model = g.ToModel("pytorch");
        model.OpsetImport.Clear();
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 18 });
        return model;
    }

    /// <summary>Canonical linear weight name → torch's "onnx::MatMul_N", N in a shuffled order so names say nothing of roles.</summary>
    static Dictionary<string, string> LinearNames(ModelConfig c)
    {
        var linears = WeightNames.Shapes(c).Keys.Where(n => n.EndsWith("proj.weight") || n == "lm_head.weight").ToList();
        if (c.TieEmbeddings) linears.Add("lm_head.weight");
        var order = linears.OrderBy(n => (n.GetHashCode(StringComparison.Ordinal) & 0x7fff) ^ n.Length).ToList();
        return order.Select((n, i) => (n, $"onnx::MatMul_{1200 + 7 * i}")).ToDictionary(p => p.n, p => p.Item2);
    }

    static void AddWeights(GraphBuilder g, ModelConfig c, WeightSet w, Dictionary<string, string> linears, bool cosTable, bool packed)
    {
        foreach (var (name, shape) in WeightNames.Shapes(c))
        {
            if (linears.TryGetValue(name, out var torchName)) continue;
            g.Initializer(OnnxFile.FloatTensor(name, w[name].Data, shape));
        }
        foreach (var (name, torchName) in linears)
        {
            // Linear weights are stored [in, out] already in the canonical set; torch's exporter writes the same transposed copy.
            var source = name == "lm_head.weight" && c.TieEmbeddings ? Transposed(w["model.embed_tokens.weight"]) : w[name];
            g.Initializer(OnnxFile.FloatTensor(torchName, source.Data, source.Shape));
        }
        if (packed)
            for (var i = 0; i < c.NumLayers; i++)
            {
                // Phi-3's qkv_proj and gate_up_proj: the separate matrices side by side.
                string W(string rest) => WeightNames.LlamaLayer(i, rest);
                var qkv = SideBySide(w[W("self_attn.q_proj.weight")], w[W("self_attn.k_proj.weight")], w[W("self_attn.v_proj.weight")]);
                g.Initializer(OnnxFile.FloatTensor($"onnx::MatMul_qkv_{i}", qkv.Data, qkv.Shape));
                var gateUp = SideBySide(w[W("mlp.gate_proj.weight")], w[W("mlp.up_proj.weight")]);
                g.Initializer(OnnxFile.FloatTensor($"onnx::MatMul_gate_up_{i}", gateUp.Data, gateUp.Shape));
                if (c.AttentionBias)
                {
                    var bias = w[W("self_attn.q_proj.bias")].Data.Concat(w[W("self_attn.k_proj.bias")].Data).Concat(w[W("self_attn.v_proj.bias")].Data).ToArray();
                    g.Initializer(OnnxFile.FloatTensor(W("self_attn.qkv_proj.bias"), bias, bias.Length));
                }
            }
        var half = c.HeadDim / 2;
        var invFreq = Enumerable.Range(0, half).Select(i => (float)(1.0 / Math.Pow(c.RopeTheta, 2.0 * i / c.HeadDim))).ToArray();
        g.Initializer(OnnxFile.FloatTensor("model.rotary_emb.inv_freq", invFreq, half));
        if (cosTable)
        {
            var cos = new float[c.MaxPositions * c.HeadDim];
            var sin = new float[c.MaxPositions * c.HeadDim];
            for (var p = 0; p < c.MaxPositions; p++)
                for (var i = 0; i < c.HeadDim; i++)
                {
                    var angle = p * (double)invFreq[i % half];
                    cos[p * c.HeadDim + i] = (float)Math.Cos(angle);
                    sin[p * c.HeadDim + i] = (float)Math.Sin(angle);
                }
            g.Initializer(OnnxFile.FloatTensor("model.rotary_emb.cos_cached", cos, c.MaxPositions, c.HeadDim));
            g.Initializer(OnnxFile.FloatTensor("model.rotary_emb.sin_cached", sin, c.MaxPositions, c.HeadDim));
        }
    }

    static WeightTensor SideBySide(params WeightTensor[] parts)
    {
        var rows = parts[0].Shape[0];
        var width = parts.Sum(p => p.Shape[1]);
        var data = new float[rows * width];
        long offset = 0;
        foreach (var p in parts)
        {
            for (long r = 0; r < rows; r++) Array.Copy(p.Data, r * p.Shape[1], data, r * width + offset, p.Shape[1]);
            offset += p.Shape[1];
        }
        return new WeightTensor([rows, width], data);
    }

    static WeightTensor Transposed(WeightTensor t)
    {
        int rows = (int)t.Shape[0], cols = (int)t.Shape[1];
        var data = new float[t.Data.Length];
        for (var r = 0; r < rows; r++)
            for (var col = 0; col < cols; col++) data[col * rows + r] = t.Data[r * cols + col];
        return new WeightTensor([cols, rows], data);
    }

    /// <summary>Declares the outputs; with <paramref name="rename"/> the values are renamed to logits / present.N.key|value, as torch names them.</summary>
    static void Declare(GraphBuilder g, ModelConfig c, List<string> outputs, bool rename, bool outputsOnly = false)
    {
        for (var i = 0; i < outputs.Count; i++)
        {
            var name = !rename ? outputs[i] : i == 0 ? "logits" : $"present.{(i - 1) / 2}.{((i - 1) % 2 == 0 ? "key" : "value")}";
            if (rename && !outputsOnly)
                foreach (var node in g.Graph.Node)
                {
                    for (var k = 0; k < node.Input.Count; k++) if (node.Input[k] == outputs[i]) node.Input[k] = name;
                    for (var k = 0; k < node.Output.Count; k++) if (node.Output[k] == outputs[i]) node.Output[k] = name;
                }
            object[] dims = i == 0 ? ["batch_size", "sequence_length", c.VocabSize] : ["batch_size", c.NumKvHeads, "past_sequence_length + 1", c.HeadDim];
            g.Output(name, DataType.Float, dims);
        }
    }

    /// <summary>The decoder body; returns [logits, present.0.key, present.0.value, …].</summary>
    static List<string> Decoder(GraphBuilder g, ModelConfig c, Dictionary<string, string> linears, bool withPast, bool cosTable, bool packed)
    {
        int heads = c.NumHeads, kvHeads = c.NumKvHeads, d = c.HeadDim, group = heads / kvHeads;
        var outputs = new List<string>();
        var x = g.Gather("model.embed_tokens.weight", "input_ids");

        // Rotary cos/sin [B, 1, S, D], as LlamaRotaryEmbedding.forward computes them (or from cached tables).
        string cos, sin;
        if (cosTable)
        {
            cos = g.Unsqueeze(g.Gather("model.rotary_emb.cos_cached", "position_ids"), 1);
            sin = g.Unsqueeze(g.Gather("model.rotary_emb.sin_cached", "position_ids"), 1);
        }
        else
        {
            var invExpanded = g.Reshape("model.rotary_emb.inv_freq", 1, d / 2, 1);                  // [1, D/2, 1]
            var positions = g.Cast(g.Unsqueeze("position_ids", 1), DataType.Float);                 // [B, 1, S]
            var freqs = g.Transpose(g.MatMul(invExpanded, positions), 0, 2, 1);                     // [B, S, D/2]
            var emb = g.Concat(-1, freqs, freqs);
            cos = g.Unsqueeze(g.Op("Cos", [emb]), 1);
            sin = g.Unsqueeze(g.Op("Sin", [emb]), 1);
        }

        // The 4-D additive mask [B, 1, S, T]: finfo(float32).min where a key is in the future or padding.
        var total = g.Squeeze(g.Shape("attention_mask", 1, 2), 0);
        var fresh = g.Squeeze(g.Shape("input_ids", 1, 2), 0);
        var one = g.Int64Scalar(1);
        var causal = g.Op("LessOrEqual", [g.Range(g.Int64Scalar(0), total, one), g.Unsqueeze(g.Range(g.Sub(total, fresh), total, one), 1)]);
        var visible = g.And(causal, g.Unsqueeze(g.Cast("attention_mask", DataType.Bool), 1, 2));
        var mask = g.Where(visible, g.Scalar(0.0), g.Scalar(float.MinValue));

        string Norm(string h, string weight)
        {
            var variance = g.ReduceMean(g.Pow(h, g.Scalar(2.0)), [-1]);
            var normalised = g.Mul(h, g.Reciprocal(g.Sqrt(g.Add(variance, g.Scalar(c.NormEps)))));
            return g.Mul(weight, normalised);
        }
        string Linear(string h, string canonical, string? bias = null)
        {
            var y = g.MatMul(h, linears[canonical]);
            return bias is null ? y : g.Add(bias, y);
        }
        string Heads(string h, string shapeSource, int count) =>
            g.Transpose(g.Reshape(h, g.Concat(0, g.Shape(shapeSource, 0, 2), g.Int64s(count, d))), 0, 2, 1, 3); // [B, n, S, D]
        string Rotate(string h)
        {
            var x1 = g.Slice(h, [0], [d / 2], [-1]);
            var x2 = g.Slice(h, [d / 2], [long.MaxValue], [-1]);
            var rotated = g.Concat(-1, g.Neg(x2), x1);
            return g.Add(g.Mul(h, cos), g.Mul(rotated, sin));
        }
        string RepeatKv(string h)
        {
            if (group == 1) return h;
            var shape5 = g.Concat(0, g.Shape(h, 0, 2), g.Int64s(group), g.Shape(h, 2, 4));
            var expanded = g.Expand(g.Unsqueeze(h, 2), shape5);                                // [B, kvH, group, T, D]
            return g.Reshape(expanded, g.Concat(0, g.Shape(h, 0, 1), g.Int64s(heads), g.Shape(h, 2, 4)));
        }

        for (var i = 0; i < c.NumLayers; i++)
        {
            string W(string rest) => WeightNames.LlamaLayer(i, rest);
            var n = Norm(x, W("input_layernorm.weight"));
            string q, k, v;
            if (packed)
            {
                // qkv[..., :H·d], qkv[..., H·d : (H + kvH)·d], qkv[..., (H + kvH)·d :], as Phi-3's attention slices it.
                var qkv = g.MatMul(n, $"onnx::MatMul_qkv_{i}");
                if (c.AttentionBias) qkv = g.Add(W("self_attn.qkv_proj.bias"), qkv);
                q = Heads(g.Slice(qkv, [0], [heads * d], [-1]), n, heads);
                k = Heads(g.Slice(qkv, [heads * d], [(heads + kvHeads) * d], [-1]), n, kvHeads);
                v = Heads(g.Slice(qkv, [(heads + kvHeads) * d], [long.MaxValue], [-1]), n, kvHeads);
            }
            else
            {
                q = Heads(Linear(n, W("self_attn.q_proj.weight"), c.AttentionBias ? W("self_attn.q_proj.bias") : null), n, heads);
                k = Heads(Linear(n, W("self_attn.k_proj.weight"), c.AttentionBias ? W("self_attn.k_proj.bias") : null), n, kvHeads);
                v = Heads(Linear(n, W("self_attn.v_proj.weight"), c.AttentionBias ? W("self_attn.v_proj.bias") : null), n, kvHeads);
            }
            q = Rotate(q);
            k = Rotate(k);
            if (withPast)
            {
                k = g.Concat(2, $"past_key_values.{i}.key", k);
                v = g.Concat(2, $"past_key_values.{i}.value", v);
            }
            outputs.Add(k);
            outputs.Add(v);
            var scores = g.Div(g.MatMul(q, g.Transpose(RepeatKv(k), 0, 1, 3, 2)), g.Scalar(Math.Sqrt(d)));
            var probs = g.Softmax(g.Add(scores, mask), -1);
            var attended = g.MatMul(probs, RepeatKv(v));                                          // [B, H, S, D]
            var merged = g.Reshape(g.Transpose(attended, 0, 2, 1, 3), g.Concat(0, g.Shape(n, 0, 2), g.Int64s(heads * d)));
            x = g.Add(x, Linear(merged, W("self_attn.o_proj.weight")));

            var n2 = Norm(x, W("post_attention_layernorm.weight"));
            string gate, up;
            if (packed)
            {
                // gate, up = gate_up_proj(x).chunk(2, dim=-1): a Split in torch's export.
                var halves = g.Split(g.MatMul(n2, $"onnx::MatMul_gate_up_{i}"), -1, [c.IntermediateSize, c.IntermediateSize]);
                (gate, up) = (halves[0], halves[1]);
            }
            else (gate, up) = (Linear(n2, W("mlp.gate_proj.weight")), Linear(n2, W("mlp.up_proj.weight")));
            x = g.Add(x, Linear(g.Mul(g.Mul(gate, g.Sigmoid(gate)), up), W("mlp.down_proj.weight")));
        }
        var logits = Linear(Norm(x, "model.norm.weight"), "lm_head.weight");
        var result = new List<string> { logits };
        result.AddRange(outputs);
        return result;
    }
}
