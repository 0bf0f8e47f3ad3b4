namespace RlaifOnnx.Core;

/// <summary>A stage's output folder on failure: nothing half-written left behind.</summary>
public static class OutputFolder
{
    /// <summary>
    /// Runs <paramref name="run"/>; when it fails and <paramref name="dir"/> did not exist before it and still
    /// holds no file (only folders it made on the way, before its first record), removes the folder. A folder
    /// holding any file is kept: that is work a rerun resumes from.
    /// </summary>
    public static async Task<T> RemovedIfFailedEmpty<T>(string? dir, Func<Task<T>> run)
    {
        var existed = dir is null || Directory.Exists(dir) || File.Exists(dir);
        try
        {
            return await run();
        }
        catch
        {
            // Not an exception filter: a filter runs before the stage's own cleanup (its writers' Dispose) has run.
            if (!existed && Directory.Exists(dir) && !Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Any())
            {
                try { Directory.Delete(dir, recursive: true); }
                catch (IOException) { }   // the error being reported matters more than this cleanup
                catch (UnauthorizedAccessException) { }
            }
            throw;
        }
    }
}
