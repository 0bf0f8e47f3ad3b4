using System.Globalization;
using System.Text.Json.Nodes;
using Google.Protobuf;
using RlaifOnnx.Core;

namespace RlaifOnnx.Models.Import;

/// <summary>
/// A SentencePiece BPE tokenizer.model (Llama 2, Mistral, Phi-3, TinyLlama …) as the tokenizer.json the
/// Hugging Face converter writes for it (transformers' LlamaConverter, legacy form) and ONNX Runtime GenAI
/// loads: normalizer Prepend("▁") + Replace(" " → "▁"), no pre-tokenizer, a BPE model with byte fallback
/// whose vocabulary is the pieces by id and whose merges are every split of a piece into two pieces, ranked
/// by the merged piece's score (SentencePiece merges the highest-scoring pair first), the BOS template and
/// the ▁/byte-fallback decoder. Unigram models and normalizations other than identity (nmt_nfkc's
/// precompiled character map, removing extra whitespace) would encode differently and are refused.
/// </summary>
public static class SentencePieceConversion
{
    /// <summary>The parts of sentencepiece_model.proto's ModelProto the conversion needs.</summary>
    public sealed record SpModel(List<(string Piece, float Score, int Type)> Pieces, int ModelType, bool ByteFallback,
        string NormalizerName, bool HasCharsMap, bool AddDummyPrefix, bool RemoveExtraWhitespaces, bool EscapeWhitespaces, bool WhitespaceAsSuffix);

    // SentencePiece.Type and TrainerSpec.ModelType values (sentencepiece_model.proto).
    public const int Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6;
    public const int Unigram = 1, Bpe = 2;

    /// <summary>Reads the protobuf fields the conversion uses; other fields are skipped.</summary>
    public static SpModel Read(string path)
    {
        try
        {
            var pieces = new List<(string, float, int)>();
            int modelType = Unigram;
            bool byteFallback = false, whitespaceAsSuffix = false, hasCharsMap = false, addDummyPrefix = true, removeExtra = true, escape = true;
            var normalizer = "nmt_nfkc";
            var input = new CodedInputStream(File.ReadAllBytes(path));
            for (uint tag; (tag = input.ReadTag()) != 0;)
                switch (WireFormat.GetTagFieldNumber(tag))
                {
                    case 1:
                        var piece = new CodedInputStream(input.ReadBytes().ToByteArray());
                        string text = ""; float score = 0; int type = Normal;
                        for (uint t; (t = piece.ReadTag()) != 0;)
                            switch (WireFormat.GetTagFieldNumber(t))
                            {
                                case 1: text = piece.ReadString(); break;
                                case 2: score = piece.ReadFloat(); break;
                                case 3: type = piece.ReadEnum(); break;
                                default: piece.SkipLastField(); break;
                            }
                        pieces.Add((text, score, type));
                        break;
                    case 2:
                        var trainer = new CodedInputStream(input.ReadBytes().ToByteArray());
                        for (uint t; (t = trainer.ReadTag()) != 0;)
                            switch (WireFormat.GetTagFieldNumber(t))
                            {
                                case 3: modelType = trainer.ReadEnum(); break;
                                case 24: whitespaceAsSuffix = trainer.ReadBool(); break;
                                case 35: byteFallback = trainer.ReadBool(); break;
                                default: trainer.SkipLastField(); break;
                            }
                        break;
                    case 3:
                        var spec = new CodedInputStream(input.ReadBytes().ToByteArray());
                        for (uint t; (t = spec.ReadTag()) != 0;)
                            switch (WireFormat.GetTagFieldNumber(t))
                            {
                                case 1: normalizer = spec.ReadString(); break;
                                case 2: hasCharsMap = spec.ReadBytes().Length > 0; break;
                                case 3: addDummyPrefix = spec.ReadBool(); break;
                                case 4: removeExtra = spec.ReadBool(); break;
                                case 5: escape = spec.ReadBool(); break;
                                default: spec.SkipLastField(); break;
                            }
                        break;
                    default:
                        input.SkipLastField();
                        break;
                }
            if (pieces.Count == 0) throw UserError.At(path, null, "pieces", "a SentencePiece model with no pieces");
            return new SpModel(pieces, modelType, byteFallback, normalizer, hasCharsMap, addDummyPrefix, removeExtra, escape, whitespaceAsSuffix);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw UserError.At(path, null, null, $"not a SentencePiece model (protobuf: {e.Message})");
        }
    }

