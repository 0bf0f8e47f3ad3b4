using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;

namespace RlaifOnnx.Tests.Models;

/// <summary>
/// Parity of the Llama graphs, run by ONNX Runtime, with the float64 loop reference
/// (<see cref="LlamaReference"/>): without cache, with prefill + decode steps through the cache, with a
/// left-padded batch; and the training flavour against the inference flavour.
/// </summary>
public class LlamaGraphTests
{
    const double Tolerance = 1e-4;
    static readonly long[][] Tokens = [[5, 17, 42, 3, 88, 61, 7, 29], [11, 2, 96, 40, 40, 13, 70, 1]];

    static long[][] Ones(int batch, int length) => Enumerable.Range(0, batch).Select(_ => Enumerable.Repeat(1L, length).ToArray()).ToArray();
    static long[][] Take(long[][] rows, int start, int count) => rows.Select(r => r[start..(start + count)]).ToArray();

    [Theory]
    [InlineData("mha-tied")]
    [InlineData("gqa-untied")]
    [InlineData("qwen2-bias")]
    public void Full_sequence_without_cache_matches_reference(string variant)
    {
        var config = TinyLlama.Config(variant);
        var weights = TinyLlama.Weights(config);
        var mask = Ones(2, 8);
        var positions = TinyLlama.PositionsFromMask(mask);
        using var runner = new OrtTestRunner(DecoderGraphs.Inference(config, weights));

        var outputs = runner.Run(TinyLlama.InferenceInputs(config, Tokens, mask, positions));
        var expected = LlamaReference.Forward(config, weights, Tokens, mask, positions);

        Assert.Equal([2L, 8, config.VocabSize], outputs["logits"].Shape);
        Assert.Equal([2L, config.NumKvHeads, 8, config.HeadDim], outputs["present.1.key"].Shape);
        for (var b = 0; b < 2; b++)
            for (var s = 0; s < 8; s++)
                Assert.True(TinyLlama.MaxAbsDiff(expected[b][s], TinyLlama.Row(outputs["logits"], b, s)) < Tolerance, $"b={b} s={s}");
        // The logits are far from uniform, so agreement is not an accident of tiny values.
        Assert.True(expected[0][7].Max() - expected[0][7].Min() > 0.5);
    }

    [Theory]
    [InlineData("mha-tied")]
    [InlineData("gqa-untied")]
    [InlineData("qwen2-bias")]
    public void Prefill_then_decode_steps_through_the_cache_match_reference(string variant)
    {
        var config = TinyLlama.Config(variant);
        var weights = TinyLlama.Weights(config);
        var fullMask = Ones(2, 8);
        var fullPositions = TinyLlama.PositionsFromMask(fullMask);
        var expected = LlamaReference.Forward(config, weights, Tokens, fullMask, fullPositions);
        using var runner = new OrtTestRunner(DecoderGraphs.Inference(config, weights));

        // Prefill 5 tokens, then feed tokens 5, 6, 7 one at a time with present → past.
        var outputs = runner.Run(TinyLlama.InferenceInputs(config, Take(Tokens, 0, 5), Take(fullMask, 0, 5), Take(fullPositions, 0, 5)));
        for (var b = 0; b < 2; b++)
            Assert.True(TinyLlama.MaxAbsDiff(expected[b][4], TinyLlama.Row(outputs["logits"], b, 4)) < Tolerance);
        for (var step = 5; step < 8; step++)
        {
            outputs = runner.Run(TinyLlama.InferenceInputs(config, Take(Tokens, step, 1), Take(fullMask, 0, step + 1), Take(fullPositions, step, 1), outputs));
            Assert.Equal([2L, config.NumKvHeads, step + 1, config.HeadDim], outputs["present.0.value"].Shape);
            for (var b = 0; b < 2; b++)
                Assert.True(TinyLlama.MaxAbsDiff(expected[b][step], TinyLlama.Row(outputs["logits"], b, 0)) < Tolerance, $"step {step} b={b}");
        }
    }

