using System.Numerics.Tensors;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Training.Autodiff;

namespace RlaifOnnx.Training;

/// <summary>
/// One trainable tensor: its weights and its gradient, both in managed float arrays that ONNX Runtime
/// reads and writes in place through OrtValues (no copies per step). The optimizer updates
/// <see cref="Weight"/> directly; the next step sees the new values.
/// </summary>
public sealed class Parameter(string name, long[] shape, float[] weight)
{
    public string Name { get; } = name;
    public long[] Shape { get; } = shape;
    public float[] Weight { get; } = weight;
    public float[] Gradient { get; } = new float[weight.Length];
    /// <summary>Where a micro-batch's gradient lands before it is added into <see cref="Gradient"/>.</summary>
    internal float[] Scratch => _scratch ??= new float[Weight.Length];
    float[]? _scratch;
}

/// <summary>
/// Runs a float32 training graph: owns the ONNX Runtime sessions (training and eval), keeps every
/// trainable tensor's weight and gradient buffers bound to the session through an
/// <see cref="OrtIoBinding"/>, so ONNX Runtime reads the weights from and writes the gradients into
/// our arrays. <see cref="Step"/> runs forward + backward for one (micro-)batch and returns the loss;
/// with <c>accumulate</c> the gradient is added to the one already held (gradient accumulation).
/// </summary>
public sealed class TrainingSession : IDisposable
{
    readonly InferenceSession _training;
    // The eval graph's session is made at the first Evaluate: a session holds megabytes of ONNX Runtime's state, and
    // stages that never evaluate (PPO) would keep one per trainer for nothing.
    InferenceSession? _eval;
    readonly SessionOptions _options;
    readonly bool _ownOptions;
    readonly OrtIoBinding _binding;
    readonly RunOptions _runOptions = new();
    readonly Dictionary<string, OrtValue> _weightValues = new();
    readonly Dictionary<string, OrtValue> _gradientValues = new();
    readonly Dictionary<string, OrtValue> _scratchValues = new();
    readonly float[] _loss = new float[1];
    readonly OrtValue _lossValue;
    readonly TrainingGraphs _graphs;
    readonly byte[] _evalModel;
    readonly List<OrtValue> _lastOutputs = new();
    bool _scratchBound;

    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>The kept outputs of the last <see cref="Step"/> (valid until the next step).</summary>
    public IReadOnlyDictionary<string, OrtValue> Outputs => _outputs;
    readonly Dictionary<string, OrtValue> _outputs = new();

