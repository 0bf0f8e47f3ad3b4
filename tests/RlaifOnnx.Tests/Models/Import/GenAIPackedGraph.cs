using Google.Protobuf;
using Onnx;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace RlaifOnnx.Tests.Models.Import;

/// <summary>
/// A canonical Llama-family model written as the ONNX Runtime GenAI model builder writes its CPU int4
/// exports: Gather embedding, SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization, one packed q/k/v
/// MatMul (+ packed bias Add) straight into com.microsoft GroupQueryAttention with rotary inside
/// (do_rotary=1, cos/sin caches [positions, d/2] as inputs 7 and 8, seqlens_k and total_sequence_length
/// computed from attention_mask), one packed gate/up MatMul cut by two Slices, SiLU as x·Sigmoid(x), and
/// — with <c>int4</c> — every linear weight as MatMulNBits (4 bits, block 16, uint8 zero points). No public
/// export of this shape is among the test fixtures, so this is what that import path is tested on.
/// </summary>
static class GenAIPackedGraph
{
    const int BlockSize = 16;

    public static ModelProto Model(ModelConfig c, WeightSet w, bool int4)
    {
        var g = new GraphBuilder("genai_builder");
        int heads = c.NumHeads, kv = c.NumKvHeads, d = c.HeadDim, inter = c.IntermediateSize;
        g.Input("input_ids", DataType.Int64, "batch_size", "sequence_length");
        g.Input("attention_mask", DataType.Int64, "batch_size", "total_sequence_length");
        g.Input("position_ids", DataType.Int64, "batch_size", "sequence_length");
        for (var i = 0; i < c.NumLayers; i++)
        {
            g.Input($"past_key_values.{i}.key", DataType.Float, "batch_size", kv, "past_sequence_length", d);
            g.Input($"past_key_values.{i}.value", DataType.Float, "batch_size", kv, "past_sequence_length", d);
        }
        foreach (var name in WeightNames.Shapes(c).Keys.Where(n => n.Contains("norm") || n == "model.embed_tokens.weight"))
            g.Initializer(OnnxFile.FloatTensor(name, w[name].Data, w[name].Shape));

        // cos/sin caches [positions, d/2], as the builder's make_rotary_embedding_caches writes them.
        var half = d / 2;
        var cos = new float[c.MaxPositions * half];
        var sin = new float[c.MaxPositions * half];
        for (var p = 0; p < c.MaxPositions; p++)
            for (var i = 0; i < half; i++)
            {
                var angle = p / Math.Pow(c.RopeTheta, 2.0 * i / d);
                cos[p * half + i] = (float)Math.Cos(angle);
                sin[p * half + i] = (float)Math.Sin(angle);
            }
        g.Initializer(OnnxFile.FloatTensor("cos_cache", cos, c.MaxPositions, half));
        g.Initializer(OnnxFile.FloatTensor("sin_cache", sin, c.MaxPositions, half));

        // seqlens_k = sum(mask) − 1 and total_sequence_length = mask.shape[1], both int32.
        var seqlensK = g.Cast(g.Sub(g.ReduceSum("attention_mask", [1], keepDims: false), g.Int64Scalar(1)), DataType.Int32);
        var total = g.Cast(g.Squeeze(g.Shape("attention_mask", 1, 2), 0), DataType.Int32);

        string Linear(string x, string name, WeightTensor weight)
        {
            if (!int4)
            {
                g.Initializer(OnnxFile.FloatTensor(name, weight.Data, weight.Shape));
                return g.MatMul(x, name);
            }
            var (k, n) = ((int)weight.Shape[0], (int)weight.Shape[1]);
            var (packed, scales, zeroPoints) = Quantize(weight.Data, k, n);
            var blocks = (k + BlockSize - 1) / BlockSize;
            g.Initializer(Uint8($"{name}.MatMul.weight_Q4", packed, n, blocks, BlockSize / 2));
            g.Initializer(OnnxFile.FloatTensor($"{name}.MatMul.weight_scales", scales, n * blocks));
            g.Initializer(Uint8($"{name}.MatMul.weight_zp", zeroPoints, zeroPoints.Length));
            return g.Node("MatMulNBits", [x, $"{name}.MatMul.weight_Q4", $"{name}.MatMul.weight_scales", $"{name}.MatMul.weight_zp"], [g.Fresh("matmulnbits")],
                "com.microsoft", ("K", (long)k), ("N", (long)n), ("bits", 4L), ("block_size", (long)BlockSize))[0];
        }

        var x = g.Gather("model.embed_tokens.weight", "input_ids");
        var normed = g.Node("SimplifiedLayerNormalization", [x, WeightNames.LlamaLayer(0, "input_layernorm.weight")], [g.Fresh("norm")], "",
            ("axis", -1L), ("epsilon", (float)c.NormEps), ("stash_type", 1L))[0];
        var residual = x;
        for (var i = 0; i < c.NumLayers; i++)
        {
            string W(string rest) => WeightNames.LlamaLayer(i, rest);
            var qkv = Linear(normed, $"/model/layers.{i}/attn/qkv_proj", Concat(w[W("self_attn.q_proj.weight")], w[W("self_attn.k_proj.weight")], w[W("self_attn.v_proj.weight")]));
            if (c.AttentionBias)
            {
                var bias = w[W("self_attn.q_proj.bias")].Data.Concat(w[W("self_attn.k_proj.bias")].Data).Concat(w[W("self_attn.v_proj.bias")].Data).ToArray();
                qkv = g.Add(qkv, g.Initializer(OnnxFile.FloatTensor($"/model/layers.{i}/attn/qkv_proj/Add.bias", bias, bias.Length)));
            }
            var attention = g.Node("GroupQueryAttention",
                [qkv, "", "", $"past_key_values.{i}.key", $"past_key_values.{i}.value", seqlensK, total, "cos_cache", "sin_cache"],
                [g.Fresh("gqa"), $"present.{i}.key", $"present.{i}.value"], "com.microsoft",
                ("num_heads", (long)heads), ("kv_num_heads", (long)kv), ("scale", (float)(1 / Math.Sqrt(d))), ("do_rotary", 1L), ("rotary_interleaved", 0L))[0];
            g.Output($"present.{i}.key", DataType.Float, "batch_size", kv, "total_sequence_length", d);
            g.Output($"present.{i}.value", DataType.Float, "batch_size", kv, "total_sequence_length", d);
            var o = Linear(attention, $"/model/layers.{i}/attn/o_proj", w[W("self_attn.o_proj.weight")]);
            var skip1 = g.Node("SkipSimplifiedLayerNormalization", [residual, o, W("post_attention_layernorm.weight")],
                [g.Fresh("skipnorm"), "", "", g.Fresh("residual")], "com.microsoft", ("epsilon", (float)c.NormEps));
            residual = skip1[3];

            var gateUp = Linear(skip1[0], $"/model/layers.{i}/mlp/gate_up_proj", Concat(w[W("mlp.gate_proj.weight")], w[W("mlp.up_proj.weight")]));
            var gate = g.Slice(gateUp, [0], [inter], [-1]);
            var up = g.Slice(gateUp, [inter], [2 * inter], [-1]);
            var down = Linear(g.Mul(g.Mul(gate, g.Sigmoid(gate)), up), $"/model/layers.{i}/mlp/down_proj", w[W("mlp.down_proj.weight")]);
            var nextNorm = i + 1 < c.NumLayers ? WeightNames.LlamaLayer(i + 1, "input_layernorm.weight") : "model.norm.weight";
            var skip2 = g.Node("SkipSimplifiedLayerNormalization", [residual, down, nextNorm],
                [g.Fresh("skipnorm"), "", "", g.Fresh("residual")], "com.microsoft", ("epsilon", (float)c.NormEps));
            (normed, residual) = (skip2[0], skip2[3]);
        }
        var lm = c.TieEmbeddings ? Transposed(w["model.embed_tokens.weight"]) : w["lm_head.weight"];
        var logits = Linear(normed, "lm_head", lm);
        g.Node("Identity", [logits], ["logits"]);
        g.Output("logits", DataType.Float, "batch_size", "sequence_length", c.VocabSize);
        var model = g.ToModel("onnxruntime-genai");
        if (!model.OpsetImport.Any(o => o.Domain == "com.microsoft")) model.OpsetImport.Add(new OperatorSetIdProto { Domain = "com.microsoft", Version = 1 });
        // The lm_head output is renamed rather than copied, as the builder names it.
        var identity = model.Graph.Node.Single(n => n.OpType == "Identity" && n.Output[0] == "logits");
        model.Graph.Node.Remove(identity);
        foreach (var n in model.Graph.Node)
            for (var k = 0; k < n.Output.Count; k++) if (n.Output[k] == logits) n.Output[k] = "logits";
        return model;
    }

