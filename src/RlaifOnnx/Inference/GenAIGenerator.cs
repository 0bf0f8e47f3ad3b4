using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Core;
using RlaifOnnx.Models;

namespace RlaifOnnx.Inference;

/// <summary>One generated answer: the prompt's token ids, the new token ids (EOS excluded), the new text, and why it stopped.</summary>
/// <summary>
/// One generated sequence: the prompt's ids, the new ids before the end token, the text, why it ended ("stop" or
/// "length") and which end token it sampled (null when it ran to the length limit, or when GenAI did not show
/// the end token and the model has several).
/// </summary>
public sealed record Generation(int[] PromptIds, int[] NewIds, string Text, string FinishReason, int? EndTokenId = null);

/// <summary>
/// Local generation with ONNX Runtime GenAI over a model folder (genai_config.json + model.onnx +
/// tokenizer files). Prompts are generated in batches of <see cref="InferenceOptions.BatchSize"/>;
/// each batch is one GenAI generator seeded with <see cref="SamplingOptions.Seed"/>, so a run is
/// reproducible; temperature 0 is greedy decoding (do_sample off). Each sequence stops at EOS (GenAI
/// pads it afterwards; we cut there) or after MaxNewTokens; only the new text is returned, in input order.
/// Generation is serialised: one GenAI generator runs at a time, so callers may share an instance.
/// </summary>
public sealed class GenAIGenerator : ITextGenerator
{
    readonly Config config;
    readonly Model model;
    readonly Tokenizer tokenizer;
    readonly ChatTemplate? chatTemplate;
    readonly HashSet<int> eosIds;
    readonly int vocabSize;
    readonly int contextLength;   // genai_config.json's model.context_length; 0 when absent
    readonly InferenceOptions options;
    readonly SemaphoreSlim gate = new(1, 1);
    Adapters? adapters;            // ONNX Runtime LoRA adapters loaded into this model (see UseAdapter)
    string? activeAdapter;
    int adaptersLoaded;

    public string ModelDir { get; }
    /// <summary>genai_config.json's model.context_length: the most tokens a prompt and its answer may hold together; 0 when absent.</summary>
    public int ContextLength => contextLength;

    public GenAIGenerator(string modelDir, InferenceOptions? options = null)
    {
        ModelDir = Path.GetFullPath(modelDir);
        this.options = options ?? new InferenceOptions();
        ModelFolder.RequireExists(modelDir);
        var configPath = Path.Combine(ModelDir, "genai_config.json");
        if (PreferenceModelFolder.IsPreferenceModel(ModelDir))
            PreferenceModelFolder.RefuseWhereLanguageModelNeeded(ModelDir, ModelFolder.ReadMetadata(ModelDir));
        if (!File.Exists(configPath)) throw UserError.At(configPath, null, null, "is missing (not a GenAI model folder)");
        (vocabSize, contextLength) = ReadSizes(configPath);
        var provider = this.options.Provider(configPath);
        chatTemplate = ChatTemplate.FromFolder(ModelDir);
        try
        {
            config = new Config(ModelDir);
            // The provider comes from our options, not from whatever genai_config.json lists.
            config.ClearProviders();
            if (provider == "cuda") config.AppendProvider("cuda");
            if (this.options.SharedArena) Onnx.SharedArena.Register();
            config.Overlay(SessionOptionsOverlay(this.options));
            model = new Model(config);
            tokenizer = new Tokenizer(model);
        }
        catch (OnnxRuntimeGenAIException e)
        {
            config?.Dispose();
            throw UserError.At(ModelDir, null, null, $"ONNX Runtime GenAI cannot load this model folder: {e.Message.Split('\n', 2)[0]}");
        }
        eosIds = [.. tokenizer.GetEosTokenIds().ToArray()];
    }

