using System.Text.Json.Nodes;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Tests.Models.Import;

/// <summary>
/// optimum-style standard-op exports (model.onnx and the If-merged decoder_model_merged.onnx), written from
/// known weights by <see cref="OptimumShapedGraph"/>: the importer finds every weight by following the graph
/// (bit-identical to the source), reads heads, ε and θ right, and the rebuilt canonical graph's logits equal
/// the export's own, run by ONNX Runtime.
/// </summary>
public sealed class StandardLlamaImportTests
{
    const int Batch = 2, Seq = 6;
    static readonly int[] Pads = [0, 2];

    internal static string WriteExport(TempDir tmp, string name, ModelConfig c, WeightSet w, bool merged, bool cosTable = false, Action<JsonObject>? editConfig = null, bool packed = false)
    {
        var dir = tmp.File(name);
        Directory.CreateDirectory(dir);
        var model = OptimumShapedGraph.Model(c, w, merged, cosTable, packed);
        File.WriteAllBytes(Path.Combine(dir, merged ? "decoder_model_merged.onnx" : "model.onnx"), model.ToByteArray());
        var hf = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = c.ModelType, ["vocab_size"] = c.VocabSize,
            ["hidden_size"] = c.HiddenSize, ["intermediate_size"] = c.IntermediateSize, ["num_hidden_layers"] = c.NumLayers,
            ["num_attention_heads"] = c.NumHeads, ["num_key_value_heads"] = c.NumKvHeads, ["max_position_embeddings"] = c.MaxPositions,
            ["rms_norm_eps"] = c.NormEps, ["rope_theta"] = c.RopeTheta, ["rope_scaling"] = null, ["tie_word_embeddings"] = c.TieEmbeddings,
            ["bos_token_id"] = c.BosTokenId, ["eos_token_id"] = c.EosTokenId, ["pad_token_id"] = c.PadTokenId,
        };
        editConfig?.Invoke(hf);
        File.WriteAllText(Path.Combine(dir, "config.json"), hf.ToJsonString());
        return dir;
    }

    static string Tokenizer(TempDir tmp, ModelConfig c)
    {
        var dir = tmp.File("tokenizer");
        if (!Directory.Exists(dir)) ModelWriter.Write(dir, c, TinyLlama.Weights(c), TinyTokenizer.Train(c.VocabSize), "base", []);
        return dir;
    }

    /// <summary>Logits [B, S, V] of a session on fixed left-padded ids with an empty cache (and use_cache_branch when the graph has it).</summary>
    static float[] Logits(byte[] model, ModelConfig c, bool? useCacheBranch = null)
    {
        var rng = new Random(11);
        var ids = new long[Batch * Seq];
        var mask = new long[Batch * Seq];
        var positions = new long[Batch * Seq];
        for (var b = 0; b < Batch; b++)
            for (var s = 0; s < Seq; s++)
            {
                ids[b * Seq + s] = rng.Next(c.VocabSize);
                mask[b * Seq + s] = s < Pads[b] ? 0 : 1;
                positions[b * Seq + s] = Math.Max(0, s - Pads[b]);
            }
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
                "use_cache_branch" => OrtValue.CreateTensorValueFromMemory(new[] { useCacheBranch ?? true }, [1]),
                _ => OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [Batch, c.NumKvHeads, 0, c.HeadDim]),
            });
        }
        using var options = new RunOptions();
        using var outputs = session.Run(options, names, values, ["logits"]);
        foreach (var v in values) v.Dispose();
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>max |Δ| over the unpadded positions, and max |logit| there.</summary>
    static (double MaxDiff, double Spread) Compare(float[] expected, float[] actual, int vocab)
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
        return (max, spread);
    }

    [Theory]
    [InlineData("mha-tied", false, false, false)]
    [InlineData("gqa-untied", false, true, false)]
    [InlineData("qwen2-bias", false, false, false)]
    [InlineData("mha-tied", true, false, false)]
    [InlineData("gqa-untied", true, false, false)]
    [InlineData("qwen2-bias", true, true, false)]
    [InlineData("gqa-untied", false, false, true)]
    [InlineData("qwen2-bias", true, false, true)]
    public void Optimum_export_imports_by_following_its_graph_and_matches_its_logits(string variant, bool merged, bool cosTable, bool packed)
    {
        using var tmp = new TempDir();
        var c = TinyLlama.Config(variant, vocab: 300);
        var w = TinyLlama.Weights(c, seed: 3);
        var dir = WriteExport(tmp, "export", c, w, merged, cosTable, packed: packed);
        var notes = new List<string>();

        var (config, weights, _) = OnnxImport.Import(dir, Tokenizer(tmp, c), notes.Add);

        Assert.Equal(c with { MaxPositions = c.MaxPositions }, config);
        Assert.Equal(w.Keys.Order(), weights.Keys.Order());
        foreach (var (name, tensor) in w) Assert.True(tensor.Data.AsSpan().SequenceEqual(weights[name].Data), $"{name} differs from the source weight");
        if (merged) Assert.Contains(notes, n => n.Contains("merged decoder"));

        var source = File.ReadAllBytes(Directory.GetFiles(dir, "*.onnx").Single());
        var rebuilt = DecoderGraphs.Inference(config, weights).ToByteArray();
        var actual = Logits(rebuilt, config);
        foreach (var branch in merged ? new bool?[] { true, false } : [null])
        {
            var (diff, spread) = Compare(Logits(source, c, branch), actual, c.VocabSize);
            TestContext.Current.TestOutputHelper?.WriteLine($"{variant} {(merged ? $"merged, use_cache_branch={branch}" : "model.onnx")}{(cosTable ? ", cos/sin tables" : "")}{(packed ? ", packed qkv_proj and gate_up_proj" : "")}: max |Δlogit| {diff:E2} (max |logit| {spread:F3})");
            Assert.True(diff <= 1e-4, $"max |Δlogit| {diff}");
            Assert.True(spread > 0.5, "logits too small for the comparison to mean anything");
        }
    }

    [Fact]
    public void Settings_and_graphs_that_change_the_math_are_refused_with_the_reason()
    {
        using var tmp = new TempDir();
        var c = TinyLlama.Config("gqa-untied", vocab: 300);
        var w = TinyLlama.Weights(c);
        var tokenizer = Tokenizer(tmp, c);

        var scaled = WriteExport(tmp, "scaled", c, w, merged: false, editConfig: hf => hf["rope_scaling"] = new JsonObject { ["rope_type"] = "llama3", ["factor"] = 8.0 });
        Assert.Contains("rope_scaling", Assert.Throws<UserError>(() => OnnxImport.Import(scaled, tokenizer)).Message);
        var window = WriteExport(tmp, "window", c, w, merged: false, editConfig: hf => hf["sliding_window"] = 16);
        Assert.Contains("sliding attention window of 16", Assert.Throws<UserError>(() => OnnxImport.Import(window, tokenizer)).Message);

        // Scores divided by 2·√d instead of √d: a custom attention scale.
        var custom = WriteExport(tmp, "custom-scale", c, w, merged: false);
        var path = Path.Combine(custom, "model.onnx");
        var model = OnnxFile.Load(path);
        var div = model.Graph.Node.First(n => n.OpType == "Div");
        var constant = model.Graph.Initializer.Single(t => t.Name == div.Input[1]);
        constant.FloatData[0] *= 2;
        File.WriteAllBytes(path, model.ToByteArray());
        Assert.Contains("attention scale", Assert.Throws<UserError>(() => OnnxImport.Import(custom, tokenizer)).Message);

        // Inverse frequencies scaled (as Llama 3.1's rope_scaling does) without saying so in config.json.
        var hidden = WriteExport(tmp, "scaled-frequencies", c, w, merged: false);
        path = Path.Combine(hidden, "model.onnx");
        model = OnnxFile.Load(path);
        var invFreq = model.Graph.Initializer.Single(t => t.Name == "model.rotary_emb.inv_freq");
        var frequencies = OnnxFile.ToFloats(invFreq);
        frequencies[^1] /= 8;
        invFreq.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(frequencies.AsSpan()));
        File.WriteAllBytes(path, model.ToByteArray());
        Assert.Contains("not θ^(-2i/d)", Assert.Throws<UserError>(() => OnnxImport.Import(hidden, tokenizer)).Message);
    }
}
