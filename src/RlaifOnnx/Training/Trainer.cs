using RlaifOnnx.Configuration;
using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using RlaifOnnx.Models;
using RlaifOnnx.Training.Autodiff;

namespace RlaifOnnx.Training;

/// <summary>How a <see cref="Trainer"/> updates its weights.</summary>
public sealed record TrainerOptions
{
    /// <summary>Peak learning rate (the schedule multiplies it).</summary>
    public double LearningRate { get; init; } = 1e-3;
    public AdamWOptions AdamW { get; init; } = new();
    /// <summary>Clip gradients to this global L2 norm (torch.nn.utils.clip_grad_norm_); ≤ 0 = off.</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Learning-rate multiplier per step; constant 1 when null.</summary>
    public LrSchedule? Schedule { get; init; }
    /// <summary>Rows per ONNX Runtime run; a batch of more rows is split and its gradients accumulated. 0 = the whole batch at once.</summary>
    public int MicroBatchSize { get; init; }
    /// <summary>Scalar outputs of the forward graph reported beside the loss (averaged over micro-batches like the loss).</summary>
    public IReadOnlyList<string> MetricOutputs { get; init; } = [];
    /// <summary>
    /// How much of the batch's loss a micro-batch carries, e.g. its number of target tokens for a
    /// token-mean loss. Micro-batch i's loss is weighted by wᵢ/Σw, so k micro-batches give the gradient of
    /// one batch of the same size. Null = rows (right for a mean over rows).
    /// </summary>
    public Func<TrainingBatch, double>? MicroBatchWeight { get; init; }
    /// <summary>Options from a stage's `optimizer:` section; the schedule runs over <paramref name="totalSteps"/> updates.</summary>
    public static TrainerOptions From(OptimizerConfig o, int totalSteps) => new()
    {
        LearningRate = o.LearningRate,
        AdamW = new AdamWOptions(WeightDecay: o.WeightDecay),
        MaxGradNorm = o.MaxGradNorm,
        Schedule = new LrSchedule(LrSchedule.ParseKind(o.Schedule, "optimizer"), o.Warmup, totalSteps),
        CpuMemoryArena = o.CpuMemoryArena,
        GradientCheckpointing = o.GradientCheckpointing ?? false,
    };

    /// <summary>
    /// ONNX Runtime's CPU memory arena for the training session. On (ONNX Runtime's default): the arena keeps every
    /// chunk it grew to for the session's life. Off: each buffer is freed after its last reader, and the C heap is set
    /// to return large freed blocks to the system (<see cref="Core.CHeap.ReturnLargeFreedBlocks"/>), so the resident
    /// size follows what the step holds: a lower peak, paid for with page faults on fresh buffers.
    /// </summary>
    public bool CpuMemoryArena { get; init; } = true;
    /// <summary>
    /// The training session allocates from the process's shared ONNX Runtime arena, handed back after each run
    /// (<see cref="Onnx.SharedArena"/>); overrides <see cref="CpuMemoryArena"/>.
    /// </summary>
    public bool SharedArena { get; init; }
    /// <summary>
    /// Recompute the activations between the forward graph's layer inputs (<see cref="DecoderGraphs.LayerInputs"/>) in the
    /// backward pass instead of keeping them (<see cref="Recompute"/>); no effect on a graph that names none.
    /// </summary>
    public bool GradientCheckpointing { get; init; }
    /// <summary>ONNX Runtime intra-op threads; 0 = its default (all cores).</summary>
    public int Threads { get; init; }
    /// <summary>Write ONNX Runtime profiles (JSON, written when the trainer is disposed) with this path prefix; null = off.</summary>
    public string? ProfilePrefix { get; init; }
}

/// <summary>What one <see cref="Trainer.Step"/> did: the batch loss and named metrics (loss, lr, grad_norm, metric outputs).</summary>
public sealed record StepResult(double Loss, IReadOnlyDictionary<string, double> Metrics);

/// <summary>
/// The training step API the stages use. Built once from a forward graph that already ends in a scalar
/// loss output (e.g. <see cref="CausalLm.Graph"/>), the values of its trainable and frozen weight inputs,
/// and optimizer settings; then <see cref="Step"/> per batch and <see cref="Evaluate"/> when wanted.
///
/// Memory: the trainable weights and their gradients live in float[] buffers bound to ONNX Runtime
/// through OrtValues by <see cref="TrainingSession"/>, and <see cref="AdamW"/> updates them in place — no
/// weight is copied per step. Frozen weights are OrtValues over the caller's arrays, made once and only
/// read, so several trainers (policy, reference, value) can share one base's arrays. The trainable arrays
/// passed in are the trainer's from then on (updated in place).
///
/// Micro-batches: the loss the gradient is taken of is loss · w with w a scalar graph input, set to
/// micro-batch i's share wᵢ/Σw of the batch; the session adds the micro-batches' gradients, so the sum is
/// exactly the gradient of the whole batch's (weighted-mean) loss, and Σ wᵢ·lossᵢ its loss.
/// </summary>
public sealed class Trainer : IDisposable
{
    /// <summary>The scalar input the trainer multiplies the loss by (a micro-batch's share of the batch).</summary>
    public const string LossWeightInput = "trainer/loss_weight";
    const string WeightedLoss = "trainer/weighted_loss";