    /// <summary>Matrices [h, a], [h, b] … side by side: [h, a + b + …].</summary>
    static WeightTensor Concat(params WeightTensor[] parts)
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

    /// <summary>Asymmetric blockwise int4 (MatMulNBits' layout): per column and block of 16 rows, scale = (max − min)/15, zero point round(−min/scale).</summary>
    static (byte[] Packed, float[] Scales, byte[] ZeroPoints) Quantize(float[] w, int k, int n)
    {
        var blocks = (k + BlockSize - 1) / BlockSize;
        var packed = new byte[n * blocks * BlockSize / 2];
        var scales = new float[n * blocks];
        var zeroPoints = new byte[n * ((blocks + 1) / 2)];
        for (var col = 0; col < n; col++)
            for (var b = 0; b < blocks; b++)
            {
                float min = 0, max = 0;
                for (var i = b * BlockSize; i < Math.Min(k, (b + 1) * BlockSize); i++) { min = Math.Min(min, w[i * n + col]); max = Math.Max(max, w[i * n + col]); }
                var scale = max > min ? (max - min) / 15f : 1f;
                var zp = (byte)Math.Clamp(Math.Round(-min / scale), 0, 15);
                scales[col * blocks + b] = scale;
                zeroPoints[col * ((blocks + 1) / 2) + b / 2] |= (byte)(b % 2 == 0 ? zp : zp << 4);
                for (var i = 0; i < BlockSize; i++)
                {
                    var row = b * BlockSize + i;
                    var q = row < k ? (byte)Math.Clamp(Math.Round(w[row * n + col] / scale) + zp, 0, 15) : zp;
                    packed[(col * blocks + b) * BlockSize / 2 + i / 2] |= (byte)(i % 2 == 0 ? q : q << 4);
                }
            }
        return (packed, scales, zeroPoints);
    }

    static TensorProto Uint8(string name, byte[] data, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)DataType.Uint8, RawData = ByteString.CopyFrom(data) };
        t.Dims.AddRange(dims);
        return t;
    }
}
