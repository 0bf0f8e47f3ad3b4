using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Training;

namespace RlaifOnnx.Inference;

/// <summary>
/// Rewards from a preference model folder (<see cref="PreferenceModelFolder"/>): an ONNX Runtime session
/// over its model.onnx (inputs input_ids and attention_mask [B, S], output rewards [B]) and ONNX Runtime
/// GenAI's tokenizer of the same folder, as <see cref="OrtScorer"/> uses for language models.
///
/// Texts are scored in batches of <see cref="InferenceOptions.BatchSize"/>, grouped by length to keep
/// padding small, right-padded (the graph reads each row's last real token), and returned in input order.
/// A (conversation, response) pair is rendered by <see cref="RenderPair"/>, the one function PM training
/// uses too. A text longer than the model's context keeps its end — the response being judged — and
/// loses its start (<see cref="KeepEnd"/>); <see cref="TruncatedCount"/> counts them.
/// </summary>
public sealed class RewardScorer : IRewardModel
{
    readonly InferenceSession? session;
    readonly BoundForward? bound;       // rewards from weights the caller holds (see the second constructor)
    readonly Microsoft.ML.OnnxRuntimeGenAI.Tokenizer? ownTokenizer;
    readonly Func<Microsoft.ML.OnnxRuntimeGenAI.Tokenizer>? borrowedTokenizer;   // someone else's, fetched at each use
    Microsoft.ML.OnnxRuntimeGenAI.Tokenizer CurrentTokenizer => borrowedTokenizer?.Invoke() ?? ownTokenizer!;
    readonly ChatTemplate? template;
    readonly InferenceOptions options;
    readonly int padId, vocabSize;
    // Scoring calls may come from several threads; the tokenizer is used by one at a time.
    readonly Lock tokenizerLock = new();
    int truncated;

    public string ModelDir { get; }
    /// <summary>The most tokens one scored sequence may have: the model's context length.</summary>
    public int MaxTokens { get; }
    /// <summary>How many inputs so far were longer than <see cref="MaxTokens"/> and lost their start.</summary>
    public int TruncatedCount => Volatile.Read(ref truncated);