    /// <summary>
    /// The genai_config.json overlay that gives GenAI's decoder session our options. The thread count is always
    /// spelled out (<see cref="InferenceOptions.IntraOpThreadsOrPhysicalCores"/>): GenAI's own default is half the
    /// logical processors, one thread on a 2-core machine, where a batch-1 decoder step — a matrix-vector product per
    /// weight — then runs at what one core can read (17 ms a step for the 100M model against 11–12 ms on two).
    /// </summary>
    public static string SessionOptionsOverlay(InferenceOptions options)
    {
        var sessionOptions = new JsonObject { ["intra_op_num_threads"] = options.IntraOpThreadsOrPhysicalCores };
        if (!options.CpuMemoryArena) sessionOptions["enable_cpu_mem_arena"] = false;
        // GenAI passes session_options keys it does not know to ONNX Runtime as session config entries.
        if (options.SharedArena)
        {
            sessionOptions["enable_cpu_mem_arena"] = true;
            sessionOptions["session.use_env_allocators"] = "1";
        }
        if (!options.WeightPrepacking) sessionOptions["session.disable_prepacking"] = "1";
        return new JsonObject
        {
            ["model"] = new JsonObject { ["decoder"] = new JsonObject { ["session_options"] = sessionOptions } },
        }.ToJsonString();
    }

