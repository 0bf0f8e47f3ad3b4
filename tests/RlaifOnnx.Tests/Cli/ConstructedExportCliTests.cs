using Microsoft.ML.OnnxRuntime;
using RlaifOnnx.Models;
using RlaifOnnx.Reporting;
using RlaifOnnx.Tests.Models.Import;

namespace RlaifOnnx.Tests.Cli;

/// <summary>
/// The two export shapes no public fixture covers — optimum's merged standard-op decoder and the GenAI
/// builder's int4 export with packed projections and rotary inside GroupQueryAttention — written from known
/// weights, through the command line: `model import` (with its notes), `model inspect` sizes, greedy text
/// equal to the original export's own, and one `train-lm` step.
/// </summary>
public sealed class ConstructedExportCliTests
{
    static readonly int[] Prompt = [5, 17, 42, 99, 260];
    const int NewTokens = 12;

    /// <summary>Greedy continuation by running the whole sequence through the original graph at each step (empty cache).</summary>
    static int[] OrtGreedy(string onnxPath, ModelConfig c)
    {
        using var session = new InferenceSession(onnxPath);
        var ids = Prompt.Select(i => (long)i).ToList();
        for (var step = 0; step < NewTokens; step++)
        {
            var n = ids.Count;
            var values = new List<OrtValue>();
            var names = new List<string>();
            foreach (var name in session.InputMetadata.Keys)
            {
                names.Add(name);
                values.Add(name switch
                {
                    "input_ids" => OrtValue.CreateTensorValueFromMemory(ids.ToArray(), [1, n]),
                    "attention_mask" => OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, n).ToArray(), [1, n]),
                    "position_ids" => OrtValue.CreateTensorValueFromMemory(Enumerable.Range(0, n).Select(i => (long)i).ToArray(), [1, n]),
                    "use_cache_branch" => OrtValue.CreateTensorValueFromMemory(new[] { false }, [1]),
                    _ => OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [1, c.NumKvHeads, 0, c.HeadDim]),
                });
            }
            using var options = new RunOptions();
            using var outputs = session.Run(options, names, values, ["logits"]);
            foreach (var v in values) v.Dispose();
            var last = outputs[0].GetTensorDataAsSpan<float>().Slice((n - 1) * c.VocabSize, c.VocabSize);
            var best = 0;
            for (var v = 1; v < last.Length; v++) if (last[v] > last[best]) best = v;
            ids.Add(best);
        }
        return ids.Select(i => (int)i).ToArray();
    }

    [Theory]
    [InlineData("optimum-merged")]
    [InlineData("genai-int4-packed")]
    public void Imports_inspects_generates_like_the_original_and_trains(string shape)
    {
        using var tmp = new TempDir();
        var c = TinyLlama.Config("gqa-untied", vocab: 300) with { HiddenSize = 64, MaxPositions = 64 };
        var w = TinyLlama.Weights(c, seed: 9);
        var source = shape == "optimum-merged"
            ? StandardLlamaImportTests.WriteExport(tmp, "export", c, w, merged: true)
            : GenAIPackedImportTests.WriteExport(tmp, c, w, int4: true);
        TinyTokenizer.Train(c.VocabSize).Write(source);

        var outDir = tmp.File("imported");
        var imported = CliProcess.Run("model", "import", "--from", source, "--out", outDir);
        Assert.True(imported.ExitCode == 0, imported.Stderr);
        Assert.Contains(shape == "optimum-merged" ? "note: merged decoder: read the cache branch" : "note: source weights: float, int4 MatMulNBits (block 16, dequantised)", imported.Stdout);
        var inspect = CliProcess.Run("model", "inspect", outDir);
        Assert.True(inspect.ExitCode == 0, inspect.Stderr);
        TestContext.Current.TestOutputHelper?.WriteLine(imported.Stdout + inspect.Stdout);
        Assert.Matches(@"(?m)^layers\s+2\b", inspect.Stdout);
        Assert.Matches(@"(?m)^hidden size\s+64\b", inspect.Stdout);
        Assert.Matches(@"(?m)^vocab size\s+300\b", inspect.Stdout);

        var original = shape == "optimum-merged"
            ? OrtGreedy(Path.Combine(source, "decoder_model_merged.onnx"), c)
            : GenAI.Greedy(source, Prompt, Prompt.Length + NewTokens);
        var ours = GenAI.Greedy(outDir, Prompt, Prompt.Length + NewTokens);
        TestContext.Current.TestOutputHelper?.WriteLine($"greedy original: {string.Join(" ", original)}\ngreedy imported: {string.Join(" ", ours)}");
        Assert.Equal(original, ours);
        Assert.Equal(Prompt.Length + NewTokens, ours.Length);

        var data = tmp.File("data.jsonl");
        File.WriteAllText(data, "{\"text\": \"the quick brown fox\"}\n{\"text\": \"jumps over the lazy dog\"}\n");
        var run = tmp.File("run");
        var train = CliProcess.Run("train-lm", "--model", outDir, "--data", data, "--out", run, "--steps", "1", "--batch-size", "2",
            "--micro-batch-size", "2", "--max-length", "16", "--save-every", "1");
        Assert.True(train.ExitCode == 0, train.Stderr);
        var metrics = MetricsLog.Read(Path.Combine(run, "metrics.jsonl"));
        Assert.True(double.IsFinite(Assert.Single(metrics).Values["loss"]));
    }
}
