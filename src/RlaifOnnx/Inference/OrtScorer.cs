using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Core;
using RlaifOnnx.Models;

namespace RlaifOnnx.Inference;

/// <summary>
/// Log-probabilities from ONNX Runtime sessions over a model folder's inference graph (model.onnx:
/// inputs input_ids [B,S], attention_mask [B,P+S], position_ids [B,S], past_key_values.{i}.key/.value
/// [B,kvH,P,D] — or GPT-2's past_{i} [2,B,H,P,D]; outputs logits [B,S,V] and the matching present
/// tensors). The first pass of a text feeds zero-length past tensors.
///
/// Tokenization is GenAI's tokenizer of the same folder, so scorer and generator agree on ids.
/// Which tokens belong to the continuation: we tokenize the prompt and prompt+continuation; the
/// continuation is the joint tokenization after the longest common prefix of the two. When the
/// prompt's tokens are a prefix of the joint ones (the usual case, e.g. a continuation starting with a
/// space) that is exactly the continuation's own tokens; when a token merges across the boundary, the
/// merged token counts as the continuation's. The first token of a text has no prediction, so a prompt
/// must tokenize to at least one token.
///
/// Batches are right-padded: padding sits after every real token, and its attention-mask entry is 0,
/// so no real position attends to it (causal) and its outputs are ignored.
/// </summary>
public sealed partial class OrtScorer : IScorer
{
    readonly InferenceSession session;
    readonly Microsoft.ML.OnnxRuntimeGenAI.Tokenizer tokenizer;
    readonly InferenceOptions options;
    readonly int kvHeads, headDim, padId, vocabSize;
    // The cache tensors: Llama folders have past_key_values.{i}.key / .value [B,kvH,P,D] (present.{i}.*);
    // GPT-2 folders have one past_{i} [2,B,H,P,D] per layer (present_{i}), keys and values stacked.
    readonly (string Past, string Present)[] cacheNames;
    readonly bool stackedCache;
    readonly string[] outputNames;
    // Scoring calls may come from several threads (the server); the tokenizer is used by one at a time.
    readonly Lock tokenizerLock = new();

    public string ModelDir { get; }

    public OrtScorer(string modelDir, InferenceOptions? options = null)
    {
        ModelFolder.RequireExists(modelDir);
        ModelDir = Path.GetFullPath(modelDir);
        this.options = options ?? new InferenceOptions();
        var modelPath = Path.Combine(ModelDir, ModelFolder.ModelFile);
        var provider = this.options.Provider(modelPath);
        if (!File.Exists(modelPath)) throw UserError.At(modelPath, null, null, "is missing (not a model folder)");
        var meta = ModelFolder.ReadMetadata(ModelDir);
        PreferenceModelFolder.RefuseWhereLanguageModelNeeded(ModelDir, meta);
        var config = meta.Config;
        (kvHeads, headDim, padId, vocabSize) = (config.NumKvHeads, config.HeadDim, config.PadTokenId, config.VocabSize);
        var layers = config.NumLayers;

        using var sessionOptions = new SessionOptions { IntraOpNumThreads = this.options.IntraOpThreads };
        if (provider == "cuda") sessionOptions.AppendExecutionProvider_CUDA(0);
        try { session = new InferenceSession(modelPath, sessionOptions); }
        catch (OnnxRuntimeException e) { throw UserError.At(modelPath, null, null, $"ONNX Runtime cannot load it: {e.Message.Split('\n', 2)[0]}"); }
        try { tokenizer = new Microsoft.ML.OnnxRuntimeGenAI.Tokenizer(ModelDir); }
        catch (OnnxRuntimeGenAIException e)
        {
            session.Dispose();
            throw UserError.At(ModelDir, null, null, $"ONNX Runtime GenAI cannot load the tokenizer: {e.Message.Split('\n', 2)[0]}");
        }
        stackedCache = session.InputMetadata.ContainsKey("past_0");
        cacheNames = stackedCache
            ? Enumerable.Range(0, layers).Select(i => ($"past_{i}", $"present_{i}")).ToArray()
            : Enumerable.Range(0, layers).SelectMany(i => new[] { ($"past_key_values.{i}.key", $"present.{i}.key"), ($"past_key_values.{i}.value", $"present.{i}.value") }).ToArray();
        foreach (var (past, _) in cacheNames)
            if (!session.InputMetadata.ContainsKey(past))
            {
                session.Dispose();
                tokenizer.Dispose();
                throw UserError.At(modelPath, null, null, $"has no input {past}; rlaif.json says {layers} layers");
            }
        outputNames = ["logits", .. cacheNames.Select(c => c.Present)];
    }