    [Theory]
    [InlineData("mha-tied")]
    [InlineData("gqa-untied")]
    [InlineData("qwen2-bias")]
    public void Left_padded_batch_matches_each_sequence_alone(string variant)
    {
        var config = TinyLlama.Config(variant);
        var weights = TinyLlama.Weights(config);
        // Row 0: 8 real tokens. Row 1: 3 padding positions then 5 real tokens.
        long[][] ids = [Tokens[0], [0, 0, 0, .. Tokens[1][..5]]];
        long[][] mask = [[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1]];
        var positions = TinyLlama.PositionsFromMask(mask);
        using var runner = new OrtTestRunner(DecoderGraphs.Inference(config, weights));

        // Prefill 6, then 2 decode steps.
        var prefill = runner.Run(TinyLlama.InferenceInputs(config, Take(ids, 0, 6), Take(mask, 0, 6), Take(positions, 0, 6)));
        Assert.All(prefill["logits"].Floats!, v => Assert.True(float.IsFinite(v), "padding rows must not produce NaN"));
        var step6 = runner.Run(TinyLlama.InferenceInputs(config, Take(ids, 6, 1), Take(mask, 0, 7), Take(positions, 6, 1), prefill));
        var step7 = runner.Run(TinyLlama.InferenceInputs(config, Take(ids, 7, 1), Take(mask, 0, 8), Take(positions, 7, 1), step6));

        // Each row against the reference of that row alone, unpadded: padding must change nothing.
        var alone0 = LlamaReference.Forward(config, weights, [ids[0]], [mask[0]], [positions[0]])[0];
        var alone1 = LlamaReference.Forward(config, weights, [ids[1][3..]], [mask[1][3..]], [positions[1][3..]])[0];
        for (var s = 0; s < 6; s++)
        {
            Assert.True(TinyLlama.MaxAbsDiff(alone0[s], TinyLlama.Row(prefill["logits"], 0, s)) < Tolerance);
            if (s >= 3) Assert.True(TinyLlama.MaxAbsDiff(alone1[s - 3], TinyLlama.Row(prefill["logits"], 1, s)) < Tolerance, $"s={s}");
        }
        Assert.True(TinyLlama.MaxAbsDiff(alone0[6], TinyLlama.Row(step6["logits"], 0, 0)) < Tolerance);
        Assert.True(TinyLlama.MaxAbsDiff(alone1[3], TinyLlama.Row(step6["logits"], 1, 0)) < Tolerance);
        Assert.True(TinyLlama.MaxAbsDiff(alone0[7], TinyLlama.Row(step7["logits"], 0, 0)) < Tolerance);
        Assert.True(TinyLlama.MaxAbsDiff(alone1[4], TinyLlama.Row(step7["logits"], 1, 0)) < Tolerance);
        // The padded batch through the reference agrees too (the mask, not the slicing, does the work).
        var padded = LlamaReference.Forward(config, weights, ids, mask, positions);
        Assert.True(TinyLlama.MaxAbsDiff(padded[1][7], alone1[4]) < 1e-12);
    }

    [Theory]
    [InlineData("mha-tied")]
    [InlineData("gqa-untied")]
    [InlineData("qwen2-bias")]
    public void Training_flavour_in_float_equals_inference_flavour(string variant)
    {
        var config = TinyLlama.Config(variant);
        var weights = TinyLlama.Weights(config);
        long[][] mask = [[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1]];
        var positions = TinyLlama.PositionsFromMask(mask);
        using var inference = new OrtTestRunner(DecoderGraphs.Inference(config, weights));
        using var training = new OrtTestRunner(DecoderGraphs.Training(config, DataType.Float));

        var expected = inference.Run(TinyLlama.InferenceInputs(config, Tokens, mask, positions))["logits"];
        var inputs = TrainingInputs(Tokens, mask, positions);
        foreach (var (name, w) in weights) inputs[name] = TestTensor.Of(w.Data, w.Shape);
        var actual = training.Run(inputs)["logits"];

        Assert.Equal(expected.Shape, actual.Shape);
        Assert.Single(training.Run(inputs)); // logits is the only output
        for (var i = 0; i < expected.Floats!.Length; i++) Assert.True(Math.Abs(expected.Floats[i] - actual.Floats![i]) < 1e-5, $"i={i}");
    }

    [Theory]
    [InlineData("gqa-untied")]
    [InlineData("qwen2-bias")]
    public void Training_flavour_in_double_runs_and_matches_reference(string variant)
    {
        var config = TinyLlama.Config(variant);
        var weights = TinyLlama.Weights(config);
        long[][] mask = [[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1]];
        var positions = TinyLlama.PositionsFromMask(mask);
        var model = DecoderGraphs.Training(config, DataType.Double);
        Assert.Equal(WeightNames.Shapes(config).Keys.Order(), model.Graph.Input.Select(i => i.Name).Where(n => n.Contains("weight") || n.Contains("bias")).Order());
        using var training = new OrtTestRunner(model);

        var inputs = TrainingInputs(Tokens, mask, positions);
        foreach (var (name, w) in weights) inputs[name] = TestTensor.Of(Array.ConvertAll(w.Data, v => (double)v), w.Shape);
        var logits = training.Run(inputs)["logits"];
        var expected = LlamaReference.Forward(config, weights, Tokens, mask, positions);

        Assert.NotNull(logits.Doubles);
        Assert.All(logits.Doubles!, v => Assert.True(double.IsFinite(v)));
        for (var b = 0; b < 2; b++)
            for (var s = 0; s < 8; s++)
                if (mask[b][s] == 1)
                    Assert.True(TinyLlama.MaxAbsDiff(expected[b][s], TinyLlama.Row(logits, b, s)) < 1e-10, $"b={b} s={s} diff={TinyLlama.MaxAbsDiff(expected[b][s], TinyLlama.Row(logits, b, s))}");
    }

