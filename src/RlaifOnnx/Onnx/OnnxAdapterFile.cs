using System.Runtime.InteropServices;
using Google.FlatBuffers;
using RlaifOnnx.Core;

namespace RlaifOnnx.Onnx;

/// <summary>
/// Writes ONNX Runtime's LoRA adapter file (.onnx_adapter): a FlatBuffer with the file identifier "TORT" and
/// the schema of onnxruntime/lora/adapter_format/adapter_schema.fbs — table Adapter { format_version,
/// adapter_version, model_version, parameters: [Parameter] }, table Parameter { name, dims: [int64],
/// data_type (1 = float), raw_data: [uint8] (8-byte aligned) }. ONNX Runtime (and GenAI's Adapters API on top
/// of it) feeds each parameter to the graph input of the same name for the runs the adapter is active in.
/// </summary>
public static class OnnxAdapterFile
{
    public const string Extension = ".onnx_adapter";
    /// <summary>The only adapter format version ONNX Runtime 1.20+ reads (adapter_format_version.h).</summary>
    public const int FormatVersion = 1;
    const int FloatDataType = 1;

    /// <summary>The adapter's bytes: one float parameter per entry, in the order given.</summary>
    public static byte[] Serialize(IEnumerable<(string Name, long[] Dims, float[] Values)> parameters, int adapterVersion = 0)
    {
        var list = parameters.ToList();
        var size = 1024 + list.Sum(p => p.Values.Length * 4 + p.Name.Length + p.Dims.Length * 8 + 64);
        var fbb = new FlatBufferBuilder(size);
        var offsets = new Offset<Parameter>[list.Count];
        for (var i = 0; i < list.Count; i++)
        {
            var (name, dims, values) = list[i];
            var nameOffset = fbb.CreateString(name);
            fbb.StartVector(sizeof(long), dims.Length, sizeof(long));
            for (var d = dims.Length - 1; d >= 0; d--) fbb.AddLong(dims[d]);
            var dimsOffset = fbb.EndVector();
            var bytes = MemoryMarshal.AsBytes(values.AsSpan());   // little-endian, as ONNX raw data
            // raw_data is force_align 8: ONNX Runtime makes tensors over these bytes in place.
            fbb.StartVector(1, bytes.Length, 8);
            fbb.Add(bytes.ToArray());
            var dataOffset = fbb.EndVector();
            fbb.StartTable(4);
            fbb.AddOffset(0, nameOffset.Value, 0);
            fbb.AddOffset(1, dimsOffset.Value, 0);
            fbb.AddInt(2, FloatDataType, 0);
            fbb.AddOffset(3, dataOffset.Value, 0);
            offsets[i] = new Offset<Parameter>(fbb.EndTable());
        }
        fbb.StartVector(sizeof(int), offsets.Length, sizeof(int));
        for (var i = offsets.Length - 1; i >= 0; i--) fbb.AddOffset(offsets[i].Value);
        var parametersOffset = fbb.EndVector();
        fbb.StartTable(4);
        fbb.AddInt(0, FormatVersion, 0);
        fbb.AddInt(1, adapterVersion, 0);
        fbb.AddInt(2, 0, 0);
        fbb.AddOffset(3, parametersOffset.Value, 0);
        var root = fbb.EndTable();
        fbb.Finish(root, "TORT");
        return fbb.SizedByteArray();
    }

    /// <summary>Writes the adapter to <paramref name="path"/> atomically (temp file + rename).</summary>
    public static void Write(string path, IEnumerable<(string Name, long[] Dims, float[] Values)> parameters, int adapterVersion = 0) =>
        AtomicFile.WriteAllBytes(path, Serialize(parameters, adapterVersion));

    /// <summary>Marker type for the parameter table's offsets.</summary>
    struct Parameter;
}
