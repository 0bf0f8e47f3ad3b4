using System.Buffers.Binary;
using System.Text;
using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;

namespace RlaifOnnx.Tests.Models.Import;

public class SafetensorsTests
{
    [Fact]
    public void Float32RoundTripKeepsNamesShapesAndValues()
    {
        using var dir = new TempDir();
        var path = dir.File("t.safetensors");
        var tensors = new Dictionary<string, WeightTensor>
        {
            ["b.weight"] = new([2, 3], [1f, -2.5f, 3.25f, float.Epsilon, -0f, 1e30f]),
            ["a.bias"] = new([3], [0.1f, 0.2f, 0.3f]),
            ["scalar"] = new([], [7f]),
            ["empty"] = new([0, 4], []),
        };
        SafetensorsFile.Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["a.bias", "b.weight", "empty", "scalar"], file.Entries.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("pt", file.Metadata["format"]);
        foreach (var (name, t) in tensors)
        {
            var back = file.ReadFloat(name);
            Assert.Equal(t.Shape, back.Shape);
            Assert.Equal(t.Data, back.Data);
        }
    }

    [Fact]
    public void WrittenLayoutIsTheFormatsLayout()
    {
        using var dir = new TempDir();
        var path = dir.File("t.safetensors");
        SafetensorsFile.Write(path, new Dictionary<string, WeightTensor> { ["z"] = new([2], [1f, 2f]), ["a"] = new([1], [3f]) });
        var bytes = File.ReadAllBytes(path);
        var n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, n % 8); // data section 8-byte aligned
        var header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.Equal("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"z\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", header.TrimEnd(' '));
        Assert.Equal(8 + n + 12, bytes.Length);
        // Sorted names: "a" first, then z's two floats, little-endian.
        Assert.Equal(3f, BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)(8 + n))));
        Assert.Equal(2f, BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)(8 + n + 8))));
    }

    [Fact]
    public void HalfAndBFloat16AreConvertedToFloat32()
    {
        using var dir = new TempDir();
        var path = dir.File("t.safetensors");
        // F16 bit patterns: 1.0, -2.0, 65504 (largest), 2^-24 (smallest subnormal), 0.333251953125, +inf.
        ushort[] f16 = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3555, 0x7C00];
        // BF16 bit patterns: 1.0, -2.0, 3.140625, 1e-38-ish subnormal-free small value 2^-126, -0.
        ushort[] bf16 = [0x3F80, 0xC000, 0x4049, 0x0080, 0x8000];
        SafetensorsFile.WriteRaw(path, new Dictionary<string, RawTensor>
        {
            ["h"] = new("F16", [2, 3], Little(f16)),
            ["b"] = new("BF16", [5], Little(bf16)),
            ["d"] = new("F64", [2], [.. BitConverter.GetBytes(0.5), .. BitConverter.GetBytes(-1.25)]),
            ["i"] = new("I64", [2], [.. BitConverter.GetBytes(-3L), .. BitConverter.GetBytes(1L << 40)]),
            ["j"] = new("I32", [1], BitConverter.GetBytes(42)),
        });
        using var file = SafetensorsFile.Open(path);
        Assert.Equal([1f, -2f, 65504f, 5.9604645e-8f, 0.333251953125f, float.PositiveInfinity], file.ReadFloat("h").Data);
        Assert.Equal([2L, 3L], file.ReadFloat("h").Shape);
        Assert.Equal([1f, -2f, 3.140625f, 1.1754944e-38f, -0f], file.ReadFloat("b").Data);
        Assert.True(float.IsNegative(file.ReadFloat("b").Data[4]));
        Assert.Equal([0.5f, -1.25f], file.ReadFloat("d").Data);
        Assert.Equal([-3L, 1L << 40], file.ReadInt64("i"));
        Assert.Equal([42L], file.ReadInt64("j"));
        Assert.Contains("dtype I64 is not a floating-point type", Assert.Throws<UserError>(() => file.ReadFloat("i")).Message);
    }

    static byte[] Little(ushort[] values)
    {
        var bytes = new byte[2 * values.Length];
        for (var i = 0; i < values.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), values[i]);
        return bytes;
    }

    [Fact]
    public void TruncatedFileIsAnErrorNamingFileAndTensor()
    {
        using var dir = new TempDir();
        var path = dir.File("t.safetensors");
        SafetensorsFile.Write(path, new Dictionary<string, WeightTensor> { ["w"] = new([4, 4], new float[16]) });
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^10]);
        var error = Assert.Throws<UserError>(() => SafetensorsFile.Open(path));
        Assert.Equal($"{path}: w: data_offsets [0, 64] lie outside the data section (54 bytes; the file is truncated or corrupt)", error.Message);
    }

    [Fact]
    public void CorruptHeadersAreErrors()
    {
        using var dir = new TempDir();
        var path = dir.File("t.safetensors");

        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Contains("shorter than the 8-byte header length", Assert.Throws<UserError>(() => SafetensorsFile.Open(path)).Message);

        File.WriteAllBytes(path, [.. BitConverter.GetBytes(1_000_000L), .. "{}"u8]);
        Assert.Contains("corrupt header: its length 1000000 exceeds the file", Assert.Throws<UserError>(() => SafetensorsFile.Open(path)).Message);

        WriteHeader(path, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2", 8);
        Assert.Contains("corrupt header: not valid JSON", Assert.Throws<UserError>(() => SafetensorsFile.Open(path)).Message);

        WriteHeader(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
        Assert.Equal($"{path}: w: data_offsets [0, 8] hold 8 bytes but F32 [3] needs 12", Assert.Throws<UserError>(() => SafetensorsFile.Open(path)).Message);

        WriteHeader(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
        Assert.Contains("v: data_offsets [4, 8] overlap tensor w", Assert.Throws<UserError>(() => SafetensorsFile.Open(path)).Message);

        WriteHeader(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8);
        Assert.Contains("w: corrupt data_offsets [8,0]", Assert.Throws<UserError>(() => SafetensorsFile.Open(path)).Message);
    }

    static void WriteHeader(string path, string header, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(header);
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)h.Length), .. h, .. new byte[dataBytes]]);
    }

    [Fact]
    public void ShardedCheckpointSplitsAndReadsBackThroughTheIndex()
    {
        using var dir = new TempDir();
        var tensors = new Dictionary<string, WeightTensor>();
        for (var i = 0; i < 5; i++) tensors[$"t{i}"] = new([10], Enumerable.Range(0, 10).Select(k => i * 100f + k).ToArray());
        SafetensorsCheckpoint.Write(dir.Path, tensors, maxShardBytes: 100); // 40 bytes each → two per shard

        Assert.False(File.Exists(dir.File("model.safetensors")));
        Assert.True(File.Exists(dir.File("model-00003-of-00003.safetensors")));
        using var checkpoint = SafetensorsCheckpoint.Open(dir.Path);
        Assert.Equal(3, checkpoint.FilePaths.Count());
        Assert.Equal(tensors.Keys.Order(), checkpoint.Names);
        foreach (var (name, t) in tensors) Assert.Equal(t.Data, checkpoint.ReadFloat(name).Data);
    }

    [Fact]
    public void IndexPointingOutsideTheFolderOrToAMissingShardIsAnError()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("model.safetensors.index.json"), "{\"weight_map\": {\"w\": \"../x.safetensors\"}}");
        Assert.Contains("w: shard '../x.safetensors' escapes the checkpoint folder", Assert.Throws<UserError>(() => SafetensorsCheckpoint.Open(dir.Path)).Message);
        File.WriteAllText(dir.File("model.safetensors.index.json"), "{\"weight_map\": {\"w\": \"model-00001-of-00002.safetensors\"}}");
        Assert.Contains("shard file model-00001-of-00002.safetensors is missing", Assert.Throws<UserError>(() => SafetensorsCheckpoint.Open(dir.Path)).Message);
        File.WriteAllText(dir.File("model.safetensors.index.json"), "{\n  \"weight_map\": {\n    \"w\": 3,\n  }\n}");
        Assert.Contains("model.safetensors.index.json:4: malformed JSON", Assert.Throws<UserError>(() => SafetensorsCheckpoint.Open(dir.Path)).Message);
    }
}
