using System.Globalization;
using System.Text.Json;
using RlaifOnnx.Core;

namespace RlaifOnnx.Reporting;

/// <summary>One line of metrics.jsonl: the step, when it was written, and the named values.</summary>
public sealed record MetricsEntry(long Step, DateTimeOffset Timestamp, IReadOnlyDictionary<string, double> Values);

/// <summary>
/// A stage's metrics.jsonl: one JSON object per line, <c>{"step":12,"timestamp":"…","loss":0.41,"lr":1e-4}</c>,
/// appended and flushed line by line so a crash loses nothing already logged and a plot can follow a
/// running stage. A line torn by a crash is cut off when the log is reopened. Non-finite values (a diverging loss) are written as the strings "NaN", "Infinity",
/// "-Infinity" because JSON has no literal for them; <see cref="Read"/> turns them back into doubles.
/// A resumed stage appends to the same file, and its first row at a step rewinds the file: rows left by an
/// earlier run at that step or later (logged after the checkpoint it resumes from, before a kill) are cut
/// off, so steps never repeat and a plotted curve never doubles back. Thread-safe.
/// </summary>
public sealed class MetricsLog : IDisposable
{
    const string StepKey = "step";
    const string TimestampKey = "timestamp";

    readonly FileStream stream;
    readonly TimeProvider clock;
    readonly Lock gate = new();
    bool disposed;
    // Rows an earlier run left, as (step, offset of the line's start); cut off from the first step rewritten.
    readonly List<(long Step, long Offset)> earlier = [];

    /// <summary>The metrics file.</summary>
    public string Path { get; }

    public MetricsLog(string path, TimeProvider? clock = null)
    {
        Path = path;
        this.clock = clock ?? TimeProvider.System;
        var full = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(full)!);
        stream = new FileStream(full, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, bufferSize: 1);
        // A crash mid-write can leave a last line without its newline: cut it off, as the resumable
        // writer does, so the file stays one whole JSON object per line.
        stream.SetLength(EndOfLastCompleteLine(stream));
        IndexEarlierRows();
        stream.Seek(0, SeekOrigin.End);
    }

    void IndexEarlierRows()
    {
        stream.Seek(0, SeekOrigin.Begin);
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        long start = 0;
        for (var i = 0; i < bytes.Length; i++)
        {
            if (bytes[i] != (byte)'\n') continue;
            var line = bytes.AsSpan((int)start, (int)(i - start));
            try
            {
                var reader = new Utf8JsonReader(line);
                using var doc = JsonDocument.ParseValue(ref reader);
                if (doc.RootElement.TryGetProperty(StepKey, out var step) && step.TryGetInt64(out var value)) earlier.Add((value, start));
            }
            catch (JsonException) { }   // not ours to judge here; Read names bad lines
            start = i + 1;
        }
    }

    /// <summary>Cuts off the rows an earlier run left at <paramref name="step"/> or later (under the lock).</summary>
    void RewindTo(long step)
    {
        var first = earlier.FindIndex(r => r.Step >= step);
        if (first < 0) return;
        stream.SetLength(earlier[first].Offset);
        stream.Seek(0, SeekOrigin.End);
        earlier.RemoveRange(first, earlier.Count - first);
    }

    static long EndOfLastCompleteLine(FileStream stream)
    {
        var buffer = new byte[4096];
        var end = stream.Length;
        while (end > 0)
        {
            var start = Math.Max(0, end - buffer.Length);
            stream.Seek(start, SeekOrigin.Begin);
            stream.ReadExactly(buffer, 0, (int)(end - start));
            var newline = Array.LastIndexOf(buffer, (byte)'\n', (int)(end - start) - 1);
            if (newline >= 0) return start + newline + 1;
            end = start;
        }
        return 0;
    }

    /// <summary>Logs one value at a step.</summary>
    public void Write(long step, string name, double value) => Write(step, [new KeyValuePair<string, double>(name, value)]);

    /// <summary>Logs several values at one step as one line.</summary>
    public void Write(long step, IEnumerable<KeyValuePair<string, double>> values)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteNumber(StepKey, step);
            json.WriteString(TimestampKey, clock.GetUtcNow());
            foreach (var (name, value) in values)
            {
                if (name is StepKey or TimestampKey) throw new ArgumentException($"'{name}' is reserved in metrics.jsonl", nameof(values));
                if (double.IsFinite(value)) json.WriteNumber(name, value);
                else json.WriteString(name, value.ToString(CultureInfo.InvariantCulture));
            }
            json.WriteEndObject();
        }
        System.Buffers.BuffersExtensions.Write(buffer, "\n"u8);
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            RewindTo(step);
            stream.Write(buffer.WrittenSpan);
            stream.Flush();
        }
    }

    /// <summary>
    /// Reads a metrics file back. A last line torn by a crash is skipped; a bad line elsewhere is a
    /// <see cref="UserError"/> naming file and line.
    /// </summary>
    public static List<MetricsEntry> Read(string path)
    {
        if (!File.Exists(path)) throw UserError.At(path, null, null, "file not found");
        var lines = File.ReadAllLines(path);
        var entries = new List<MetricsEntry>();
        for (var i = 0; i < lines.Length; i++)
        {
            if (string.IsNullOrWhiteSpace(lines[i])) continue;
            try
            {
                entries.Add(ParseEntry(lines[i]));
            }
            catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or KeyNotFoundException)
            {
                if (i == lines.Length - 1) break;
                throw UserError.At(path, i + 1, null, $"not a metrics line ({e.Message})");
            }
        }
        return entries;
    }

    static MetricsEntry ParseEntry(string line)
    {
        using var doc = JsonDocument.Parse(line);
        var root = doc.RootElement;
        var step = root.GetProperty(StepKey).GetInt64();
        var timestamp = root.GetProperty(TimestampKey).GetDateTimeOffset();
        var values = new Dictionary<string, double>();
        foreach (var p in root.EnumerateObject())
        {
            if (p.Name is StepKey or TimestampKey) continue;
            values[p.Name] = p.Value.ValueKind == JsonValueKind.String
                ? double.Parse(p.Value.GetString()!, CultureInfo.InvariantCulture)
                : p.Value.GetDouble();
        }
        return new MetricsEntry(step, timestamp, values);
    }

    public void Dispose()
    {
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
            stream.Dispose();
        }
    }
}
