using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using RlaifOnnx.Core;

namespace RlaifOnnx.Models.Import;

/// <summary>One tensor's entry in a safetensors header: dtype, shape and byte range within the data section.</summary>
public sealed record SafetensorsEntry(string Name, string Dtype, long[] Shape, long Begin, long End)
{
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>A tensor to write in any dtype, its bytes already little-endian (tests use it for F16/BF16 files).</summary>
public sealed record RawTensor(string Dtype, long[] Shape, byte[] Bytes);

/// <summary>
/// The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
/// length N, N bytes of JSON ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
/// {str: str}}), then the raw little-endian tensor bytes, offsets relative to the data section.
/// Tensors are read one at a time through positional reads, never the whole file into one array.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>The reference implementation refuses headers above 100 MB; so do we (a corrupt length reads as huge).</summary>
    const long MaxHeaderBytes = 100_000_000;

    readonly SafeFileHandle handle;
    readonly long dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, SafetensorsEntry> Entries { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    SafetensorsFile(string path, SafeFileHandle handle, long dataStart, Dictionary<string, SafetensorsEntry> entries, Dictionary<string, string> metadata)
    {
        Path = path; this.handle = handle; this.dataStart = dataStart; Entries = entries; Metadata = metadata;
    }

    /// <summary>Opens a file and validates its header: every tensor's range lies inside the file, matches its shape, and no two overlap.</summary>
    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw UserError.At(path, null, null, "no such safetensors file");
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            var fileLength = RandomAccess.GetLength(handle);
            if (fileLength < 8) throw UserError.At(path, null, null, $"not a safetensors file ({fileLength} bytes, shorter than the 8-byte header length)");
            Span<byte> lengthBytes = stackalloc byte[8];
            RandomAccess.Read(handle, lengthBytes, 0);
            var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            if (headerLength > MaxHeaderBytes || (long)headerLength > fileLength - 8)
                throw UserError.At(path, null, null, $"corrupt header: its length {headerLength} exceeds the file ({fileLength} bytes)");
            var headerBytes = new byte[headerLength];
            RandomAccess.Read(handle, headerBytes, 8);
            var dataStart = 8 + (long)headerLength;
            var (entries, metadata) = ParseHeader(path, headerBytes, fileLength - dataStart);
            return new SafetensorsFile(path, handle, dataStart, entries, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    static (Dictionary<string, SafetensorsEntry>, Dictionary<string, string>) ParseHeader(string path, byte[] headerBytes, long dataLength)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(headerBytes); }
        catch (JsonException e) { throw UserError.At(path, null, null, $"corrupt header: not valid JSON ({e.Message.Split('.')[0]})"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw UserError.At(path, null, null, "corrupt header: not a JSON object");

        var entries = new Dictionary<string, SafetensorsEntry>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var property in doc.RootElement.EnumerateObject())
        {
            if (property.Name == "__metadata__")
            {
                if (property.Value.ValueKind == JsonValueKind.Object)
                    foreach (var m in property.Value.EnumerateObject())
                        if (m.Value.ValueKind == JsonValueKind.String) metadata[m.Name] = m.Value.GetString()!;
                continue;
            }
            entries[property.Name] = ParseEntry(path, property.Name, property.Value, dataLength);
        }

        // Overlapping ranges mean a corrupt header: the reference implementation refuses them too.
        SafetensorsEntry? previous = null;
        foreach (var e in entries.Values.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (previous is not null && e.Begin < previous.End && e.End > e.Begin)
                throw UserError.At(path, null, e.Name, $"data_offsets [{e.Begin}, {e.End}] overlap tensor {previous.Name} [{previous.Begin}, {previous.End}]");
            if (e.End > e.Begin) previous = e;
        }
        return (entries, metadata);
    }

    static SafetensorsEntry ParseEntry(string path, string name, JsonElement value, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object
            || !value.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String
            || !value.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array
            || !value.TryGetProperty("data_offsets", out var offsetsEl) || offsetsEl.ValueKind != JsonValueKind.Array || offsetsEl.GetArrayLength() != 2)
            throw UserError.At(path, null, name, "corrupt header entry (needs dtype, shape and data_offsets [begin, end])");
        var dtype = dtypeEl.GetString()!;
        var shape = new long[shapeEl.GetArrayLength()];
        var i = 0;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (!d.TryGetInt64(out var dim) || dim < 0) throw UserError.At(path, null, name, $"corrupt shape {shapeEl.GetRawText()}");
            shape[i++] = dim;
        }
        if (!offsetsEl[0].TryGetInt64(out var begin) || !offsetsEl[1].TryGetInt64(out var end) || begin < 0 || end < begin)
            throw UserError.At(path, null, name, $"corrupt data_offsets {offsetsEl.GetRawText()}");
        if (end > dataLength)
            throw UserError.At(path, null, name, $"data_offsets [{begin}, {end}] lie outside the data section ({dataLength} bytes; the file is truncated or corrupt)");
        var entry = new SafetensorsEntry(name, dtype, shape, begin, end);
        var size = ElementSize(dtype);
        if (size > 0)
        {
            long expected;
            try { expected = checked(entry.Count * size); }
            catch (OverflowException) { throw UserError.At(path, null, name, $"shape {shapeEl.GetRawText()} is too large"); }
            if (end - begin != expected)
                throw UserError.At(path, null, name, $"data_offsets [{begin}, {end}] hold {end - begin} bytes but {dtype} {shapeEl.GetRawText()} needs {expected}");
        }
        return entry;
    }

    /// <summary>Bytes per element of a safetensors dtype; 0 when we do not know the dtype (reading it is then an error).</summary>
    public static int ElementSize(string dtype) => dtype switch
    {
        "F64" or "I64" or "U64" => 8,
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "I8" or "U8" or "BOOL" or "F8_E4M3" or "F8_E5M2" => 1,
        _ => 0,
    };

    public SafetensorsEntry Entry(string name) =>
        Entries.TryGetValue(name, out var e) ? e : throw UserError.At(Path, null, name, "tensor is not in this file");

    /// <summary>Reads one floating-point tensor (F32, F16, BF16 or F64) as float32.</summary>
    public WeightTensor ReadFloat(string name)
    {
        var e = Entry(name);
        if (e.Count > Array.MaxLength) throw UserError.At(Path, null, name, $"{e.Count} elements exceed one array");
        var data = new float[e.Count];
        switch (e.Dtype)
        {
            case "F32":
                // In chunks: a span of bytes over more than 2^31 bytes cannot exist.
                for (long start = 0; start < data.Length; start += 1 << 28)
                {
                    var count = (int)Math.Min(1 << 28, data.Length - start);
                    ReadInto(e with { Begin = e.Begin + 4 * start }, MemoryMarshal.AsBytes(data.AsSpan((int)start, count)));
                }
                if (!BitConverter.IsLittleEndian)
                {
                    var ints = MemoryMarshal.Cast<float, int>(data.AsSpan());
                    BinaryPrimitives.ReverseEndianness(ints, ints);
                }
                break;
            case "F16":
                ReadConverted(e, 2, (bytes, dest) => HalfToFloat(bytes, dest), data);
                break;
            case "BF16":
                ReadConverted(e, 2, (bytes, dest) => BFloat16ToFloat(bytes, dest), data);
                break;
            case "F64":
                ReadConverted(e, 8, (bytes, dest) =>
                {
                    for (var i = 0; i < dest.Length; i++) dest[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(bytes[(8 * i)..]);
                }, data);
                break;
            default:
                throw UserError.At(Path, null, name, $"dtype {e.Dtype} is not a floating-point type we read (F32, F16, BF16, F64)");
        }
        return new WeightTensor(e.Shape, data);
    }

    /// <summary>Reads one integer tensor (I64 or I32) as int64.</summary>
    public long[] ReadInt64(string name)
    {
        var e = Entry(name);
        if (e.Count > Array.MaxLength) throw UserError.At(Path, null, name, $"{e.Count} elements exceed one array");
        var data = new long[e.Count];
        switch (e.Dtype)
        {
            case "I64":
                ReadInto(e, MemoryMarshal.AsBytes(data.AsSpan()));
                if (!BitConverter.IsLittleEndian) BinaryPrimitives.ReverseEndianness(data, data);
                break;
            case "I32":
                var bytes = new byte[e.End - e.Begin];
                ReadInto(e, bytes);
                for (var i = 0; i < data.Length; i++) data[i] = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4 * i));
                break;
            default:
                throw UserError.At(Path, null, name, $"dtype {e.Dtype} is not an integer type we read (I64, I32)");
        }
        return data;
    }

    void ReadInto(SafetensorsEntry e, Span<byte> destination)
    {
        // RandomAccess.Read may return fewer bytes than asked; loop until the span is full.
        var offset = dataStart + e.Begin;
        while (!destination.IsEmpty)
        {
            var n = RandomAccess.Read(handle, destination, offset);
            if (n <= 0) throw UserError.At(Path, null, e.Name, "the file ended inside this tensor (truncated)");
            destination = destination[n..];
            offset += n;
        }
    }

    delegate void Converter(ReadOnlySpan<byte> bytes, Span<float> destination);

    /// <summary>Reads a narrow or wide dtype in 1 MiB chunks and converts each chunk, so no byte copy of the whole tensor exists.</summary>
    void ReadConverted(SafetensorsEntry e, int elementSize, Converter convert, float[] destination)
    {
        const int chunkElements = 1 << 20 >> 3;
        var buffer = new byte[chunkElements * elementSize];
        for (long start = 0; start < destination.Length; start += chunkElements)
        {
            var count = (int)Math.Min(chunkElements, destination.Length - start);
            var bytes = buffer.AsSpan(0, count * elementSize);
            ReadInto(e with { Begin = e.Begin + start * elementSize }, bytes);
            convert(bytes, destination.AsSpan((int)start, count));
        }
    }

    /// <summary>IEEE 754 binary16 (little-endian) → float32.</summary>
    public static void HalfToFloat(ReadOnlySpan<byte> bytes, Span<float> destination)
    {
        for (var i = 0; i < destination.Length; i++)
            destination[i] = (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(bytes[(2 * i)..]));
    }

    /// <summary>bfloat16 (little-endian) → float32: bfloat16 is the top half of a float32's bits.</summary>
    public static void BFloat16ToFloat(ReadOnlySpan<byte> bytes, Span<float> destination)
    {
        for (var i = 0; i < destination.Length; i++)
            destination[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes[(2 * i)..]) << 16);
    }

    public void Dispose() => handle.Dispose();

    // ---- writing ----

    /// <summary>Writes float32 tensors (names sorted, 8-byte aligned header) atomically.</summary>
    public static void Write(string path, IReadOnlyDictionary<string, WeightTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var raw = new Dictionary<string, (string, long[], Action<Stream>, long)>(StringComparer.Ordinal);
        foreach (var (name, t) in tensors)
        {
            if (t.Data.Length != t.Count) throw new ArgumentException($"{name}: {t.Data.Length} values for shape [{string.Join(",", t.Shape)}]");
            raw[name] = ("F32", t.Shape, s => WriteFloats(s, t.Data), 4L * t.Data.Length);
        }
        WriteEntries(path, raw, metadata);
    }

    /// <summary>Writes tensors whose bytes are given as they are (any dtype), atomically.</summary>
    public static void WriteRaw(string path, IReadOnlyDictionary<string, RawTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var raw = new Dictionary<string, (string, long[], Action<Stream>, long)>(StringComparer.Ordinal);
        foreach (var (name, t) in tensors) raw[name] = (t.Dtype, t.Shape, s => s.Write(t.Bytes), t.Bytes.Length);
        WriteEntries(path, raw, metadata);
    }

    static void WriteFloats(Stream stream, float[] data)
    {
        if (BitConverter.IsLittleEndian) { stream.Write(MemoryMarshal.AsBytes(data.AsSpan())); return; }
        var bytes = new byte[4];
        foreach (var v in data) { BinaryPrimitives.WriteSingleLittleEndian(bytes, v); stream.Write(bytes); }
    }

    static void WriteEntries(string path, Dictionary<string, (string Dtype, long[] Shape, Action<Stream> Write, long Bytes)> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var names = tensors.Keys.OrderBy(n => n, StringComparer.Ordinal).ToList();
        var header = new MemoryStream();
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var name in names)
            {
                var t = tensors[name];
                w.WriteStartObject(name);
                w.WriteString("dtype", t.Dtype);
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + t.Bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += t.Bytes;
            }
            w.WriteEndObject();
        }
        // The format pads the header with spaces so the data section starts 8-byte aligned.
        var headerLength = header.Length;
        var padded = (headerLength + 7) / 8 * 8;
        AtomicFile.Write(path, stream =>
        {
            Span<byte> lengthBytes = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(lengthBytes, (ulong)padded);
            stream.Write(lengthBytes);
            stream.Write(header.GetBuffer().AsSpan(0, (int)headerLength));
            for (var i = headerLength; i < padded; i++) stream.WriteByte((byte)' ');
            foreach (var name in names) tensors[name].Write(stream);
        });
    }
}