    readonly TrainerOptions options;
    readonly TrainingSession session;
    readonly SessionOptions sessionOptions;
    readonly Dictionary<string, OrtValue> frozenValues = new(StringComparer.Ordinal);
    readonly List<OrtValue> ownedFrozen = [];
    readonly HashSet<string> batchInputs;

    public IReadOnlyList<Parameter> Parameters => session.Parameters;
    public AdamW Optimizer { get; }
    /// <summary>Optimizer steps taken (the schedule's position).</summary>
    public long StepCount => Optimizer.StepCount;
    /// <summary>
    /// Seconds since construction spent in <see cref="TrainingSession.Step"/> (binding plus ONNX Runtime's run,
    /// plus the gradient sums when accumulating) and in the whole of <see cref="Step"/>.
    /// </summary>
    public double RunSeconds { get; private set; }
    public double StepSeconds { get; private set; }

    /// <summary>
    /// A trainer of <paramref name="trainable"/> over <paramref name="frozen"/> arrays and, optionally, frozen weights
    /// already bound as <paramref name="frozenValues"/> (borrowed: e.g. <see cref="MappedWeights.Values"/>, which must
    /// outlive the trainer).
    /// </summary>
    public Trainer(ModelProto forwardWithLoss, string loss, IReadOnlyDictionary<string, WeightTensor> trainable,
        IReadOnlyDictionary<string, WeightTensor> frozen, TrainerOptions options, IReadOnlyDictionary<string, OrtValue>? frozenValues = null)
    {
        this.options = options;
        frozenValues ??= new Dictionary<string, OrtValue>();
        var graphs = GradientBuilder.Build(WithLossWeight(forwardWithLoss, loss), trainable.Keys.ToList(), WeightedLoss, options.MetricOutputs,
            options.GradientCheckpointing ? DecoderGraphs.LayerInputs(forwardWithLoss) : null);
        var inputs = forwardWithLoss.Graph.Input.Select(i => i.Name).ToList();
        batchInputs = inputs.Where(n => !trainable.ContainsKey(n) && !frozen.ContainsKey(n) && !frozenValues.ContainsKey(n)).ToHashSet();

        sessionOptions = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
            EnableCpuMemArena = options.CpuMemoryArena,
        };
        if (!options.CpuMemoryArena) Core.CHeap.ReturnLargeFreedBlocks();
        if (options.SharedArena) Onnx.SharedArena.UseIn(sessionOptions);
        if (options.Threads > 0) sessionOptions.IntraOpNumThreads = options.Threads;
        if (options.ProfilePrefix is not null)
        {
            // The prefix first: setting EnableProfiling starts the profiler with the prefix set at that moment.
            sessionOptions.ProfileOutputPathPrefix = options.ProfilePrefix;
            sessionOptions.EnableProfiling = true;
        }
        session = new TrainingSession(graphs, trainable.ToDictionary(kv => kv.Key, kv => kv.Value.Data), sessionOptions, options.SharedArena);
        foreach (var (name, w) in frozen)
            if (inputs.Contains(name)) ownedFrozen.Add(this.frozenValues[name] = OrtValue.CreateTensorValueFromMemory(w.Data, w.Shape));
        foreach (var (name, v) in frozenValues)
            if (inputs.Contains(name)) this.frozenValues[name] = v;
        Optimizer = new AdamW(session.Parameters, options.AdamW);
    }

    /// <summary>The forward graph plus input <see cref="LossWeightInput"/> (float scalar) and output loss · weight.</summary>
    static ModelProto WithLossWeight(ModelProto forward, string loss)
    {
        var g = Losses.Extend(forward, "trainer/");
        var weight = g.Input(LossWeightInput, g.FloatType);
        g.OutputAs(g.Mul(loss, weight), WeightedLoss, g.FloatType);
        var model = g.ToModel();
        model.IrVersion = Math.Max(model.IrVersion, forward.IrVersion);
        return model;
    }

    /// <summary>The graph inputs a batch must supply (ids, masks, labels …).</summary>
    public IReadOnlyCollection<string> BatchInputs => batchInputs;

    /// <summary>
    /// One optimizer step on <paramref name="batch"/>: forward + backward per micro-batch with gradients
    /// accumulated, global-norm clipping, then AdamW at the scheduled learning rate.
    /// </summary>
    public StepResult Step(TrainingBatch batch, CancellationToken cancellationToken = default)
    {
        var total = Stopwatch.StartNew();
        var (loss, metricSums) = Accumulate(batch, cancellationToken);
        var gradNorm = options.MaxGradNorm > 0
            ? GradientClipping.ClipByGlobalNorm(Parameters, options.MaxGradNorm)
            : GradientClipping.GlobalNorm(Parameters);
        var lr = options.LearningRate * (options.Schedule?.Factor(Optimizer.StepCount) ?? 1.0);
        Optimizer.Step(lr);
        StepSeconds += total.Elapsed.TotalSeconds;

        var metrics = new Dictionary<string, double> { ["loss"] = loss, ["lr"] = lr, ["grad_norm"] = gradNorm };
        for (var m = 0; m < metricSums.Length; m++) metrics[options.MetricOutputs[m]] = metricSums[m];
        return new StepResult(loss, metrics);
    }

    /// <summary>
    /// The gradients of <paramref name="batch"/>'s loss (micro-batched and weighted exactly as in
    /// <see cref="Step"/>) without clipping or updating; they stay in <see cref="Parameters"/>. Returns the loss.
    /// </summary>
    public double ComputeGradients(TrainingBatch batch, CancellationToken cancellationToken = default)
        => Accumulate(batch, cancellationToken).Loss;

    (double Loss, double[] Metrics) Accumulate(TrainingBatch batch, CancellationToken cancellationToken)
    {
        var micro = MicroBatches(batch);
        var weights = MicroWeights(micro);
        double lossSum = 0;
        var metricSums = new double[options.MetricOutputs.Count];
        for (var i = 0; i < micro.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var inputs = new BoundBatch(this, micro[i], weights[i]);
            var sw = Stopwatch.StartNew();
            lossSum += session.Step(inputs.Values, accumulate: i > 0);
            RunSeconds += sw.Elapsed.TotalSeconds;
            for (var m = 0; m < metricSums.Length; m++)
                metricSums[m] += weights[i] * session.Outputs[options.MetricOutputs[m]].GetTensorDataAsSpan<float>()[0];
        }
        return (lossSum, metricSums);
    }

    /// <summary>The loss on <paramref name="batch"/> with the current weights (eval graph: no gradients, no update).</summary>
    public double Evaluate(TrainingBatch batch, CancellationToken cancellationToken = default)
    {
        var micro = MicroBatches(batch);
        var weights = MicroWeights(micro);
        double lossSum = 0;
        for (var i = 0; i < micro.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var inputs = new BoundBatch(this, micro[i], weights[i]);
            lossSum += session.Evaluate(inputs.Values);
        }
        return lossSum;
    }

    /// <summary>The trainable weights' current values (the live arrays, not copies), by name with their shapes.</summary>
    public Dictionary<string, WeightTensor> TrainableWeights()
        => Parameters.ToDictionary(p => p.Name, p => new WeightTensor(p.Shape, p.Weight), StringComparer.Ordinal);

    /// <summary>A micro-batch's inputs as OrtValues: its own tensors (owned, disposed after the run), the frozen weights and the loss weight.</summary>
    sealed class BoundBatch : IDisposable
    {
        readonly List<OrtValue> owned = [];
        public Dictionary<string, OrtValue> Values { get; } = new(StringComparer.Ordinal);

        public BoundBatch(Trainer trainer, TrainingBatch batch, double weight)
        {
            foreach (var name in trainer.batchInputs)
            {
                if (!batch.TryGetValue(name, out var t))
                    throw new ArgumentException($"the batch has no '{name}' (the graph's batch inputs: {string.Join(", ", trainer.batchInputs)})");
                Own(name, t.Int64s is not null ? OrtValue.CreateTensorValueFromMemory(t.Int64s, t.Shape) : OrtValue.CreateTensorValueFromMemory(t.Floats!, t.Shape));
            }
            foreach (var (name, v) in trainer.frozenValues) Values[name] = v;
            Own(LossWeightInput, OrtValue.CreateTensorValueFromMemory(new[] { (float)weight }, []));
        }

        void Own(string name, OrtValue value)
        {
            owned.Add(value);
            Values[name] = value;
        }

        public void Dispose()
        {
            foreach (var v in owned) v.Dispose();
        }
    }

    List<TrainingBatch> MicroBatches(TrainingBatch batch)
    {
        var rows = batch.Rows;
        var size = options.MicroBatchSize <= 0 ? rows : Math.Min(rows, options.MicroBatchSize);
        if (size == rows) return [batch];
        var list = new List<TrainingBatch>();
        for (var start = 0; start < rows; start += size) list.Add(batch.Slice(start, Math.Min(size, rows - start)));
        return list;
    }

    double[] MicroWeights(List<TrainingBatch> micro)
    {
        if (micro.Count == 1) return [1.0];
        var raw = micro.Select(b => options.MicroBatchWeight?.Invoke(b) ?? b.Rows).ToArray();
        var sum = raw.Sum();
        return sum > 0 ? raw.Select(w => w / sum).ToArray() : raw.Select(_ => 1.0 / raw.Length).ToArray();
    }

    public void Dispose()
    {
        session.Dispose();
        foreach (var v in ownedFrozen) v.Dispose();
        sessionOptions.Dispose();
    }
}
