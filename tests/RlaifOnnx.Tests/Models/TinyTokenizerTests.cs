using System.Text.Json.Nodes;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;

namespace RlaifOnnx.Tests.Models;

/// <summary>The project's own tokenizer: its byte alphabet, its training and the files it writes (GenAI loading is in ModelWriterTests).</summary>
public class TinyTokenizerTests
{
    [Fact]
    public void Byte_alphabet_is_GPT2s()
    {
        var map = TinyTokenizer.ByteToUnicode();
        Assert.Equal(256, map.Distinct().Count());
        Assert.Equal("Ġ", map[' ']);   // U+0120
        Assert.Equal("Ċ", map['\n']);  // U+010A
        Assert.Equal("A", map['A']);
        Assert.Equal("\u0100", map[0]);
    }

    [Fact]
    public void Training_is_deterministic_and_learns_the_corpus_words_first()
    {
        var a = TinyTokenizer.Train(320);
        var b = TinyTokenizer.Train(320);
        Assert.Equal(a.Tokens, b.Tokens);
        Assert.Equal(320 - TinyTokenizer.MinVocabSize, a.Merges.Count);
        // "Ġt" + "he" style merges: the most frequent pairs of the English corpus come first.
        Assert.Contains("Ġthe", a.Tokens);
        Assert.Equal([TinyTokenizer.EndOfText, TinyTokenizer.ImStart, TinyTokenizer.ImEnd], a.Tokens.Take(3));
        // Every merge's parts and result are in the vocabulary, in rank order.
        var ids = a.Tokens.Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i);
        for (var m = 0; m < a.Merges.Count; m++)
        {
            var (left, right) = a.Merges[m];
            Assert.True(ids[left] < ids[left + right] && ids[right] < ids[left + right]);
            Assert.Equal(TinyTokenizer.MinVocabSize + m, ids[left + right]);
        }
    }

    [Fact]
    public void Files_carry_the_special_tokens_and_chat_template()
    {
        using var temp = new TempDir();
        TinyTokenizer.Train(300).Write(temp.Path);
        var json = JsonNode.Parse(File.ReadAllText(temp.File(ModelFolder.TokenizerFile)))!;
        Assert.Equal("BPE", (string?)json["model"]!["type"]);
        Assert.Equal(300, json["model"]!["vocab"]!.AsObject().Count);
        Assert.Equal(300 - TinyTokenizer.MinVocabSize, json["model"]!["merges"]!.AsArray().Count);
        Assert.Equal("ByteLevel", (string?)json["pre_tokenizer"]!["type"]);
        Assert.Equal(3, json["added_tokens"]!.AsArray().Count);

        var config = JsonNode.Parse(File.ReadAllText(temp.File(ModelFolder.TokenizerConfigFile)))!;
        Assert.Equal(TinyTokenizer.ImEnd, (string?)config["eos_token"]);
        Assert.Equal(TinyTokenizer.ChatTemplate, (string?)config["chat_template"]);
        Assert.False((bool)config["add_bos_token"]!);
    }
}
