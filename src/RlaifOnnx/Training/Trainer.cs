using System.Diagnostics;
using System.Numerics.Tensors;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using RlaifOnnx.Models;

namespace RlaifOnnx.Training;

/// <summary>How a <see cref="Trainer"/> updates its weights.</summary>
public sealed record TrainerOptions
{
    public AdamWOptions Optimizer { get; init; } = new();
    /// <summary>Learning-rate multiplier per step; constant 1 when null.</summary>
    public LrSchedule? Schedule { get; init; }
    /// <summary>Rows per ONNX Runtime run; a batch of more rows is split and its gradients accumulated. 0 = the whole batch at once.</summary>
    public int MicroBatchSize { get; init; }
    /// <summary>Scalar outputs of the forward graph reported beside the loss (averaged over micro-batches like the loss).</summary>
    public IReadOnlyList<string> MetricOutputs { get; init; } = [];
    /// <summary>
    /// How much of the batch's loss a micro-batch carries, e.g. its number of target tokens for a
    /// token-mean loss. Micro-batch i's loss and gradients are weighted by wᵢ/Σw, so k micro-batches give
    /// the gradient of one batch of the same size. Null = rows (right for a mean over rows).
    /// </summary>
    public Func<TrainingBatch, double>? MicroBatchWeight { get; init; }
    /// <summary>ONNX Runtime intra-op threads; 0 = its default (all cores).</summary>
    public int Threads { get; init; }
    /// <summary>Write an ONNX Runtime profile (JSON) with this path prefix; null = off.</summary>
    public string? ProfilePrefix { get; init; }
}

/// <summary>What one <see cref="Trainer.Step"/> did: the batch loss and named metrics (lr, grad_norm, metric outputs).</summary>
public sealed record StepResult(double Loss, IReadOnlyDictionary<string, double> Metrics);

/// <summary>
/// The training step API the stages use. Built once from a forward graph that already ends in a scalar
/// loss output (e.g. <see cref="CausalLm.Graph"/>), the values of its trainable and frozen weight inputs,
/// and optimizer settings; then <see cref="Step"/> per batch and <see cref="Evaluate"/> when wanted.
///
/// Memory: every weight is a float[] that ONNX Runtime reads through an OrtValue pinned once at
/// construction; gradients are written by ONNX Runtime straight into preallocated float[] outputs, and
/// AdamW updates the weight arrays in place — no weight or gradient is copied per step. Frozen weights
/// are only read, so several trainers (policy, reference, value) can share one base's arrays.
/// The trainable arrays passed in are the trainer's from then on (updated in place).
/// </summary>
public sealed class Trainer : IDisposable
{
    readonly TrainerOptions options;
    readonly InferenceSession trainSession;
    readonly Lazy<InferenceSession> evalSession;
    readonly ModelProto evalModel;
    readonly SessionOptions sessionOptions;
    readonly RunOptions runOptions = new();
    readonly List<string> weightInputNames = [];
    readonly List<OrtValue> weightInputValues = [];
    readonly HashSet<string> batchInputs;
    readonly float[] lossBuffer = new float[1];
    readonly OrtValue lossValue;
    readonly float[][] metricBuffers;
    readonly OrtValue[] metricValues;
    readonly List<OrtValue> gradientOutputs = [];
    readonly float[][] microGradients;          // where a micro-batch's gradients land when k > 1
    readonly List<OrtValue> microGradientOutputs = [];
    readonly List<string> outputNames = [];

    public IReadOnlyList<Parameter> Parameters { get; }
    public AdamW Optimizer { get; }
    /// <summary>Optimizer steps taken (the schedule's position).</summary>
    public long StepCount => Optimizer.StepCount;
    /// <summary>Seconds spent inside ONNX Runtime's Run and in the whole of Step, since construction.</summary>
    public double RunSeconds { get; private set; }
    public double StepSeconds { get; private set; }

