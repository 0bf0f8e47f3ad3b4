using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using RlaifOnnx.Core;

namespace RlaifOnnx.Models;

/// <summary>
/// A small byte-level BPE tokenizer the project makes itself, so tests and demos need nothing from
/// outside: GPT-2's byte-to-unicode alphabet and pre-tokenizer regex, merges learned on
/// <see cref="Corpus"/> up to the requested vocabulary size, and the ChatML special tokens. Written
/// as Hugging Face's tokenizer.json + tokenizer_config.json, which both transformers and ONNX Runtime
/// GenAI's tokenizer read.
///
/// Ids: 0 &lt;|endoftext|&gt;, 1 &lt;|im_start|&gt;, 2 &lt;|im_end|&gt;, then the 256 byte tokens, then one
/// token per merge; if the corpus runs out of pairs first, letter strings no merge produces ("Ġaa", "aa", …)
/// fill the rest as ordinary vocabulary, so the tokenizer covers every id the model can emit and only the three
/// specials are added tokens, as in real Llama/Mistral tokenizers.
/// </summary>
public sealed class TinyTokenizer
{
    public const string EndOfText = "<|endoftext|>";
    public const string ImStart = "<|im_start|>";
    public const string ImEnd = "<|im_end|>";
    public const int EndOfTextId = 0;
    public const int ImStartId = 1;
    public const int ImEndId = 2;
    static readonly string[] Specials = [EndOfText, ImStart, ImEnd];

    /// <summary>256 byte tokens after the three specials.</summary>
    public const int MinVocabSize = 3 + 256;

    /// <summary>ChatML, as Qwen2 and SmolLM2-Instruct use it; add_generation_prompt opens the assistant turn.</summary>
    public const string ChatTemplate =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /// <summary>GPT-2's pre-tokenizer: contractions, letters, digits, other symbols, each with at most one leading space.</summary>
    static readonly Regex PreTokenizer = new(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.Compiled);

    /// <summary>Token strings by id, in byte-level form (space is "Ġ").</summary>
    public IReadOnlyList<string> Tokens { get; }
    /// <summary>Merges in rank order.</summary>
    public IReadOnlyList<(string Left, string Right)> Merges { get; }
    /// <summary>Ids of tokens that are added (special) tokens rather than BPE vocabulary.</summary>
    public IReadOnlyList<int> SpecialIds { get; }
    public int VocabSize => Tokens.Count;

    TinyTokenizer(List<string> tokens, List<(string, string)> merges, List<int> specialIds)
    {
        Tokens = tokens; Merges = merges; SpecialIds = specialIds;
    }

    /// <summary>Learns merges on <paramref name="corpus"/> (default: the embedded text) until there are <paramref name="vocabSize"/> tokens.</summary>
    public static TinyTokenizer Train(int vocabSize, string? corpus = null)
    {
        if (vocabSize < MinVocabSize)
            throw UserError.At("tokenizer", null, "vocab_size", $"a byte-level tokenizer needs at least {MinVocabSize} tokens (3 special + 256 bytes), got {vocabSize}");
        var byteToChar = ByteToUnicode();
        var tokens = new List<string>(Specials);
        tokens.AddRange(byteToChar);
        var specialIds = new List<int> { EndOfTextId, ImStartId, ImEndId };

        // Each distinct pre-token is a list of symbols with a count; merging rewrites the lists.
        var words = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (Match m in PreTokenizer.Matches(corpus ?? Corpus))
        {
            var mapped = string.Concat(Encoding.UTF8.GetBytes(m.Value).Select(b => byteToChar[b]));
            words[mapped] = words.GetValueOrDefault(mapped) + 1;
        }
        var symbols = words.Select(w => (Symbols: w.Key.Select(ch => ch.ToString()).ToList(), Count: w.Value)).ToList();

        var merges = new List<(string, string)>();
        while (tokens.Count < vocabSize)
        {
            // Most frequent adjacent pair; ties go to the ordinally smallest pair so training is deterministic.
            var pairCounts = new Dictionary<(string, string), int>();
            foreach (var (syms, count) in symbols)
                for (var i = 0; i + 1 < syms.Count; i++)
                    pairCounts[(syms[i], syms[i + 1])] = pairCounts.GetValueOrDefault((syms[i], syms[i + 1])) + count;
            if (pairCounts.Count == 0) break;
            var best = pairCounts.MaxBy(kv => kv.Value).Value;
            var pair = pairCounts.Where(kv => kv.Value == best).Select(kv => kv.Key)
                .OrderBy(p => p.Item1, StringComparer.Ordinal).ThenBy(p => p.Item2, StringComparer.Ordinal).First();
            var merged = pair.Item1 + pair.Item2;
            merges.Add(pair);
            tokens.Add(merged);
            foreach (var (syms, _) in symbols)
                for (var i = 0; i + 1 < syms.Count; i++)
                    if (syms[i] == pair.Item1 && syms[i + 1] == pair.Item2)
                    {
                        syms[i] = merged;
                        syms.RemoveAt(i + 1);
                    }
        }
        // The rest of the vocabulary: ordinary BPE entries that no merge produces, as real vocabularies have some, rather
        // than added tokens (a tokenizer matches added tokens in the text before BPE, and GenAI's spent ~57 MiB on
        // 31,000 of them). Encoding never emits them; the model may, and they decode to their letters.
        if (tokens.Count < vocabSize)
        {
            var known = new HashSet<string>(tokens, StringComparer.Ordinal);
            foreach (var filler in Fillers())
            {
                if (tokens.Count == vocabSize) break;
                if (known.Add(filler)) tokens.Add(filler);
            }
        }
        return new TinyTokenizer(tokens, merges, specialIds);
    }

