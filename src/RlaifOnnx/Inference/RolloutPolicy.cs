using System.Diagnostics;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;
using RlaifOnnx.Training;

namespace RlaifOnnx.Inference;

/// <summary>
/// The copy of a policy that ONNX Runtime GenAI samples rollouts from, kept in step with the weights being
/// trained (PPO's weight sync).
/// <list type="bullet">
/// <item>With LoRA: the folder is written once — the frozen base in model.onnx.data and LoRA branches whose
/// A and B are graph inputs (<see cref="Lora.ApplyToInference"/>) — and GenAI loads it once. Each
/// <see cref="Sync"/> writes only the adapters' current values as an ONNX Runtime adapter file
/// (<see cref="AdapterFile"/>, a few hundred KB for rank 8 on a 100M model) and makes GenAI run with it
/// (its Adapters API), so the base weights are neither rewritten nor reloaded.</item>
/// <item>Without LoRA every weight changes: each sync writes the whole folder and reloads it.</item>
/// </list>
/// </summary>
public sealed class RolloutPolicy : IDisposable
{
    /// <summary>The adapter file in the rollout folder (replaced atomically at each sync).</summary>
    public const string AdapterFile = "adapter" + OnnxAdapterFile.Extension;

    readonly string dir;
    readonly ModelConfig config;
    WeightSet? baseWeights;       // dropped once the LoRA base is written: the folder's data file holds it from then on
    bool baseWritten;
    (double Seconds, long Bytes) unsynced;   // a WriteBase before the first sync, counted as part of that sync
    readonly LoraOptions? lora;
    readonly IReadOnlyList<LoraAdapter> adapters;
    readonly TokenizerSource tokenizer;
    readonly InferenceOptions options;
    GenAIGenerator? generator;
    int syncs;

    /// <summary>
    /// A rollout copy in <paramref name="dir"/> (written by the first sync; replaced if it exists) of the model
    /// <paramref name="config"/> over <paramref name="baseWeights"/> — the frozen base with LoRA
    /// (<paramref name="lora"/> and the training graph's <paramref name="adapters"/>), the starting weights
    /// without — with <paramref name="tokenizer"/>'s files; GenAI runs it with <paramref name="options"/>.
    /// </summary>
    public RolloutPolicy(string dir, ModelConfig config, WeightSet baseWeights, LoraOptions? lora, IReadOnlyList<LoraAdapter> adapters,
        TokenizerSource tokenizer, InferenceOptions? options = null)
    {
        this.dir = Path.GetFullPath(dir);
        this.config = config;
        this.baseWeights = baseWeights;
        this.lora = lora;
        this.adapters = adapters;
        this.tokenizer = tokenizer;
        this.options = options ?? new InferenceOptions();
    }

    public string Dir => dir;
    /// <summary>The rollout folder's model.onnx (with LoRA: the frozen base in its model.onnx.data, once written).</summary>
    public string ModelPath => Path.Combine(dir, ModelFolder.ModelFile);
    /// <summary>The generator over the synced weights (after the first <see cref="Sync"/>).</summary>
    public GenAIGenerator Generator => generator ?? throw new InvalidOperationException("Sync the rollout policy before generating");
    /// <summary>Seconds the last <see cref="Sync"/> took (writing and loading what changed).</summary>
    public double LastSyncSeconds { get; private set; }
    /// <summary>Bytes the last <see cref="Sync"/> wrote.</summary>
    public long LastSyncBytes { get; private set; }

    /// <summary>
    /// Brings GenAI to <paramref name="trainable"/>, the trainer's current weights (the adapters' A and B with
    /// LoRA, every weight without); <paramref name="lineage"/> is written into the folder when it is (re)written.
    /// </summary>
    public GenAIGenerator Sync(IReadOnlyDictionary<string, WeightTensor> trainable, IEnumerable<LineageEntry> lineage, string role = "policy")
    {
        var clock = Stopwatch.StartNew();
        var earlier = unsynced;   // a WriteBase since the last sync (the clock covers one made here)
        unsynced = (0, 0);
        if (lora is null)
        {
            // Every weight moved: the whole model, written and loaded again.
            generator?.Dispose();
            generator = null;
            var weights = new WeightSet();
            foreach (var (name, w) in baseWeights!) weights[name] = trainable.TryGetValue(name, out var t) ? t : w;
            ModelWriter.Write(dir, config, weights, tokenizer, role, lineage);
            generator = new GenAIGenerator(dir, options);
            LastSyncBytes = new FileInfo(Path.Combine(dir, ModelFolder.DataFile)).Length + new FileInfo(Path.Combine(dir, ModelFolder.ModelFile)).Length;
        }
        else
        {
            var written = baseWritten ? 0 : WriteBase(lineage, role);
            unsynced = (0, 0);
            generator ??= new GenAIGenerator(dir, options);
            LastSyncBytes = earlier.Bytes + written;
            var path = Path.Combine(dir, AdapterFile);
            OnnxAdapterFile.Write(path, adapters.SelectMany(a => new[]
            {
                (a.A, trainable[a.A].Shape, trainable[a.A].Data),
                (a.B, trainable[a.B].Shape, trainable[a.B].Data),
            }), adapterVersion: ++syncs);
            LastSyncBytes += new FileInfo(path).Length;
            generator.UseAdapter(path);
        }
        LastSyncSeconds = clock.Elapsed.TotalSeconds + earlier.Seconds;
        return generator;
    }

    /// <summary>
    /// With LoRA: writes the folder — the base and the adapter branches (A and B inputs defaulting to zero, i.e. the
    /// base model) — once, and lets go of the base's arrays (the caller may map <see cref="ModelPath"/>'s data instead,
    /// see <see cref="MappedWeights"/>). Returns the bytes written; the next <see cref="Sync"/> reports them (and the time) as its own.
    /// </summary>
    public long WriteBase(IEnumerable<LineageEntry> lineage, string role = "policy")
    {
        if (lora is null) throw new InvalidOperationException("only a LoRA rollout policy has a base written once");
        if (baseWritten) return 0;
        var clock = Stopwatch.StartNew();
        ModelWriter.Write(dir, config, baseWeights!, tokenizer, role, lineage, g => Lora.ApplyToInference(g, lora).Graph);
        baseWritten = true;
        baseWeights = null;
        var bytes = new FileInfo(Path.Combine(dir, ModelFolder.DataFile)).Length + new FileInfo(ModelPath).Length;
        unsynced = (clock.Elapsed.TotalSeconds, bytes);
        return bytes;
    }

    public void Dispose() => generator?.Dispose();
}
