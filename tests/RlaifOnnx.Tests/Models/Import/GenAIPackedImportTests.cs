using System.Text.Json.Nodes;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;

namespace RlaifOnnx.Tests.Models.Import;

/// <summary>
/// GenAI-builder exports with packed q/k/v and gate/up projections and GroupQueryAttention rotating q and k
/// itself (do_rotary=1), in float32 and int4 MatMulNBits, written from known weights by
/// <see cref="GenAIPackedGraph"/>: the importer splits the packed weights by following the graph, and the
/// rebuilt canonical graph's logits equal the export's own run by ONNX Runtime.
/// </summary>
public sealed class GenAIPackedImportTests
{
    const int Batch = 2, Seq = 6;

    internal static string WriteExport(TempDir tmp, ModelConfig c, WeightSet w, bool int4)
    {
        var dir = tmp.File("export");
        Directory.CreateDirectory(dir);
        File.WriteAllBytes(Path.Combine(dir, "model.onnx"), GenAIPackedGraph.Model(c, w, int4).ToByteArray());
        var genai = new JsonObject
        {
            ["model"] = new JsonObject
            {
                ["type"] = c.ModelType, ["vocab_size"] = c.VocabSize, ["context_length"] = c.MaxPositions,
                ["bos_token_id"] = c.BosTokenId, ["eos_token_id"] = c.EosTokenId, ["pad_token_id"] = c.PadTokenId,
                ["decoder"] = new JsonObject
                {
                    ["filename"] = "model.onnx", ["head_size"] = c.HeadDim, ["hidden_size"] = c.HiddenSize,
                    ["num_attention_heads"] = c.NumHeads, ["num_key_value_heads"] = c.NumKvHeads, ["num_hidden_layers"] = c.NumLayers,
                },
            },
        };
        File.WriteAllText(Path.Combine(dir, "genai_config.json"), genai.ToJsonString());
        return dir;
    }

    /// <summary>Logits of a session on fixed unpadded ids with an empty cache (GroupQueryAttention's rotary takes positions from seqlens_k).</summary>
    static float[] Logits(byte[] model, ModelConfig c)
    {
        var rng = new Random(5);
        var ids = Enumerable.Range(0, Batch * Seq).Select(_ => (long)rng.Next(c.VocabSize)).ToArray();
        var mask = Enumerable.Repeat(1L, Batch * Seq).ToArray();
        var positions = Enumerable.Range(0, Batch * Seq).Select(i => (long)(i % Seq)).ToArray();
        using var session = new InferenceSession(model);
        var names = new List<string>();
        var values = new List<OrtValue>();
        foreach (var name in session.InputMetadata.Keys)
        {
            names.Add(name);
            values.Add(name switch
            {
                "input_ids" => OrtValue.CreateTensorValueFromMemory(ids, [Batch, Seq]),
                "attention_mask" => OrtValue.CreateTensorValueFromMemory(mask, [Batch, Seq]),
                "position_ids" => OrtValue.CreateTensorValueFromMemory(positions, [Batch, Seq]),
                _ => OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [Batch, c.NumKvHeads, 0, c.HeadDim]),
            });
        }
        using var options = new RunOptions();
        using var outputs = session.Run(options, names, values, ["logits"]);
        foreach (var v in values) v.Dispose();
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    [Theory]
    [InlineData("mha-tied", false)]
    [InlineData("gqa-untied", false)]
    [InlineData("qwen2-bias", false)]
    [InlineData("gqa-untied", true)]
    [InlineData("qwen2-bias", true)]
    public void Packed_projections_and_rotary_inside_attention_import_and_match_the_export(string variant, bool int4)
    {
        using var tmp = new TempDir();
        // ONNX Runtime's CPU GroupQueryAttention wants heads a multiple of 16 wide: 4 heads of 16.
        var c = TinyLlama.Config(variant, vocab: 300) with { HiddenSize = 64 };
        var w = TinyLlama.Weights(c, seed: 4);
        var dir = WriteExport(tmp, c, w, int4);
        var tokenizer = tmp.File("tokenizer");
        ModelWriter.Write(tokenizer, c, w, TinyTokenizer.Train(c.VocabSize), "base", []);
        var notes = new List<string>();

        var (config, weights, _) = OnnxImport.Import(dir, tokenizer, notes.Add);

        // An int4 lm_head is its own (dequantised) matrix, no longer the embedding transposed.
        Assert.Equal(c with { TieEmbeddings = c.TieEmbeddings && !int4 }, config);
        if (int4) Assert.Contains(notes, n => n.Contains("int4 MatMulNBits") && n.Contains("dequantised"));
        else
        {
            Assert.Equal(w.Keys.Order(), weights.Keys.Order());
            foreach (var (name, tensor) in w) Assert.True(tensor.Data.AsSpan().SequenceEqual(weights[name].Data), $"{name} differs from the source weight");
        }

        var expected = Logits(File.ReadAllBytes(Path.Combine(dir, "model.onnx")), c);
        var actual = Logits(DecoderGraphs.Inference(config, weights).ToByteArray(), config);
        double diff = 0, spread = 0;
        for (var i = 0; i < expected.Length; i++)
        {
            diff = Math.Max(diff, Math.Abs(expected[i] - actual[i]));
            spread = Math.Max(spread, Math.Abs(expected[i]));
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"{variant} {(int4 ? "int4" : "fp32")}: max |Δlogit| {diff:E2} (max |logit| {spread:F3})");
        Assert.True(diff <= 1e-4, $"max |Δlogit| {diff}");
        Assert.True(spread > 0.5);
    }
}
