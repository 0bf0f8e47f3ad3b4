namespace RlaifOnnx.Core;

/// <summary>Whole-file writes that never leave a half-written file: write a temp file beside the target, then rename.</summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string contents) => Write(path, s =>
    {
        // leaveOpen: Write flushes the stream to disk after this returns.
        using var w = new StreamWriter(s, new System.Text.UTF8Encoding(false), leaveOpen: true);
        w.Write(contents);
    });

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var copy = bytes.ToArray();
        Write(path, s => s.Write(copy));
    }

    /// <summary>
    /// Removes the temp files a killed writer of <paramref name="full"/> left (".NAME.PID.GUID.tmp" whose process
    /// is gone): a SIGKILL runs no finally block, and nothing else would ever remove them.
    /// </summary>
    static void RemoveOrphans(string full)
    {
        var prefix = $".{Path.GetFileName(full)}.";
        foreach (var path in Directory.EnumerateFiles(Path.GetDirectoryName(full)!, prefix + "*.tmp"))
        {
            var rest = Path.GetFileName(path)[prefix.Length..];
            var dot = rest.IndexOf('.');
            if (dot <= 0 || !int.TryParse(rest[..dot], out var pid) || pid == Environment.ProcessId || IsRunning(pid)) continue;
            try { File.Delete(path); } catch (IOException) { }
        }
    }

    static bool IsRunning(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    /// <summary>Runs <paramref name="write"/> on a temp stream, flushes it to disk, then renames it over <paramref name="path"/>.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        RemoveOrphans(full);
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}
