using System.Globalization;

namespace RlaifOnnx.Bench;

/// <summary>
/// The process's resident memory from Linux's /proc/self files. VmRSS/VmHWM (status) count a file page once per
/// mapping of it, so a file mapped twice in one process counts twice; PSS (smaps_rollup) counts every page once,
/// divided among the processes that map it. Anonymous pages are the process's own heap (arenas, arrays, copies);
/// file pages are mapped files (libraries, memory-mapped weights).
/// </summary>
public static class ProcMemory
{
    /// <summary>One reading, bytes: resident, proportional, proportional anonymous and file-backed, and anonymous resident.</summary>
    public readonly record struct Reading(long Rss, long Pss, long PssAnon, long PssFile, long Anonymous);

    public static Reading Read()
    {
        long rss = 0, pss = 0, pssAnon = 0, pssFile = 0, anon = 0;
        foreach (var line in File.ReadLines("/proc/self/smaps_rollup"))
        {
            var v = Field(line);
            if (line.StartsWith("Rss:")) rss = v;
            else if (line.StartsWith("Pss:")) pss = v;
            else if (line.StartsWith("Pss_Anon:")) pssAnon = v;
            else if (line.StartsWith("Pss_File:")) pssFile = v;
            else if (line.StartsWith("Anonymous:")) anon = v;
        }
        return new Reading(rss, pss, pssAnon, pssFile, anon);
    }

    /// <summary>A /proc/self/status field in bytes (VmRSS: resident now, VmHWM: the peak so far).</summary>
    public static long Status(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":")) return Field(line);
        return 0;
    }

    /// <summary>Resident bytes (Rss, Pss) per mapped file name ("[anon]" for anonymous mappings), from /proc/self/smaps.</summary>
    public static Dictionary<string, (long Rss, long Pss)> ByMapping()
    {
        var result = new Dictionary<string, (long Rss, long Pss)>(StringComparer.Ordinal);
        var current = "[anon]";
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            if (IsHeader(line))
            {
                var parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
                current = parts.Length >= 6 ? parts[5].Trim() : "[anon]";
                if (!current.StartsWith('/')) current = "[anon]";
                continue;
            }
            if (line.StartsWith("Rss:")) Add(current, Field(line), 0);
            else if (line.StartsWith("Pss:")) Add(current, 0, Field(line));
        }
        return result;

        void Add(string key, long rss, long pss)
        {
            var (r, p) = result.GetValueOrDefault(key);
            result[key] = (r + rss, p + pss);
        }
    }

    static bool IsHeader(string line)
    {
        // "7f3a…-7f3b… r--p 00000000 08:01 1234  /path": the first word is an address range, never a "Field:".
        var space = line.IndexOf(' ');
        return space > 0 && line.AsSpan(0, space).Contains('-') && !line.AsSpan(0, space).Contains(':');
    }

    static long Field(string line) => long.Parse(line.Split(':', 2)[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
}
