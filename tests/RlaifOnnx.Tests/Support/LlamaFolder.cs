using RlaifOnnx.Models;


namespace RlaifOnnx.Tests;

/// <summary>A tiny Llama-style model folder written by <see cref="ModelWriter"/> with the project's ChatML tokenizer.</summary>
public sealed class LlamaFolder : IDisposable
{
    readonly TempDir temp = new();
    public string Dir { get; }
    public ModelConfig Config { get; }
    public WeightSet Weights { get; }

    public LlamaFolder(string variant = "gqa-untied", int seed = 3, string name = "tiny-llama")
    {
        Config = TinyLlama.Config(variant, vocab: 300);
        Weights = TinyLlama.Weights(Config, seed);
        Dir = temp.File(name);
        ModelWriter.Write(Dir, Config, Weights, TinyTokenizer.Train(Config.VocabSize), "base", []);
    }

    /// <summary>Log-probabilities of every token after the first, from the float64 reference forward (batch 1, no padding).</summary>
    public double[] ReferenceTokenLogProbs(int[] ids)
    {
        long[] row = ids.Select(i => (long)i).ToArray();
        var logits = LlamaReference.Forward(Config, Weights, [row], [row.Select(_ => 1L).ToArray()], [Enumerable.Range(0, ids.Length).Select(i => (long)i).ToArray()])[0];
        var result = new double[ids.Length];
        result[0] = double.NaN;
        for (var t = 1; t < ids.Length; t++)
        {
            var max = logits[t - 1].Max();
            var lse = max + Math.Log(logits[t - 1].Sum(x => Math.Exp(x - max)));
            result[t] = logits[t - 1][ids[t]] - lse;
        }
        return result;
    }

    public void Dispose() => temp.Dispose();
}