    public Trainer(ModelProto forwardWithLoss, string loss, IReadOnlyDictionary<string, WeightTensor> trainable,
        IReadOnlyDictionary<string, WeightTensor> frozen, TrainerOptions options)
    {
        this.options = options;
        var names = trainable.Keys.ToList();
        var graphs = GradientBuilder.Build(forwardWithLoss, names, loss, options.MetricOutputs);
        evalModel = graphs.Eval;

        var inputs = forwardWithLoss.Graph.Input.Select(i => i.Name).ToList();
        batchInputs = inputs.Where(n => !trainable.ContainsKey(n) && !frozen.ContainsKey(n)).ToHashSet();

        sessionOptions = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (options.Threads > 0) sessionOptions.IntraOpNumThreads = options.Threads;
        if (options.ProfilePrefix is not null) sessionOptions.EnableProfiling = true;
        if (options.ProfilePrefix is not null) sessionOptions.ProfileOutputPathPrefix = options.ProfilePrefix;
        trainSession = new InferenceSession(graphs.Training.ToByteArray(), sessionOptions);
        evalSession = new(() => new InferenceSession(evalModel.ToByteArray(), sessionOptions));

        var parameters = new List<Parameter>();
        foreach (var name in names)
        {
            var w = trainable[name];
            var p = new Parameter(name, w.Data, new float[w.Data.Length], Decay: w.Shape.Length >= 2);
            parameters.Add(p);
            weightInputNames.Add(name);
            weightInputValues.Add(OrtValue.CreateTensorValueFromMemory(p.Weight, w.Shape));
            gradientOutputs.Add(OrtValue.CreateTensorValueFromMemory(p.Gradient, w.Shape));
        }
        foreach (var (name, w) in frozen)
        {
            if (!inputs.Contains(name)) continue;
            weightInputNames.Add(name);
            weightInputValues.Add(OrtValue.CreateTensorValueFromMemory(w.Data, w.Shape));
        }
        Parameters = parameters;
        Optimizer = new AdamW(parameters, options.Optimizer);
        microGradients = new float[parameters.Count][];

        lossValue = OrtValue.CreateTensorValueFromMemory(lossBuffer, []);
        metricBuffers = options.MetricOutputs.Select(_ => new float[1]).ToArray();
        metricValues = metricBuffers.Select(b => OrtValue.CreateTensorValueFromMemory(b, [])).ToArray();
        outputNames.Add(loss);
        outputNames.AddRange(names.Select(GradientBuilder.GradName));
        outputNames.AddRange(options.MetricOutputs);
    }

    /// <summary>The graph inputs a batch must supply (ids, masks, labels …).</summary>
    public IReadOnlyCollection<string> BatchInputs => batchInputs;