    public RewardScorer(string modelDir, InferenceOptions? options = null)
    {
        ModelFolder.RequireExists(modelDir);
        ModelDir = Path.GetFullPath(modelDir);
        this.options = options ?? new InferenceOptions();
        var modelPath = Path.Combine(ModelDir, ModelFolder.ModelFile);
        var provider = this.options.Provider(modelPath);
        var config = PreferenceModelFolder.RequirePreferenceModel(ModelDir).Config;
        if (!File.Exists(modelPath)) throw UserError.At(modelPath, null, null, "is missing (not a model folder)");
        (padId, MaxTokens, vocabSize) = (config.PadTokenId, config.MaxPositions, config.VocabSize);
        template = ChatTemplate.FromFolder(ModelDir);

        using var sessionOptions = new SessionOptions { IntraOpNumThreads = this.options.IntraOpThreads, EnableCpuMemArena = this.options.CpuMemoryArena };
        if (provider == "cuda") sessionOptions.AppendExecutionProvider_CUDA(0);
        else if (this.options.SharedArena) Onnx.SharedArena.UseIn(sessionOptions);
        try { session = new InferenceSession(modelPath, sessionOptions); }
        catch (OnnxRuntimeException e) { throw UserError.At(modelPath, null, null, $"ONNX Runtime cannot load it: {e.Message.Split('\n', 2)[0]}"); }
        if (!session.OutputMetadata.ContainsKey(PreferenceModelGraphs.RewardsOutput))
        {
            session.Dispose();
            throw UserError.At(modelPath, null, null, $"has no output \"{PreferenceModelGraphs.RewardsOutput}\" (not a reward graph)");
        }
        try { ownTokenizer = OpenTokenizer(ModelDir); }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A scorer over weights already in memory — <paramref name="weights"/>, the folder's preference model
    /// (decoder and score.weight), e.g. the frozen base PPO's value adapters sit on — instead of a session
    /// loading its own copy: ONNX Runtime reads the arrays in place, and the reward is the value-model graph's
    /// output at each row's last real token (<see cref="PreferenceModelGraphs.Values"/>, which equals the reward
    /// graph's there). Tokenizer, template and truncation are the folder's, as for the other constructor; or, with
    /// <paramref name="sharedTokenizer"/>, the tokenizer comes from there at each use instead of a copy of the folder's
    /// own (the caller vouches that its files are the folder's, e.g. GenAI's tokenizer of a policy with the same
    /// tokenizer files: one tokenizer in memory, not two; the scorer does not dispose it). <paramref name="weightValues"/>, when
    /// given, are weights already bound as OrtValues (e.g. <see cref="Training.MappedWeights"/>: borrowed, they must outlive
    /// the scorer), taken before <paramref name="weights"/>.
    /// </summary>
    public RewardScorer(string modelDir, IReadOnlyDictionary<string, Models.WeightTensor> weights, InferenceOptions? options = null,
        Func<Microsoft.ML.OnnxRuntimeGenAI.Tokenizer>? sharedTokenizer = null, IReadOnlyDictionary<string, OrtValue>? weightValues = null)
    {
        ModelFolder.RequireExists(modelDir);
        ModelDir = Path.GetFullPath(modelDir);
        this.options = options ?? new InferenceOptions();
        var config = PreferenceModelFolder.RequirePreferenceModel(ModelDir).Config;
        (padId, MaxTokens, vocabSize) = (config.PadTokenId, config.MaxPositions, config.VocabSize);
        template = ChatTemplate.FromFolder(ModelDir);
        bound = new BoundForward(PreferenceModelGraphs.Values(config, global::Onnx.TensorProto.Types.DataType.Float), weights, PreferenceModelGraphs.ValuesOutput,
            weightValues, cpuMemoryArena: this.options.CpuMemoryArena, sharedArena: this.options.SharedArena);
        if (sharedTokenizer is not null)
        {
            borrowedTokenizer = sharedTokenizer;
            return;
        }
        try { ownTokenizer = OpenTokenizer(ModelDir); }
        catch
        {
            bound.Dispose();
            throw;
        }
    }

    /// <summary>
    /// ONNX Runtime GenAI's tokenizer for a model folder's tokenizer files. GenAI reads a tokenizer only from
    /// a folder with a genai_config.json, which a preference model folder has none of (it cannot generate);
    /// so the tokenizer files are copied with the genai_config.json of the same architecture config into a
    /// temporary folder, loaded from there (GenAI reads them into memory) and the folder removed. A folder
    /// that has a genai_config.json (a language model) is read as it is.
    /// </summary>
    public static Microsoft.ML.OnnxRuntimeGenAI.Tokenizer OpenTokenizer(string modelDir)
    {
        modelDir = Path.GetFullPath(modelDir);
        try
        {
            if (File.Exists(Path.Combine(modelDir, ModelFolder.GenAIConfigFile))) return new Microsoft.ML.OnnxRuntimeGenAI.Tokenizer(modelDir);
            var config = ModelFolder.ReadMetadata(modelDir).Config;
            var temp = Directory.CreateTempSubdirectory("rlaif-tokenizer-").FullName;
            try
            {
                new TokenizerSource.Folder(modelDir).WriteTo(temp);
                File.WriteAllText(Path.Combine(temp, ModelFolder.GenAIConfigFile), DecoderGraphs.GenAIConfig(config).ToJsonString());
                return new Microsoft.ML.OnnxRuntimeGenAI.Tokenizer(temp);
            }
            finally
            {
                Directory.Delete(temp, recursive: true);
            }
        }
        catch (OnnxRuntimeGenAIException e)
        {
            throw UserError.At(modelDir, null, null, $"ONNX Runtime GenAI cannot load the tokenizer: {e.Message.Split('\n', 2)[0]}");
        }
    }

    /// <summary>
    /// The text a preference model scores for <paramref name="response"/> given the conversation before it:
    /// the conversation and the response as an assistant turn, rendered with the folder's chat template the
    /// way language-model training renders a prompt and completion (<see cref="ChatTemplate.RenderPromptAndCompletion"/>),
    /// prompt and completion joined. PM training and <see cref="RewardScorer"/> both call this.
    /// </summary>
    public static string RenderPair(ChatTemplate? template, Microsoft.ML.OnnxRuntimeGenAI.Tokenizer tokenizer, IReadOnlyList<ChatMessage> context, string response)
    {
        if (template is null)
            throw UserError.At("tokenizer_config.json", null, "chat_template", "is missing: a preference model renders conversations with the model folder's chat template");
        var (prompt, completion) = template.RenderPromptAndCompletion(tokenizer, context, [new ChatMessage("assistant", response)])
            ?? throw UserError.At(template.Origin, null, "chat_template", "does not render the conversation as the prompt followed by the response");
        return prompt + completion;
    }

    /// <summary>The last <paramref name="maxTokens"/> tokens of <paramref name="ids"/> (all of them when they fit), and whether any were cut.</summary>
    public static (int[] Ids, bool Truncated) KeepEnd(int[] ids, int maxTokens) =>
        ids.Length <= maxTokens ? (ids, false) : (ids[^maxTokens..], true);

    /// <summary><see cref="RenderPair"/> with this folder's template and tokenizer.</summary>
    public string Render(IReadOnlyList<ChatMessage> context, string response)
    {
        lock (tokenizerLock) return RenderPair(template, CurrentTokenizer, context, response);
    }

    public int[] Encode(string text)
    {
        lock (tokenizerLock)
        {
            using var sequences = CurrentTokenizer.Encode(text);
            return sequences[0].ToArray();
        }
    }

    /// <summary>One reward per text, in input order.</summary>
    public double[] Rewards(IReadOnlyList<string> texts, CancellationToken cancellationToken = default) =>
        RewardsOfTokens(texts.Select(Encode).ToList(), cancellationToken);

    /// <summary>One reward per (conversation, response) pair, in input order; each rendered by <see cref="RenderPair"/>.</summary>
    public double[] Rewards(IReadOnlyList<(IReadOnlyList<ChatMessage> Context, string Response)> pairs, CancellationToken cancellationToken = default) =>
        Rewards(pairs.Select(p => Render(p.Context, p.Response)).ToList(), cancellationToken);

    /// <summary>The pair overload of <c>Rewards</c> on a pool thread, for <see cref="IRewardModel"/>.</summary>
    public Task<double[]> RewardsAsync(IReadOnlyList<(IReadOnlyList<ChatMessage> Context, string Response)> items, CancellationToken cancellationToken = default) =>
        Task.Run(() => Rewards(items, cancellationToken), cancellationToken);

    /// <summary>One reward per token sequence, in input order (sequences over <see cref="MaxTokens"/> keep their end).</summary>
    public double[] RewardsOfTokens(IReadOnlyList<int[]> sequences, CancellationToken cancellationToken = default)
    {
        var rows = new int[sequences.Count][];
        for (var i = 0; i < rows.Length; i++)
        {
            if (sequences[i].Length == 0) throw UserError.At("reward input", null, $"[{i}]", "tokenizes to no tokens; a reward needs at least one");
            TokenizerVocabulary.Check(sequences[i], vocabSize);
            var (ids, cut) = KeepEnd(sequences[i], MaxTokens);
            if (cut) Interlocked.Increment(ref truncated);
            rows[i] = ids;
        }
        // Shortest first so each batch pads to similar lengths; results go back to input order.
        var order = Enumerable.Range(0, rows.Length).OrderBy(i => rows[i].Length).ToArray();
        var rewards = new double[rows.Length];
        for (var start = 0; start < order.Length; start += options.BatchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var batch = order.AsSpan(start, Math.Min(options.BatchSize, order.Length - start)).ToArray();
            var scored = Forward(batch.Select(i => rows[i]).ToList());
            for (var k = 0; k < batch.Length; k++) rewards[batch[k]] = scored[k];
        }
        return rewards;
    }

    /// <summary>One forward pass over right-padded rows: input_ids and attention_mask [B, S] → rewards [B].</summary>
    double[] Forward(List<int[]> rows)
    {
        int batch = rows.Count, seq = rows.Max(r => r.Length);
        var inputIds = new long[batch * seq];   // [B, S]
        var mask = new long[batch * seq];       // [B, S]
        for (var b = 0; b < batch; b++)
            for (var t = 0; t < seq; t++)
            {
                var real = t < rows[b].Length;
                inputIds[b * seq + t] = real ? rows[b][t] : padId;
                mask[b * seq + t] = real ? 1 : 0;
            }
        if (bound is not null)
        {
            var values = bound.Run(new TrainingBatch
            {
                ["input_ids"] = BatchTensor.Of(inputIds, batch, seq),
                ["attention_mask"] = BatchTensor.Of(mask, batch, seq),
            }, out var width);                                                                        // [B, S]
            var last = new double[batch];
            for (var b = 0; b < batch; b++) last[b] = values[b * width + rows[b].Length - 1];
            return last;
        }
        using var ids = OrtValue.CreateTensorValueFromMemory(inputIds, [batch, seq]);
        using var attention = OrtValue.CreateTensorValueFromMemory(mask, [batch, seq]);
        using var runOptions = new RunOptions();
        if (options.SharedArena) Onnx.SharedArena.ReleaseAfter(runOptions);
        using var outputs = session!.Run(runOptions, ["input_ids", "attention_mask"], [ids, attention], [PreferenceModelGraphs.RewardsOutput]);
        var rewards = outputs[0].GetTensorDataAsSpan<float>();
        var result = new double[batch];
        for (var b = 0; b < batch; b++) result[b] = rewards[b];
        return result;
    }

    public void Dispose()
    {
        session?.Dispose();
        bound?.Dispose();
        ownTokenizer?.Dispose();
    }
}
