// TEMPORARY: minimal stand-ins for contracts that other branches deliver (infra: Jsonl, ResumableJsonlWriter,
// StageConfig, StableRandom, Progress, MetricsLog; inference: GenAIGenerator, OrtScorer, OpenAIBackend).
// This file is deleted when those land on main.
#pragma warning disable CS1591
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using RlaifOnnx.Inference;

namespace RlaifOnnx.Data
{
    public sealed record JsonlLine<T>(int LineNumber, T Value);

    public static class Jsonl
    {
        public static JsonSerializerOptions JsonlOptions { get; } = new()
        {
            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
            Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower, allowIntegerValues: false) },
            Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        };
        public static IEnumerable<JsonlLine<T>> Read<T>(string path)
        {
            var n = 0;
            foreach (var line in File.ReadLines(path))
            {
                n++;
                if (line.Trim().Length == 0) continue;
                yield return new JsonlLine<T>(n, JsonSerializer.Deserialize<T>(line, JsonlOptions)!);
            }
        }
        public static List<T> ReadAll<T>(string path) => Read<T>(path).Select(l => l.Value).ToList();
        public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, JsonlOptions);
        public static void Write<T>(string path, IEnumerable<T> records) =>
            AtomicFile.WriteAllText(path, string.Concat(records.Select(r => Serialize(r) + "\n")));
    }

    public sealed class ResumableJsonlWriter<T> : IDisposable
    {
        readonly HashSet<string> done = [];
        readonly Func<T, string> idOf;
        readonly FileStream stream;
        public string Path { get; }
        public int Count => done.Count;
        public int ResumedCount { get; }
        ResumableJsonlWriter(string path, Func<T, string> idOf)
        {
            Path = path;
            this.idOf = idOf;
            if (File.Exists(path))
                foreach (var line in File.ReadAllLines(path))
                    if (line.Trim().Length > 0) done.Add(idOf(JsonSerializer.Deserialize<T>(line, Jsonl.JsonlOptions)!));
            ResumedCount = done.Count;
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
            stream = new FileStream(path, FileMode.Append, FileAccess.Write);
        }
        public static ResumableJsonlWriter<T> Open(string path, Func<T, string> idOf) => new(path, idOf);
        public bool IsDone(string id) => done.Contains(id);
        public void Append(T record)
        {
            if (!done.Add(idOf(record))) throw new InvalidOperationException("duplicate");
            stream.Write(Encoding.UTF8.GetBytes(Jsonl.Serialize(record) + "\n"));
            stream.Flush();
        }
        public void Dispose() => stream.Dispose();
    }

    public static class StableRandom
    {
        public static Random For(int seed, string itemId) => new(SeedFor(seed, itemId));
        public static Random For(int seed, string itemId, string purpose) => new(SeedFor(seed, $"{itemId}\u001f{purpose}"));
        public static int SeedFor(int seed, string itemId) =>
            BitConverter.ToInt32(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes($"{seed}\u001f{itemId}"))) & int.MaxValue;
    }

    [AttributeUsage(AttributeTargets.Property)]
    public sealed class ConfigPathAttribute : Attribute;
    public sealed record ConfigProblem(string Key, string Problem);
    public interface IValidatableConfig { IEnumerable<ConfigProblem> Problems(); }

    public static class StageConfig
    {
        public static T Load<T>(string yamlPath) where T : class => throw new NotImplementedException();
        public static T Parse<T>(string yaml, string sourceName) where T : class => throw new NotImplementedException();
        public static string Describe<T>() where T : class => "";
    }
}

namespace RlaifOnnx.Reporting
{
    public sealed class Progress(string label, long total) : IDisposable
    {
        public string Label => label;
        public long Total => total;
        public long Done { get; private set; }
        public void Advance(long n = 1) => Done += n;
        public void Dispose() { }
    }
    public sealed class MetricsLog(string path) : IDisposable
    {
        public string Path => path;
        public void Write(long step, IEnumerable<KeyValuePair<string, double>> values) { }
        public void Dispose() { }
    }
}

namespace RlaifOnnx.Inference
{
    public sealed record InferenceOptions
    {
        public string ExecutionProvider { get; init; } = "cpu";
        public int IntraOpThreads { get; init; }
        public int BatchSize { get; init; } = 8;
    }
    public sealed record OpenAIOptions
    {
        public required Uri BaseUrl { get; init; }
        public string? Model { get; init; }
    }
    public sealed class GenAIGenerator(string modelDir, InferenceOptions? options = null) : ITextGenerator
    {
        public string ModelDir => modelDir + options;
        public Task<IReadOnlyList<string>> ChatAsync(IReadOnlyList<IReadOnlyList<ChatMessage>> chats, SamplingOptions sampling, CancellationToken cancellationToken = default) => throw new NotImplementedException();
        public Task<IReadOnlyList<string>> CompleteAsync(IReadOnlyList<string> prompts, SamplingOptions sampling, CancellationToken cancellationToken = default) => throw new NotImplementedException();
        public void Dispose() { }
    }
    public sealed class OrtScorer(string modelDir, InferenceOptions? options = null) : IScorer
    {
        public string ModelDir => modelDir + options;
        public int[] Encode(string text) => throw new NotImplementedException();
        public Task<IReadOnlyList<double>> ContinuationLogProbsAsync(IReadOnlyList<(string Prompt, string Continuation)> pairs, CancellationToken cancellationToken = default) => throw new NotImplementedException();
        public Task<IReadOnlyList<double[]>> CandidateLogProbsAsync(IReadOnlyList<string> prompts, IReadOnlyList<string> candidates, CancellationToken cancellationToken = default) => throw new NotImplementedException();
        public void Dispose() { }
    }
    public sealed class OpenAIBackend(OpenAIOptions options) : ITextGenerator, IScorer
    {
        public Uri Url => options.BaseUrl;
        public Task<IReadOnlyList<string>> ChatAsync(IReadOnlyList<IReadOnlyList<ChatMessage>> chats, SamplingOptions sampling, CancellationToken cancellationToken = default) => throw new NotImplementedException();
        public Task<IReadOnlyList<string>> CompleteAsync(IReadOnlyList<string> prompts, SamplingOptions sampling, CancellationToken cancellationToken = default) => throw new NotImplementedException();
        public Task<IReadOnlyList<double>> ContinuationLogProbsAsync(IReadOnlyList<(string Prompt, string Continuation)> pairs, CancellationToken cancellationToken = default) => throw new NotImplementedException();
        public Task<IReadOnlyList<double[]>> CandidateLogProbsAsync(IReadOnlyList<string> prompts, IReadOnlyList<string> candidates, CancellationToken cancellationToken = default) => throw new NotImplementedException();
        public void Dispose() { }
    }
}
