using Google.Protobuf;
using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;

namespace RlaifOnnx.Tests.Models.Import;

/// <summary>
/// A SentencePiece BPE tokenizer.model with no tokenizer.json (no such fixture exists, so the test writes a
/// small one as sentencepiece_model.proto's ModelProto: unknown and control pieces, 256 byte pieces, merged
/// pieces scored best first, single characters): the converted tokenizer.json, loaded by ONNX Runtime GenAI in
/// a model folder, encodes a mixed text to the same ids as Microsoft.ML.Tokenizers reading the .model itself.
/// </summary>
public sealed class SentencePieceConversionTests
{
    const string Mixed = "Hello, world! Café naïve résumé — 東京タワー 北京 😀👍🏽   three spaces\tand a tab\n\nnew lines  end";

    const string Corpus =
        "Hello world. The three friends walked to the end of the line and back again. Hello there, world! " +
        "A café in the new town; the café was naïve about résumé writing. Lines and lines of new text end here. " +
        "東京 and 北京 are cities. Spaces   between   words,  and\ttabs\tand new lines\nend the text. " +
        "They said hello to the world and to the three new friends at the end of the day.";

    /// <summary>
    /// Pieces as SentencePiece's BPE trainer makes them: words split at whitespace (▁ starts a word), the most
    /// frequent adjacent pair merged each round (score −round), then the single characters below every merge.
    /// </summary>
    static List<(string Piece, float Score)> TrainBpe(int merges)
    {
        // Tabs and newlines are left out of training, so they reach the model through byte fallback.
        var normalized = "▁" + Corpus.Replace('\t', ' ').Replace('\n', ' ').Replace(' ', '▁');
        var words = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 1, start = 0; i <= normalized.Length; i++)
            if (i == normalized.Length || normalized[i] == '▁')
            {
                var word = normalized[start..i];
                words[word] = words.GetValueOrDefault(word) + 1;
                start = i;
            }
        var segmented = words.Keys.ToDictionary(w => w, w => w.Select(c => c.ToString()).ToList(), StringComparer.Ordinal);
        var pieces = new List<(string, float)>();
        for (var round = 0; round < merges; round++)
        {
            var counts = new Dictionary<(string, string), int>();
            foreach (var (word, symbols) in segmented)
                for (var i = 0; i + 1 < symbols.Count; i++)
                    counts[(symbols[i], symbols[i + 1])] = counts.GetValueOrDefault((symbols[i], symbols[i + 1])) + words[word];
            if (counts.Count == 0) break;
            var best = counts.OrderByDescending(c => c.Value).ThenBy(c => c.Key.Item1 + "\u0001" + c.Key.Item2, StringComparer.Ordinal).First().Key;
            var merged = best.Item1 + best.Item2;
            if (!pieces.Any(p => p.Item1 == merged)) pieces.Add((merged, -round));
            foreach (var symbols in segmented.Values)
                for (var i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == best.Item1 && symbols[i + 1] == best.Item2) { symbols[i] = merged; symbols.RemoveAt(i + 1); }
        }
        var characters = normalized.Select(c => c.ToString()).Distinct().ToList();
        characters.RemoveAll(c => pieces.Any(p => p.Item1 == c));
        pieces.AddRange(characters.Select((c, i) => (c, (float)(-merges - i))));
        return pieces;
    }

    /// <summary>Writes a BPE ModelProto: pieces (field 1), trainer_spec (2: model_type BPE, byte_fallback), normalizer_spec (3: identity, dummy prefix, whitespace kept).</summary>
    static void WriteModel(string path, int modelType = SentencePieceConversion.Bpe, string normalizer = "identity")
    {
        var pieces = new List<(string, float, int)>
        {
            ("<unk>", 0, SentencePieceConversion.Unknown), ("<s>", 0, SentencePieceConversion.Control), ("</s>", 0, SentencePieceConversion.Control),
        };
        for (var b = 0; b < 256; b++) pieces.Add(($"<0x{b:X2}>", 0, SentencePieceConversion.Byte));
        pieces.AddRange(TrainBpe(120).Select(p => (p.Piece, p.Score, SentencePieceConversion.Normal)));

        using var file = File.Create(path);
        var output = new CodedOutputStream(file);
        foreach (var (piece, score, type) in pieces)
        {
            var bytes = new MemoryStream();
            var inner = new CodedOutputStream(bytes);
            inner.WriteTag(1, WireFormat.WireType.LengthDelimited); inner.WriteString(piece);
            inner.WriteTag(2, WireFormat.WireType.Fixed32); inner.WriteFloat(score);
            inner.WriteTag(3, WireFormat.WireType.Varint); inner.WriteEnum(type);
            inner.Flush();
            output.WriteTag(1, WireFormat.WireType.LengthDelimited); output.WriteBytes(ByteString.CopyFrom(bytes.ToArray()));
        }
        var trainer = new MemoryStream();
        var t = new CodedOutputStream(trainer);
        t.WriteTag(3, WireFormat.WireType.Varint); t.WriteEnum(modelType);
        t.WriteTag(4, WireFormat.WireType.Varint); t.WriteInt32(pieces.Count);
        t.WriteTag(35, WireFormat.WireType.Varint); t.WriteBool(true);
        t.Flush();
        output.WriteTag(2, WireFormat.WireType.LengthDelimited); output.WriteBytes(ByteString.CopyFrom(trainer.ToArray()));
        var spec = new MemoryStream();
        var n = new CodedOutputStream(spec);
        n.WriteTag(1, WireFormat.WireType.LengthDelimited); n.WriteString(normalizer);
        n.WriteTag(3, WireFormat.WireType.Varint); n.WriteBool(true);
        n.WriteTag(4, WireFormat.WireType.Varint); n.WriteBool(false);
        n.WriteTag(5, WireFormat.WireType.Varint); n.WriteBool(true);
        n.Flush();
        output.WriteTag(3, WireFormat.WireType.LengthDelimited); output.WriteBytes(ByteString.CopyFrom(spec.ToArray()));
        output.Flush();
    }

    [Fact]
    public void A_sentencepiece_model_becomes_a_tokenizer_json_that_encodes_like_the_model_itself()
    {
        using var tmp = new TempDir();
        var source = tmp.File("source");
        Directory.CreateDirectory(source);
        var spPath = Path.Combine(source, "tokenizer.model");
        WriteModel(spPath);

        var notes = new List<string>();
        var staged = TokenizerConversion.Prepare(source, notes.Add);
        Assert.Contains(notes, n => n.Contains("SentencePiece"));
        var modelDir = tmp.File("model");
        var config = TinyLlama.Config("mha-tied", vocab: 400) with { BosTokenId = 1, EosTokenId = 2, PadTokenId = 0 };
        try { ModelWriter.Write(modelDir, config, TinyLlama.Weights(config), staged, "base", []); }
        finally { TokenizerConversion.Release(staged); }
        Assert.True(File.Exists(Path.Combine(modelDir, "tokenizer.model")));

        int[] ours;
        string decoded;
        using (var model = new Model(modelDir))
        using (var tokenizer = new Tokenizer(model))
        using (var sequences = tokenizer.Encode(Mixed))
        {
            ours = sequences[0].ToArray();
            decoded = tokenizer.Decode(ours);
        }
        using var stream = File.OpenRead(spPath);
        // GenAI's Encode adds no <s> (as with the real Llama export's own tokenizer.json), so neither does the reference.
        var reference = Microsoft.ML.Tokenizers.SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false);
        var fromModel = reference.EncodeToIds(Mixed).ToArray();
        TestContext.Current.TestOutputHelper?.WriteLine($"{ours.Length} ids: {string.Join(" ", ours)}");
        TestContext.Current.TestOutputHelper?.WriteLine($"{fromModel.Length} reference ids: {string.Join(" ", fromModel)}");
        Assert.Equal(fromModel, ours);
        Assert.Contains(ours, id => id is >= 3 and < 259);          // byte fallback for タ, ワ, ー and the emoji
        Assert.Contains(ours, id => id > 259);                      // merged pieces
        // Decoding keeps the dummy prefix's space exactly as GenAI does with the real Llama export's Hugging Face tokenizer.json.
        string realDecoded;
        using (var model = new Model(SharedData.Require("real-models/ortgenai-tiny-random-LlamaForCausalLM-fp16")))
        using (var tokenizer = new Tokenizer(model))
        using (var sequences = tokenizer.Encode("Hello world"))
            realDecoded = tokenizer.Decode(sequences[0].ToArray());
        Assert.Equal(realDecoded == " Hello world" ? " " + Mixed : Mixed, decoded);
        Assert.Contains(realDecoded, new[] { "Hello world", " Hello world" });
    }

    [Fact]
    public void Sentencepiece_models_that_would_encode_differently_are_refused_with_the_reason()
    {
        using var tmp = new TempDir();
        WriteModel(tmp.File("tokenizer.model"), modelType: SentencePieceConversion.Unigram);
        Assert.Contains("Unigram", Assert.Throws<UserError>(() => TokenizerConversion.Prepare(tmp.Path)).Message);
        WriteModel(tmp.File("tokenizer.model"), normalizer: "nmt_nfkc");
        Assert.Contains("nmt_nfkc", Assert.Throws<UserError>(() => TokenizerConversion.Prepare(tmp.Path)).Message);
        File.WriteAllBytes(tmp.File("tokenizer.model"), [0x0a, 0x05, 0xff]);
        Assert.Contains("not a SentencePiece model", Assert.Throws<UserError>(() => TokenizerConversion.Prepare(tmp.Path)).Message);
    }
}
