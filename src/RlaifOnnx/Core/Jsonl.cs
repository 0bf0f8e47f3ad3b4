using System.IO.Compression;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace RlaifOnnx.Core;

/// <summary>One record read from a JSONL file, with its 1-based line number for error messages.</summary>
public sealed record JsonlLine<T>(int LineNumber, T Value);

/// <summary>
/// JSONL (one JSON object per line) is the format of every record file the stages exchange.
/// Reading streams line by line (.jsonl or .jsonl.gz), skips blank lines, and turns every problem into
/// a one-line <see cref="UserError"/> "file:line: field: problem". Writing is whole-file and atomic;
/// for append-as-you-go output use <see cref="ResumableJsonlWriter{T}"/>.
/// Reading is lazy, so a long loop over it checks its own CancellationToken between records.
/// </summary>
public static partial class Jsonl
{
    /// <summary>
    /// The serializer options shared by all record files: snake_case property names, enums as snake_case
    /// strings, nulls omitted, non-ASCII text kept readable, one line per record. `required` members,
    /// positional-record parameters without a default and non-nullable reference properties are enforced
    /// when reading, so a missing field is an error naming it rather than a null that fails later.
    /// </summary>
    public static JsonSerializerOptions JsonlOptions { get; } = CreateOptions();

    /// <summary>The same options as <see cref="JsonlOptions"/>.</summary>
    public static JsonSerializerOptions Options => JsonlOptions;

