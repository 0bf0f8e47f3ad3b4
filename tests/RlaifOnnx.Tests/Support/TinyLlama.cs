using RlaifOnnx.Models;


namespace RlaifOnnx.Tests;

/// <summary>Tiny Llama-family configs and weights for tests, plus a driver for the inference graph's KV cache.</summary>
public static class TinyLlama
{
    /// <summary>
    /// A 2-layer model; variants: "mha-tied" (4 heads, 4 kv heads, tied embeddings), "gqa-untied"
    /// (4 heads, 2 kv heads, separate lm_head), "qwen2-bias" (4 heads, 1 kv head, q/k/v bias, tied).
    /// </summary>
    public static ModelConfig Config(string variant, int vocab = 97) => variant switch
    {
        "mha-tied" => Base(vocab) with { NumKvHeads = 4, TieEmbeddings = true },
        "gqa-untied" => Base(vocab) with { NumKvHeads = 2, TieEmbeddings = false, ModelType = "mistral" },
        "qwen2-bias" => Base(vocab) with { NumKvHeads = 1, TieEmbeddings = true, AttentionBias = true, ModelType = "qwen2", RopeTheta = 1_000_000 },
        _ => throw new ArgumentException(variant),
    };

    static ModelConfig Base(int vocab) => new()
    {
        Architecture = Architecture.Llama, ModelType = "llama", VocabSize = vocab, HiddenSize = 32, NumLayers = 2,
        NumHeads = 4, NumKvHeads = 4, IntermediateSize = 48, MaxPositions = 128, NormEps = 1e-5,
        BosTokenId = 0, EosTokenId = 2, PadTokenId = 0,
    };

    /// <summary>
    /// Random weights with every kind of tensor non-trivial: matrices normal(0, 0.1) so logits are far
    /// from uniform, norm scales 1 ± 0.1 and biases ± 0.1 (Hugging Face's init would leave them 1 and 0,
    /// hiding a graph that ignored them).
    /// </summary>
    public static WeightSet Weights(ModelConfig config, int seed = 1)
    {
        var rng = new Random(seed);
        var set = WeightSet.Random(config, seed);
        foreach (var (name, w) in set)
        {
            var isNorm = name.Contains("norm");
            for (var i = 0; i < w.Data.Length; i++)
                w.Data[i] = isNorm ? 1f + 0.1f * Noise(rng) : name.EndsWith(".bias") ? 0.1f * Noise(rng) : w.Data[i] * 5f;
        }
        return set;
    }

    static float Noise(Random rng) => (float)(rng.NextDouble() * 2 - 1);

    /// <summary>Inference-graph inputs for new tokens [B][S] after <paramref name="past"/> (or an empty cache).</summary>
    public static Dictionary<string, TestTensor> InferenceInputs(ModelConfig c, long[][] ids, long[][] mask, long[][] positions,
        IReadOnlyDictionary<string, TestTensor>? present = null)
    {
        long batch = ids.Length, seq = ids[0].Length, total = mask[0].Length;
        var inputs = new Dictionary<string, TestTensor>
        {
            ["input_ids"] = TestTensor.Of(ids.SelectMany(r => r).ToArray(), batch, seq),
            ["attention_mask"] = TestTensor.Of(mask.SelectMany(r => r).ToArray(), batch, total),
            ["position_ids"] = TestTensor.Of(positions.SelectMany(r => r).ToArray(), batch, seq),
        };
        for (var i = 0; i < c.NumLayers; i++)
        {
            inputs[LlamaGraph.PastKeyName(i)] = present?[LlamaGraph.PresentKeyName(i)] ?? TestTensor.Of(Array.Empty<float>(), batch, c.NumKvHeads, 0, c.HeadDim);
            inputs[LlamaGraph.PastValueName(i)] = present?[LlamaGraph.PresentValueName(i)] ?? TestTensor.Of(Array.Empty<float>(), batch, c.NumKvHeads, 0, c.HeadDim);
        }
        return inputs;
    }

    /// <summary>Hugging Face's position ids for a (left-)padded mask: cumsum(mask) − 1, padding positions set to 1.</summary>
    public static long[][] PositionsFromMask(long[][] mask) => mask.Select(row =>
    {
        long seen = 0;
        return row.Select(m => { seen += m; return m == 0 ? 1 : seen - 1; }).ToArray();
    }).ToArray();

    /// <summary>Logits [B, S, V] from a flat tensor, row (b, s).</summary>
    public static double[] Row(TestTensor logits, int b, int s)
    {
        long seq = logits.Shape[1], vocab = logits.Shape[2];
        var row = new double[vocab];
        for (var t = 0; t < vocab; t++) row[t] = logits[(b * seq + s) * vocab + t];
        return row;
    }

    public static double MaxAbsDiff(double[] a, double[] b)
    {
        Assert.Equal(a.Length, b.Length);
        var max = 0.0;
        for (var i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }

    public static int ArgMax(double[] row)
    {
        var best = 0;
        for (var i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }
}
