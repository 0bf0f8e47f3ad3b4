using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;
using RlaifOnnx.Training;
using RlaifOnnx.Training.Autodiff;

namespace RlaifOnnx.Tests;

/// <summary>A test input: float64 values or int64 values with a shape.</summary>
public sealed record GradTensor(long[] Shape, double[]? Doubles = null, long[]? Longs = null, bool[]? Bools = null)
{
    public OrtValue ToOrt(DataType floatType) => Longs is not null ? OrtValue.CreateTensorValueFromMemory(Longs, Shape)
        : Bools is not null ? OrtValue.CreateTensorValueFromMemory(Bools, Shape)
        : floatType == DataType.Double ? OrtValue.CreateTensorValueFromMemory(Doubles!, Shape)
        : OrtValue.CreateTensorValueFromMemory(Doubles!.Select(d => (float)d).ToArray(), Shape);
}

/// <summary>
/// Central finite-difference checks of the gradients <see cref="GradientBuilder"/> emits: the training
/// graph's grad outputs against (L(w + h) − L(w − h)) / 2h computed with the eval graph, both run by
/// ONNX Runtime. The error reported is max |analytic − numeric| / max |numeric| per trainable tensor.
/// </summary>
public sealed class GradientCheck
{
    public GraphBuilder G { get; }
    public Dictionary<string, GradTensor> Inputs { get; } = new();
    public List<string> Trainable { get; } = new();
    readonly Random _random;

    public GradientCheck(int seed = 1, DataType floatType = DataType.Double)
    {
        G = new GraphBuilder("check", floatType);
        _random = new Random(seed);
    }

    public double[] RandomValues(long count, double lo = -1, double hi = 1)
        => Enumerable.Range(0, (int)count).Select(_ => lo + (hi - lo) * _random.NextDouble()).ToArray();

    /// <summary>A trainable float input with uniform random values in [lo, hi].</summary>
    public string Param(string name, long[] shape, double lo = -1, double hi = 1)
    {
        Trainable.Add(name);
        return Data(name, shape, lo, hi);
    }

    /// <summary>A non-trainable float input with uniform random values.</summary>
    public string Data(string name, long[] shape, double lo = -1, double hi = 1)
    {
        Inputs[name] = new GradTensor(shape, RandomValues(shape.Aggregate(1L, (a, b) => a * b), lo, hi));
        return G.Input(name, G.FloatType, shape.Cast<object>().ToArray());
    }

    /// <summary>Declare int64 inputs with symbolic dims (so other batch sizes can be fed).</summary>
    public bool SymbolicIntDims { get; set; }

    public string Longs(string name, long[] values, params long[] shape)
    {
        Inputs[name] = new GradTensor(shape, Longs: values);
        var dims = SymbolicIntDims ? shape.Select((_, i) => (object)$"d{i}").ToArray() : shape.Cast<object>().ToArray();
        return G.Input(name, DataType.Int64, dims);
    }

    public string Bools(string name, bool[] values, params long[] shape)
    {
        Inputs[name] = new GradTensor(shape, Bools: values);
        return G.Input(name, DataType.Bool, shape.Cast<object>().ToArray());
    }

    /// <summary>Makes loss = Σ y·R (R random, fixed) so every element of y gets its own weight, then checks.</summary>
    public double CheckOutput(string y, long[] yShape, double tolerance = 1e-6)
    {
        var weights = Data("loss_weights", yShape);
        return CheckLoss(Losses.SumAll(G, G.Mul(y, weights)), tolerance);
    }

    /// <summary>Checks the gradient of the scalar <paramref name="loss"/> with respect to every Param.</summary>
    public double CheckLoss(string loss, double tolerance = 1e-6, double step = 1e-6, int maxElementsPerTensor = 64)
    {
        G.OutputAs(loss, "loss", G.FloatType);
        return CheckModel(G.ToModel(), Inputs, Trainable, tolerance, step, maxElementsPerTensor, _random.Next());
    }

    /// <summary>
    /// Checks a float64 forward model with output "loss": the gradients of the training graph against
    /// central differences of the eval graph, for up to <paramref name="maxElementsPerTensor"/> random
    /// elements of each trainable input. Returns the worst error; fails the test above the tolerance.
    /// </summary>
    public static double CheckModel(ModelProto forward, Dictionary<string, GradTensor> inputs, IReadOnlyList<string> trainable,
        double tolerance, double step = 1e-6, int maxElementsPerTensor = 64, int seed = 1)
    {
        var (worst, report) = GradientError(forward, inputs, trainable, step, maxElementsPerTensor, seed);
        Assert.True(worst <= tolerance, $"gradient check failed (tolerance {tolerance:E1}):\n{report}");
        return worst;
    }