    /// <summary>
    /// A session over <paramref name="graphs"/> with <paramref name="weights"/> as the trainable buffers; <paramref name="options"/>
    /// (default: no CPU arena), when given, must outlive this session (the eval session is made from them when first needed).
    /// <paramref name="releaseSharedArena"/>: each run hands the shared arena's free regions back (<see cref="Onnx.SharedArena"/>;
    /// for options that use it).
    /// </summary>
    public TrainingSession(TrainingGraphs graphs, IReadOnlyDictionary<string, float[]> weights, SessionOptions? options = null, bool releaseSharedArena = false)
    {
        if (releaseSharedArena) Onnx.SharedArena.ReleaseAfter(_runOptions);
        // The training graph's protobuf objects (megabytes for a decoder with its backward pass) are not kept: ONNX Runtime
        // has its own copy once the session exists. The eval graph is kept as bytes until an Evaluate needs its session.
        _graphs = graphs with { Training = new ModelProto(), Eval = new ModelProto() };
        _evalModel = graphs.Eval.ToByteArray();
        var lossType = (DataType)graphs.Training.Graph.Output.First(o => o.Name == graphs.Loss).Type.TensorType.ElemType;
        if (lossType != DataType.Float) throw new ArgumentException($"TrainingSession runs float32 graphs; this one is {lossType}");
        var inputs = graphs.Training.Graph.Input.ToDictionary(i => i.Name);
        var parameters = new List<Parameter>();
        foreach (var name in graphs.Trainable)
        {
            if (!weights.TryGetValue(name, out var data)) throw new ArgumentException($"no weights given for trainable '{name}'");
            var shape = inputs[name].Type.TensorType.Shape.Dim.Select(d => d.HasDimValue ? d.DimValue : -1).ToArray();
            if (shape.Any(d => d < 0) || shape.Aggregate(1L, (a, b) => a * b) != data.Length)
                throw new ArgumentException($"trainable '{name}': {data.Length} values do not fill its shape [{string.Join(", ", shape)}]");
            parameters.Add(new Parameter(name, shape, data));
        }
        Parameters = parameters;

        _ownOptions = options is null;
        // No CPU arena by default: a training step's activations are large and short-lived, and the arena's
        // power-of-two growth would keep several times the peak reserved.
        _options = options ?? new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR, EnableCpuMemArena = false };
        try { _training = new InferenceSession(graphs.Training.ToByteArray(), _options); }
        catch
        {
            if (_ownOptions) _options.Dispose();
            throw;
        }
        _binding = _training.CreateIoBinding();
        foreach (var p in parameters)
        {
            _weightValues[p.Name] = OrtValue.CreateTensorValueFromMemory(p.Weight, p.Shape);
            _gradientValues[p.Name] = OrtValue.CreateTensorValueFromMemory(p.Gradient, p.Shape);
            _binding.BindInput(p.Name, _weightValues[p.Name]);
        }
        _lossValue = OrtValue.CreateTensorValueFromMemory(_loss, []);
        BindOutputs(scratch: false);
    }

    void BindOutputs(bool scratch)
    {
        _binding.ClearBoundOutputs();
        _binding.BindOutput(_graphs.Loss, _lossValue);
        foreach (var p in Parameters)
        {
            OrtValue target;
            if (scratch)
            {
                if (!_scratchValues.TryGetValue(p.Name, out target!))
                    _scratchValues[p.Name] = target = OrtValue.CreateTensorValueFromMemory(p.Scratch, p.Shape);
            }
            else target = _gradientValues[p.Name];
            _binding.BindOutput(GradientBuilder.GradName(p.Name), target);
        }
        foreach (var name in _graphs.KeptOutputs)
            if (name != _graphs.Loss) _binding.BindOutputToDevice(name, OrtMemoryInfo.DefaultInstance);
        _scratchBound = scratch;
    }

    /// <summary>
    /// Forward and backward over one batch (its non-trainable inputs by name). Without
    /// <paramref name="accumulate"/> the gradients are overwritten; with it they are added to the held ones.
    /// </summary>
    public float Step(IReadOnlyDictionary<string, OrtValue> batch, bool accumulate = false)
    {
        if (accumulate != _scratchBound) BindOutputs(accumulate);
        foreach (var (name, value) in batch) _binding.BindInput(name, value);
        _training.RunWithBinding(_runOptions, _binding);
        if (accumulate)
            foreach (var p in Parameters) TensorPrimitives.Add(p.Gradient, p.Scratch, p.Gradient);
        CollectKeptOutputs();
        return _loss[0];
    }

    void CollectKeptOutputs()
    {
        foreach (var v in _lastOutputs) v.Dispose();
        _lastOutputs.Clear();
        _outputs.Clear();
        if (_graphs.KeptOutputs.All(k => k == _graphs.Loss)) return;
        var names = _binding.GetOutputNames();
        // GetOutputValues hands us new OrtValue handles: we keep the kept outputs and release the rest.
        var all = _binding.GetOutputValues().ToArray();
        for (var i = 0; i < all.Length; i++)
        {
            if (i < names.Length && names[i] != _graphs.Loss && _graphs.KeptOutputs.Contains(names[i]))
            {
                _outputs[names[i]] = all[i];
                _lastOutputs.Add(all[i]);
            }
            else all[i].Dispose();
        }
    }

    /// <summary>
    /// Binds a non-trainable input for every later step and evaluation (frozen base weights: the caller
    /// owns the OrtValue, which several sessions may share, and keeps it alive while this session runs).
    /// </summary>
    public void BindFixedInput(string name, OrtValue value)
    {
        if (!_training.InputNames.Contains(name)) throw new ArgumentException($"the training graph has no input '{name}'", nameof(name));
        if (_weightValues.ContainsKey(name)) throw new ArgumentException($"'{name}' is trainable; its buffer is already bound", nameof(name));
        _binding.BindInput(name, value);
        _fixedInputs[name] = value;
    }

    readonly Dictionary<string, OrtValue> _fixedInputs = new();

    /// <summary>The loss (and nothing else) on a batch, with the eval graph and the current weights.</summary>
    public float Evaluate(IReadOnlyDictionary<string, OrtValue> batch)
    {
        var eval = _eval ??= new InferenceSession(_evalModel, _options);
        var names = new List<string>();
        var values = new List<OrtValue>();
        foreach (var p in Parameters) { names.Add(p.Name); values.Add(_weightValues[p.Name]); }
        foreach (var (name, value) in _fixedInputs)
            if (eval.InputNames.Contains(name) && !batch.ContainsKey(name)) { names.Add(name); values.Add(value); }
        foreach (var (name, value) in batch)
            if (eval.InputNames.Contains(name)) { names.Add(name); values.Add(value); }
        using var outputs = eval.Run(_runOptions, names, values, [_graphs.Loss]);
        return outputs[0].GetTensorDataAsSpan<float>()[0];
    }

    /// <summary>Sets every gradient to zero (before accumulating micro-batches).</summary>
    public void ZeroGradients()
    {
        foreach (var p in Parameters) Array.Clear(p.Gradient);
    }

    public void Dispose()
    {
        foreach (var v in _lastOutputs) v.Dispose();
        _binding.Dispose();
        foreach (var v in _weightValues.Values) v.Dispose();
        foreach (var v in _gradientValues.Values) v.Dispose();
        foreach (var v in _scratchValues.Values) v.Dispose();
        _lossValue.Dispose();
        _runOptions.Dispose();
        _training.Dispose();
        _eval?.Dispose();
        if (_ownOptions) _options.Dispose();
    }
}
