using Google.Protobuf;
using Onnx;
using RlaifOnnx.Core;

namespace RlaifOnnx.Onnx;

/// <summary>
/// Reads and writes ONNX models (protobuf) whose large tensors live in an external-data file beside
/// the model, the layout ONNX Runtime and GenAI load. External-data locations are resolved inside the
/// model's folder only: a location that escapes it is an error, never a file read.
/// </summary>
public static class OnnxFile
{
    /// <summary>Tensors at least this large go to the external-data file (ONNX's own default is 1 KiB).</summary>
    public const int ExternalThresholdBytes = 1024;

    /// <summary>Parses a model; with <paramref name="loadExternalData"/> external tensors are read into raw_data.</summary>
    public static ModelProto Load(string path, bool loadExternalData = true)
    {
        if (!File.Exists(path)) throw UserError.At(path, null, null, "no such ONNX file");
        ModelProto model;
        try
        {
            using var stream = File.OpenRead(path);
            model = ModelProto.Parser.ParseFrom(stream);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw UserError.At(path, null, null, $"not a valid ONNX model ({e.Message})");
        }
        if (model.Graph is null) throw UserError.At(path, null, "graph", "the model has no graph");
        if (loadExternalData) LoadExternalData(model, path);
        return model;
    }

    /// <summary>Reads every external tensor of the model into its raw_data and clears its external reference.</summary>
    public static void LoadExternalData(ModelProto model, string modelPath)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(modelPath))!;
        var open = new Dictionary<string, FileStream>();
        try
        {
            foreach (var tensor in AllTensors(model.Graph))
            {
                if (tensor.DataLocation != TensorProto.Types.DataLocation.External) continue;
                var (location, offset, length) = ExternalInfo(tensor, modelPath);
                var file = ResolveInside(folder, location, modelPath, tensor.Name);
                if (!open.TryGetValue(file, out var stream))
                {
                    if (!File.Exists(file))
                        throw UserError.At(modelPath, null, $"initializer {tensor.Name}", $"external data file '{location}' is missing");
                    open[file] = stream = File.OpenRead(file);
                }
                if (length < 0) length = stream.Length - offset;
                if (offset < 0 || offset + length > stream.Length)
                    throw UserError.At(modelPath, null, $"initializer {tensor.Name}", $"external data range {offset}+{length} lies outside '{location}' ({stream.Length} bytes)");
                var bytes = new byte[length];
                stream.Position = offset;
                stream.ReadExactly(bytes);
                tensor.RawData = ByteString.CopyFrom(bytes);
                tensor.ExternalData.Clear();
                tensor.DataLocation = TensorProto.Types.DataLocation.Default;
            }
        }
        finally
        {
            foreach (var s in open.Values) s.Dispose();
        }
    }

    /// <summary>
    /// Writes the model to <paramref name="path"/> with tensors of at least <paramref name="thresholdBytes"/>
    /// in <paramref name="externalDataFileName"/> (beside it), both atomically (temp file + rename).
    /// The model passed in is not copied: its tensors point at the external file while it is written and get their data back after.
    /// </summary>
    public static void Save(ModelProto model, string path, string? externalDataFileName = null, int thresholdBytes = ExternalThresholdBytes)
    {
        var full = Path.GetFullPath(path);
        var folder = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(folder);
        Orphans.RemoveBeside(full);   // what killed writers left
        if (externalDataFileName is not null) Orphans.RemoveBeside(Path.Combine(folder, externalDataFileName));
        string? dataTemp = null;
        // The model is not copied (it may hold every weight of a large model): its large tensors point at the
        // external file while it is written, and get their data back afterwards.
        var moved = new List<(TensorProto Tensor, TensorProto Original)>();
        try
        {
            if (externalDataFileName is not null)
            {
                if (externalDataFileName.Contains('/') || externalDataFileName.Contains('\\'))
                    throw new ArgumentException("external data file name must be a bare file name", nameof(externalDataFileName));
                dataTemp = Path.Combine(folder, $".{externalDataFileName}.{Environment.ProcessId}.tmp");
                using var data = File.Create(dataTemp);
                foreach (var tensor in AllTensors(model.Graph))
                {
                    if (tensor.DataLocation == TensorProto.Types.DataLocation.External)
                        throw new InvalidOperationException($"tensor {tensor.Name} still refers to external data; load it before saving");
                    var length = DataLength(tensor);
                    if (length < thresholdBytes) continue;
                    // 64-byte alignment lets ONNX Runtime map the file directly.
                    var pad = (64 - data.Position % 64) % 64;
                    for (var i = 0; i < pad; i++) data.WriteByte(0);
                    var offset = data.Position;
                    if (!tensor.RawData.IsEmpty) data.Write(tensor.RawData.Span);
                    else data.Write(RawBytes(tensor));
                    moved.Add((tensor, tensor.Clone()));
                    ClearData(tensor);
                    tensor.DataLocation = TensorProto.Types.DataLocation.External;
                    tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = externalDataFileName });
                    tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString() });
                    tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = length.ToString() });
                }
            }
            var modelTemp = Path.Combine(folder, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
            using (var stream = File.Create(modelTemp)) model.WriteTo(stream);
            if (dataTemp is not null) File.Move(dataTemp, Path.Combine(folder, externalDataFileName!), overwrite: true);
            File.Move(modelTemp, full, overwrite: true);
        }
        finally
        {
            foreach (var (tensor, original) in moved)
            {
                tensor.ExternalData.Clear();
                tensor.DataLocation = original.DataLocation;
                tensor.RawData = original.RawData;
                tensor.FloatData.Add(original.FloatData); tensor.DoubleData.Add(original.DoubleData);
                tensor.Int32Data.Add(original.Int32Data); tensor.Int64Data.Add(original.Int64Data);
            }
            if (dataTemp is not null && File.Exists(dataTemp)) File.Delete(dataTemp);
        }
    }

    /// <summary>The byte length of a tensor's data in raw layout (0 when it has none we can write).</summary>
    static long DataLength(TensorProto t)
    {
        if (!t.RawData.IsEmpty) return t.RawData.Length;
        return (TensorProto.Types.DataType)t.DataType switch
        {
            TensorProto.Types.DataType.Float => t.FloatData.Count * 4L,
            TensorProto.Types.DataType.Double => t.DoubleData.Count * 8L,
            TensorProto.Types.DataType.Int64 => t.Int64Data.Count * 8L,
            TensorProto.Types.DataType.Int32 => t.Int32Data.Count * 4L,
            _ => 0,
        };
    }

    /// <summary>The tensor's bytes in little-endian raw layout, converting typed fields (float_data …) when needed.</summary>
    public static byte[]? RawBytes(TensorProto t)
    {
        if (!t.RawData.IsEmpty) return t.RawData.ToByteArray();
        switch ((TensorProto.Types.DataType)t.DataType)
        {
            case TensorProto.Types.DataType.Float when t.FloatData.Count > 0:
                return System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.FloatData.ToArray().AsSpan()).ToArray();
            case TensorProto.Types.DataType.Double when t.DoubleData.Count > 0:
                return System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.DoubleData.ToArray().AsSpan()).ToArray();
            case TensorProto.Types.DataType.Int64 when t.Int64Data.Count > 0:
                return System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.Int64Data.ToArray().AsSpan()).ToArray();
            case TensorProto.Types.DataType.Int32 when t.Int32Data.Count > 0:
                return System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.Int32Data.ToArray().AsSpan()).ToArray();
            default:
                return null;
        }
    }

    /// <summary>
    /// A float tensor's values from a model loaded without its external data (<c>Load(path, false)</c>): an
    /// external tensor is read from its file straight into the result, so reading a model's weights holds one
    /// copy of them, not the file's bytes and then the floats. Locations are checked as <see cref="LoadExternalData"/> does.
    /// </summary>
    public static float[] ReadFloats(TensorProto t, string modelPath)
    {
        if (t.DataLocation != TensorProto.Types.DataLocation.External) return ToFloats(t);
        if ((TensorProto.Types.DataType)t.DataType != TensorProto.Types.DataType.Float)
            throw new InvalidOperationException($"tensor {t.Name} is {(TensorProto.Types.DataType)t.DataType}, not float");
        var (location, offset, length) = ExternalInfo(t, modelPath);
        var file = ResolveInside(Path.GetDirectoryName(Path.GetFullPath(modelPath))!, location, modelPath, t.Name);
        if (!File.Exists(file)) throw UserError.At(modelPath, null, $"initializer {t.Name}", $"external data file '{location}' is missing");
        using var stream = File.OpenRead(file);
        if (length < 0) length = stream.Length - offset;
        if (offset < 0 || offset + length > stream.Length || length % 4 != 0)
            throw UserError.At(modelPath, null, $"initializer {t.Name}", $"external data range {offset}+{length} lies outside '{location}' ({stream.Length} bytes)");
        var values = new float[length / 4];
        stream.Position = offset;
        stream.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    /// <summary>A float tensor's values, whichever field holds them.</summary>
    public static float[] ToFloats(TensorProto t)
    {
        if ((TensorProto.Types.DataType)t.DataType != TensorProto.Types.DataType.Float)
            throw new InvalidOperationException($"tensor {t.Name} is {(TensorProto.Types.DataType)t.DataType}, not float");
        if (t.DataLocation == TensorProto.Types.DataLocation.External)
            throw new InvalidOperationException($"tensor {t.Name} refers to external data that was not loaded");
        if (t.FloatData.Count > 0) return t.FloatData.ToArray();
        var bytes = t.RawData.Span;
        var values = new float[bytes.Length / 4];
        bytes.CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    /// <summary>
    /// A float tensor proto whose raw_data is a view of <paramref name="values"/>, not a copy: for graphs built only
    /// to be written (a model folder's weights), so writing a model does not hold a second copy of its weights. The
    /// tensor reads the array as it is when it is serialised.
    /// </summary>
    public static TensorProto FloatTensorView(string name, float[] values, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.AddRange(dims);
        t.RawData = UnsafeByteOperations.UnsafeWrap(new FloatBytes(values).Memory);
        return t;
    }

    /// <summary>A float array's bytes as Memory&lt;byte&gt; (little-endian, as ONNX raw data), without a copy.</summary>
    sealed class FloatBytes(float[] values) : System.Buffers.MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan());
        public override unsafe System.Buffers.MemoryHandle Pin(int elementIndex = 0)
        {
            var handle = System.Runtime.InteropServices.GCHandle.Alloc(values, System.Runtime.InteropServices.GCHandleType.Pinned);
            return new System.Buffers.MemoryHandle((byte*)handle.AddrOfPinnedObject() + elementIndex, handle);
        }
        public override void Unpin() { }
        protected override void Dispose(bool disposing) { }
    }

    /// <summary>A float tensor proto holding <paramref name="values"/> in raw_data.</summary>
    public static TensorProto FloatTensor(string name, ReadOnlySpan<float> values, params long[] dims)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.AddRange(dims);
        t.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values));
        return t;
    }

    static void ClearData(TensorProto t)
    {
        t.RawData = ByteString.Empty;
        t.FloatData.Clear(); t.DoubleData.Clear(); t.Int32Data.Clear(); t.Int64Data.Clear();
    }

    internal static (string location, long offset, long length) ExternalInfo(TensorProto t, string modelPath)
    {
        string? location = null; long offset = 0, length = -1;
        foreach (var e in t.ExternalData)
        {
            switch (e.Key)
            {
                case "location": location = e.Value; break;
                case "offset": offset = long.Parse(e.Value); break;
                case "length": length = long.Parse(e.Value); break;
            }
        }
        if (string.IsNullOrEmpty(location))
            throw UserError.At(modelPath, null, $"initializer {t.Name}", "external data has no location");
        return (location, offset, length);
    }

    /// <summary>
    /// Resolves an external-data location against the model folder, refusing any path that leaves it: by
    /// "../" or an absolute path, or through a symbolic link in any component (a linked folder as much as a
    /// linked file), compared by real paths on both sides.
    /// </summary>
    public static string ResolveInside(string folder, string location, string modelPath, string tensorName)
    {
        var root = Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        var full = Path.GetFullPath(Path.Combine(root, location));
        if (Path.IsPathRooted(location) || !full.StartsWith(root, StringComparison.Ordinal))
            throw UserError.At(modelPath, null, $"initializer {tensorName}", $"external data location '{location}' escapes the model folder");
        var realRoot = RealPath(root.TrimEnd(Path.DirectorySeparatorChar)) + Path.DirectorySeparatorChar;
        if (!RealPath(full).StartsWith(realRoot, StringComparison.Ordinal))
            throw UserError.At(modelPath, null, $"initializer {tensorName}", $"external data location '{location}' links outside the model folder");
        return full;
    }

    /// <summary>
    /// <paramref name="path"/> with every symbolic link along it followed (the folders' as well as the
    /// last component's), as realpath(3) gives it; components that do not exist are kept as they are.
    /// </summary>
    internal static string RealPath(string path)
    {
        var full = Path.GetFullPath(path);
        var rootPart = Path.GetPathRoot(full)!;
        var current = rootPart;
        var parts = full[rootPart.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        for (var i = 0; i < parts.Length; i++)
        {
            var next = Path.Combine(current, parts[i]);
            FileSystemInfo info = Directory.Exists(next) ? new DirectoryInfo(next) : new FileInfo(next);
            if (info.Exists && info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is { } target)
                next = RealPath(target.FullName);
            current = next;
        }
        return current;
    }

    static IEnumerable<TensorProto> AllTensors(GraphProto graph)
    {
        foreach (var t in graph.Initializer) yield return t;
        foreach (var node in graph.Node)
            foreach (var a in node.Attribute)
            {
                if (a.T is not null) yield return a.T;
                foreach (var t in a.Tensors) yield return t;
                if (a.G is not null) foreach (var t in AllTensors(a.G)) yield return t;
                foreach (var g in a.Graphs) foreach (var t in AllTensors(g)) yield return t;
            }
    }
}