    /// <summary>Lower-case letter strings of 2, 3, … letters, each with a leading space ("Ġ") and without: "Ġaa", "aa", "Ġab", ….</summary>
    static IEnumerable<string> Fillers()
    {
        for (var length = 2; ; length++)
        {
            var letters = new char[length];
            Array.Fill(letters, 'a');
            while (true)
            {
                var word = new string(letters);
                yield return "Ġ" + word;
                yield return word;
                var i = length - 1;
                while (i >= 0 && letters[i] == 'z') letters[i--] = 'a';
                if (i < 0) break;
                letters[i]++;
            }
        }
    }

    /// <summary>Writes tokenizer.json and tokenizer_config.json into <paramref name="dir"/> (each atomically).</summary>
    public void Write(string dir)
    {
        Directory.CreateDirectory(dir);
        AtomicFile.WriteAllText(Path.Combine(dir, ModelFolder.TokenizerFile), TokenizerJson().ToJsonString(JsonOut));
        AtomicFile.WriteAllText(Path.Combine(dir, ModelFolder.TokenizerConfigFile), TokenizerConfigJson().ToJsonString(JsonOut));
    }

    static readonly JsonSerializerOptions JsonOut = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Hugging Face tokenizers' tokenizer.json: added tokens, ByteLevel pre-tokenizer and decoder, BPE model.</summary>
    public JsonObject TokenizerJson()
    {
        var added = new JsonArray();
        foreach (var id in SpecialIds)
            added.Add(new JsonObject
            {
                ["id"] = id, ["content"] = Tokens[id], ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            });
        var vocab = new JsonObject();
        for (var id = 0; id < Tokens.Count; id++) vocab[Tokens[id]] = id;
        var merges = new JsonArray();
        foreach (var (left, right) in Merges) merges.Add($"{left} {right}");
        JsonObject ByteLevel(bool addPrefixSpace, bool trimOffsets) => new()
        {
            ["type"] = "ByteLevel", ["add_prefix_space"] = addPrefixSpace, ["trim_offsets"] = trimOffsets, ["use_regex"] = true,
        };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = ByteLevel(false, true),
            ["post_processor"] = ByteLevel(false, false),
            ["decoder"] = ByteLevel(false, true),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = merges,
            },
        };
    }

    /// <summary>transformers' tokenizer_config.json: special tokens, ChatML chat template, no BOS added on encode.</summary>
    public JsonObject TokenizerConfigJson()
    {
        var decoderEntries = new JsonObject();
        foreach (var id in SpecialIds)
            decoderEntries[id.ToString()] = new JsonObject
            {
                ["content"] = Tokens[id], ["lstrip"] = false, ["normalized"] = false, ["rstrip"] = false,
                ["single_word"] = false, ["special"] = true,
            };
        return new JsonObject
        {
            ["add_bos_token"] = false,
            ["add_eos_token"] = false,
            ["add_prefix_space"] = false,
            ["added_tokens_decoder"] = decoderEntries,
            ["additional_special_tokens"] = new JsonArray(ImStart, ImEnd),
            ["bos_token"] = EndOfText,
            ["eos_token"] = ImEnd,
            ["pad_token"] = EndOfText,
            ["unk_token"] = null,
            ["chat_template"] = ChatTemplate,
            ["clean_up_tokenization_spaces"] = false,
            ["model_max_length"] = 1_000_000,
            ["tokenizer_class"] = "GPT2Tokenizer",
        };
    }

    /// <summary>
    /// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes map to
    /// themselves, the rest to U+0100 onwards (so space, 0x20, becomes "Ġ", U+0120).
    /// </summary>
    public static string[] ByteToUnicode()
    {
        var map = new string[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            var printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = ((char)(printable ? b : next++)).ToString();
        }
        return map;
    }

    /// <summary>The text merges are learned on: plain English about helpful, honest and harmless assistance.</summary>
    public const string Corpus = """
        The assistant is helpful, honest and harmless. When a person asks a question, the assistant
        reads it carefully, thinks about what the person really needs, and answers in clear and simple
        words. If the question is unclear, it asks what the person means before it answers. If it does
        not know the answer, it says so instead of making something up.

        A good answer is short when a short answer will do, and longer when the person needs steps or
        reasons. The assistant explains how it reached a conclusion, so that the person can check the
        reasoning for themselves. It gives examples, it names its sources when it has them, and it
        corrects its own mistakes as soon as it notices them.

        Some requests could cause harm to the person who asks or to other people. The assistant does
        not help anyone hurt themselves or others, break the law, or deceive people. It explains why it
        will not help with such a request, without lecturing, and where it can it points to a safer way
        to meet the need behind the request. It treats every person with respect and kindness.

        Here is a small example of a conversation. Human: How do I make a cup of tea? Assistant: Boil
        some fresh water, pour it over a tea bag in a cup, wait three to five minutes, then take the bag
        out. Add milk or sugar if you like. Human: Thank you! Assistant: You are welcome. Enjoy your tea.

        Numbers and symbols appear in text as well: 1, 2, 3, 10, 42, 100, 2024; prices like $5.99;
        times like 10:30; lists like (a), (b) and (c); questions? answers! "quotes" and 'apostrophes'.
        The preference model compares two responses and says which one is more helpful and less
        harmful. The policy learns from those comparisons, one small step at a time, while staying close
        to the model it started from. Training continues until the responses are both helpful and safe.
        """;
}
