using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Core;
using RlaifOnnx.Models;

namespace RlaifOnnx.Tests.Models;

/// <summary>
/// Model folders written by <see cref="ModelWriter"/> and `rlaif model create` load in ONNX Runtime
/// GenAI and generate what the float64 reference predicts; the project's tokenizer round-trips
/// through GenAI's tokenizer; bad input writes nothing.
/// </summary>
public class ModelWriterTests
{
    [Theory]
    [InlineData("mha-tied")]
    [InlineData("gqa-untied")]
    [InlineData("qwen2-bias")]
    public void GenAI_greedy_generation_follows_the_reference_argmax(string variant)
    {
        using var temp = new TempDir();
        var config = TinyLlama.Config(variant, vocab: 300);
        var weights = TinyLlama.Weights(config, seed: 3);
        var dir = temp.File("model");
        ModelWriter.Write(dir, config, weights, TinyTokenizer.Train(config.VocabSize), "base", [new LineageEntry("test", null, DateTimeOffset.UtcNow)]);

        int[] prompt = [5, 17, 42, 3, 88];
        var generated = GenAI.Greedy(dir, prompt, maxLength: prompt.Length + 6);

        // Step by step: each generated token is the argmax of the reference logits after the tokens before it.
        Assert.True(generated.Length > prompt.Length);
        Assert.Equal(prompt, generated[..prompt.Length]);
        for (var t = prompt.Length; t < generated.Length; t++)
        {
            long[] context = generated[..t].Select(v => (long)v).ToArray();
            var logits = LlamaReference.Forward(config, weights, [context], [context.Select(_ => 1L).ToArray()],
                [Enumerable.Range(0, t).Select(v => (long)v).ToArray()])[0];
            Assert.Equal(TinyLlama.ArgMax(logits[t - 1]), generated[t]);
        }
        if (generated.Length < prompt.Length + 6) Assert.Equal(config.EosTokenId, generated[^1]);
    }

    [Fact]
    public void GenAI_padded_batch_generates_what_each_prompt_generates_alone()
    {
        using var temp = new TempDir();
        var config = TinyLlama.Config("gqa-untied", vocab: 300);
        var weights = TinyLlama.Weights(config, seed: 4);
        var dir = temp.File("model");
        ModelWriter.Write(dir, config, weights, TinyTokenizer.Train(config.VocabSize), "base", []);

        string longText = "The assistant is helpful and honest.", shortText = "Tea?";
        const int newTokens = 6;
        var batch = GenAIGreedyTexts(dir, [longText, shortText], newTokens, out var encoded);
        var aloneLong = GenAI.Greedy(dir, encoded[0], maxLength: encoded[0].Length + newTokens);
        var aloneShort = GenAI.Greedy(dir, encoded[1], maxLength: encoded[1].Length + newTokens);
        Assert.True(encoded[1].Length < encoded[0].Length);

        Assert.Equal(aloneLong, batch[0]);
        // GenAI pads the shorter prompt with pad_token_id (after it, in 0.18) and masks the padding out;
        // without the padding the row is exactly what the prompt generates alone.
        Assert.Contains(config.PadTokenId, batch[1]);
        Assert.Equal(aloneShort, batch[1].Where(t => t != config.PadTokenId).ToArray());
        Assert.True(aloneShort.Length > encoded[1].Length + 2, "the short prompt generates several tokens");
    }