    [Fact]
    public void Far_positions_keep_their_precision()
    {
        // Rotary angles reach ~1e3 radians here; they are computed in float64 inside the float32 graph.
        var config = TinyLlama.Config("gqa-untied") with { MaxPositions = 4096 };
        var weights = TinyLlama.Weights(config);
        var mask = Ones(2, 8);
        // Gaps make the positions matter: with consecutive ones, rotary attention only sees differences.
        long[][] positions = [[1000, 1003, 1010, 1500, 2000, 2001, 2002, 3000], [7, 300, 301, 302, 900, 1700, 2500, 4000]];
        using var runner = new OrtTestRunner(DecoderGraphs.Inference(config, weights));

        var logits = runner.Run(TinyLlama.InferenceInputs(config, Tokens, mask, positions))["logits"];
        var expected = LlamaReference.Forward(config, weights, Tokens, mask, positions);
        var consecutive = LlamaReference.Forward(config, weights, Tokens, mask, TinyLlama.PositionsFromMask(mask));

        for (var b = 0; b < 2; b++)
            for (var s = 0; s < 8; s++)
                Assert.True(TinyLlama.MaxAbsDiff(expected[b][s], TinyLlama.Row(logits, b, s)) < Tolerance, $"b={b} s={s}");
        Assert.True(TinyLlama.MaxAbsDiff(expected[0][7], consecutive[0][7]) > 1e-3, "the position ids change the logits");
    }

    [Fact]
    public void Training_and_standard_inference_graphs_use_standard_operators_only()
    {
        // The default inference graph uses ONNX Runtime's fused CPU operators (LlamaInferenceGraphTests).
        var config = TinyLlama.Config("qwen2-bias");
        foreach (var model in new[] { LlamaGraph.Inference(config, TinyLlama.Weights(config), fusedOperators: false), DecoderGraphs.Training(config, DataType.Double) })
        {
            Assert.All(model.Graph.Node, n => Assert.Equal("", n.Domain));
            Assert.Equal(18, Assert.Single(model.OpsetImport).Version);
        }
        // The training graph's operators, as documented in onnx-graphs/llama.md for the gradient rules;
        // every one has a float64 kernel in ONNX Runtime CPU (the Double test above runs them all).
        // (Gemm: the tied LM head of this config, transB over the embedding. SimplifiedLayerNormalization: ONNX
        // Runtime's RMSNorm kernel, registered in the ONNX domain, with its own gradient rule.)
        string[] documented = ["Add", "And", "Cast", "Concat", "Cos", "Expand", "Gather", "Gemm", "LessOrEqual", "MatMul", "Mul", "Not", "Range",
            "Reshape", "Shape", "Sigmoid", "SimplifiedLayerNormalization", "Sin", "Softmax", "Squeeze", "Sub", "Transpose", "Unsqueeze"];
        var used = DecoderGraphs.Training(config, DataType.Double).Graph.Node.Select(n => n.OpType).Distinct().Order().ToArray();
        Assert.Equal(documented, used);
    }

    [Fact]
    public void Inference_initializers_carry_canonical_names()
    {
        var config = TinyLlama.Config("gqa-untied");
        var model = DecoderGraphs.Inference(config, TinyLlama.Weights(config));
        var names = model.Graph.Initializer.Select(t => t.Name).ToHashSet();
        Assert.All(WeightNames.Shapes(config).Keys, n => Assert.Contains(n, names));
    }

    [Fact]
    public void Dispatcher_routes_each_architecture_to_its_builder()
    {
        var llama = TinyLlama.Config("mha-tied");
        var gpt2 = llama with { Architecture = Architecture.Gpt2, ModelType = "gpt2", HiddenAct = "gelu_new", IntermediateSize = 128 };
        Assert.Contains(DecoderGraphs.Training(llama, DataType.Float).Graph.Input, i => i.Name == "model.embed_tokens.weight");
        Assert.Contains(DecoderGraphs.Training(gpt2, DataType.Float).Graph.Input, i => i.Name == "transformer.wte.weight");
        Assert.Equal("past_key_values.%d.key", (string?)DecoderGraphs.GenAIConfig(llama)["model"]!["decoder"]!["inputs"]!["past_key_names"]);
        Assert.Equal("gpt2", (string?)DecoderGraphs.GenAIConfig(gpt2)["model"]!["type"]);
    }

    static Dictionary<string, TestTensor> TrainingInputs(long[][] ids, long[][] mask, long[][] positions)
    {
        long batch = ids.Length, seq = ids[0].Length;
        return new Dictionary<string, TestTensor>
        {
            ["input_ids"] = TestTensor.Of(ids.SelectMany(r => r).ToArray(), batch, seq),
            ["attention_mask"] = TestTensor.Of(mask.SelectMany(r => r).ToArray(), batch, seq),
            ["position_ids"] = TestTensor.Of(positions.SelectMany(r => r).ToArray(), batch, seq),
        };
    }
}
