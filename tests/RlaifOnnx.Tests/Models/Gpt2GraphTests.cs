using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;

namespace RlaifOnnx.Tests.Models;

/// <summary>Parity of the GPT-2 graphs (run by ONNX Runtime) with the float64 reference forward.</summary>
public sealed class Gpt2GraphTests
{
    internal static ModelConfig TinyConfig(string act = "gelu_new") => new ModelConfig
    {
        Architecture = Architecture.Gpt2, ModelType = "gpt2", VocabSize = 61, HiddenSize = 32, NumLayers = 2,
        NumHeads = 4, NumKvHeads = 4, IntermediateSize = 128, MaxPositions = 40, NormEps = 1e-5,
        TieEmbeddings = true, HiddenAct = act, BosTokenId = 0, EosTokenId = 0, PadTokenId = 0,
    }.Validate("test");

    /// <summary>Every weight random (norm scales around 1, non-zero biases), so a swapped or unused weight shows.</summary>
    internal static WeightSet NoisyWeights(ModelConfig c, int seed)
    {
        var rng = new Random(seed);
        var set = new WeightSet();
        foreach (var (name, shape) in WeightNames.Shapes(c).OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var data = new float[shape.Aggregate(1L, (a, b) => a * b)];
            var isScale = name.Contains("ln_") && name.EndsWith(".weight");
            for (var i = 0; i < data.Length; i++)
                data[i] = (float)((isScale ? 1 : 0) + 0.3 * (rng.NextDouble() * 2 - 1));
            set[name] = new WeightTensor(shape, data);
        }
        return set;
    }

    static long[,] Ids(int batch, int seq, int vocab, int seed)
    {
        var rng = new Random(seed);
        var ids = new long[batch, seq];
        for (var b = 0; b < batch; b++) for (var s = 0; s < seq; s++) ids[b, s] = rng.Next(vocab);
        return ids;
    }

    static long[,] Fill(int batch, int seq, Func<int, int, long> f)
    {
        var a = new long[batch, seq];
        for (var b = 0; b < batch; b++) for (var s = 0; s < seq; s++) a[b, s] = f(b, s);
        return a;
    }

    /// <summary>Positions as GenAI derives them from a left-padded mask: count of real tokens before, 0 on padding.</summary>
    static long[,] PositionsFromMask(long[,] mask) => Fill(mask.GetLength(0), mask.GetLength(1), (b, s) =>
    {
        long count = 0;
        for (var t = 0; t < s; t++) count += mask[b, t];
        return mask[b, s] == 0 ? 0 : count;
    });

    static long[,] Columns(long[,] a, int start, int count) => Fill(a.GetLength(0), count, (b, s) => a[b, start + s]);

    internal static OrtValue Tensor(long[,] a) =>
        OrtValue.CreateTensorValueFromMemory(a.Cast<long>().ToArray(), [a.GetLength(0), a.GetLength(1)]);

    /// <summary>Runs a model and returns every output as (shape, float64 values).</summary>
    internal static Dictionary<string, (long[] Shape, double[] Data)> Run(InferenceSession session, Dictionary<string, OrtValue> inputs)
    {
        var names = session.OutputNames.ToArray();
        using var options = new RunOptions();
        using var outputs = session.Run(options, inputs.Keys.ToArray(), inputs.Values.ToArray(), names);
        var result = new Dictionary<string, (long[], double[])>();
        for (var i = 0; i < names.Length; i++)
        {
            var info = outputs[i].GetTensorTypeAndShape();
            var data = info.ElementDataType == Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Double
                ? outputs[i].GetTensorDataAsSpan<double>().ToArray()
                : Array.ConvertAll(outputs[i].GetTensorDataAsSpan<float>().ToArray(), v => (double)v);
            result[names[i]] = (info.Shape, data);
        }
        return result;
    }

    internal static InferenceSession Session(ModelProto model) => new(model.ToByteArray());

