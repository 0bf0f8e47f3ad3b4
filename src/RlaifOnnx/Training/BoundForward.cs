using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Onnx;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Training;

/// <summary>
/// One forward graph run by ONNX Runtime with its weights bound once as OrtValues over the caller's arrays —
/// a trainer's live arrays, so every run sees the weights as they are now, without a copy — or over memory the
/// caller bound already (<see cref="MappedWeights"/>).
/// </summary>
public sealed class BoundForward : IDisposable
{
    readonly SessionOptions options;
    readonly InferenceSession session;
    readonly Dictionary<string, OrtValue> weights = new(StringComparer.Ordinal);
    readonly List<OrtValue> owned = [];
    readonly string output;
    readonly bool sharedArena;

    /// <summary>
    /// <paramref name="graph"/> with its weight inputs bound to <paramref name="weightArrays"/> and to
    /// <paramref name="weightValues"/> (borrowed; they must outlive this). <paramref name="cpuMemoryArena"/> false turns
    /// ONNX Runtime's arena off, so a run's activations go back to the system after it instead of staying held at their
    /// high-water mark (as <see cref="TrainerOptions.CpuMemoryArena"/>); <paramref name="sharedArena"/> runs it on the process's
    /// shared arena instead, handed back after each run (<see cref="SharedArena"/>).
    /// </summary>
    public BoundForward(ModelProto graph, IReadOnlyDictionary<string, WeightTensor> weightArrays, string output,
        IReadOnlyDictionary<string, OrtValue>? weightValues = null, bool cpuMemoryArena = true, bool sharedArena = false)
    {
        this.output = output;
        this.sharedArena = sharedArena;
        options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
            EnableCpuMemArena = cpuMemoryArena,
        };
        if (!cpuMemoryArena) Core.CHeap.ReturnLargeFreedBlocks();
        if (sharedArena) SharedArena.UseIn(options);
        session = new InferenceSession(graph.ToByteArray(), options);
        foreach (var name in session.InputMetadata.Keys)
        {
            if (weightValues is not null && weightValues.TryGetValue(name, out var v)) weights[name] = v;
            else if (weightArrays.TryGetValue(name, out var w)) owned.Add(weights[name] = OrtValue.CreateTensorValueFromMemory(w.Data, w.Shape));
        }
    }

    /// <summary>The output for the batch, [B, width] row-major.</summary>
    public float[] Run(TrainingBatch batch, out int width)
    {
        var batchValues = new List<OrtValue>();
        try
        {
            var names = new List<string>();
            var values = new List<OrtValue>();
            foreach (var name in session.InputMetadata.Keys)
            {
                if (weights.TryGetValue(name, out var w)) { names.Add(name); values.Add(w); continue; }
                var t = batch[name];
                var v = t.Int64s is not null ? OrtValue.CreateTensorValueFromMemory(t.Int64s, t.Shape) : OrtValue.CreateTensorValueFromMemory(t.Floats!, t.Shape);
                batchValues.Add(v);
                names.Add(name);
                values.Add(v);
            }
            using var runOptions = new RunOptions();
            if (sharedArena) SharedArena.ReleaseAfter(runOptions);
            using var results = session.Run(runOptions, names, values, [output]);
            var shape = results[0].GetTensorTypeAndShape().Shape;
            width = (int)shape[1];
            return results[0].GetTensorDataAsSpan<float>().ToArray();
        }
        finally
        {
            foreach (var v in batchValues) v.Dispose();
        }
    }

    public void Dispose()
    {
        session.Dispose();
        foreach (var v in owned) v.Dispose();
        options.Dispose();
    }
}
