using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;
using RlaifOnnx.Tests.Models;
using RlaifOnnx.Training;

namespace RlaifOnnx.Tests.Training.Autodiff;

/// <summary>
/// Full-model gradient checks of the canonical training graphs (2-layer tiny Llama-family and GPT-2 models,
/// float64, every canonical weight trainable) with each loss: causal-LM cross-entropy, the preference loss
/// with a scalar head, and a value regression. Row 1 of the batch is left-padded, so the attention mask
/// and position ids take their real paths.
/// </summary>
public class GradientDecoderTests
{
    const int Batch = 2, Seq = 5;
    static readonly long[] Ids = [3, 7, 1, 9, 4, 0, 0, 5, 2, 8];
    static readonly long[] AttentionMask = [1, 1, 1, 1, 1, 0, 0, 1, 1, 1];
    static readonly long[] Positions = [0, 1, 2, 3, 4, 0, 0, 0, 1, 2];
    static readonly long[] LossMask = [0, 0, 1, 1, 1, 0, 0, 0, 1, 1];

    static ModelConfig Config(string family) => family switch
    {
        "llama" => TinyLlama.Config("gqa-untied", vocab: 23),
        "qwen2" => TinyLlama.Config("qwen2-bias", vocab: 23),
        "gpt2" => Gpt2GraphTests.TinyConfig() with { VocabSize = 23 },
        _ => throw new ArgumentException(family),
    };

    static WeightSet Weights(ModelConfig c)
        => c.Architecture == Architecture.Gpt2 ? Gpt2GraphTests.NoisyWeights(c, 3) : TinyLlama.Weights(c, 3);

    /// <summary>The forward graph with a loss appended, its inputs, and the trainable names.</summary>
    sealed record Setup(GraphBuilder G, Dictionary<string, GradTensor> Inputs, List<string> Trainable)
    {
        public double Check(string loss)
        {
            G.OutputAs(loss, "loss", DataType.Double);
            return GradientCheck.CheckModel(G.ToModel(), Inputs, Trainable, tolerance: 1e-4, maxElementsPerTensor: 64);
        }

        public string Head(string name, long rows, long columns, int seed)
        {
            var rng = new Random(seed);
            Inputs[name] = new GradTensor([rows, columns], Enumerable.Range(0, (int)(rows * columns)).Select(_ => rng.NextDouble() - 0.5).ToArray());
            Trainable.Add(name);
            return G.Input(name, DataType.Double, rows, columns);
        }

        public string Data(string name, DataType type, GradTensor value, params object[] dims)
        {
            Inputs[name] = value;
            return G.Input(name, type, dims);
        }
    }

    static Setup Prepare(string family)
    {
        var c = Config(family);
        var g = Losses.Extend(DecoderGraphs.Training(c, DataType.Double));
        var inputs = new Dictionary<string, GradTensor>
        {
            ["input_ids"] = new([Batch, Seq], Longs: Ids),
            ["attention_mask"] = new([Batch, Seq], Longs: AttentionMask),
            ["position_ids"] = new([Batch, Seq], Longs: Positions),
        };
        foreach (var (name, w) in Weights(c)) inputs[name] = new GradTensor(w.Shape, w.Data.Select(f => (double)f).ToArray());
        return new Setup(g, inputs, WeightNames.Shapes(c).Keys.ToList());
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("gpt2")]
    public void CrossEntropy(string family)
    {
        var s = Prepare(family);
        var mask = s.Data("loss_mask", DataType.Int64, new GradTensor([Batch, Seq], Longs: LossMask), "batch", "sequence");
        var error = s.Check(Losses.CausalLmCrossEntropy(s.G, "logits", "input_ids", mask));
        Assert.True(error <= 1e-4);
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void PreferenceWithScalarHead(string family)
    {
        // Reward = the last position's logits through a trainable [V, 1] head; row 0 vs row 1 is the pair.
        var s = Prepare(family);
        var g = s.G;
        var vocab = Config(family).VocabSize;
        var last = g.Gather("logits", g.Int64Scalar(-1), 1);                                          // [B, V]
        var rewards = g.Squeeze(g.MatMul(last, s.Head("score_head", vocab, 1, 5)), -1);              // [B]
        var p = s.Data("p", DataType.Double, new GradTensor([1], [0.7]), 1);
        s.Check(Losses.PreferenceLoss(g, g.Gather(rewards, g.Int64s(0)), g.Gather(rewards, g.Int64s(1)), p));
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void ValueRegression(string family)
    {
        var s = Prepare(family);
        var g = s.G;
        var values = g.Squeeze(g.MatMul("logits", s.Head("value_head", Config(family).VocabSize, 1, 6)), -1);   // [B, S]
        var returns = s.Data("returns", DataType.Double, new GradTensor([Batch, Seq], Enumerable.Range(0, Batch * Seq).Select(i => Math.Sin(i)).ToArray()), Batch, Seq);
        var mask = s.Data("value_mask", DataType.Int64, new GradTensor([Batch, Seq], Longs: AttentionMask), Batch, Seq);
        s.Check(Losses.MseLoss(g, values, returns, mask));
    }
}
