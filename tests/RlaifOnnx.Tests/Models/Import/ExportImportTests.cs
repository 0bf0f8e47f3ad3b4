using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Onnx;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Tests.Models.Import;

/// <summary>
/// Import of the real float16 exports (the GenAI builder's Llama and the GenAI GPT-2 fp16 test model): the
/// imported float32 model's logits against the original file run by ONNX Runtime, GenAI greedy decoding of
/// both, and MatMulNBits dequantisation against ONNX Runtime's own kernel.
/// </summary>
public sealed class ExportImportTests
{
    static string LlamaFp16 => SharedData.Require("real-models/ortgenai-tiny-random-LlamaForCausalLM-fp16");
    static string Gpt2Fp16 => SharedData.Require("real-models/ortgenai-tiny-random-gpt2-fp16-cuda");
    static string Gpt2Fp32 => SharedData.Require("genai-models/tiny-random-gpt2-fp32");

    const int Batch = 2, Seq = 7;
    static readonly int[] Pads = [0, 2];

    static (long[] Ids, long[] Mask, long[] Positions) FixedInputs(int vocab)
    {
        var rng = new Random(7);
        var ids = new long[Batch * Seq];
        var mask = new long[Batch * Seq];
        var positions = new long[Batch * Seq];
        for (var b = 0; b < Batch; b++)
            for (var s = 0; s < Seq; s++)
            {
                ids[b * Seq + s] = rng.Next(vocab);
                mask[b * Seq + s] = s < Pads[b] ? 0 : 1;
                positions[b * Seq + s] = Math.Max(0, s - Pads[b]);
            }
        return (ids, mask, positions);
    }

