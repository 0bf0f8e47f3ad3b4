using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using RlaifOnnx.Models;

namespace RlaifOnnx.Training;

/// <summary>
/// One forward graph run by ONNX Runtime with its weights bound once as OrtValues over the caller's arrays —
/// a trainer's live arrays, so every run sees the weights as they are now, without a copy.
/// </summary>
public sealed class BoundForward : IDisposable
{
    readonly SessionOptions options = new() { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR };
    readonly InferenceSession session;
    readonly Dictionary<string, OrtValue> weights = new(StringComparer.Ordinal);
    readonly string output;

    public BoundForward(ModelProto graph, IReadOnlyDictionary<string, WeightTensor> weightArrays, string output)
    {
        this.output = output;
        session = new InferenceSession(graph.ToByteArray(), options);
        foreach (var name in session.InputMetadata.Keys)
            if (weightArrays.TryGetValue(name, out var w)) weights[name] = OrtValue.CreateTensorValueFromMemory(w.Data, w.Shape);
    }

    /// <summary>The output for the batch, [B, width] row-major.</summary>
    public float[] Run(TrainingBatch batch, out int width)
    {
        var owned = new List<OrtValue>();
        try
        {
            var names = new List<string>();
            var values = new List<OrtValue>();
            foreach (var name in session.InputMetadata.Keys)
            {
                if (weights.TryGetValue(name, out var w)) { names.Add(name); values.Add(w); continue; }
                var t = batch[name];
                var v = t.Int64s is not null ? OrtValue.CreateTensorValueFromMemory(t.Int64s, t.Shape) : OrtValue.CreateTensorValueFromMemory(t.Floats!, t.Shape);
                owned.Add(v);
                names.Add(name);
                values.Add(v);
            }
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, names, values, [output]);
            var shape = results[0].GetTensorTypeAndShape().Shape;
            width = (int)shape[1];
            return results[0].GetTensorDataAsSpan<float>().ToArray();
        }
        finally
        {
            foreach (var v in owned) v.Dispose();
        }
    }

    public void Dispose()
    {
        session.Dispose();
        foreach (var v in weights.Values) v.Dispose();
        options.Dispose();
    }
}