    /// <summary>
    /// One optimizer step on <paramref name="batch"/>: forward + backward per micro-batch with gradients
    /// accumulated (weighted by <see cref="TrainerOptions.MicroBatchWeight"/>), global-norm clipping,
    /// then AdamW at the scheduled learning rate.
    /// </summary>
    public StepResult Step(TrainingBatch batch, CancellationToken cancellationToken = default)
    {
        var total = Stopwatch.StartNew();
        var (loss, metricSums) = Accumulate(batch, cancellationToken);
        var gradNorm = GradientClipping.ClipByGlobalNorm(Parameters.Select(p => p.Gradient).ToList(), options.Optimizer.MaxGradNorm);
        var lr = options.Optimizer.LearningRate * (options.Schedule?.Factor(Optimizer.StepCount) ?? 1.0);
        Optimizer.Step(Parameters, lr);
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

    /// <summary>Forward + backward per micro-batch; Σᵢ wᵢ·gᵢ lands in each parameter's gradient buffer.</summary>
    (double Loss, double[] Metrics) Accumulate(TrainingBatch batch, CancellationToken cancellationToken)
    {
        var micro = MicroBatches(batch);
        var weights = MicroWeights(micro);
        double lossSum = 0;
        var metricSums = new double[metricBuffers.Length];
        for (var i = 0; i < micro.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            // One micro-batch: ONNX Runtime writes the gradients straight into the parameters' buffers.
            var outputs = micro.Count == 1 ? gradientOutputs : MicroGradientOutputs();
            Run(trainSession, micro[i], [lossValue, .. outputs, .. metricValues]);
            lossSum += weights[i] * lossBuffer[0];
            for (var m = 0; m < metricBuffers.Length; m++) metricSums[m] += weights[i] * metricBuffers[m][0];
            if (micro.Count == 1) break;
            for (var p = 0; p < Parameters.Count; p++)
            {
                var g = Parameters[p].Gradient;
                if (i == 0) TensorPrimitives.Multiply(microGradients[p], (float)weights[i], g);
                else TensorPrimitives.MultiplyAdd(microGradients[p], (float)weights[i], g, g);
            }
        }
        return (lossSum, metricSums);
    }

    /// <summary>The loss and metric outputs on <paramref name="batch"/> with the current weights (no gradients, no update).</summary>
    public StepResult Evaluate(TrainingBatch batch, CancellationToken cancellationToken = default)
    {
        var micro = MicroBatches(batch);
        var weights = MicroWeights(micro);
        double lossSum = 0;
        var metricSums = new double[metricBuffers.Length];
        for (var i = 0; i < micro.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Run(evalSession.Value, micro[i], [lossValue, .. metricValues], evalOutputs: true);
            lossSum += weights[i] * lossBuffer[0];
            for (var m = 0; m < metricBuffers.Length; m++) metricSums[m] += weights[i] * metricBuffers[m][0];
        }
        var metrics = new Dictionary<string, double> { ["loss"] = lossSum };
        for (var m = 0; m < metricBuffers.Length; m++) metrics[options.MetricOutputs[m]] = metricSums[m];
        return new StepResult(lossSum, metrics);
    }

    /// <summary>The trainable weights' current values (the live arrays, not copies), by name with their shapes.</summary>
    public Dictionary<string, WeightTensor> TrainableWeights()
    {
        var result = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        for (var i = 0; i < Parameters.Count; i++)
            result[Parameters[i].Name] = new WeightTensor(weightInputValues[i].GetTensorTypeAndShape().Shape, Parameters[i].Weight);
        return result;
    }

    /// <summary>Ends ONNX Runtime profiling (when on) and returns the profile file's path.</summary>
    public string? EndProfiling() => options.ProfilePrefix is null ? null : trainSession.EndProfiling();

    void Run(InferenceSession session, TrainingBatch batch, IReadOnlyList<OrtValue> outputs, bool evalOutputs = false)
    {
        var names = new List<string>(weightInputNames);
        var values = new List<OrtValue>(weightInputValues);
        var owned = new List<OrtValue>();
        try
        {
            foreach (var name in batchInputs)
            {
                if (!batch.TryGetValue(name, out var t)) throw new ArgumentException($"the batch has no '{name}' (the graph's batch inputs: {string.Join(", ", batchInputs)})");
                var v = t.Int64s is not null ? OrtValue.CreateTensorValueFromMemory(t.Int64s, t.Shape) : OrtValue.CreateTensorValueFromMemory(t.Floats!, t.Shape);
                owned.Add(v);
                names.Add(name);
                values.Add(v);
            }
            var outNames = evalOutputs ? [outputNames[0], .. options.MetricOutputs] : outputNames;
            var sw = Stopwatch.StartNew();
            session.Run(runOptions, names, values, outNames, outputs);
            RunSeconds += sw.Elapsed.TotalSeconds;
        }
        finally
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

    List<OrtValue> MicroGradientOutputs()
    {
        if (microGradientOutputs.Count == 0)
            for (var p = 0; p < Parameters.Count; p++)
            {
                microGradients[p] = new float[Parameters[p].Gradient.Length];
                microGradientOutputs.Add(OrtValue.CreateTensorValueFromMemory(microGradients[p], gradientOutputs[p].GetTensorTypeAndShape().Shape));
            }
        return microGradientOutputs;
    }

    public void Dispose()
    {
        trainSession.Dispose();
        if (evalSession.IsValueCreated) evalSession.Value.Dispose();
        foreach (var v in weightInputValues) v.Dispose();
        foreach (var v in gradientOutputs) v.Dispose();
        foreach (var v in microGradientOutputs) v.Dispose();
        foreach (var v in metricValues) v.Dispose();
        lossValue.Dispose();
        runOptions.Dispose();
        sessionOptions.Dispose();
    }
}
