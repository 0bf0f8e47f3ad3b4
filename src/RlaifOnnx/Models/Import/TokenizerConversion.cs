using System.Text.Json;
using System.Text.Json.Nodes;
using RlaifOnnx.Core;

namespace RlaifOnnx.Models.Import;

/// <summary>
/// Tokenizer folders without tokenizer.json. GPT-2-style checkpoints often ship only the byte-level BPE
/// files vocab.json + merges.txt; those become the tokenizer.json the Hugging Face tokenizers library
/// itself writes for GPT2TokenizerFast (ByteLevel pre-tokenizer and decoder, BPE model, the added tokens
/// of tokenizer_config.json), which ONNX Runtime GenAI loads. A SentencePiece BPE tokenizer.model becomes
/// the tokenizer.json of <see cref="SentencePieceConversion"/>.
/// </summary>
public static class TokenizerConversion
{
    /// <summary>
    /// A folder holding tokenizer.json and tokenizer_config.json for <paramref name="dir"/>: the folder itself
    /// when it has them, otherwise a new folder beside the system temp path with tokenizer.json converted.
    /// </summary>
    public static string Prepare(string dir, Action<string>? note = null)
    {
        if (File.Exists(Path.Combine(dir, ModelFolder.TokenizerFile))) return dir;
        string vocab = Path.Combine(dir, "vocab.json"), merges = Path.Combine(dir, "merges.txt");
        if (File.Exists(vocab) && File.Exists(merges))
        {
            var staging = Directory.CreateTempSubdirectory("rlaif-tokenizer-").FullName;
            foreach (var name in new[] { "vocab.json", "merges.txt", ModelFolder.TokenizerConfigFile, "special_tokens_map.json" })
                if (File.Exists(Path.Combine(dir, name))) File.WriteAllBytes(Path.Combine(staging, name), File.ReadAllBytes(Path.Combine(dir, name)));
            var config = ReadObject(Path.Combine(dir, ModelFolder.TokenizerConfigFile));
            var json = FromByteLevelBpe(vocab, merges, config);
            File.WriteAllText(Path.Combine(staging, ModelFolder.TokenizerFile), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            if (config is null)
                File.WriteAllText(Path.Combine(staging, ModelFolder.TokenizerConfigFile), new JsonObject
                {
                    ["tokenizer_class"] = "GPT2Tokenizer", ["add_prefix_space"] = false,
                }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            note?.Invoke("tokenizer.json written from vocab.json + merges.txt (byte-level BPE)");
            return staging;
        }
        var spPath = Path.Combine(dir, "tokenizer.model");
        if (File.Exists(spPath))
        {
            var (json, generatedConfig) = SentencePieceConversion.Convert(SentencePieceConversion.Read(spPath), spPath);
            var staging = Directory.CreateTempSubdirectory("rlaif-tokenizer-").FullName;
            foreach (var name in new[] { "tokenizer.model", ModelFolder.TokenizerConfigFile, "special_tokens_map.json" })
                if (File.Exists(Path.Combine(dir, name))) File.WriteAllBytes(Path.Combine(staging, name), File.ReadAllBytes(Path.Combine(dir, name)));
            var options = new JsonSerializerOptions { WriteIndented = true };
            File.WriteAllText(Path.Combine(staging, ModelFolder.TokenizerFile), json.ToJsonString(options));
            if (!File.Exists(Path.Combine(dir, ModelFolder.TokenizerConfigFile)))
                File.WriteAllText(Path.Combine(staging, ModelFolder.TokenizerConfigFile), generatedConfig.ToJsonString(options));
            note?.Invoke("tokenizer.json written from the SentencePiece tokenizer.model (BPE with byte fallback)");
            return staging;
        }
        throw UserError.At(Path.Combine(dir, ModelFolder.TokenizerFile), null, null, "tokenizer file is missing (a checkpoint folder needs tokenizer.json and tokenizer_config.json, or vocab.json and merges.txt, or a SentencePiece tokenizer.model to build tokenizer.json from)");
    }

    /// <summary>Removes a folder <see cref="Prepare"/> staged a converted tokenizer in, once its files are copied; the source folder it may also return is left alone.</summary>
    public static void Release(string preparedDir)
    {
        var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(preparedDir));
        if (name.StartsWith("rlaif-tokenizer-", StringComparison.Ordinal) && Path.GetDirectoryName(Path.GetFullPath(preparedDir)) == Path.TrimEndingDirectorySeparator(Path.GetTempPath()))
            try { Directory.Delete(preparedDir, recursive: true); } catch (IOException) { }
    }

    /// <summary>The tokenizer.json of a byte-level BPE tokenizer (GPT-2, RoBERTa-style vocab.json + merges.txt).</summary>
    public static JsonObject FromByteLevelBpe(string vocabPath, string mergesPath, JsonObject? tokenizerConfig)
    {
        var vocab = ReadObject(vocabPath) ?? throw UserError.At(vocabPath, null, null, "is missing");
        foreach (var (token, id) in vocab)
            if (id is not JsonValue v || !v.TryGetValue<int>(out _)) throw UserError.At(vocabPath, null, token, "must map to an integer id");
        var merges = new JsonArray();
        var lineNumber = 0;
        foreach (var line in File.ReadLines(mergesPath))
        {
            lineNumber++;
            if (line.StartsWith("#version", StringComparison.Ordinal) || line.Length == 0) continue;
            var parts = line.Split(' ');
            if (parts.Length != 2) throw UserError.At(mergesPath, lineNumber, null, "a merge is two tokens separated by one space");
            merges.Add(line);
        }

        // Added tokens: tokenizer_config.json's added_tokens_decoder, else GPT-2's <|endoftext|> when the vocabulary has it.
        var added = new JsonArray();
        if (tokenizerConfig?["added_tokens_decoder"] is JsonObject decoder)
            foreach (var (id, spec) in decoder.OrderBy(p => int.Parse(p.Key, System.Globalization.CultureInfo.InvariantCulture)))
                added.Add(new JsonObject
                {
                    ["id"] = int.Parse(id, System.Globalization.CultureInfo.InvariantCulture), ["content"] = spec?["content"]?.GetValue<string>(),
                    ["single_word"] = Flag(spec, "single_word"), ["lstrip"] = Flag(spec, "lstrip"), ["rstrip"] = Flag(spec, "rstrip"),
                    ["normalized"] = Flag(spec, "normalized", true), ["special"] = Flag(spec, "special", true),
                });
        else if (vocab["<|endoftext|>"] is JsonValue eos)
            added.Add(new JsonObject
            {
                ["id"] = eos.GetValue<int>(), ["content"] = "<|endoftext|>", ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = true, ["special"] = true,
            });

        var prefixSpace = tokenizerConfig?["add_prefix_space"] is JsonValue p && p.GetValue<bool>();
        JsonObject ByteLevel(bool addPrefixSpace, bool trimOffsets) => new()
        {
            ["type"] = "ByteLevel", ["add_prefix_space"] = addPrefixSpace, ["trim_offsets"] = trimOffsets, ["use_regex"] = true,
        };
        return new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null, ["added_tokens"] = added, ["normalizer"] = null,
            ["pre_tokenizer"] = ByteLevel(prefixSpace, true),
            ["post_processor"] = ByteLevel(true, false),
            ["decoder"] = ByteLevel(true, true),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["vocab"] = vocab.DeepClone(), ["merges"] = merges,
            },
        };
    }

    static bool Flag(JsonNode? spec, string key, bool fallback = false) => spec?[key] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : fallback;

    static JsonObject? ReadObject(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw UserError.At(path, null, null, "is not a JSON object");
        }
        catch (JsonException e)
        {
            throw UserError.At(path, (int?)e.LineNumber + 1, null, $"malformed JSON ({e.Message.Split('.')[0]})");
        }
    }
}
