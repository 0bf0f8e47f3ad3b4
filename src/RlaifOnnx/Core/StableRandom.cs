using System.Security.Cryptography;
using System.Text;

namespace RlaifOnnx.Core;

/// <summary>
/// Randomness that depends only on (run seed, item id), never on how many items came before: a stage
/// that resumes midway draws exactly what an uninterrupted run would have drawn for every item
/// (e.g. the principle of each critique round). SHA-256 makes the derived seed identical on every
/// machine and .NET version, unlike string.GetHashCode, which is randomised per process.
/// </summary>
public static class StableRandom
{
    /// <summary>A generator for one item: the same (seed, itemId) always gives the same sequence.</summary>
    public static Random For(int seed, string itemId) => new(SeedFor(seed, itemId));

    /// <summary>A generator for one item and one purpose (e.g. "round2"), independent of the item's other draws.</summary>
    public static Random For(int seed, string itemId, string purpose) => new(SeedFor(seed, $"{itemId}\u001f{purpose}"));

    /// <summary>The 31-bit seed derived from (seed, itemId).</summary>
    public static int SeedFor(int seed, string itemId)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes($"{seed}\u001f{itemId}"), hash);
        return BitConverter.ToInt32(hash) & int.MaxValue;
    }
}

/// <summary>Stable content ids for records that arrive without one (e.g. a prompt's text).</summary>
public static class StableId
{
    /// <summary>16 hex characters of SHA-256 over the parts (separated so ("ab","c") ≠ ("a","bc")).</summary>
    public static string Of(params string[] parts)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\u001f', parts)), hash);
        return Convert.ToHexStringLower(hash[..8]);
    }
}
