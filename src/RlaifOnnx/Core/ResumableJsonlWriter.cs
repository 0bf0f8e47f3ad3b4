using System.Text;

namespace RlaifOnnx.Core;

/// <summary>
/// Append-only JSONL output that a stage can stop and resume: the file itself is the index of finished
/// work. <see cref="Open"/> reads the ids already written; <see cref="Append"/> writes one whole line
/// (serialised to a buffer first, then one write and a flush), so a crash never leaves a partial
/// record that a later reader would accept. A line torn by a crash mid-write (no trailing newline, or
/// not parseable as the last line) is cut off on the next open, and its record is simply redone.
/// Thread-safe: several workers may append to one writer. One writer per file: a second writer on the
/// same file (in this or another process) is refused.
/// </summary>
public sealed class ResumableJsonlWriter<T> : IDisposable
{
    readonly FileStream stream;
    readonly FileStream lockFile;
    readonly Func<T, string> idOf;
    readonly HashSet<string> done;
    readonly Lock gate = new();
    readonly bool created;
    bool disposed;

    /// <summary>The file being written.</summary>
    public string Path { get; }

    /// <summary>How many records the file holds (finished before this run plus appended since).</summary>
    public int Count { get { lock (gate) return done.Count; } }

    /// <summary>How many records were already in the file when it was opened.</summary>
    public int ResumedCount { get; }

    /// <summary>Bytes of a torn last line that <see cref="Open"/> cut off (0 when the file ended cleanly).</summary>
    public long DroppedTornBytes { get; }

    ResumableJsonlWriter(string path, FileStream stream, FileStream lockFile, Func<T, string> idOf, HashSet<string> done, long droppedTornBytes, bool created)
    {
        Path = path;
        this.created = created;
        this.stream = stream;
        this.lockFile = lockFile;
        this.idOf = idOf;
        this.done = done;
        ResumedCount = done.Count;
        DroppedTornBytes = droppedTornBytes;
    }

