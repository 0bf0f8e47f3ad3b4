using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Onnx;

namespace RlaifOnnx.Tests;

/// <summary>A named tensor fed to or read from an ONNX Runtime session in tests: float32, float64 or int64 values plus a shape.</summary>
public sealed record TestTensor(long[] Shape, float[]? Floats = null, double[]? Doubles = null, long[]? Int64s = null)
{
    public static TestTensor Of(long[] values, params long[] shape) => new(shape, Int64s: values);
    public static TestTensor Of(float[] values, params long[] shape) => new(shape, Floats: values);
    public static TestTensor Of(double[] values, params long[] shape) => new(shape, Doubles: values);

    /// <summary>Element [i] of the flattened tensor as a double, whatever its type.</summary>
    public double this[long i] => Floats is not null ? Floats[i] : Doubles is not null ? Doubles[i] : Int64s![i];
}

/// <summary>Runs an in-memory ONNX model in ONNX Runtime (CPU) and returns all outputs by name.</summary>
public sealed class OrtTestRunner : IDisposable
{
    readonly InferenceSession _session;

    public OrtTestRunner(ModelProto model) => _session = new InferenceSession(model.ToByteArray());

    public Dictionary<string, TestTensor> Run(IReadOnlyDictionary<string, TestTensor> inputs)
    {
        var values = new List<OrtValue>();
        try
        {
            var names = new List<string>();
            foreach (var (name, t) in inputs)
            {
                names.Add(name);
                values.Add(t.Floats is not null ? OrtValue.CreateTensorValueFromMemory(t.Floats, t.Shape)
                    : t.Doubles is not null ? OrtValue.CreateTensorValueFromMemory(t.Doubles, t.Shape)
                    : OrtValue.CreateTensorValueFromMemory(t.Int64s!, t.Shape));
            }
            using var runOptions = new RunOptions();
            var outputNames = _session.OutputNames;
            using var outputs = _session.Run(runOptions, names, values, outputNames);
            var result = new Dictionary<string, TestTensor>();
            for (var i = 0; i < outputNames.Count; i++)
            {
                var info = outputs[i].GetTensorTypeAndShape();
                result[outputNames[i]] = info.ElementDataType switch
                {
                    TensorElementType.Float => TestTensor.Of(outputs[i].GetTensorDataAsSpan<float>().ToArray(), info.Shape),
                    TensorElementType.Double => TestTensor.Of(outputs[i].GetTensorDataAsSpan<double>().ToArray(), info.Shape),
                    TensorElementType.Int64 => TestTensor.Of(outputs[i].GetTensorDataAsSpan<long>().ToArray(), info.Shape),
                    var other => throw new InvalidOperationException($"output {outputNames[i]} has type {other}"),
                };
            }
            return result;
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    public void Dispose() => _session.Dispose();
}
