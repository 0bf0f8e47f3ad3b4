using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;

namespace RlaifOnnx.Tests.Models.Import;

/// <summary>
/// A real GPT-2 checkpoint (GPT-2's own vocab.json + merges.txt) with its tokenizer.json taken away: the
/// built folder's converted tokenizer.json, loaded by ONNX Runtime GenAI, encodes a mixed text to the same
/// ids as Microsoft.ML.Tokenizers reading vocab.json + merges.txt, and as the checkpoint's original tokenizer.json.
/// </summary>
public sealed class TokenizerConversionTests
{
    static string FakeGpt2 => SharedData.Require("real-models/lmbuddy-fake_gpt2");

    const string Mixed = "Hello, world! Café naïve résumé — 東京タワー 北京 😀👍🏽   three spaces\tand a tab\n\nnew lines  end";

    static int[] GenAIIds(string modelDir, string text)
    {
        using var model = new Model(modelDir);
        using var tokenizer = new Tokenizer(model);
        using var sequences = tokenizer.Encode(text);
        return sequences[0].ToArray();
    }

    [Fact]
    public void Vocab_and_merges_become_a_tokenizer_json_that_encodes_like_the_source_files()
    {
        using var tmp = new TempDir();
        var source = tmp.File("checkpoint");
        Directory.CreateDirectory(source);
        foreach (var f in Directory.GetFiles(FakeGpt2).Where(f => Path.GetFileName(f) != ModelFolder.TokenizerFile))
            File.Copy(f, Path.Combine(source, Path.GetFileName(f)));

        var notes = new List<string>();
        var converted = tmp.File("converted");
        HfModelBuilder.Build(source, converted, notes.Add);
        Assert.Contains(notes, n => n.Contains("vocab.json + merges.txt"));
        Assert.True(File.Exists(Path.Combine(converted, ModelFolder.TokenizerFile)));
        var original = tmp.File("original");
        HfModelBuilder.Build(FakeGpt2, original);

        var ours = GenAIIds(converted, Mixed);
        // Microsoft.ML.Tokenizers' byte-level BPE over the source files, split by GPT-2's own pre-tokenizer regex.
        var gpt2Split = new System.Text.RegularExpressions.Regex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+");
        var reference = Microsoft.ML.Tokenizers.BpeTokenizer.Create(new Microsoft.ML.Tokenizers.BpeOptions(Path.Combine(FakeGpt2, "vocab.json"), Path.Combine(FakeGpt2, "merges.txt"))
        {
            ByteLevel = true, PreTokenizer = new Microsoft.ML.Tokenizers.RegexPreTokenizer(gpt2Split, null),
        });
        var fromFiles = reference.EncodeToIds(Mixed).ToArray();
        TestContext.Current.TestOutputHelper?.WriteLine($"{ours.Length} ids: {string.Join(" ", ours)}");
        Assert.Equal(fromFiles, ours);
        Assert.Equal(GenAIIds(original, Mixed), ours);
        Assert.True(ours.Length > 30);
        // The special token is one id, as in the original.
        Assert.Equal(GenAIIds(original, "a<|endoftext|>b"), GenAIIds(converted, "a<|endoftext|>b"));
    }
}