    static JsonSerializerOptions CreateOptions()
    {
        var options = new JsonSerializerOptions
        {
            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
            Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower, allowIntegerValues: false) },
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            RespectNullableAnnotations = true,
            RespectRequiredConstructorParameters = true,
            WriteIndented = false,
        };
        options.MakeReadOnly(populateMissingResolver: true);
        return options;
    }

    /// <summary>True when the path names a gzip-compressed file (.gz).</summary>
    public static bool IsGzip(string path) => path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase);

    /// <summary>UTF-8 that refuses invalid bytes instead of turning them into U+FFFD.</summary>
    public static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Opens <paramref name="path"/> for reading text: decompressed when it ends in .gz (refused at once when
    /// it does not start with gzip's magic bytes), decoded as strict UTF-8.
    /// </summary>
    public static StreamReader OpenText(string path)
    {
        Stream file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 16);
        if (IsGzip(path))
        {
            Span<byte> magic = stackalloc byte[2];
            var read = file.ReadAtLeast(magic, 2, throwOnEndOfStream: false);
            file.Position = 0;
            if (read < 2 || magic[0] != 0x1f || magic[1] != 0x8b)
            {
                file.Dispose();
                throw UserError.At(path, null, null, "not a gzip file (it ends in .gz but does not start with gzip's magic bytes)");
            }
            file = new GZipStream(file, CompressionMode.Decompress);
        }
        return new StreamReader(file, StrictUtf8, detectEncodingFromByteOrderMarks: true, 1 << 16);
    }

    /// <summary>The next line of <paramref name="reader"/>; bad gzip data or invalid UTF-8 is a <see cref="UserError"/> naming the file and line.</summary>
    public static string? ReadLine(TextReader reader, string path, int lineNumber)
    {
        try { return reader.ReadLine(); }
        catch (InvalidDataException e) { throw UserError.At(path, lineNumber, null, $"not a valid gzip stream ({e.Message})"); }
        catch (DecoderFallbackException) { throw UserError.At(path, lineNumber, null, "not valid UTF-8"); }
    }

    /// <summary>
    /// Streams the records of a .jsonl or .jsonl.gz file in order. Blank lines are skipped; a malformed
    /// line, a value of the wrong type or a missing required property throws a <see cref="UserError"/>
    /// naming the file, the line and the field.
    /// </summary>
    public static IEnumerable<JsonlLine<T>> Read<T>(string path)
    {
        if (!File.Exists(path)) throw UserError.At(path, null, null, "file not found");
        return ReadIterator<T>(path);
    }

    static IEnumerable<JsonlLine<T>> ReadIterator<T>(string path)
    {
        using var reader = OpenText(path);
        var lineNumber = 0;
        while (true)
        {
            var line = ReadLine(reader, path, lineNumber + 1);
            if (line is null) yield break;
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            yield return new JsonlLine<T>(lineNumber, ParseLine<T>(line, path, lineNumber));
        }
    }

    /// <summary>Reads every record of a file into a list (values only).</summary>
    public static List<T> ReadAll<T>(string path) =>
        Read<T>(path).Select(l => l.Value).ToList();

    /// <summary>Parses one JSONL line; every failure is a <see cref="UserError"/> "file:line: field: problem".</summary>
    public static T ParseLine<T>(string line, string file, int lineNumber)
    {
        T? value;
        try { value = JsonSerializer.Deserialize<T>(line, JsonlOptions); }
        catch (JsonException e) { throw Describe(e, typeof(T), line, file, lineNumber); }
        catch (NotSupportedException e) { throw UserError.At(file, lineNumber, null, $"cannot read a {typeof(T).Name} from this line ({FirstSentence(e.Message)})"); }
        if (value is null) throw UserError.At(file, lineNumber, null, "expected a JSON object, got null");
        return value;
    }

    /// <summary>One record as a single JSON line (no trailing newline).</summary>
    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, JsonlOptions);

    /// <summary>One record as UTF-8 bytes ending in a newline: exactly what one JSONL line holds.</summary>
    public static byte[] SerializeLine<T>(T value)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JsonlOptions.Encoder, SkipValidation = false }))
            JsonSerializer.Serialize(json, value, JsonlOptions);
        var bytes = new byte[buffer.WrittenCount + 1];
        buffer.WrittenSpan.CopyTo(bytes);
        bytes[^1] = (byte)'\n';
        return bytes;
    }

    /// <summary>
    /// Writes all records to <paramref name="path"/> atomically (temp file + rename): a reader sees the
    /// old file or the whole new one, never a part. A path ending in .gz is gzip-compressed.
    /// </summary>
    public static void Write<T>(string path, IEnumerable<T> records) =>
        AtomicFile.Write(path, target =>
        {
            using Stream stream = IsGzip(path) ? new GZipStream(target, CompressionLevel.Optimal, leaveOpen: true) : new NonClosing(target);
            using var buffered = new BufferedStream(stream, 1 << 16);
            foreach (var record in records) buffered.Write(SerializeLine(record));
        });

    // ---- error messages ------------------------------------------------------------------------

    static UserError Describe(JsonException e, Type target, string line, string file, int lineNumber)
    {
        var message = e.Message;
        var missing = MissingRequired().Match(message);
        if (missing.Success)
        {
            // Inside a nested object the exception's path names the object; the message names the keys.
            var parent = FieldPath(e.Path);
            var names = QuotedName().Matches(missing.Groups[1].Value).Select(m => parent is null ? m.Groups[1].Value : $"{parent}.{m.Groups[1].Value}").ToList();
            var field = names.Count > 0 ? string.Join(", ", names) : null;
            return UserError.At(file, lineNumber, field, names.Count > 1 ? "are missing" : "is missing");
        }

        var path = FieldPath(e.Path);
        var column = e.BytePositionInLine is { } bytes ? ColumnOf(line, (int)bytes) : (int?)null;
        var at = column is { } c ? $" (column {c})" : "";

        var converted = CouldNotConvert().Match(message);
        if (converted.Success)
        {
            var typeName = converted.Groups[1].Value;
            if (typeName == target.FullName?.Replace('+', '.') || typeName == target.FullName)
                return UserError.At(file, lineNumber, path, $"expected a JSON object{at}");
            if (path is not null && message.Contains("non-nullable", StringComparison.Ordinal))
                return UserError.At(file, lineNumber, path, $"must not be null{at}");
            return UserError.At(file, lineNumber, path, $"expected {Expected(typeName)}{at}");
        }
        if (message.Contains("non-nullable", StringComparison.Ordinal) || message.Contains("null value", StringComparison.Ordinal))
            return UserError.At(file, lineNumber, path, $"must not be null{at}");

        var reason = FirstSentence(e.InnerException?.Message ?? message);
        if (reason.StartsWith("Expected depth to be zero", StringComparison.Ordinal)) reason = "the line ends before its object or array is closed";
        return UserError.At(file, lineNumber, path, $"malformed JSON{at}: {reason}");
    }

    /// <summary>"$.rounds[0].critique" → "rounds[0].critique"; the root → null.</summary>
    static string? FieldPath(string? jsonPath)
    {
        if (string.IsNullOrEmpty(jsonPath) || jsonPath == "$") return null;
        return jsonPath.StartsWith("$.", StringComparison.Ordinal) ? jsonPath[2..] : jsonPath.TrimStart('$');
    }

    /// <summary>1-based character column of a UTF-8 byte offset within the line.</summary>
    static int ColumnOf(string line, int byteOffset)
    {
        var bytes = Encoding.UTF8.GetBytes(line);
        var clamped = Math.Clamp(byteOffset, 0, bytes.Length);
        return Encoding.UTF8.GetCharCount(bytes, 0, clamped) + 1;
    }

    /// <summary>A plain-words name for a .NET type that a JSON value failed to convert to.</summary>
    static string Expected(string typeName)
    {
        var nullable = NullableOf().Match(typeName);
        if (nullable.Success) typeName = nullable.Groups[1].Value;
        switch (typeName)
        {
            case "System.Int32" or "System.Int64" or "System.Int16" or "System.UInt32" or "System.UInt64" or "System.Byte": return "an integer";
            case "System.Double" or "System.Single" or "System.Decimal": return "a number";
            case "System.String": return "a string";
            case "System.Boolean": return "true or false";
            case "System.DateTimeOffset" or "System.DateTime": return "a date-time string";
        }
        if (typeName.StartsWith("System.Collections.Generic.List", StringComparison.Ordinal)
            || typeName.StartsWith("System.Collections.Generic.IReadOnlyList", StringComparison.Ordinal)
            || typeName.EndsWith("[]", StringComparison.Ordinal))
            return "an array";
        if (typeName.StartsWith("System.Collections.Generic.Dictionary", StringComparison.Ordinal)) return "an object";
        var type = FindType(typeName);
        if (type is { IsEnum: true })
            return "one of " + string.Join(", ", Enum.GetNames(type).Select(JsonNamingPolicy.SnakeCaseLower.ConvertName));
        if (type is { IsClass: true }) return "an object";
        return $"a {typeName[(typeName.LastIndexOfAny(['.', '+']) + 1)..]}";
    }

    static Type? FindType(string fullName)
    {
        foreach (var assembly in AppDomain.CurrentDomain.GetAssemblies())
            if (assembly.GetType(fullName) is { } type) return type;
        return null;
    }

    static string FirstSentence(string message)
    {
        var cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        if (cut < 0) cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        var text = (cut >= 0 ? message[..cut] : message).Trim();
        var sentence = text.IndexOf(". ", StringComparison.Ordinal);
        if (sentence > 0) text = text[..sentence];
        return text.TrimEnd('.', ' ', '|');
    }

    [GeneratedRegex(@"missing required properties including: (.*)$", RegexOptions.Singleline)]
    private static partial Regex MissingRequired();

    [GeneratedRegex(@"'([^']+)'")]
    private static partial Regex QuotedName();

    [GeneratedRegex(@"could not be converted to ([^\s]+?)\.? Path", RegexOptions.Singleline)]
    private static partial Regex CouldNotConvert();

    [GeneratedRegex(@"^System\.Nullable`1\[\[([^,\]]+)")]
    private static partial Regex NullableOf();

    /// <summary>Keeps AtomicFile's stream open when the writer above it is disposed.</summary>
    sealed class NonClosing(Stream inner) : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
        public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);
    }
}