    static OrtValue EmptyPast(ModelConfig c, int batch) =>
        OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [2, batch, c.NumHeads, 0, c.HeadDim]);

    /// <summary>Max |graph − reference| over the positions where <paramref name="compare"/> is true.</summary>
    static double MaxDiff(double[] graph, double[,,] reference, int startColumn, Func<int, int, bool> compare)
    {
        int batch = reference.GetLength(0), vocab = reference.GetLength(2), seq = graph.Length / batch / vocab;
        double max = 0;
        for (var b = 0; b < batch; b++)
            for (var s = 0; s < seq; s++)
            {
                if (!compare(b, startColumn + s)) continue;
                for (var v = 0; v < vocab; v++)
                    max = Math.Max(max, Math.Abs(graph[(b * seq + s) * vocab + v] - reference[b, startColumn + s, v]));
            }
        return max;
    }

    /// <summary>Feeds the sequence in chunks (prefill, then one token per step), present_i → past_i; returns the max difference.</summary>
    static double CachedRunDiff(ModelConfig c, WeightSet w, long[,] ids, long[,] mask, int prefill)
    {
        var positions = PositionsFromMask(mask);
        var reference = Gpt2Reference.Forward(c, w, ids, mask, positions);
        using var session = Session(Gpt2Graph.Inference(c, w));
        int batch = ids.GetLength(0), seq = ids.GetLength(1);
        var past = Enumerable.Range(0, c.NumLayers).Select(_ => EmptyPast(c, batch)).ToList();
        double max = 0;
        for (var start = 0; start < seq;)
        {
            var count = start == 0 ? prefill : 1;
            var inputs = new Dictionary<string, OrtValue>
            {
                ["input_ids"] = Tensor(Columns(ids, start, count)),
                ["attention_mask"] = Tensor(Columns(mask, 0, start + count)),
                ["position_ids"] = Tensor(Columns(positions, start, count)),
            };
            for (var i = 0; i < c.NumLayers; i++) inputs[Gpt2Graph.PastName(i)] = past[i];
            var outputs = Run(session, inputs);
            foreach (var v in inputs.Values) v.Dispose();
            var logits = outputs["logits"];
            Assert.Equal([batch, count, c.VocabSize], logits.Shape);
            Assert.All(logits.Data, v => Assert.True(double.IsFinite(v)));
            max = Math.Max(max, MaxDiff(logits.Data, reference, start, (b, s) => mask[b, s] == 1));
            past = Enumerable.Range(0, c.NumLayers).Select(i =>
            {
                var present = outputs[Gpt2Graph.PresentName(i)];
                Assert.Equal([2, batch, c.NumHeads, start + count, c.HeadDim], present.Shape);
                return OrtValue.CreateTensorValueFromMemory(Array.ConvertAll(present.Data, v => (float)v), present.Shape);
            }).ToList();
            start += count;
        }
        foreach (var p in past) p.Dispose();
        TestContext.Current.TestOutputHelper?.WriteLine($"prefill {prefill} of {seq}: max |Δlogit| = {max:E2}");
        return max;
    }

    [Fact]
    public void Inference_without_cache_matches_the_reference()
    {
        var c = TinyConfig();
        var w = NoisyWeights(c, 1);
        var ids = Ids(2, 9, c.VocabSize, 2);
        var mask = Fill(2, 9, (_, _) => 1);
        Assert.True(CachedRunDiff(c, w, ids, mask, prefill: 9) < 1e-4);
    }

    [Fact]
    public void Inference_with_prefill_and_decode_steps_matches_the_reference()
    {
        var c = TinyConfig();
        var w = NoisyWeights(c, 3);
        var ids = Ids(3, 10, c.VocabSize, 4);
        var mask = Fill(3, 10, (_, _) => 1);
        var diff = CachedRunDiff(c, w, ids, mask, prefill: 5);
        Assert.True(diff < 1e-4, $"max |Δlogit| = {diff}");
    }

    [Fact]
    public void Inference_with_left_padding_matches_the_reference_and_stays_finite()
    {
        var c = TinyConfig();
        var w = NoisyWeights(c, 5);
        var ids = Ids(3, 10, c.VocabSize, 6);
        int[] pads = [3, 0, 6];
        var mask = Fill(3, 10, (b, s) => s < pads[b] ? 0 : 1);
        var diff = CachedRunDiff(c, w, ids, mask, prefill: 7);
        Assert.True(diff < 1e-4, $"max |Δlogit| = {diff}");
    }

    [Fact]
    public void Exact_gelu_matches_the_reference()
    {
        var c = TinyConfig("gelu");
        var w = NoisyWeights(c, 7);
        var ids = Ids(2, 6, c.VocabSize, 8);
        var mask = Fill(2, 6, (_, _) => 1);
        var diff = CachedRunDiff(c, w, ids, mask, prefill: 4);
        Assert.True(diff < 1e-4, $"max |Δlogit| = {diff}");
        // The reference's erf against literal values (A&S table 7.1).
        Assert.Equal(0.5204998778, Gpt2Reference.Erf(0.5), 9);
        Assert.Equal(-0.9953222650, Gpt2Reference.Erf(-2.0), 9);
    }

    static Dictionary<string, OrtValue> TrainingInputs(ModelConfig c, WeightSet w, long[,] ids, long[,] mask, long[,] positions, DataType type)
    {
        var inputs = new Dictionary<string, OrtValue>
        {
            ["input_ids"] = Tensor(ids), ["attention_mask"] = Tensor(mask), ["position_ids"] = Tensor(positions),
        };
        foreach (var (name, t) in w)
            inputs[name] = type == DataType.Double
                ? OrtValue.CreateTensorValueFromMemory(Array.ConvertAll(t.Data, v => (double)v), t.Shape)
                : OrtValue.CreateTensorValueFromMemory(t.Data, t.Shape);
        return inputs;
    }

    [Fact]
    public void Training_flavour_equals_inference_flavour()
    {
        var c = TinyConfig();
        var w = NoisyWeights(c, 9);
        var ids = Ids(2, 8, c.VocabSize, 10);
        var mask = Fill(2, 8, (b, s) => b == 1 && s < 2 ? 0 : 1);
        var positions = PositionsFromMask(mask);

        var training = Gpt2Graph.Training(c, DataType.Float);
        Assert.DoesNotContain(training.Graph.Initializer, t => WeightNames.Shapes(c).ContainsKey(t.Name));
        Assert.All(WeightNames.Shapes(c).Keys, name => Assert.Contains(training.Graph.Input, i => i.Name == name));
        Assert.DoesNotContain(training.Graph.Node, n => n.Domain != "");

        using var trainSession = Session(training);
        var trainInputs = TrainingInputs(c, w, ids, mask, positions, DataType.Float);
        var trainLogits = Run(trainSession, trainInputs)["logits"].Data;
        foreach (var v in trainInputs.Values) v.Dispose();

        using var inferSession = Session(Gpt2Graph.Inference(c, w));
        var inferInputs = new Dictionary<string, OrtValue>
        {
            ["input_ids"] = Tensor(ids), ["attention_mask"] = Tensor(mask), ["position_ids"] = Tensor(positions),
        };
        for (var i = 0; i < c.NumLayers; i++) inferInputs[Gpt2Graph.PastName(i)] = EmptyPast(c, 2);
        var inferLogits = Run(inferSession, inferInputs)["logits"].Data;
        foreach (var v in inferInputs.Values) v.Dispose();

        Assert.Equal(inferLogits.Length, trainLogits.Length);
        for (var i = 0; i < inferLogits.Length; i++) Assert.True(Math.Abs(inferLogits[i] - trainLogits[i]) < 1e-5);
    }

    [Fact]
    public void Training_flavour_in_double_runs_and_matches_the_reference()
    {
        var c = TinyConfig();
        var w = NoisyWeights(c, 11);
        var ids = Ids(2, 7, c.VocabSize, 12);
        var mask = Fill(2, 7, (b, s) => b == 0 && s < 3 ? 0 : 1);
        var positions = PositionsFromMask(mask);
        var reference = Gpt2Reference.Forward(c, w, ids, mask, positions);

        var training = Gpt2Graph.Training(c, DataType.Double);
        Assert.Equal((int)DataType.Double, training.Graph.Output.Single(o => o.Name == "logits").Type.TensorType.ElemType);
        using var session = Session(training);
        var inputs = TrainingInputs(c, w, ids, mask, positions, DataType.Double);
        var logits = Run(session, inputs)["logits"].Data;
        foreach (var v in inputs.Values) v.Dispose();
        // Both sides compute in float64 from the same float32 weights: agreement to float64 rounding
        // (measured 2.4e-15; the float32 graphs differ from the reference by ~1e-6).
        var diff = MaxDiff(logits, reference, 0, (b, s) => mask[b, s] == 1);
        TestContext.Current.TestOutputHelper?.WriteLine($"float64 training graph: max |Δlogit| = {diff:E2}");
        Assert.True(diff < 1e-10, $"max |Δlogit| = {diff}");
    }

    [Fact]
    public void Exact_gelu_builds_in_double_with_the_erf_operator()
    {
        // ONNX Runtime's CPU build has no float64 Erf kernel, so this graph builds but cannot run there;
        // exact GELU is checked by its float32 graph against the float64 reference instead.
        var model = Gpt2Graph.Training(TinyConfig("gelu"), DataType.Double);
        Assert.Contains(model.Graph.Node, n => n.OpType == "Erf");
    }

    [Fact]
    public void GenAI_decoder_section_names_the_combined_cache()
    {
        var c = TinyConfig();
        var section = Gpt2Graph.GenAIDecoderSection(c);
        Assert.Equal("past_%d", (string?)section["inputs"]!["past_names"]);
        Assert.Equal("present_%d", (string?)section["outputs"]!["present_names"]);
        Assert.Equal(c.HeadDim, (int)section["head_size"]!);
        Assert.Equal(c.NumLayers, (int)section["num_hidden_layers"]!);
    }
}
