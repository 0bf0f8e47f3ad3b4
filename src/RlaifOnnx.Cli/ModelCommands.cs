using System.CommandLine;
using RlaifOnnx.Core;
using RlaifOnnx.Models;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif model …`: make, convert and describe model folders.</summary>
public static class ModelCommands
{
    /// <summary>The `model` command with its subcommands; each subcommand has its own factory below.</summary>
    public static Command Create()
    {
        var model = new Command("model", "Create, build, import and inspect model folders.");
        model.Subcommands.Add(CreateCommand());
        model.Subcommands.Add(ModelBuildCommands.Build());
        model.Subcommands.Add(ModelBuildCommands.Inspect());
        model.Subcommands.Add(ModelImportCommand.Create());
        model.Subcommands.Add(ModelExportCommand.Create());
        return model;
    }

    /// <summary>`rlaif model create`: a random-weight model folder with the project's own tokenizer.</summary>
    static Command CreateCommand()
    {
        var arch = new Option<string>("--arch") { Description = "Architecture family: llama or gpt2.", Required = true };
        var output = new Option<string>("--out") { Description = "Model folder to write.", Required = true };
        var vocab = new Option<int>("--vocab-size") { Description = "Vocabulary size (also the tokenizer's; at least 259).", DefaultValueFactory = _ => 512 };
        var hidden = new Option<int>("--hidden-size") { Description = "Hidden width.", DefaultValueFactory = _ => 64 };
        var layers = new Option<int>("--layers") { Description = "Decoder layers.", DefaultValueFactory = _ => 2 };
        var heads = new Option<int>("--heads") { Description = "Attention heads (must divide --hidden-size).", DefaultValueFactory = _ => 4 };
        var kvHeads = new Option<int?>("--kv-heads") { Description = "Key/value heads (grouped-query attention; must divide --heads). Default: --heads." };
        var intermediate = new Option<int?>("--intermediate-size") { Description = "MLP width. Default: 8/3·hidden rounded up to a multiple of 8 (llama), 4·hidden (gpt2)." };
        var maxPositions = new Option<int>("--max-positions") { Description = "Longest sequence (prompt + generation).", DefaultValueFactory = _ => 512 };
        var seed = new Option<int>("--seed") { Description = "Seed of the random weights.", DefaultValueFactory = _ => 0 };
        var modelType = new Option<string?>("--model-type") { Description = "Hugging Face model type for llama: llama, qwen2 or mistral (qwen2 adds q/k/v bias)." };
        var tie = new Option<bool>("--tie-embeddings") { Description = "Reuse the token embedding as the output projection." };
        var tokenizerCorpus = new Option<string?>("--tokenizer-corpus") { Description = "Learn the tokenizer's merges on this text (.txt) or on every string of this JSONL file, instead of the embedded text." };
        var command = new Command("create", "Write a random-weight model folder with a small tokenizer the project makes itself.")
        {
            arch, output, vocab, hidden, layers, heads, kvHeads, intermediate, maxPositions, seed, modelType, tie, tokenizerCorpus,
        };
        command.SetAction(parse =>
        {
            var config = CreateConfig(parse.GetValue(arch)!, parse.GetValue(vocab), parse.GetValue(hidden), parse.GetValue(layers),
                parse.GetValue(heads), parse.GetValue(kvHeads), parse.GetValue(intermediate), parse.GetValue(maxPositions),
                parse.GetValue(modelType), parse.GetValue(tie));
            var outDir = parse.GetValue(output)!;
            var weights = WeightSet.Random(config, parse.GetValue(seed));
            var tokenizer = TinyTokenizer.Train(config.VocabSize, parse.GetValue(tokenizerCorpus) is { } corpusPath ? TokenizerCorpus.Read(corpusPath) : null);
            ModelWriter.Write(outDir, config, weights, tokenizer, "base",
                [new LineageEntry($"model create --arch {parse.GetValue(arch)} --seed {parse.GetValue(seed)}", null, DateTimeOffset.UtcNow)]);
            Console.WriteLine($"wrote {outDir}: {config.ModelType}, {config.NumLayers} layers, hidden {config.HiddenSize}, " +
                $"{config.NumHeads} heads ({config.NumKvHeads} kv), vocab {config.VocabSize}, {config.ParameterCount:N0} parameters");
            return 0;
        });
        return command;
    }

    /// <summary>The text a tokenizer is learned on: a text file as it is, or every string value of a JSONL file joined by newlines.</summary>
    static class TokenizerCorpus
    {
        public static string Read(string path)
        {
            if (!File.Exists(path)) throw UserError.At("model create", null, "--tokenizer-corpus", $"file '{path}' not found");
            if (!path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase)) return File.ReadAllText(path);
            var sb = new System.Text.StringBuilder();
            var line = 0;
            foreach (var text in File.ReadLines(path))
            {
                line++;
                if (text.Length == 0) continue;
                try { Collect(System.Text.Json.Nodes.JsonNode.Parse(text), sb); }
                catch (System.Text.Json.JsonException e) { throw UserError.At(path, line, null, $"not valid JSON: {e.Message}"); }
            }
            return sb.ToString();
        }

        static void Collect(System.Text.Json.Nodes.JsonNode? node, System.Text.StringBuilder sb)
        {
            switch (node)
            {
                case System.Text.Json.Nodes.JsonObject o: foreach (var (_, v) in o) Collect(v, sb); break;
                case System.Text.Json.Nodes.JsonArray a: foreach (var v in a) Collect(v, sb); break;
                case System.Text.Json.Nodes.JsonValue v when v.TryGetValue<string>(out var s): sb.Append(s).Append('\n'); break;
            }
        }
    }

    /// <summary>The config `model create` builds from its options; every bad value is a one-line UserError.</summary>
    public static ModelConfig CreateConfig(string arch, int vocab, int hidden, int layers, int heads, int? kvHeads,
        int? intermediate, int maxPositions, string? modelType, bool tie)
    {
        const string source = "model create";
        var architecture = arch.ToLowerInvariant() switch
        {
            "llama" => Architecture.Llama,
            "gpt2" => Architecture.Gpt2,
            _ => throw UserError.At(source, null, "--arch", $"unknown architecture '{arch}'; supported: llama, gpt2"),
        };
        var type = (modelType ?? (architecture == Architecture.Gpt2 ? "gpt2" : "llama")).ToLowerInvariant();
        if (architecture == Architecture.Llama && type is not ("llama" or "qwen2" or "mistral"))
            throw UserError.At(source, null, "--model-type", $"unknown model type '{modelType}'; supported for llama: llama, qwen2, mistral");
        if (architecture == Architecture.Gpt2 && type != "gpt2")
            throw UserError.At(source, null, "--model-type", $"unknown model type '{modelType}'; supported for gpt2: gpt2");
        if (vocab < TinyTokenizer.MinVocabSize)
            throw UserError.At(source, null, "--vocab-size", $"must be at least {TinyTokenizer.MinVocabSize} (3 special tokens + 256 bytes), got {vocab}");
        // The config checks these too, but here the message can name the option the user typed.
        var kv = kvHeads ?? heads;
        if (heads > 0 && hidden % heads != 0)
            throw UserError.At(source, null, "--heads", $"--hidden-size {hidden} is not divisible by {heads} heads");
        if (kv > 0 && heads % kv != 0)
            throw UserError.At(source, null, "--kv-heads", $"{heads} attention heads are not divisible by {kv} key/value heads");
        if (architecture == Architecture.Gpt2 && kv != heads)
            throw UserError.At(source, null, "--kv-heads", "gpt2 has no grouped-query attention; leave --kv-heads out");
        // SwiGLU's customary width: 2/3 of 4·hidden, rounded up to a multiple of 8; GPT-2's MLP is 4·hidden.
        var defaultIntermediate = architecture == Architecture.Gpt2 ? 4 * hidden : (8 * hidden / 3 + 7) / 8 * 8;
        var config = new ModelConfig
        {
            Architecture = architecture,
            ModelType = type,
            VocabSize = vocab,
            HiddenSize = hidden,
            NumLayers = layers,
            NumHeads = heads,
            NumKvHeads = kv,
            IntermediateSize = intermediate ?? defaultIntermediate,
            MaxPositions = maxPositions,
            // GPT-2 always ties its output projection to the token embedding.
            TieEmbeddings = tie || architecture == Architecture.Gpt2,
            HiddenAct = architecture == Architecture.Gpt2 ? "gelu_new" : "silu",
            AttentionBias = type == "qwen2",
            RopeTheta = type == "qwen2" ? 1_000_000 : 10_000,
            NormEps = type == "qwen2" ? 1e-6 : 1e-5,
            BosTokenId = TinyTokenizer.EndOfTextId,
            EosTokenId = TinyTokenizer.ImEndId,
            PadTokenId = TinyTokenizer.EndOfTextId,
        };
        return config.Validate(source);
    }
}