    /// <summary>Runs a session; integer inputs in the type the graph declares, empty past tensors as declared; returns logits as float64.</summary>
    static double[] Logits(InferenceSession session, long[] ids, long[] mask, long[] positions, Func<string, long[]> pastShape)
    {
        var values = new List<OrtValue>();
        var names = new List<string>();
        foreach (var (name, meta) in session.InputMetadata)
        {
            long[] data = name switch { "input_ids" => ids, "attention_mask" => mask, "position_ids" => positions, _ => [] };
            OrtValue v;
            if (name is "input_ids" or "attention_mask" or "position_ids")
                v = meta.ElementDataType == TensorElementType.Int32
                    ? OrtValue.CreateTensorValueFromMemory(data.Select(x => (int)x).ToArray(), [Batch, Seq])
                    : OrtValue.CreateTensorValueFromMemory(data, [Batch, Seq]);
            else
                v = meta.ElementDataType == TensorElementType.Float16
                    ? OrtValue.CreateTensorValueFromMemory(Array.Empty<Float16>(), pastShape(name))
                    : OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), pastShape(name));
            names.Add(name);
            values.Add(v);
        }
        using var options = new RunOptions();
        using var outputs = session.Run(options, names, values, ["logits"]);
        foreach (var v in values) v.Dispose();
        var info = outputs[0].GetTensorTypeAndShape();
        return info.ElementDataType == TensorElementType.Float16
            ? outputs[0].GetTensorDataAsSpan<Float16>().ToArray().Select(h => (double)(float)h).ToArray()
            : outputs[0].GetTensorDataAsSpan<float>().ToArray().Select(f => (double)f).ToArray();
    }

    /// <summary>max |Δ| over the unpadded positions, divided by max |expected| there.</summary>
    static (double Relative, double Spread) Compare(double[] expected, double[] actual, int vocab)
    {
        Assert.Equal(expected.Length, actual.Length);
        double max = 0, spread = 0;
        for (var b = 0; b < Batch; b++)
            for (var s = Pads[b]; s < Seq; s++)
                for (var v = 0; v < vocab; v++)
                {
                    var k = (b * Seq + s) * vocab + v;
                    max = Math.Max(max, Math.Abs(expected[k] - actual[k]));
                    spread = Math.Max(spread, Math.Abs(expected[k]));
                }
        return (max / spread, spread);
    }

    [Fact]
    public void GenAI_builder_llama_fp16_export_imports_by_following_its_graph()
    {
        var notes = new List<string>();
        var (config, weights, tokenizerDir) = OnnxImport.Import(LlamaFp16, note: notes.Add);

        Assert.Equal(Architecture.Llama, config.Architecture);
        Assert.Equal((32000, 16, 2, 1, 1, 64, 2048), (config.VocabSize, config.HiddenSize, config.NumLayers, config.NumHeads, config.NumKvHeads, config.IntermediateSize, config.MaxPositions));
        Assert.Equal((1e-6, 10000.0), (config.NormEps, config.RopeTheta));
        Assert.False(config.AttentionBias);
        Assert.Equal((0, 1, 2), (config.BosTokenId, config.EosTokenId, config.PadTokenId));
        Assert.Equal(Path.GetFullPath(LlamaFp16), tokenizerDir);
        Assert.Contains(notes, n => n.Contains("float16") && n.Contains("float32"));
        // Layer 1's down projection is the export's own tensor, widened from float16.
        var source = OnnxFile.Load(Path.Combine(LlamaFp16, "model.onnx"));
        var down1 = source.Graph.Initializer.Single(t => t.Name == "model.layers.1.mlp.down_proj.MatMul.weight");
        Assert.Equal(ExportTensors.ToFloat32(down1), weights[WeightNames.LlamaLayer(1, "mlp.down_proj.weight")].Data);
    }

    [Fact]
    public void Imported_llama_logits_match_the_original_fp16_export()
    {
        var (config, weights, _) = OnnxImport.Import(LlamaFp16);
        var (ids, mask, positions) = FixedInputs(config.VocabSize);
        using var original = new InferenceSession(Path.Combine(LlamaFp16, "model.onnx"));
        var expected = Logits(original, ids, mask, positions, _ => [Batch, config.NumKvHeads, 0, config.HeadDim]);
        using var rebuilt = new InferenceSession(DecoderGraphs.Inference(config, weights).ToByteArray());
        var actual = Logits(rebuilt, ids, mask, positions, _ => [Batch, config.NumKvHeads, 0, config.HeadDim]);

        var (relative, spread) = Compare(expected, actual, config.VocabSize);
        TestContext.Current.TestOutputHelper?.WriteLine($"llama fp16 export vs imported fp32: max |Δlogit| / max |logit| = {relative:E2} (max |logit| {spread:F4})");
        Assert.True(relative <= 2e-2, $"relative difference {relative}");
        Assert.True(spread > 0.01, "the logits are too small for the comparison to mean anything");
    }

    [Fact]
    public void Gpt2_fp16_export_imports_with_a_tokenizer_from_elsewhere_and_matches_the_original()
    {
        var ex = Assert.Throws<RlaifOnnx.Core.UserError>(() => OnnxImport.Import(Gpt2Fp16));
        Assert.Contains("--tokenizer", ex.Message);

        var (config, weights, tokenizerDir) = OnnxImport.Import(Gpt2Fp16, Gpt2Fp32);
        Assert.Equal(Path.GetFullPath(Gpt2Fp32), tokenizerDir);
        Assert.Equal((1000, 32, 5, 4), (config.VocabSize, config.HiddenSize, config.NumLayers, config.NumHeads));
        var (ids, mask, positions) = FixedInputs(config.VocabSize);
        using var original = new InferenceSession(Path.Combine(Gpt2Fp16, "past.onnx"));
        var expected = Logits(original, ids, mask, positions, _ => [2, Batch, config.NumHeads, 0, config.HeadDim]);
        using var rebuilt = new InferenceSession(DecoderGraphs.Inference(config, weights).ToByteArray());
        var actual = Logits(rebuilt, ids, mask, positions, _ => [2, Batch, config.NumHeads, 0, config.HeadDim]);

        var (relative, spread) = Compare(expected, actual, config.VocabSize);
        TestContext.Current.TestOutputHelper?.WriteLine($"gpt2 fp16 export vs imported fp32: max |Δlogit| / max |logit| = {relative:E2} (max |logit| {spread:F4})");
        Assert.True(relative <= 2e-2, $"relative difference {relative}");
        Assert.True(spread > 0.01);
    }

    [Fact]
    public void MatMulNBits_weights_dequantise_as_onnx_runtime_computes_them()
    {
        // A graph Y = MatMulNBits(A, B, scales, zero_points) with known int4 and int8 weights, run by ONNX Runtime.
        foreach (var (bits, withZeroPoints) in new[] { (4, true), (4, false), (8, true) })
        {
            const int k = 40, n = 6, blockSize = 16, rows = 3;
            var blocks = (k + blockSize - 1) / blockSize;
            var rng = new Random(bits * 10 + (withZeroPoints ? 1 : 0));
            var blob = blockSize * bits / 8;
            var packed = new byte[n * blocks * blob];
            rng.NextBytes(packed);
            var scales = Enumerable.Range(0, n * blocks).Select(_ => (float)(rng.NextDouble() * 0.2 + 0.01)).ToArray();
            var perByte = 8 / bits;
            byte[]? zp = null;
            if (withZeroPoints) { zp = new byte[n * ((blocks + perByte - 1) / perByte)]; rng.NextBytes(zp); }
            var a = Enumerable.Range(0, rows * k).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

            var graph = new GraphProto { Name = "nbits" };
            graph.Input.Add(ValueInfo("A", rows, k));
            graph.Output.Add(ValueInfo("Y", rows, n));
            graph.Initializer.Add(Uint8("B", packed, n, blocks, blob));
            graph.Initializer.Add(OnnxFile.FloatTensor("scales", scales, n * blocks));
            if (zp is not null) graph.Initializer.Add(Uint8("zp", zp, zp.Length));
            var node = new NodeProto { OpType = "MatMulNBits", Domain = "com.microsoft", Name = "q" };
            node.Input.AddRange(zp is null ? ["A", "B", "scales"] : ["A", "B", "scales", "zp"]);
            node.Output.Add("Y");
            node.Attribute.Add(new AttributeProto { Name = "K", I = k, Type = AttributeProto.Types.AttributeType.Int });
            node.Attribute.Add(new AttributeProto { Name = "N", I = n, Type = AttributeProto.Types.AttributeType.Int });
            node.Attribute.Add(new AttributeProto { Name = "bits", I = bits, Type = AttributeProto.Types.AttributeType.Int });
            node.Attribute.Add(new AttributeProto { Name = "block_size", I = blockSize, Type = AttributeProto.Types.AttributeType.Int });
            graph.Node.Add(node);
            var model = new ModelProto { IrVersion = 8, Graph = graph };
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = "com.microsoft", Version = 1 });

            using var session = new InferenceSession(model.ToByteArray());
            using var input = OrtValue.CreateTensorValueFromMemory(a, [rows, k]);
            using var options = new RunOptions();
            using var outputs = session.Run(options, ["A"], [input], ["Y"]);
            var y = outputs[0].GetTensorDataAsSpan<float>().ToArray();

            var w = ExportTensors.DequantizeNBits(packed, scales, zp, k, n, bits, blockSize);
            double worst = 0, spread = 0;
            for (var r = 0; r < rows; r++)
                for (var c = 0; c < n; c++)
                {
                    double sum = 0;
                    for (var i = 0; i < k; i++) sum += a[r * k + i] * w[i * n + c];
                    worst = Math.Max(worst, Math.Abs(sum - y[r * n + c]));
                    spread = Math.Max(spread, Math.Abs(sum));
                }
            TestContext.Current.TestOutputHelper?.WriteLine($"int{bits} zero points {withZeroPoints}: max |ΔY| = {worst:E2}, max |Y| = {spread:F3}");
            Assert.True(worst < 1e-4 * Math.Max(1, spread), $"int{bits}: max |ΔY| = {worst}");
            Assert.True(spread > 0.1);
        }
    }

    static ValueInfoProto ValueInfo(string name, params long[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } } };
    }

    static TensorProto Uint8(string name, byte[] data, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Uint8, RawData = ByteString.CopyFrom(data) };
        t.Dims.AddRange(dims);
        return t;
    }
}