    /// <summary>
    /// The check's worst error without judging it, and the per-input report. <paramref name="corrupt"/> may
    /// change the training graph before it runs: the negative controls give it a wrong rule and expect a failure.
    /// </summary>
    public static (double Worst, string Report) GradientError(ModelProto forward, Dictionary<string, GradTensor> inputs, IReadOnlyList<string> trainable,
        double step = 1e-6, int maxElementsPerTensor = 64, int seed = 1, Action<ModelProto>? corrupt = null)
    {
        var random = new Random(seed);
        var graphs = GradientBuilder.Build(forward, trainable, "loss");
        corrupt?.Invoke(graphs.Training);
        var analytic = Run(graphs.Training, inputs, DataType.Double);
        Assert.True(double.IsFinite(analytic["loss"].Single()), "the loss is not finite");
        using var eval = new EvalRunner(graphs.Eval, DataType.Double);
        var worst = 0.0;
        var report = new List<string>();
        foreach (var name in trainable)
        {
            var grad = analytic[GradientBuilder.GradName(name)];
            var values = inputs[name].Doubles!;
            Assert.Equal(values.Length, grad.Length);
            var indices = Enumerable.Range(0, values.Length).ToArray();
            if (indices.Length > maxElementsPerTensor) indices = indices.OrderBy(_ => random.Next()).Take(maxElementsPerTensor).ToArray();
            var numeric = new double[indices.Length];
            for (var k = 0; k < indices.Length; k++)
            {
                var i = indices[k];
                var original = values[i];
                values[i] = original + step;
                var plus = eval.Loss(inputs);
                values[i] = original - step;
                var minus = eval.Loss(inputs);
                values[i] = original;
                numeric[k] = (plus - minus) / (2 * step);
            }
            // A gradient that is exactly zero (e.g. a bias cancelling in a reward difference) is judged absolutely.
            var scale = Math.Max(numeric.Max(Math.Abs), 1e-5);
            var error = indices.Select((i, k) => Math.Abs(grad[i] - numeric[k])).Max() / scale;
            report.Add($"{name}: error {error:E2} (scale {scale:E2})");
            worst = Math.Max(worst, error);
        }
        return (worst, string.Join("\n", report));
    }

    /// <summary>A wrong gradient rule for the negative controls: the gradient of <paramref name="input"/> passed through <paramref name="op"/> (Neg: a sign flipped; Transpose: a transpose missing or extra).</summary>
    public static Action<ModelProto> WrapGradient(string input, string op) => training =>
    {
        var name = GradientBuilder.GradName(input);
        var producer = training.Graph.Node.Single(n => n.Output.Contains(name));
        var raw = name + "/before-" + op;
        producer.Output[producer.Output.IndexOf(name)] = raw;
        var wrong = new NodeProto { OpType = op, Name = "wrong-rule/" + op };
        wrong.Input.Add(raw);
        wrong.Output.Add(name);
        training.Graph.Node.Add(wrong);
    };

    /// <summary>Runs a model once; every output as doubles.</summary>
    public static Dictionary<string, double[]> Run(ModelProto model, Dictionary<string, GradTensor> inputs, DataType floatType)
    {
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        using var session = new InferenceSession(model.ToByteArray(), options);
        return RunSession(session, inputs, floatType);
    }

    internal static Dictionary<string, double[]> RunSession(InferenceSession session, Dictionary<string, GradTensor> inputs, DataType floatType)
    {
        var names = session.InputNames.ToArray();
        var values = names.Select(n => inputs.TryGetValue(n, out var t) ? t.ToOrt(floatType)
            : throw new InvalidOperationException($"no test value for input {n}")).ToArray();
        try
        {
            using var runOptions = new RunOptions();
            using var outputs = session.Run(runOptions, names, values, session.OutputNames);
            var result = new Dictionary<string, double[]>();
            for (var i = 0; i < outputs.Count; i++)
            {
                var o = outputs[i];
                var type = o.GetTensorTypeAndShape().ElementDataType;
                result[session.OutputNames[i]] = type switch
                {
                    TensorElementType.Double => o.GetTensorDataAsSpan<double>().ToArray(),
                    TensorElementType.Float => o.GetTensorDataAsSpan<float>().ToArray().Select(f => (double)f).ToArray(),
                    TensorElementType.Int64 => o.GetTensorDataAsSpan<long>().ToArray().Select(f => (double)f).ToArray(),
                    _ => throw new InvalidOperationException($"output {session.OutputNames[i]} has type {type}"),
                };
            }
            return result;
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    sealed class EvalRunner(ModelProto model, DataType floatType) : IDisposable
    {
        readonly SessionOptions _options = new() { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
        InferenceSession? _session;
        public double Loss(Dictionary<string, GradTensor> inputs)
        {
            _session ??= new InferenceSession(model.ToByteArray(), _options);
            return RunSession(_session, inputs, floatType)["loss"].Single();
        }
        public void Dispose() { _session?.Dispose(); _options.Dispose(); }
    }
}
