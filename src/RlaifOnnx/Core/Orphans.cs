namespace RlaifOnnx.Core;

/// <summary>
/// What writers killed mid-write leave beside their target: ".NAME.PID.tmp", ".NAME.PID.GUID.tmp" and
/// ".NAME.PID.GUID.old" files or folders. A SIGKILL runs no finally block, so nothing else would ever remove
/// them; the next writer of the same target does, for every such entry whose process is gone.
/// </summary>
public static class Orphans
{
    /// <summary>Removes the leftovers of dead writers of <paramref name="target"/> (a file or folder path).</summary>
    public static void RemoveBeside(string target)
    {
        var full = Path.GetFullPath(target);
        var parent = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(parent)) return;
        var prefix = $".{Path.GetFileName(full)}.";
        foreach (var path in Directory.EnumerateFileSystemEntries(parent, prefix + "*"))
        {
            var name = Path.GetFileName(path);
            if (!name.EndsWith(".tmp", StringComparison.Ordinal) && !name.EndsWith(".old", StringComparison.Ordinal)) continue;
            var rest = name[prefix.Length..];
            var dot = rest.IndexOf('.');
            if (dot <= 0 || !int.TryParse(rest[..dot], out var pid) || pid == Environment.ProcessId || IsRunning(pid)) continue;
            try
            {
                if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
                else File.Delete(path);
            }
            catch (IOException) { }   // another writer got there first
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
}