/// <summary>
/// A checkpoint folder's safetensors weights: either one model.safetensors, or shards listed by
/// model.safetensors.index.json ({"metadata": {...}, "weight_map": {tensor name: shard file}}).
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    readonly Dictionary<string, SafetensorsFile> files;
    readonly Dictionary<string, SafetensorsFile> byTensor;

    SafetensorsCheckpoint(Dictionary<string, SafetensorsFile> files, Dictionary<string, SafetensorsFile> byTensor)
    {
        this.files = files; this.byTensor = byTensor;
    }

    /// <summary>Every tensor name in the checkpoint, sorted.</summary>
    public IEnumerable<string> Names => byTensor.Keys.OrderBy(n => n, StringComparer.Ordinal);
    public SafetensorsEntry Entry(string name) => byTensor[name].Entry(name);
    public WeightTensor ReadFloat(string name) => byTensor[name].ReadFloat(name);
    /// <summary>The shard files, for listing.</summary>
    public IEnumerable<string> FilePaths => files.Keys;

    public static bool Exists(string dir) =>
        File.Exists(System.IO.Path.Combine(dir, IndexFile)) || File.Exists(System.IO.Path.Combine(dir, SingleFile));

    public static SafetensorsCheckpoint Open(string dir)
    {
        var indexPath = System.IO.Path.Combine(dir, IndexFile);
        var singlePath = System.IO.Path.Combine(dir, SingleFile);
        var files = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        var byTensor = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            if (File.Exists(indexPath))
            {
                foreach (var (name, shard) in ReadWeightMap(indexPath))
                {
                    var shardPath = ResolveShard(dir, shard, indexPath, name);
                    if (!files.TryGetValue(shardPath, out var file)) files[shardPath] = file = SafetensorsFile.Open(shardPath);
                    if (!file.Entries.ContainsKey(name))
                        throw UserError.At(indexPath, null, name, $"weight_map points to {shard}, which does not hold it");
                    byTensor[name] = file;
                }
            }
            else if (File.Exists(singlePath))
            {
                var file = files[singlePath] = SafetensorsFile.Open(singlePath);
                foreach (var name in file.Entries.Keys) byTensor[name] = file;
            }
            else
            {
                var hint = File.Exists(System.IO.Path.Combine(dir, "pytorch_model.bin")) ? " (pytorch_model.bin is not read: convert it to safetensors)" : "";
                throw UserError.At(dir, null, null, $"no {SingleFile} or {IndexFile}{hint}");
            }
            return new SafetensorsCheckpoint(files, byTensor);
        }
        catch
        {
            foreach (var f in files.Values) f.Dispose();
            throw;
        }
    }

    static IEnumerable<(string Name, string Shard)> ReadWeightMap(string indexPath)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(indexPath)); }
        catch (JsonException e) { throw UserError.At(indexPath, (int?)e.LineNumber + 1, null, $"malformed JSON ({e.Message.Split('.')[0]})"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            throw UserError.At(indexPath, null, "weight_map", "is missing");
        var list = new List<(string, string)>();
        foreach (var p in map.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String) throw UserError.At(indexPath, null, $"weight_map.{p.Name}", "must be a file name");
            list.Add((p.Name, p.Value.GetString()!));
        }
        return list;
    }

    /// <summary>Shard names come from a file we did not write: they must stay inside the checkpoint folder.</summary>
    static string ResolveShard(string dir, string shard, string indexPath, string tensor)
    {
        var root = System.IO.Path.GetFullPath(dir);
        var full = System.IO.Path.GetFullPath(System.IO.Path.Combine(root, shard));
        if (!full.StartsWith(root.TrimEnd(System.IO.Path.DirectorySeparatorChar) + System.IO.Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw UserError.At(indexPath, null, $"weight_map.{tensor}", $"shard '{shard}' escapes the checkpoint folder");
        if (!File.Exists(full)) throw UserError.At(indexPath, null, $"weight_map.{tensor}", $"shard file {shard} is missing");
        return full;
    }

    /// <summary>
    /// Writes float32 tensors as one model.safetensors, or, when they exceed <paramref name="maxShardBytes"/>,
    /// as model-0000k-of-0000n.safetensors shards plus the index (names sorted; a tensor is never split).
    /// </summary>
    public static void Write(string dir, IReadOnlyDictionary<string, WeightTensor> tensors, long? maxShardBytes = null)
    {
        Directory.CreateDirectory(dir);
        var names = tensors.Keys.OrderBy(n => n, StringComparer.Ordinal).ToList();
        var total = names.Sum(n => 4L * tensors[n].Data.Length);
        if (maxShardBytes is null || total <= maxShardBytes)
        {
            SafetensorsFile.Write(System.IO.Path.Combine(dir, SingleFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
            return;
        }
        var shards = new List<List<string>> { new() };
        long current = 0;
        foreach (var name in names)
        {
            var bytes = 4L * tensors[name].Data.Length;
            if (current > 0 && current + bytes > maxShardBytes) { shards.Add([]); current = 0; }
            shards[^1].Add(name);
            current += bytes;
        }
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (var k = 0; k < shards.Count; k++)
        {
            var file = $"model-{k + 1:D5}-of-{shards.Count:D5}.safetensors";
            SafetensorsFile.Write(System.IO.Path.Combine(dir, file), shards[k].ToDictionary(n => n, n => tensors[n]), new Dictionary<string, string> { ["format"] = "pt" });
            foreach (var n in shards[k]) weightMap[n] = file;
        }
        var index = new { metadata = new { total_size = total }, weight_map = weightMap };
        AtomicFile.WriteAllText(System.IO.Path.Combine(dir, IndexFile), JsonSerializer.Serialize(index, new JsonSerializerOptions { WriteIndented = true }));
    }

    public void Dispose()
    {
        foreach (var f in files.Values) f.Dispose();
    }
}