    /// <summary>
    /// Loads an ONNX Runtime LoRA adapter file (.onnx_adapter) and makes it the one every later generation runs
    /// with; the previously active one is unloaded. The model's graph must have the adapter's parameters as
    /// inputs (see Lora.ApplyToInference): only these small tensors move, the model and its weights stay loaded.
    /// </summary>
    public void UseAdapter(string adapterPath)
    {
        gate.Wait();
        try
        {
            adapters ??= new Adapters(model);
            var name = $"adapter-{++adaptersLoaded}";
            try { adapters.LoadAdapter(adapterPath, name); }
            catch (OnnxRuntimeGenAIException e)
            {
                throw UserError.At(adapterPath, null, null, $"ONNX Runtime GenAI cannot load this adapter: {e.Message.Split('\n', 2)[0]}");
            }
            if (activeAdapter is not null) adapters.UnloadAdapter(activeAdapter);
            activeAdapter = name;
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>The GenAI tokenizer, for callers that need the same token ids generation uses.</summary>
    public Tokenizer Tokenizer => tokenizer;

    /// <summary>The conversation rendered with the folder's chat template, ending with the assistant's turn opened.</summary>
    public string RenderChat(IReadOnlyList<ChatMessage> messages)
    {
        if (chatTemplate is null)
            throw UserError.At(Path.Combine(ModelDir, "tokenizer_config.json"), null, "chat_template",
                "is missing, so conversations cannot be formatted (use raw prompts, or add a chat template)");
        return chatTemplate.Render(tokenizer, messages);
    }

    public async Task<IReadOnlyList<string>> ChatAsync(IReadOnlyList<IReadOnlyList<ChatMessage>> chats, SamplingOptions sampling, CancellationToken cancellationToken = default)
    {
        var prompts = chats.Select(RenderChat).ToList();
        return (await GenerateAsync(prompts, sampling, cancellationToken)).Select(g => g.Text).ToList();
    }

    public async Task<IReadOnlyList<string>> CompleteAsync(IReadOnlyList<string> prompts, SamplingOptions sampling, CancellationToken cancellationToken = default) =>
        (await GenerateAsync(prompts, sampling, cancellationToken)).Select(g => g.Text).ToList();

    /// <summary>Generates for raw prompt texts, in batches; results in input order with their token ids.</summary>
    public Task<IReadOnlyList<Generation>> GenerateAsync(IReadOnlyList<string> prompts, SamplingOptions sampling, CancellationToken cancellationToken = default) =>
        GenerateAsync(prompts, sampling, onToken: null, cancellationToken);

    /// <summary>
    /// Generates as <see cref="GenerateAsync(IReadOnlyList{string}, SamplingOptions, CancellationToken)"/> does and
    /// calls <paramref name="onToken"/>(prompt index, token id) for every new token as soon as GenAI's
    /// GenerateNextToken has made it (the end token and what follows it are not passed), for streaming.
    /// Cancelling stops generation before the next token.
    /// </summary>
    public async Task<IReadOnlyList<Generation>> GenerateAsync(IReadOnlyList<string> prompts, SamplingOptions sampling, Action<int, int>? onToken, CancellationToken cancellationToken = default)
    {
        ValidateSampling(sampling);
        await gate.WaitAsync(cancellationToken);
        try
        {
            return await Task.Run(() =>
            {
                var results = new List<Generation>(prompts.Count);
                for (var start = 0; start < prompts.Count; start += options.BatchSize)
                {
                    var batch = prompts.Skip(start).Take(options.BatchSize).ToArray();
                    results.AddRange(GenerateBatch(batch, sampling, start, onToken, cancellationToken));
                }
                return (IReadOnlyList<Generation>)results;
            }, cancellationToken);
        }
        finally
        {
            gate.Release();
        }
    }

    IReadOnlyList<Generation> GenerateBatch(string[] prompts, SamplingOptions sampling, int offset, Action<int, int>? onToken, CancellationToken cancellationToken)
    {
        using var sequences = tokenizer.EncodeBatch(prompts);
        var promptIds = new int[prompts.Length][];
        for (var i = 0; i < prompts.Length; i++) promptIds[i] = sequences[(ulong)i].ToArray();
        foreach (var ids in promptIds) TokenizerVocabulary.Check(ids, vocabSize);
        for (var i = 0; i < prompts.Length; i++)
            if (promptIds[i].Length == 0) throw UserError.At("generation", null, "prompt", "is empty (it has no token to continue from)");
        var longest = promptIds.Max(p => p.Length);
        if (contextLength > 0 && longest + sampling.MaxNewTokens > contextLength)
            throw UserError.At("generation", null, "max_new_tokens",
                $"a prompt of {longest} tokens plus {sampling.MaxNewTokens} new tokens exceeds the model's context length of {contextLength}");

        using var generatorParams = new GeneratorParams(model);
        generatorParams.SetSearchOption("batch_size", prompts.Length);
        // GenAI's max_length counts the (padded) prompt: the longest prompt plus the new tokens, so
        // every sequence may produce MaxNewTokens and a batch gives what one-by-one runs give.
        generatorParams.SetSearchOption("max_length", longest + sampling.MaxNewTokens);
        var greedy = sampling.Temperature == 0;
        generatorParams.SetSearchOption("do_sample", !greedy);
        if (sampling.MinNewTokens > 0) generatorParams.SetSearchOption("min_length", longest + sampling.MinNewTokens);
        if (!greedy)
        {
            generatorParams.SetSearchOption("temperature", sampling.Temperature);
            generatorParams.SetSearchOption("top_p", sampling.TopP);
            // GenAI's own default top_k is 50; TopK 0 means "no top-k filter", i.e. the whole vocabulary.
            generatorParams.SetSearchOption("top_k", sampling.TopK > 0 ? Math.Min(sampling.TopK, vocabSize) : vocabSize);
            generatorParams.SetSearchOption("random_seed", sampling.Seed);
        }

        using var generator = new Generator(model, generatorParams);
        if (activeAdapter is not null) generator.SetActiveAdapter(adapters!, activeAdapter);
        generator.AppendTokenSequences(sequences);
        var ended = new bool[prompts.Length];
        var produced = new int[prompts.Length];
        while (!generator.IsDone())
        {
            cancellationToken.ThrowIfCancellationRequested();
            generator.GenerateNextToken();
            if (onToken is null) continue;
            // Each sequence's newest token, passed on until its end token (the rule CutAtEos applies afterwards).
            for (var i = 0; i < prompts.Length; i++)
            {
                if (ended[i]) continue;
                var sequence = generator.GetSequence((ulong)i);
                if (sequence.Length <= longest + produced[i]) continue;
                var token = sequence[^1];
                if (eosIds.Contains(token) || produced[i] >= sampling.MaxNewTokens) { ended[i] = true; continue; }
                produced[i]++;
                onToken(offset + i, token);
            }
        }

        var results = new Generation[prompts.Length];
        for (var i = 0; i < prompts.Length; i++)
        {
            // GenAI keeps each sequence as the padded prompt (length `longest`) followed by its new tokens;
            // in a batch, a sequence that met EOS is filled with padding after it, so we cut at the first EOS.
            var sequence = generator.GetSequence((ulong)i);
            var generated = sequence[Math.Min(longest, sequence.Length)..];
            var (newIds, finish, endId) = CutAtEos(generated, eosIds, sampling.MaxNewTokens);
            results[i] = new Generation(promptIds[i], newIds, tokenizer.Decode(newIds), finish, endId);
        }
        return results;
    }

    /// <summary>
    /// Greedy decoding of one prompt that also returns each new token's log-probability under the logits it was
    /// chosen from (log-softmax of GenAI's last-position logits): what the model computed, for comparisons of
    /// two ways of loading the same weights. Stops at EOS (not included) or after <paramref name="maxNewTokens"/>.
    /// </summary>
    internal (int[] Ids, double[] LogProbs) GreedyWithLogProbs(string prompt, int maxNewTokens)
    {
        gate.Wait();
        try
        {
            using var sequences = tokenizer.EncodeBatch([prompt]);
            var promptLength = sequences[0].Length;
            using var generatorParams = new GeneratorParams(model);
            generatorParams.SetSearchOption("max_length", promptLength + maxNewTokens);
            generatorParams.SetSearchOption("do_sample", false);
            using var generator = new Generator(model, generatorParams);
            if (activeAdapter is not null) generator.SetActiveAdapter(adapters!, activeAdapter);
            generator.AppendTokenSequences(sequences);
            var ids = new List<int>();
            var logProbs = new List<double>();
            while (!generator.IsDone())
            {
                generator.GenerateNextToken();
                var token = generator.GetNextTokens()[0];
                using var logits = generator.GetOutput("logits");                                 // [1, S, V]
                var shape = logits.Shape();
                var v = (int)shape[^1];
                var last = logits.GetData<float>()[^v..];
                var max = double.NegativeInfinity;
                foreach (var l in last) max = Math.Max(max, l);
                var sum = 0.0;
                foreach (var l in last) sum += Math.Exp(l - max);
                if (eosIds.Contains(token)) break;
                ids.Add(token);
                logProbs.Add(last[token] - max - Math.Log(sum));
            }
            return (ids.ToArray(), logProbs.ToArray());
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>
    /// The tokens before the first EOS, and why generation ended: "stop" for EOS, "length" for the token
    /// limit. GenAI 0.18 keeps the EOS in a batch's sequences (then pads them) but leaves it out when the
    /// batch holds one sequence, so a sequence shorter than the limit also ended at EOS. The end id is the EOS
    /// that was sampled; for an EOS left out it is the model's only EOS id, or null when it has several.
    /// </summary>
    internal static (int[] Ids, string FinishReason, int? EndTokenId) CutAtEos(ReadOnlySpan<int> generated, IReadOnlySet<int> eos, int maxNewTokens)
    {
        for (var t = 0; t < generated.Length; t++)
            if (eos.Contains(generated[t])) return (generated[..t].ToArray(), "stop", generated[t]);
        var kept = generated[..Math.Min(generated.Length, maxNewTokens)].ToArray();
        return kept.Length < maxNewTokens ? (kept, "stop", eos.Count == 1 ? eos.First() : null) : (kept, "length", null);
    }

    static void ValidateSampling(SamplingOptions s)
    {
        if (s.MaxNewTokens <= 0) throw UserError.At("sampling", null, "max_new_tokens", $"must be positive, got {s.MaxNewTokens}");
        if (!double.IsFinite(s.Temperature) || s.Temperature < 0) throw UserError.At("sampling", null, "temperature", $"must be 0 (greedy) or a positive number, got {s.Temperature}");
        if (double.IsNaN(s.TopP) || s.TopP is <= 0 or > 1) throw UserError.At("sampling", null, "top_p", $"must be in (0, 1], got {s.TopP}");
        if (s.MinNewTokens < 0 || s.MinNewTokens > s.MaxNewTokens) throw UserError.At("sampling", null, "min_tokens", $"must be from 0 to max_tokens ({s.MaxNewTokens}), got {s.MinNewTokens}");
        if (s.TopK < 0) throw UserError.At("sampling", null, "top_k", $"must be 0 (off) or positive, got {s.TopK}");
    }

    static (int VocabSize, int ContextLength) ReadSizes(string configPath)
    {
        try
        {
            var model = JsonNode.Parse(File.ReadAllText(configPath))?["model"];
            var vocab = model?["vocab_size"]?.GetValue<int>() ?? throw UserError.At(configPath, null, "model.vocab_size", "is missing");
            return (vocab, model?["context_length"]?.GetValue<int>() ?? 0);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw UserError.At(configPath, (int?)e.LineNumber + 1, null, $"malformed JSON ({e.Message.Split('.')[0]})");
        }
        catch (InvalidOperationException)
        {
            throw UserError.At(configPath, null, "model", "vocab_size and context_length must be integers");
        }
    }

    public void Dispose()
    {
        adapters?.Dispose();
        tokenizer.Dispose();
        model.Dispose();
        config.Dispose();
        gate.Dispose();
    }
}