    [Fact]
    public void Folder_holds_every_file_and_reads_back()
    {
        using var temp = new TempDir();
        var config = TinyLlama.Config("qwen2-bias", vocab: 300);
        var weights = TinyLlama.Weights(config);
        var dir = temp.File("model");
        ModelWriter.Write(dir, config, weights, TinyTokenizer.Train(300), "sl-cai", [new LineageEntry("sft", "base", DateTimeOffset.UnixEpoch)]);

        foreach (var f in new[] { ModelFolder.ModelFile, ModelFolder.DataFile, ModelFolder.GenAIConfigFile, ModelFolder.MetadataFile, ModelFolder.TokenizerFile, ModelFolder.TokenizerConfigFile })
            Assert.True(File.Exists(Path.Combine(dir, f)), f);
        Assert.DoesNotContain(Directory.GetFileSystemEntries(temp.Path), p => Path.GetFileName(p).StartsWith('.'));
        var meta = ModelFolder.ReadMetadata(dir);
        Assert.Equal(config, meta.Config);
        Assert.Equal("sl-cai", meta.Role);
        Assert.Equal("sft", Assert.Single(meta.Lineage).Step);
        var back = ModelFolder.ReadWeights(dir);
        foreach (var (name, w) in weights) Assert.Equal(w.Data, back[name].Data);

        var genai = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, ModelFolder.GenAIConfigFile)))!["model"]!;
        Assert.Equal("qwen2", (string?)genai["type"]);
        Assert.Equal(config.NumKvHeads, (int)genai["decoder"]!["num_key_value_heads"]!);
        Assert.Equal("past_key_values.%d.key", (string?)genai["decoder"]!["inputs"]!["past_key_names"]);
    }

    [Fact]
    public void Rewriting_a_model_folder_replaces_it_and_a_foreign_folder_is_refused()
    {
        using var temp = new TempDir();
        var config = TinyLlama.Config("mha-tied", vocab: 300);
        var dir = temp.File("model");
        var tok = TinyTokenizer.Train(300);
        ModelWriter.Write(dir, config, TinyLlama.Weights(config, 1), tok, "base", []);
        var second = TinyLlama.Weights(config, 2);
        ModelWriter.Write(dir, config, second, tok, "policy", []);
        Assert.Equal("policy", ModelFolder.ReadMetadata(dir).Role);
        Assert.Equal(second["model.norm.weight"].Data, ModelFolder.ReadWeights(dir)["model.norm.weight"].Data);

        var foreign = temp.File("notes");
        Directory.CreateDirectory(foreign);
        File.WriteAllText(Path.Combine(foreign, "keep.txt"), "mine");
        var e = Assert.Throws<UserError>(() => ModelWriter.Write(foreign, config, second, tok, "base", []));
        Assert.Contains("not a model folder", e.Message);
        Assert.Equal(["keep.txt"], Directory.GetFiles(foreign).Select(Path.GetFileName));
    }

    [Fact]
    public void Bad_weights_write_nothing()
    {
        using var temp = new TempDir();
        var config = TinyLlama.Config("mha-tied", vocab: 300);
        var weights = TinyLlama.Weights(config);
        weights.Remove("model.norm.weight");
        var e = Assert.Throws<UserError>(() => ModelWriter.Write(temp.File("model"), config, weights, TinyTokenizer.Train(300), "base", []));
        Assert.Contains("model.norm.weight", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(temp.Path));
    }

    [Fact]
    public void Tokenizer_folder_source_is_copied_and_missing_files_are_an_error()
    {
        using var temp = new TempDir();
        var tokenizerDir = temp.File("tok");
        TinyTokenizer.Train(300).Write(tokenizerDir);
        File.WriteAllText(Path.Combine(tokenizerDir, "special_tokens_map.json"), "{}");
        var config = TinyLlama.Config("mha-tied", vocab: 300);
        var weights = TinyLlama.Weights(config);
        ModelWriter.Write(temp.File("model"), config, weights, tokenizerDir, "base", []);
        Assert.Equal(File.ReadAllText(Path.Combine(tokenizerDir, "tokenizer.json")), File.ReadAllText(temp.File("model/tokenizer.json")));
        Assert.True(File.Exists(temp.File("model/special_tokens_map.json")));

        File.Delete(Path.Combine(tokenizerDir, ModelFolder.TokenizerConfigFile));
        var e = Assert.Throws<UserError>(() => ModelWriter.Write(temp.File("model2"), config, weights, tokenizerDir, "base", []));
        Assert.Contains("tokenizer_config.json", e.Message);
        Assert.False(Directory.Exists(temp.File("model2")));
        Assert.DoesNotContain(Directory.GetFileSystemEntries(temp.Path), p => Path.GetFileName(p).StartsWith('.'));
    }

    [Fact]
    public void Model_create_cli_writes_a_folder_GenAI_runs()
    {
        using var temp = new TempDir();
        var dir = temp.File("m");
        var (code, _, stderr) = CliProcess.Run("model", "create", "--arch", "llama", "--out", dir, "--vocab-size", "300", "--hidden-size", "32",
            "--heads", "4", "--kv-heads", "2", "--layers", "2", "--seed", "7", "--model-type", "qwen2", "--tie-embeddings");
        Assert.True(code == 0, stderr);
        var meta = ModelFolder.ReadMetadata(dir);
        Assert.Equal("qwen2", meta.Config.ModelType);
        Assert.True(meta.Config.AttentionBias && meta.Config.TieEmbeddings);
        Assert.Equal(2, meta.Config.NumKvHeads);

        var generated = GenAI.Greedy(dir, [5, 6, 7], maxLength: 10);
        Assert.True(generated.Length > 3);
        Assert.All(generated, t => Assert.InRange(t, 0, 299));
    }

    [Fact]
    public void Model_create_cli_writes_a_gpt2_folder_GenAI_runs_as_the_reference_predicts()
    {
        using var temp = new TempDir();
        var dir = temp.File("g");
        var (code, stdout, stderr) = CliProcess.Run("model", "create", "--arch", "gpt2", "--out", dir, "--vocab-size", "300", "--hidden-size", "32",
            "--heads", "4", "--layers", "2", "--max-positions", "64", "--seed", "5");
        Assert.True(code == 0, stderr);
        Assert.Contains("gpt2", stdout);
        var meta = ModelFolder.ReadMetadata(dir);
        Assert.Equal(Architecture.Gpt2, meta.Config.Architecture);
        Assert.Equal("gpt2", meta.Config.ModelType);
        Assert.True(meta.Config.TieEmbeddings);
        Assert.Equal(128, meta.Config.IntermediateSize);
        var weights = ModelFolder.ReadWeights(dir);

        int[] prompt = [40, 41, 42, 43];
        var generated = GenAI.Greedy(dir, prompt, maxLength: 10);
        Assert.True(generated.Length > prompt.Length);
        for (var t = prompt.Length; t < generated.Length; t++)
        {
            var ids = new long[1, t]; var mask = new long[1, t]; var positions = new long[1, t];
            for (var i = 0; i < t; i++) { ids[0, i] = generated[i]; mask[0, i] = 1; positions[0, i] = i; }
            var logits = Gpt2Reference.Forward(meta.Config, weights, ids, mask, positions);
            var row = Enumerable.Range(0, meta.Config.VocabSize).Select(v => logits[0, t - 1, v]).ToArray();
            Assert.Equal(TinyLlama.ArgMax(row), generated[t]);
        }
    }

    [Theory]
    [InlineData("--heads", "5", "not divisible by 5 heads")]
    [InlineData("--kv-heads", "3", "not divisible by 3 key/value heads")]
    [InlineData("--vocab-size", "100", "at least 259")]
    [InlineData("--model-type", "phi", "unknown model type 'phi'")]
    [InlineData("--arch", "gpt3", "unknown architecture 'gpt3'; supported: llama, gpt2")]
    public void Model_create_cli_bad_input_is_one_line_exit_2_and_nothing_written(string option, string value, string expected)
    {
        using var temp = new TempDir();
        var dir = temp.File("m");
        var args = new List<string> { "model", "create", "--out", dir, "--hidden-size", "32" };
        if (option != "--arch") args.AddRange(["--arch", "llama"]);
        args.AddRange([option, value]);
        var (code, stdout, stderr) = CliProcess.Run([.. args]);
        Assert.Equal(2, code);
        Assert.Contains(expected, stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.Equal("", stdout);
        Assert.Empty(Directory.GetFileSystemEntries(temp.Path));
    }

    [Fact]
    public void Tiny_tokenizer_round_trips_through_GenAI_tokenizer()
    {
        using var temp = new TempDir();
        var config = TinyLlama.Config("mha-tied", vocab: 400);
        var tokenizer = TinyTokenizer.Train(400);
        Assert.Equal(400, tokenizer.VocabSize);
        var dir = temp.File("model");
        ModelWriter.Write(dir, config, TinyLlama.Weights(config), tokenizer, "base", []);

        using var genaiConfig = new Config(dir);
        using var model = new Model(genaiConfig);
        using var genaiTokenizer = new Tokenizer(model);
        foreach (var text in new[] { "The assistant is helpful, honest and harmless.", "How do I make a cup of tea?\n  Twice: 10:30!",
                     "Unseen wørds — ünïcode ✓ 日本語", "<|im_start|>user\nhi<|im_end|>\n" })
        {
            using var sequences = genaiTokenizer.Encode(text);
            var ids = sequences[0].ToArray();
            Assert.All(ids, id => Assert.InRange(id, 0, 399));
            // GenAI's Decode leaves special tokens out, like skip_special_tokens=True in transformers.
            Assert.Equal(text.Replace(TinyTokenizer.ImStart, "").Replace(TinyTokenizer.ImEnd, ""), genaiTokenizer.Decode(ids));
            if (text.StartsWith("The"))
                Assert.True(ids.Length < text.Length / 2, $"merges learned on the corpus compress its text: {ids.Length} tokens");
            if (text.StartsWith("<|im_start|>"))
            {
                Assert.Equal(TinyTokenizer.ImStartId, ids[0]);
                Assert.Equal(TinyTokenizer.ImEndId, ids[^2]);
            }
        }
    }

    [Fact]
    public void Tiny_tokenizer_chat_template_renders_ChatML_in_GenAI()
    {
        using var temp = new TempDir();
        var config = TinyLlama.Config("mha-tied", vocab: 300);
        var dir = temp.File("model");
        ModelWriter.Write(dir, config, TinyLlama.Weights(config), TinyTokenizer.Train(300), "base", []);

        using var genaiConfig = new Config(dir);
        using var model = new Model(genaiConfig);
        using var tokenizer = new Tokenizer(model);
        var messages = """[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi there"}]""";
        var rendered = tokenizer.ApplyChatTemplate(null!, messages, null!, true);
        Assert.Equal("<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", rendered);
        Assert.Equal([TinyTokenizer.ImEndId], tokenizer.GetEosTokenIds().ToArray());
    }

    [Fact]
    public void Tiny_tokenizer_fills_a_large_vocabulary_with_ordinary_tokens_GenAI_decodes()
    {
        var tokenizer = TinyTokenizer.Train(5000);
        Assert.Equal(5000, tokenizer.VocabSize);
        Assert.Equal(tokenizer.Tokens.Count, tokenizer.Tokens.Distinct().Count());
        // Only the three specials are added tokens; the fillers are vocabulary no merge produces.
        Assert.Equal([TinyTokenizer.EndOfTextId, TinyTokenizer.ImStartId, TinyTokenizer.ImEndId], tokenizer.SpecialIds);
        Assert.Equal(3, tokenizer.TokenizerJson()["added_tokens"]!.AsArray().Count);
        var filler = tokenizer.Tokens.Count - 1;
        Assert.Matches("^Ġ?[a-z]+$", tokenizer.Tokens[filler]);
        Assert.Throws<UserError>(() => TinyTokenizer.Train(200));

        using var temp = new TempDir();
        var config = TinyLlama.Config("mha-tied", vocab: 5000);
        var dir = temp.File("model");
        ModelWriter.Write(dir, config, TinyLlama.Weights(config), tokenizer, "base", []);
        using var genaiConfig = new Config(dir);
        using var model = new Model(genaiConfig);
        using var genai = new Tokenizer(model);
        // Text encodes with the learned merges only (the fillers are never produced), and a filler decodes to its letters.
        var text = "<|im_start|>user\nThe assistant is helpful.<|im_end|>\n";
        using var sequences = genai.Encode(text);
        var ids = sequences[0].ToArray();
        Assert.Equal(TinyTokenizer.ImStartId, ids[0]);
        Assert.All(ids, id => Assert.InRange(id, 0, TinyTokenizer.MinVocabSize + tokenizer.Merges.Count - 1));
        Assert.Equal(tokenizer.Tokens[filler].Replace("Ġ", " "), genai.Decode([filler]));
        using var the = genai.Encode(" the");
        Assert.Equal(" the" + tokenizer.Tokens[filler].Replace("Ġ", " "), genai.Decode([.. the[0].ToArray(), filler]));
    }


    /// <summary>Greedy generation for a batch of texts encoded by GenAI's tokenizer (which pads them to one length).</summary>
    static int[][] GenAIGreedyTexts(string dir, string[] texts, int newTokens, out int[][] encoded)
    {
        using var config = new Config(dir);
        using var model = new Model(config);
        using var tokenizer = new Tokenizer(model);
        encoded = texts.Select(t => { using var s = tokenizer.Encode(t); return s[0].ToArray(); }).ToArray();
        using var genParams = new GeneratorParams(model);
        genParams.SetSearchOption("max_length", encoded.Max(e => e.Length) + newTokens);
        genParams.SetSearchOption("do_sample", false);
        genParams.SetSearchOption("batch_size", texts.Length);
        using var generator = new Generator(model, genParams);
        using var sequences = tokenizer.EncodeBatch(texts);
        generator.AppendTokenSequences(sequences);
        while (!generator.IsDone()) generator.GenerateNextToken();
        return Enumerable.Range(0, texts.Length).Select(i => generator.GetSequence((ulong)i).ToArray()).ToArray();
    }
}