    /// <summary>tokenizer.json and tokenizer_config.json for a SentencePiece BPE model; refuses what would encode differently.</summary>
    public static (JsonObject TokenizerJson, JsonObject TokenizerConfig) Convert(SpModel sp, string path)
    {
        if (sp.ModelType != Bpe)
            throw UserError.At(path, null, "trainer_spec.model_type", $"{(sp.ModelType == Unigram ? "a Unigram" : $"a type-{sp.ModelType}")} SentencePiece model; only BPE models (Llama, Mistral, Phi-3) are converted to tokenizer.json");
        if (sp.HasCharsMap || sp.NormalizerName is not ("identity" or ""))
            throw UserError.At(path, null, "normalizer_spec", $"the '{sp.NormalizerName}' normalization (a precompiled character map) is not converted; only identity normalization is");
        if (sp.RemoveExtraWhitespaces) throw UserError.At(path, null, "normalizer_spec.remove_extra_whitespaces", "collapsing whitespace runs is not converted");
        if (!sp.EscapeWhitespaces || sp.WhitespaceAsSuffix) throw UserError.At(path, null, "normalizer_spec", "whitespace that is not escaped as a ▁ prefix is not converted");

        var vocab = new JsonObject();
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var id = 0; id < sp.Pieces.Count; id++)
        {
            var piece = sp.Pieces[id].Piece;
            if (!ids.TryAdd(piece, id)) throw UserError.At(path, null, "pieces", $"piece '{piece}' appears twice (ids {ids[piece]} and {id})");
            vocab[piece] = id;
        }
        var unk = sp.Pieces.FindIndex(p => p.Type == Unknown);
        if (unk < 0) throw UserError.At(path, null, "pieces", "no unknown piece (type UNKNOWN)");
        var bos = sp.Pieces.FindIndex(p => p.Type == Control && p.Piece == "<s>");

        // Merges: every split of a piece into two pieces, those of one piece by (left id, right id), all by the piece's score, best first.
        var merges = new List<(string Left, string Right, float Score, int Id)>();
        for (var id = 0; id < sp.Pieces.Count; id++)
        {
            var (piece, score, _) = sp.Pieces[id];
            var local = new List<(string, string, float, int)>();
            for (var cut = 1; cut < piece.Length; cut++)
            {
                if (char.IsLowSurrogate(piece[cut])) continue;
                string left = piece[..cut], right = piece[cut..];
                if (ids.ContainsKey(left) && ids.ContainsKey(right)) local.Add((left, right, score, id));
            }
            merges.AddRange(local.OrderBy(m => ids[m.Item1]).ThenBy(m => ids[m.Item2]));
        }
        var ranked = merges.Select((m, i) => (m, i)).OrderByDescending(x => x.m.Score).ThenBy(x => x.i).Select(x => x.m).ToList();

        JsonObject Added(int id) => new()
        {
            ["id"] = id, ["content"] = sp.Pieces[id].Piece, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
            ["normalized"] = sp.Pieces[id].Type == UserDefined, ["special"] = sp.Pieces[id].Type != UserDefined,
        };
        var added = new JsonArray();
        var addedConfig = new JsonObject();
        for (var id = 0; id < sp.Pieces.Count; id++)
            if (sp.Pieces[id].Type is Unknown or Control or UserDefined)
            {
                added.Add(Added(id));
                var spec = Added(id);
                spec.Remove("id");
                addedConfig[id.ToString(CultureInfo.InvariantCulture)] = spec;
            }

        JsonObject Str(string s) => new() { ["String"] = s };
        var normalizers = new JsonArray();
        if (sp.AddDummyPrefix) normalizers.Add(new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" });
        normalizers.Add(new JsonObject { ["type"] = "Replace", ["pattern"] = Str(" "), ["content"] = "▁" });
        var decoders = new JsonArray
        {
            new JsonObject { ["type"] = "Replace", ["pattern"] = Str("▁"), ["content"] = " " },
            new JsonObject { ["type"] = "ByteFallback" },
            new JsonObject { ["type"] = "Fuse" },
        };
        if (sp.AddDummyPrefix) decoders.Add(new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 });
        JsonNode? postProcessor = bos < 0 ? null : new JsonObject
        {
            ["type"] = "TemplateProcessing",
            ["single"] = new JsonArray(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 } }, new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
            ["pair"] = new JsonArray(
                new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 } }, new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } },
                new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 1 } }, new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "B", ["type_id"] = 1 } }),
            ["special_tokens"] = new JsonObject { ["<s>"] = new JsonObject { ["id"] = "<s>", ["ids"] = new JsonArray(bos), ["tokens"] = new JsonArray("<s>") } },
        };
        var tokenizer = new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null, ["added_tokens"] = added,
            ["normalizer"] = new JsonObject { ["type"] = "Sequence", ["normalizers"] = normalizers },
            ["pre_tokenizer"] = null, ["post_processor"] = postProcessor,
            ["decoder"] = new JsonObject { ["type"] = "Sequence", ["decoders"] = decoders },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = sp.Pieces[unk].Piece, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = true, ["byte_fallback"] = sp.ByteFallback, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = new JsonArray(ranked.Select(m => (JsonNode)new JsonArray(m.Left, m.Right)).ToArray()),
            },
        };
        var eos = sp.Pieces.FindIndex(p => p.Type == Control && p.Piece == "</s>");
        var config = new JsonObject
        {
            ["tokenizer_class"] = "LlamaTokenizer", ["add_bos_token"] = bos >= 0, ["add_eos_token"] = false, ["legacy"] = true,
            ["added_tokens_decoder"] = addedConfig, ["unk_token"] = sp.Pieces[unk].Piece, ["clean_up_tokenization_spaces"] = false,
        };
        if (bos >= 0) config["bos_token"] = "<s>";
        if (eos >= 0) config["eos_token"] = "</s>";
        return (tokenizer, config);
    }
}
