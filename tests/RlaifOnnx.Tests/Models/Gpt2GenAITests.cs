using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Tests.Models;

/// <summary>ONNX Runtime GenAI runs the GPT-2 inference graph unchanged, and its greedy tokens are the reference's.</summary>
public sealed class Gpt2GenAITests
{
    /// <summary>
    /// model.onnx (+ data) and genai_config.json as ModelWriter writes them, without tokenizer files:
    /// these tests feed token ids, and the project's tokenizer needs a larger vocabulary than they use.
    /// </summary>
    internal static void WriteGenAIFolder(string dir, ModelConfig c, WeightSet w)
    {
        OnnxFile.Save(DecoderGraphs.Inference(c, w), Path.Combine(dir, ModelFolder.ModelFile), ModelFolder.DataFile);
        AtomicFile.WriteAllText(Path.Combine(dir, ModelFolder.GenAIConfigFile), DecoderGraphs.GenAIConfig(c).ToJsonString());
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
        var genai = GenAI.Greedy(dir.Path, prompt, 12);
        var reference = ReferenceGreedy(c, w, prompt, 12);
        Assert.Equal(reference, genai);
        Assert.True(genai.Length > prompt.Length + 2, $"generated only {genai.Length - prompt.Length} tokens");
    }

    [Fact]
    public void GenAI_padded_batch_generates_what_each_prompt_generates_alone()
    {
        var c = Gpt2GraphTests.TinyConfig() with
        {
            VocabSize = 300, BosTokenId = TinyTokenizer.EndOfTextId, EosTokenId = TinyTokenizer.ImEndId, PadTokenId = TinyTokenizer.EndOfTextId,
        };
        var w = Gpt2GraphTests.NoisyWeights(c, 41);
        using var tmp = new TempDir();
        var dir = tmp.File("gpt2");
        ModelWriter.Write(dir, c, w, TinyTokenizer.Train(c.VocabSize), "base", []);

        const int newTokens = 6;
        using var config = new Config(dir);
        using var model = new Model(config);
        using var tokenizer = new Tokenizer(model);
        string[] texts = ["Be helpful, honest and harmless.", "Hi?"];
        var encoded = texts.Select(t => { using var s = tokenizer.Encode(t); return s[0].ToArray(); }).ToArray();
        Assert.True(encoded[1].Length < encoded[0].Length);
        using var parameters = new GeneratorParams(model);
        parameters.SetSearchOption("max_length", encoded[0].Length + newTokens);
        parameters.SetSearchOption("do_sample", false);
        parameters.SetSearchOption("batch_size", texts.Length);
        using var generator = new Generator(model, parameters);
        using var sequences = tokenizer.EncodeBatch(texts);
        generator.AppendTokenSequences(sequences);
        while (!generator.IsDone()) generator.GenerateNextToken();
        var batch = Enumerable.Range(0, texts.Length).Select(i => generator.GetSequence((ulong)i).ToArray()).ToArray();

        // The padding GenAI inserts is masked out: each row is what its prompt generates alone.
        Assert.Equal(GenAI.Greedy(dir, encoded[0], encoded[0].Length + newTokens), batch[0]);
        Assert.Contains(c.PadTokenId, batch[1]);
        var aloneShort = GenAI.Greedy(dir, encoded[1], encoded[1].Length + newTokens);
        Assert.Equal(aloneShort, batch[1].Where(t => t != c.PadTokenId).ToArray());
        Assert.True(aloneShort.Length > encoded[1].Length + 2, "the short prompt generates several tokens");
    }
}
