
namespace RlaifOnnx.Inference;

/// <summary>The prefix cache: key/value caches of recent prompt prefixes, kept within a memory budget and reused by later prompts that start with the same tokens.</summary>
public sealed partial class OrtScorer
{
    /// <summary>
    /// The key/value cache of a prompt prefix run alone (batch 1). When a kept prefix shares its first
    /// tokens, only the tokens after them run, continuing from the kept cache cut to that length: a
    /// position's keys and values depend only on the tokens up to it, so the cache is the one a full pass
    /// would give. The result is kept for later prompts (<see cref="InferenceOptions.PrefixCacheBytes"/>).
    /// </summary>
    PastCache RunPrefix(int[] ids)
    {
        var (reused, from) = LongestKeptPrefix(ids);
        PastCache cache;
        if (from == ids.Length) cache = reused!;
        else
        {
            using var output = Forward(reused is null ? null : [reused], [ids[from..]]);
            cache = output.TakePresent(ids.Length);
        }
        Keep(ids, cache);
        Interlocked.Add(ref prefixTokensReused, from);
        return cache;
    }

    // Caches of recent prefixes, least recently used first; kept across calls, guarded by keptLock.
    readonly List<(int[] Ids, PastCache Cache)> kept = [];
    readonly Lock keptLock = new();
    long prefixTokensReused;

    /// <summary>Prompt tokens whose keys and values came from a kept prefix instead of a forward pass (since the scorer opened).</summary>
    public long PrefixTokensReused => Interlocked.Read(ref prefixTokensReused);

    /// <summary>Drops every kept prefix cache (later prompts run from their first token until new prefixes are kept).</summary>
    public void ClearPrefixCache()
    {
        lock (keptLock) kept.Clear();
    }

    /// <summary>The kept cache sharing the most leading tokens with <paramref name="ids"/>, cut to them, and how many (0: none).</summary>
    (PastCache? Cache, int Length) LongestKeptPrefix(int[] ids)
    {
        lock (keptLock)
        {
            var (best, length) = (-1, 0);
            for (var i = 0; i < kept.Count; i++)
            {
                var n = CommonPrefixLength(kept[i].Ids, ids);
                if (n > length) (best, length) = (i, n);
            }
            if (best < 0) return (null, 0);
            var entry = kept[best];
            kept.RemoveAt(best);
            kept.Add(entry);
            return (entry.Cache.Take(length, headDim), length);
        }
    }

    /// <summary>Keeps a prefix's cache, dropping kept prefixes it extends and the least recently used beyond the memory budget.</summary>
    void Keep(int[] ids, PastCache cache)
    {
        var budget = options.PrefixCacheBytes;
        if (cache.Bytes > budget) return;
        lock (keptLock)
        {
            kept.RemoveAll(e => e.Ids.Length <= ids.Length && CommonPrefixLength(e.Ids, ids) == e.Ids.Length);
            kept.Add((ids, cache));
            while (kept.Sum(e => e.Cache.Bytes) > budget) kept.RemoveAt(0);
        }
    }
}
