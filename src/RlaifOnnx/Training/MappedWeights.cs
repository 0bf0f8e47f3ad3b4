using System.IO.MemoryMappedFiles;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Onnx;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Training;

/// <summary>
/// Float initializers of an ONNX model file that live in its external data file, as OrtValues over one read-only
/// memory map of that file — no copy of them on this process's heap. ONNX Runtime maps the external data of a
/// model it loads from a path into memory as well (and, with prepacking off, runs MatMul on those pages as they
/// are), so GenAI's session over a model folder and trainers bound to these values read the same page-cache
/// pages: the weights are resident once. (Linux's VmRSS counts such a page once per mapping, PSS once.)
/// Tensors small enough to be stored inside the model file (norm scales) are copied into arrays.
/// The file must not change while this is open.
/// </summary>
public sealed unsafe class MappedWeights : IDisposable
{
    readonly MemoryMappedFile file;
    readonly MemoryMappedViewAccessor view;
    readonly byte* start;
    readonly Dictionary<string, (long[] Shape, long Offset, long Length)> tensors = new(StringComparer.Ordinal);
    readonly Dictionary<string, OrtValue> values = new(StringComparer.Ordinal);
    readonly Dictionary<string, float[]> inline = new(StringComparer.Ordinal);

    /// <summary>The data file mapped (the one every tensor here lies in).</summary>
    public string DataFile { get; }

    /// <summary>
    /// Maps the initializers <paramref name="shapes"/> names (each must be a float tensor of that shape stored in
    /// one and the same external data file) of the model at <paramref name="modelPath"/>.
    /// </summary>
    public MappedWeights(string modelPath, IReadOnlyDictionary<string, long[]> shapes)
    {
        modelPath = Path.GetFullPath(modelPath);
        var model = OnnxFile.Load(modelPath, loadExternalData: false);
        string? location = null;
        foreach (var t in model.Graph.Initializer)
        {
            if (!shapes.TryGetValue(t.Name, out var shape)) continue;
            if ((TensorProto.Types.DataType)t.DataType != TensorProto.Types.DataType.Float)
                throw new InvalidOperationException($"{modelPath}: initializer {t.Name} is not a float tensor");
            if (!t.Dims.SequenceEqual(shape))
                throw new InvalidOperationException($"{modelPath}: initializer {t.Name} has shape [{string.Join(",", t.Dims)}], expected [{string.Join(",", shape)}]");
            if (t.DataLocation != TensorProto.Types.DataLocation.External)
            {
                inline[t.Name] = OnnxFile.ToFloats(t);
                continue;
            }
            var (where, offset, length) = OnnxFile.ExternalInfo(t, modelPath);
            if (location is not null && where != location) throw new InvalidOperationException($"{modelPath}: the weights lie in more than one external data file");
            location = where;
            tensors[t.Name] = (shape, offset, length < 0 ? shape.Aggregate(4L, (a, b) => a * b) : length);
        }
        var missing = shapes.Keys.Where(n => !tensors.ContainsKey(n) && !inline.ContainsKey(n)).ToList();
        if (missing.Count > 0) throw new InvalidOperationException($"{modelPath}: no initializer {string.Join(", ", missing)}");
        if (location is null) throw new InvalidOperationException($"{modelPath}: no weight lies in external data");
        DataFile = OnnxFile.ResolveInside(Path.GetDirectoryName(modelPath)!, location, modelPath, tensors.Keys.First());
        var size = new FileInfo(DataFile).Length;
        foreach (var (name, (shape, offset, length)) in tensors)
            if (offset < 0 || offset + length > size || length != shape.Aggregate(4L, (a, b) => a * b))
                throw new InvalidOperationException($"{modelPath}: initializer {name}'s range {offset}+{length} does not fit {DataFile} ({size} bytes) or its shape");
        file = MemoryMappedFile.CreateFromFile(DataFile, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        start = p + view.PointerOffset;
        foreach (var (name, (shape, offset, length)) in tensors)
            values[name] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float, shape, (IntPtr)(start + offset), length);
        foreach (var (name, data) in inline) values[name] = OrtValue.CreateTensorValueFromMemory(data, shapes[name]);
    }

    /// <summary>The mapped tensors as OrtValues (owned by this object: valid until it is disposed).</summary>
    public IReadOnlyDictionary<string, OrtValue> Values => values;

    /// <summary>One tensor's values, read in place.</summary>
    public ReadOnlySpan<float> Span(string name)
    {
        if (inline.TryGetValue(name, out var data)) return data;
        var (_, offset, length) = tensors[name];
        return new ReadOnlySpan<float>(start + offset, checked((int)(length / 4)));
    }

    /// <summary>Shape of one tensor.</summary>
    public long[] Shape(string name) => inline.TryGetValue(name, out var data) ? values[name].GetTensorTypeAndShape().Shape : tensors[name].Shape;

    /// <summary>Every tensor copied into arrays (e.g. for an export that merges into them).</summary>
    public WeightSet Copy()
    {
        var set = new WeightSet();
        foreach (var name in values.Keys) set[name] = new WeightTensor(Shape(name), Span(name).ToArray());
        return set;
    }

    public void Dispose()
    {
        foreach (var v in values.Values) v.Dispose();
        values.Clear();
        view.SafeMemoryMappedViewHandle.ReleasePointer();
        view.Dispose();
        file.Dispose();
    }
}
