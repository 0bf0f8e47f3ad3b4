using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Data;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Tests;

/// <summary>ONNX Runtime GenAI runs the GPT-2 inference graph unchanged, and its greedy tokens are the reference's.</summary>
public sealed class Gpt2GenAITests
{
    /// <summary>model.onnx (+ data) and a genai_config.json around <see cref="Gpt2Graph.GenAIDecoderSection"/>.</summary>
    internal static void WriteGenAIFolder(string dir, ModelConfig c, WeightSet w)
    {
        OnnxFile.Save(Gpt2Graph.Inference(c, w), Path.Combine(dir, ModelFolder.ModelFile), ModelFolder.DataFile);
        var genai = new JsonObject
        {
            ["model"] = new JsonObject
            {
                ["type"] = "gpt2", ["vocab_size"] = c.VocabSize, ["context_length"] = c.MaxPositions,
                ["bos_token_id"] = c.BosTokenId, ["eos_token_id"] = c.EosTokenId, ["pad_token_id"] = c.PadTokenId,
                ["decoder"] = Gpt2Graph.GenAIDecoderSection(c),
            },
            ["search"] = new JsonObject { ["max_length"] = c.MaxPositions, ["do_sample"] = false },
        };
        AtomicFile.WriteAllText(Path.Combine(dir, ModelFolder.GenAIConfigFile), genai.ToJsonString());
    }

    /// <summary>Greedy continuation of <paramref name="prompt"/> by GenAI, up to <paramref name="maxLength"/> tokens in all.</summary>
    internal static int[] GenAIGreedy(string dir, int[] prompt, int maxLength)
    {
        using var model = new Model(dir);
        using var parameters = new GeneratorParams(model);
        parameters.SetSearchOption("max_length", maxLength);
        parameters.SetSearchOption("do_sample", false);
        using var generator = new Generator(model, parameters);
        generator.AppendTokens(prompt);
        while (!generator.IsDone()) generator.GenerateNextToken();
        return generator.GetSequence(0).ToArray();
    }

    /// <summary>Greedy continuation by the float64 reference forward (full recompute each step).</summary>
    static int[] ReferenceGreedy(ModelConfig c, WeightSet w, int[] prompt, int maxLength)
    {
        var tokens = prompt.ToList();
        while (tokens.Count < maxLength)
        {
            var n = tokens.Count;
            var ids = new long[1, n];
            var mask = new long[1, n];
            var pos = new long[1, n];
            for (var s = 0; s < n; s++) { ids[0, s] = tokens[s]; mask[0, s] = 1; pos[0, s] = s; }
            var logits = Gpt2Reference.Forward(c, w, ids, mask, pos);
            var best = 0;
            for (var v = 1; v < c.VocabSize; v++) if (logits[0, n - 1, v] > logits[0, n - 1, best]) best = v;
            tokens.Add(best);
            if (best == c.EosTokenId) break;
        }
        return tokens.ToArray();
    }

    [Fact]
    public void GenAI_greedy_generation_equals_the_reference()
    {
        // EOS outside the vocabulary's reach is not allowed, so pick one and let both sides stop on it.
        var c = Gpt2GraphTests.TinyConfig() with { EosTokenId = 60, BosTokenId = 60, PadTokenId = 60 };
        var w = Gpt2GraphTests.NoisyWeights(c, 21);
        using var dir = new TempDir();
        WriteGenAIFolder(dir.Path, c, w);
        int[] prompt = [5, 17, 33, 2];
        var genai = GenAIGreedy(dir.Path, prompt, 12);
        var reference = ReferenceGreedy(c, w, prompt, 12);
        Assert.Equal(reference, genai);
        Assert.True(genai.Length > prompt.Length + 2, $"generated only {genai.Length - prompt.Length} tokens");
    }
}
