using RlaifOnnx.Core;

namespace RlaifOnnx.Inference;

/// <summary>
/// How the local backends run: which execution provider, how many threads, how many sequences per batch.
/// "cuda" needs the project built with <c>-p:UseCuda=true</c> (the GenAI.Cuda and OnnxRuntime.Gpu
/// packages); on a CPU build asking for it fails with a message that says so.
/// </summary>
public sealed record InferenceOptions
{
    /// <summary>"cpu" (default) or "cuda".</summary>
    public string ExecutionProvider { get; init; } = "cpu";
    /// <summary>Threads ONNX Runtime uses inside one operator; 0: the scorer sessions let ONNX Runtime choose, GenAI's gets one per physical core.</summary>
    public int IntraOpThreads { get; init; }
    /// <summary>Sequences per generation or scoring batch.</summary>
    public int BatchSize { get; init; } = 8;
    /// <summary>
    /// Most logits one scoring pass may hold (batch × tokens × vocabulary floats; default 2^28 = 1 GiB):
    /// batches shrink below <see cref="BatchSize"/> to stay under it.
    /// </summary>
    public long MaxLogitsElements { get; init; } = 1L << 28;
    /// <summary>
    /// Memory the scorer may keep for key/value caches of recent prompt prefixes (default 256 MiB; 0 turns
    /// the reuse off). A prompt that starts with the tokens of a kept prefix, such as the fixed few-shot block
    /// of every labelling question, runs only its remaining tokens: automatic prefix caching, as in vLLM.
    /// </summary>
    public long PrefixCacheBytes { get; init; } = 256L << 20;
    /// <summary>
    /// ONNX Runtime's CPU memory arena for the local sessions (GenAI's and the scorers'). On (ONNX Runtime's default) the
    /// arena keeps every chunk it grew to; off, freed buffers go back to the system, for a lower resident set.
    /// </summary>
    public bool CpuMemoryArena { get; init; } = true;
    /// <summary>
    /// The local sessions allocate from the process's shared ONNX Runtime arena, handed back after each run
    /// (<see cref="Onnx.SharedArena"/>; GenAI's after the next run of a session that can say so); overrides <see cref="CpuMemoryArena"/>.
    /// </summary>
    public bool SharedArena { get; init; }
    /// <summary>
    /// Whether GenAI's session may prepack constant MatMul weights (MLAS's packed layout: faster, but a second copy of
    /// every weight matrix on the heap). Off, ONNX Runtime runs on the weights as loaded — memory-mapped from
    /// model.onnx.data, so pages another reader of that file maps are shared (see Training.MappedWeights).
    /// </summary>
    public bool WeightPrepacking { get; init; } = true;
    /// <summary>For a server: how long one HTTP attempt may take, in seconds (null: $RLAIF_HTTP_TIMEOUT, else 60).</summary>
    public double? HttpTimeoutSeconds { get; init; }
    /// <summary>For a server: how long one call may take in all, retries included, in seconds (null: $RLAIF_HTTP_DEADLINE, else 300).</summary>
    public double? HttpDeadlineSeconds { get; init; }

    /// <summary>
    /// <see cref="IntraOpThreads"/>, or when 0 one thread per physical core (Linux: distinct physical id / core id
    /// pairs of /proc/cpuinfo; elsewhere the logical processor count). GenAI's session gets this number spelled
    /// out: left to GenAI it is half the logical processors, and 0 handed on to ONNX Runtime gives one thread on
    /// a 2-core VM — both one thread on this kind of machine, where a batch-1 decoder step (a matrix-vector product
    /// per weight) needs every core to stream the weights at memory speed.
    /// </summary>
    public int IntraOpThreadsOrPhysicalCores => IntraOpThreads > 0 ? IntraOpThreads : PhysicalCores.Value;

    static readonly Lazy<int> PhysicalCores = new(() =>
    {
        try
        {
            if (File.Exists("/proc/cpuinfo"))
            {
                var cores = new HashSet<string>();
                string physical = "";
                foreach (var line in File.ReadLines("/proc/cpuinfo"))
                {
                    var colon = line.IndexOf(':');
                    if (colon < 0) continue;
                    var (key, value) = (line[..colon].Trim(), line[(colon + 1)..].Trim());
                    if (key == "physical id") physical = value;
                    else if (key == "core id") cores.Add($"{physical}/{value}");
                }
                if (cores.Count > 0) return Math.Min(cores.Count, Environment.ProcessorCount);
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return Environment.ProcessorCount;
    });

    internal string Provider(string source)
    {
        var provider = ExecutionProvider.Trim().ToLowerInvariant();
        if (provider is not ("cpu" or "cuda"))
            throw UserError.At(source, null, "execution_provider", $"unknown provider '{ExecutionProvider}' (supported: cpu, cuda)");
        if (BatchSize <= 0) throw UserError.At(source, null, "batch_size", $"must be positive, got {BatchSize}");
        if (PrefixCacheBytes < 0) throw UserError.At(source, null, "prefix_cache_bytes", $"must be 0 or more, got {PrefixCacheBytes}");
        return provider;
    }
}
