using Onnx;
using RlaifOnnx.Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace RlaifOnnx.Models.Import;

/// <summary>
/// Weight values of an exported graph as float32, whatever the export stored: float32 as is, float16 and
/// bfloat16 widened exactly (every half value is a float32 value), and com.microsoft MatMulNBits' blockwise
/// int4/int8 weights dequantised as ONNX Runtime's kernel does. Training always runs in float32, so a
/// dequantised model trains like any other.
/// </summary>
public static class ExportTensors
{
    /// <summary>The float32 values of a float32, float16 or bfloat16 tensor; null for any other type.</summary>
    public static float[]? ToFloat32(TensorProto t)
    {
        switch ((DataType)t.DataType)
        {
            case DataType.Float:
                return OnnxFile.ToFloats(t);
            case DataType.Float16:
            case DataType.Bfloat16:
            {
                var halves = HalfBits(t);
                var values = new float[halves.Length];
                var isBf16 = (DataType)t.DataType == DataType.Bfloat16;
                for (var i = 0; i < halves.Length; i++)
                    values[i] = isBf16 ? BitConverter.Int32BitsToSingle(halves[i] << 16) : (float)BitConverter.UInt16BitsToHalf(halves[i]);
                return values;
            }
            default:
                return null;
        }
    }

    /// <summary>16-bit values from raw_data, or from int32_data where ONNX keeps them one per int32.</summary>
    static ushort[] HalfBits(TensorProto t)
    {
        if (t.DataLocation == TensorProto.Types.DataLocation.External)
            throw new InvalidOperationException($"tensor {t.Name} refers to external data that was not loaded");
        if (!t.RawData.IsEmpty)
        {
            var bytes = t.RawData.Span;
            var bits = new ushort[bytes.Length / 2];
            bytes[..(bits.Length * 2)].CopyTo(System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan()));
            return bits;
        }
        return t.Int32Data.Select(v => (ushort)v).ToArray();
    }

    /// <summary>Raw bytes of a uint8 tensor (MatMulNBits' packed weights and zero points).</summary>
    public static byte[] Bytes(TensorProto t)
    {
        if (t.DataLocation == TensorProto.Types.DataLocation.External)
            throw new InvalidOperationException($"tensor {t.Name} refers to external data that was not loaded");
        return !t.RawData.IsEmpty ? t.RawData.ToByteArray() : t.Int32Data.Select(v => (byte)v).ToArray();
    }

    /// <summary>
    /// MatMulNBits' weight as a MatMul weight [K, N]. B is [N, blocks, blockSize·bits/8] with values packed
    /// low bits first; scales are [N·blocks]; uint8 zero points are packed the same way ([N, ⌈blocks·bits/8⌉])
    /// and default to 2^(bits-1). W[k, n] = (q[n, k] − zp[n, k / blockSize]) · scale[n, k / blockSize].
    /// </summary>
    public static float[] DequantizeNBits(byte[] packed, float[] scales, byte[]? packedZeroPoints, int k, int n, int bits, int blockSize)
    {
        if (bits is not (4 or 8)) throw new ArgumentOutOfRangeException(nameof(bits), $"{bits}-bit weights");
        var blocks = (k + blockSize - 1) / blockSize;
        var blobBytes = blockSize * bits / 8;
        if (packed.Length != (long)n * blocks * blobBytes) throw new ArgumentException($"B holds {packed.Length} bytes, expected {n}·{blocks}·{blobBytes}");
        if (scales.Length != n * blocks) throw new ArgumentException($"scales hold {scales.Length} values, expected {n * blocks}");
        var perByte = 8 / bits;
        var zpRowBytes = (blocks + perByte - 1) / perByte;
        var weight = new float[(long)k * n];
        for (var col = 0; col < n; col++)
            for (var block = 0; block < blocks; block++)
            {
                var scale = scales[col * blocks + block];
                float zero = packedZeroPoints is not null ? Unpack(packedZeroPoints, col * zpRowBytes, block, bits) : 1 << (bits - 1);
                var blob = (col * blocks + block) * blobBytes;
                for (var i = 0; i < blockSize; i++)
                {
                    var row = block * blockSize + i;
                    if (row >= k) break;
                    weight[(long)row * n + col] = (Unpack(packed, blob, i, bits) - zero) * scale;
                }
            }
        return weight;
    }

    /// <summary>The index-th unsigned value of width <paramref name="bits"/> in a byte run starting at <paramref name="offset"/>, low bits first.</summary>
    static int Unpack(byte[] data, int offset, int index, int bits)
    {
        if (bits == 8) return data[offset + index];
        var b = data[offset + index / 2];
        return index % 2 == 0 ? b & 0x0F : b >> 4;
    }
}