    /// <summary>
    /// Opens (or creates) <paramref name="path"/> for appending. Reads the id of every complete record
    /// already there; drops a torn last line by truncating the file to the end of the last complete line.
    /// A bad line in the middle of the file, or a duplicate id, is a <see cref="UserError"/>: that file was
    /// not written by this class and resuming into it would hide the damage.
    /// </summary>
    public static ResumableJsonlWriter<T> Open(string path, Func<T, string> idOf)
    {
        ArgumentNullException.ThrowIfNull(idOf);
        if (Jsonl.IsGzip(path)) throw UserError.At(path, null, null, "resumable output must be plain .jsonl, not .gz");
        var full = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(full)!);
        // One writer per file: an exclusive lock on a lock file beside it (flock on Linux, released when
        // the process dies). Locking the data file itself would also lock out readers of it.
        var lockPath = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(full)!, $".{System.IO.Path.GetFileName(full)}.lock");
        FileStream lockFile;
        try { lockFile = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, bufferSize: 1); }
        catch (IOException e) { throw UserError.At(path, null, null, $"cannot open for writing; is another run writing it? ({e.Message})"); }
        FileStream? stream = null;
        var created = !File.Exists(full);
        try
        {
            // bufferSize 1: no managed buffering, so each Append is one write system call.
            stream = new FileStream(full, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, bufferSize: 1);
            var done = new HashSet<string>(StringComparer.Ordinal);
            var (goodLength, dropped) = ScanFinished(stream, path, idOf, done);
            if (dropped > 0)
            {
                stream.SetLength(goodLength);
                stream.Flush(flushToDisk: true);
            }
            stream.Seek(0, SeekOrigin.End);
            return new ResumableJsonlWriter<T>(path, stream, lockFile, idOf, done, dropped, created);
        }
        catch
        {
            stream?.Dispose();
            ReleaseLock(lockFile);
            throw;
        }
    }

    static void ReleaseLock(FileStream lockFile)
    {
        var lockPath = lockFile.Name;
        // Delete while still holding the lock, so no other writer can be between its open and its lock.
        try { File.Delete(lockPath); } catch (IOException) { }
        lockFile.Dispose();
    }

    /// <summary>
    /// Reads complete lines from the start; returns the byte length of the good prefix and how many bytes
    /// after it belong to a torn last line.
    /// </summary>
    static (long GoodLength, long Dropped) ScanFinished(FileStream stream, string path, Func<T, string> idOf, HashSet<string> done)
    {
        var length = stream.Length;
        if (length == 0) return (0, 0);
        stream.Seek(0, SeekOrigin.Begin);
        var buffer = new byte[1 << 16];
        var line = new MemoryStream();
        long offset = 0, goodLength = 0;
        var lineNumber = 0;
        // A complete line that fails to parse is only forgiven when it is the last one in the file.
        UserError? pendingBad = null;

        while (true)
        {
            var read = stream.Read(buffer, 0, buffer.Length);
            if (read == 0) break;
            var start = 0;
            for (var i = 0; i < read; i++)
            {
                if (buffer[i] != (byte)'\n') continue;
                line.Write(buffer, start, i - start);
                start = i + 1;
                lineNumber++;
                var lineEnd = offset + i + 1;
                if (pendingBad is not null) throw pendingBad;
                var error = TakeLine(line, path, lineNumber, idOf, done);
                if (error is null) goodLength = lineEnd;
                else pendingBad = error;
                line.SetLength(0);
            }
            line.Write(buffer, start, read - start);
            offset += read;
        }
        // Anything after goodLength is either a line without its newline or an unparseable last line:
        // both are what a crash in the middle of a write leaves behind.
        return (goodLength, length - goodLength);
    }

    /// <summary>Parses one complete line and records its id; returns the problem instead of throwing so the caller can forgive a torn last line.</summary>
    static UserError? TakeLine(MemoryStream line, string path, int lineNumber, Func<T, string> idOf, HashSet<string> done)
    {
        var bytes = line.GetBuffer().AsSpan(0, (int)line.Length);
        if (bytes.IsEmpty || IsBlank(bytes)) return null;
        T value;
        try { value = Jsonl.ParseLine<T>(Encoding.UTF8.GetString(bytes), path, lineNumber); }
        catch (UserError e) { return e; }
        var id = idOf(value);
        if (!done.Add(id)) throw UserError.At(path, lineNumber, null, $"duplicate id '{id}': the file holds this record twice");
        return null;
    }

    static bool IsBlank(ReadOnlySpan<byte> bytes)
    {
        foreach (var b in bytes)
            if (b is not ((byte)' ' or (byte)'\t' or (byte)'\r')) return false;
        return true;
    }

    /// <summary>True when a record with this id is already in the file.</summary>
    public bool IsDone(string id)
    {
        lock (gate) return done.Contains(id);
    }

    /// <summary>The ids of all records in the file.</summary>
    public IReadOnlyCollection<string> DoneIds
    {
        get { lock (gate) return done.ToArray(); }
    }

    /// <summary>
    /// Appends one record as one whole line and flushes it to the operating system (a process crash
    /// after this returns cannot lose it). A record whose id is already in the file throws
    /// <see cref="InvalidOperationException"/>: check <see cref="IsDone"/> first.
    /// </summary>
    public void Append(T record)
    {
        var id = idOf(record);
        var bytes = Jsonl.SerializeLine(record);
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (done.Contains(id)) throw new InvalidOperationException($"{Path}: record '{id}' is already written");
            stream.Write(bytes);
            stream.Flush();
            done.Add(id);
        }
    }

    /// <summary>Forces everything appended so far onto the disk (survives power loss, not only a process crash).</summary>
    public void FlushToDisk()
    {
        lock (gate)
        {
            if (!disposed) stream.Flush(flushToDisk: true);
        }
    }

    /// <summary>
    /// Closes the file. A file this writer created and never appended to is removed: a run that failed before
    /// its first record leaves no empty output behind.
    /// </summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
            try { stream.Flush(flushToDisk: true); }
            finally
            {
                var empty = created && done.Count == 0 && stream.Length == 0;
                stream.Dispose();
                if (empty) File.Delete(stream.Name);   // under the lock still, so no other writer has it open
                ReleaseLock(lockFile);
            }
        }
    }
}

/// <summary>Opens resumable writers with the type inferred from the id function.</summary>
public static class ResumableJsonlWriter
{
    public static ResumableJsonlWriter<T> Open<T>(string path, Func<T, string> idOf) => ResumableJsonlWriter<T>.Open(path, idOf);
}