    public int[] Encode(string text)
    {
        lock (tokenizerLock)
        {
            using var sequences = tokenizer.Encode(text);
            return sequences[0].ToArray();
        }
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        lock (tokenizerLock) return tokenizer.Decode(ids);
    }

    public Task<IReadOnlyList<double>> ContinuationLogProbsAsync(IReadOnlyList<(string Prompt, string Continuation)> pairs, CancellationToken cancellationToken = default) =>
        Task.Run(() =>
        {
            var rows = pairs.Select(p => Split(p.Prompt, p.Continuation)).ToList();
            var sums = new double[rows.Count];
            foreach (var (start, count) in Batches(rows.Select(r => r.Ids.Length).ToList()))
            {
                cancellationToken.ThrowIfCancellationRequested();
                var batch = rows.GetRange(start, count);
                var scored = ScoreRows(past: null, batch.Select(r => r.Ids).ToList(), batch.Select(r => r.FirstScored).ToList());
                scored.CopyTo(sums, start);
            }
            return (IReadOnlyList<double>)sums;
        }, cancellationToken);

    /// <summary>
    /// For each prompt: one forward pass over the prompt's tokens that all candidates share, then all
    /// candidates as one batch continuing from that pass's key/value cache (tiled across the batch).
    /// The shared prefix stops one token short of the earliest token any candidate needs predicted, so
    /// the candidates' own run yields every log-prob they need and no prompt logits are kept.
    /// </summary>
    public Task<IReadOnlyList<double[]>> CandidateLogProbsAsync(IReadOnlyList<string> prompts, IReadOnlyList<string> candidates, CancellationToken cancellationToken = default) =>
        Task.Run(() =>
        {
            if (candidates.Count == 0) throw new ArgumentException("no candidates to score", nameof(candidates));
            var results = new List<double[]>(prompts.Count);
            foreach (var prompt in prompts)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var rows = candidates.Select(c => Split(prompt, c)).ToList();
                // Positions [0, shared) are run once; each candidate then feeds its tokens from `shared` on.
                var shared = rows.Min(r => r.FirstScored) - 1;
                var promptIds = rows[0].Ids[..shared];
                var past = shared == 0 ? null : RunPrefix(promptIds);
                var scores = new double[candidates.Count];
                foreach (var (start, count) in Batches(rows.Select(r => r.Ids.Length - shared).ToList()))
                {
                    var batch = rows.GetRange(start, count);
                    var scored = ScoreRows(past, batch.Select(r => r.Ids[shared..]).ToList(), batch.Select(r => r.FirstScored - shared).ToList());
                    scored.CopyTo(scores, start);
                }
                results.Add(scores);
            }
            return (IReadOnlyList<double[]>)results;
        }, cancellationToken);

    /// <summary>
    /// Per-token log-probabilities of whole token sequences (the first token has none: its LogProb is
    /// NaN), with the <paramref name="top"/> most likely tokens at each position. Used by the server's echo.
    /// </summary>
    public IReadOnlyList<TokenLogProb[]> TokenLogProbs(IReadOnlyList<int[]> sequences, int top, CancellationToken cancellationToken = default)
    {
        var results = new List<TokenLogProb[]>(sequences.Count);
        foreach (var (start, count) in Batches(sequences.Select(s => s.Length).ToList()))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var batch = sequences.Skip(start).Take(count).ToList();
            using var output = Forward(null, batch);
            for (var b = 0; b < batch.Count; b++)
            {
                var ids = batch[b];
                var tokens = new TokenLogProb[ids.Length];
                tokens[0] = new TokenLogProb(ids[0], double.NaN, []);
                for (var t = 1; t < ids.Length; t++)
                {
                    var row = output.LogitsAt(b, t - 1);
                    tokens[t] = new TokenLogProb(ids[t], LogSoftmaxAt(row, ids[t]), TopLogProbs(row, top));
                }
                results.Add(tokens);
            }
        }
        return results;
    }

    /// <summary>
    /// Consecutive batches of at most BatchSize rows whose logits [B, S, V] stay within
    /// <see cref="InferenceOptions.MaxLogitsElements"/> (a row longer than that runs alone): the graph
    /// computes logits at every position, which for a large vocabulary and long prompts dominates memory.
    /// </summary>
    IEnumerable<(int Start, int Count)> Batches(IReadOnlyList<int> lengths) =>
        Batches(lengths, options.BatchSize, vocabSize, options.MaxLogitsElements);

    internal static IEnumerable<(int Start, int Count)> Batches(IReadOnlyList<int> lengths, int batchSize, int vocabSize, long maxLogitsElements)
    {
        var start = 0;
        while (start < lengths.Count)
        {
            var count = 1;
            var longest = (long)lengths[start];
            while (start + count < lengths.Count && count < batchSize)
            {
                var next = Math.Max(longest, lengths[start + count]);
                if ((count + 1) * next * vocabSize > maxLogitsElements) break;
                longest = next;
                count++;
            }
            yield return (start, count);
            start += count;
        }
    }

    /// <summary>The joint token ids and the index of the first continuation token (longest-common-prefix rule).</summary>
    (int[] Ids, int FirstScored) Split(string prompt, string continuation) => Split(prompt, Encode(prompt), continuation);

    (int[] Ids, int FirstScored) Split(string prompt, int[] promptIds, string continuation)
    {
        var jointIds = Encode(prompt + continuation);
        var first = CommonPrefixLength(promptIds, jointIds);
        if (first == 0) throw UserError.At("scoring", null, "prompt", $"\"{Shorten(prompt)}\" has no token of its own before the continuation; the first token of a text has no log-probability");
        if (first == jointIds.Length) throw UserError.At("scoring", null, "continuation", $"\"{Shorten(continuation)}\" adds no token after the prompt");
        return (jointIds, first);
    }

    internal static int CommonPrefixLength(ReadOnlySpan<int> a, ReadOnlySpan<int> b)
    {
        var n = 0;
        while (n < a.Length && n < b.Length && a[n] == b[n]) n++;
        return n;
    }

    static string Shorten(string s) => s.Length <= 40 ? s : s[..40] + "…";

    /// <summary>Sum over each row of log p(row[t] | row[..t]) for t ≥ firstScored (≥ 1 within the row).</summary>
    double[] ScoreRows(PastCache? past, List<int[]> rows, List<int> firstScored) =>
        ScoreRows(past is null ? null : rows.Select(_ => past).ToList(), rows, firstScored);

    /// <summary>As above, each row continuing from its own cache (null: none).</summary>
    double[] ScoreRows(IReadOnlyList<PastCache?>? pasts, List<int[]> rows, List<int> firstScored)
    {
        using var output = Forward(pasts, rows);
        var sums = new double[rows.Count];
        for (var b = 0; b < rows.Count; b++)
            for (var t = firstScored[b]; t < rows[b].Length; t++)
                sums[b] += LogSoftmaxAt(output.LogitsAt(b, t - 1), rows[b][t]);
        return sums;
    }

    /// <summary>
    /// One forward pass: rows right-padded to the longest, each after its own cache (or none). The caches
    /// are stacked into one past of the longest cache's length P; a shorter cache is padded at its end
    /// with attention-mask 0 there, and its row's position ids continue from its own length, so every row
    /// sees exactly the positions it would see alone. (Tiling one cache to every row is the special case
    /// where all caches are the same.)
    /// </summary>
    ForwardOutput Forward(IReadOnlyList<PastCache?>? pasts, List<int[]> rows)
    {
        var batch = rows.Count;
        var pastLengths = Enumerable.Range(0, batch).Select(b => pasts?[b]?.Length ?? 0).ToArray();
        var pastLength = pastLengths.Max();
        var stacks = stackedCache ? 2 : 1;
        long[] pastShape = stackedCache ? [2, batch, kvHeads, pastLength, headDim] : [batch, kvHeads, pastLength, headDim];
        var pastValues = new List<OrtValue>();
        try
        {
            // One row after one whole cache reads the cache's own buffer: its layout is already [stacks, 1, kvH, P, D].
            for (var i = 0; i < cacheNames.Length; i++)
                pastValues.Add(pastLength == 0
                    ? OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Float, pastShape)
                    : OrtValue.CreateTensorValueFromMemory(batch == 1 ? pasts![0]!.Buffers[i] : StackPast(pasts!, i, pastLength, stacks), pastShape));
            return Forward(pastValues, pastLengths.Select(n => new PastSpans(n, 0, 0)).ToArray(), rows);
        }
        finally
        {
            foreach (var v in pastValues) v.Dispose();
        }
    }

    /// <summary>
    /// Which positions of a batch row's past are its own: [0, Length) and [From, From + Count) (a gap
    /// between them is the padding after a shorter cache in the pass that made the past). Its new tokens'
    /// positions continue from Length + Count.
    /// </summary>
    internal readonly record struct PastSpans(int Length, int From, int Count)
    {
        public int Positions => Length + Count;
        public bool Sees(int p) => p < Length || (p >= From && p < From + Count);
    }

    /// <summary>
    /// One forward pass continuing from the present tensors of an earlier pass over as many rows (read in
    /// place, without a copy): row b sees only <paramref name="pasts"/>[b] of that pass's row b, e.g. its
    /// question but not the candidate scored after it or its padding.
    /// </summary>
    ForwardOutput Forward(ForwardOutput previous, PastSpans[] pasts, List<int[]> rows) => Forward(previous.Presents, pasts, rows);

    /// <summary>The pass itself: <paramref name="pastValues"/> (one per cache tensor, not disposed here) hold every row's past.</summary>
    ForwardOutput Forward(IReadOnlyList<OrtValue> pastValues, PastSpans[] pasts, List<int[]> rows)
    {
        // An id past the embedding would stop ONNX Runtime's Gather with a stack trace; stop with one line instead.
        foreach (var row in rows) TokenizerVocabulary.Check(row, vocabSize);
        var batch = rows.Count;
        var seq = rows.Max(r => r.Length);
        var pastLength = (int)pastValues[0].GetTensorTypeAndShape().Shape[stackedCache ? 3 : 2];
        var inputIds = new long[batch * seq];                  // [B, S]
        var positionIds = new long[batch * seq];               // [B, S]
        var mask = new long[batch * (pastLength + seq)];       // [B, P+S]
        for (var b = 0; b < batch; b++)
        {
            for (var t = 0; t < seq; t++)
            {
                var real = t < rows[b].Length;
                inputIds[b * seq + t] = real ? rows[b][t] : padId;
                positionIds[b * seq + t] = pasts[b].Positions + (real ? t : rows[b].Length - 1);
                mask[b * (pastLength + seq) + pastLength + t] = real ? 1 : 0;
            }
            for (var p = 0; p < pastLength; p++) mask[b * (pastLength + seq) + p] = pasts[b].Sees(p) ? 1 : 0;
        }
        for (var b = 0; b < batch; b++)
        {
            long length = rows[b].Length, seen = pasts[b].Positions;
            Interlocked.Add(ref tokensRun, length);
            Interlocked.Add(ref keysAttended, length * seen + length * (length + 1) / 2);
        }

        var names = new List<string> { "input_ids", "attention_mask", "position_ids" };
        var values = new List<OrtValue>
        {
            OrtValue.CreateTensorValueFromMemory(inputIds, [batch, seq]),
            OrtValue.CreateTensorValueFromMemory(mask, [batch, pastLength + seq]),
            OrtValue.CreateTensorValueFromMemory(positionIds, [batch, seq]),
        };
        try
        {
            names.AddRange(cacheNames.Select(c => c.Past));
            using var runOptions = new RunOptions();
            var outputs = session.Run(runOptions, names, [.. values, .. pastValues], outputNames);
            return new ForwardOutput(outputs, seq);
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    long tokensRun, keysAttended;

    /// <summary>Tokens fed to forward passes since the scorer opened (real tokens, not padding): the work the prefix reuse saves.</summary>
    public long TokensRun => Interlocked.Read(ref tokensRun);

    /// <summary>Summed over those tokens, the keys each attends to (its visible past and itself): attention's share of the work.</summary>
    public long KeysAttended => Interlocked.Read(ref keysAttended);

    /// <summary>
    /// Cache tensor <paramref name="tensor"/> of every row, stacked along the batch axis and padded with
    /// zeros to <paramref name="length"/> positions: [stacks, B, kvH, P, D] from each row's [stacks, 1, kvH, L_b, D]
    /// (stacks is 2 for GPT-2's stacked keys and values, else 1 and the leading axis is absent).
    /// </summary>
    float[] StackPast(IReadOnlyList<PastCache?> pasts, int tensor, int length, int stacks)
    {
        var batch = pasts.Count;
        var stacked = new float[stacks * batch * kvHeads * length * headDim];
        for (var b = 0; b < batch; b++)
        {
            if (pasts[b] is not { } past || past.Length == 0) continue;
            var one = past.Buffers[tensor];
            for (var k = 0; k < stacks; k++)
                for (var h = 0; h < kvHeads; h++)
                    Array.Copy(one, (k * kvHeads + h) * past.Length * headDim,
                        stacked, ((k * batch + b) * kvHeads + h) * length * headDim, past.Length * headDim);
        }
        return stacked;
    }

    public void Dispose()
    {
        session.Dispose();
        tokenizer.Dispose();
    }

    /// <summary>
    /// A batch-1 key/value cache of Length positions: one buffer per cache tensor, in <c>cacheNames</c>
    /// order, each [blocks, Length, D] (blocks: kvH, or 2·kvH for GPT-2's stacked keys and values).
    /// </summary>
    sealed record PastCache(float[][] Buffers, int Length)
    {
        public long Bytes => Buffers.Sum(b => (long)b.Length) * sizeof(float);

        /// <summary>The first <paramref name="length"/> positions.</summary>
        public PastCache Take(int length, int headDim)
        {
            if (length == Length) return this;
            var buffers = new float[Buffers.Length][];
            for (var i = 0; i < Buffers.Length; i++)
            {
                var blocks = Buffers[i].Length / (Length * headDim);
                buffers[i] = new float[blocks * length * headDim];
                for (var k = 0; k < blocks; k++)
                    Array.Copy(Buffers[i], k * Length * headDim, buffers[i], k * length * headDim, length * headDim);
            }
            return new PastCache(buffers, length);
        }
    }

    sealed class ForwardOutput(IDisposableReadOnlyCollection<OrtValue> outputs, int seq) : IDisposable
    {
        readonly int vocab = (int)outputs[0].GetTensorTypeAndShape().Shape[2];

        /// <summary>The logits row [V] at (batch row b, position t).</summary>
        public ReadOnlySpan<float> LogitsAt(int b, int t) => outputs[0].GetTensorDataAsSpan<float>().Slice((b * seq + t) * vocab, vocab);

        /// <summary>The present tensors (not to be disposed by the reader): the past of a pass continuing from this one.</summary>
        public IReadOnlyList<OrtValue> Presents => outputs.Skip(1).ToList();

        public PastCache TakePresent(int length) =>
            new(Enumerable.Range(1, outputs.Count - 1).Select(i => outputs[i].GetTensorDataAsSpan<float>().ToArray()).ToArray(), length);

        /// <summary>
        /// Batch row <paramref name="b"/>'s cache, its first <paramref name="length"/> positions (the rest is
        /// padding): from each present [stacks, B, kvH, T, D] (stacks absent unless <paramref name="stacked"/>).
        /// </summary>
        public PastCache PresentOfRow(int b, int length, bool stacked) => PresentOfRow(b, new PastSpans(length, 0, 0), stacked);

        /// <summary>As above, the row's own positions <paramref name="own"/> (its past, a gap, its new tokens) made contiguous.</summary>
        public PastCache PresentOfRow(int b, PastSpans own, bool stacked)
        {
            var length = own.Positions;
            var buffers = new float[outputs.Count - 1][];
            for (var i = 1; i < outputs.Count; i++)
            {
                var shape = outputs[i].GetTensorTypeAndShape().Shape;
                var (stacks, at) = stacked ? (2, 1) : (1, 0);
                int batch = (int)shape[at], heads = (int)shape[at + 1], total = (int)shape[at + 2], dim = (int)shape[at + 3];
                var data = outputs[i].GetTensorDataAsSpan<float>();
                var row = new float[stacks * heads * length * dim];
                for (var k = 0; k < stacks; k++)
                    for (var h = 0; h < heads; h++)
                    {
                        var from = ((k * batch + b) * heads + h) * total * dim;
                        var to = (k * heads + h) * length * dim;
                        data.Slice(from, own.Length * dim).CopyTo(row.AsSpan(to, own.Length * dim));
                        data.Slice(from + own.From * dim, own.Count * dim).CopyTo(row.AsSpan(to + own.Length * dim, own.Count * dim));
                    }
                buffers[i - 1] = row;
            }
            return new PastCache(buffers, length);
        }

        public void Dispose() => outputs.Dispose();
    }
}
