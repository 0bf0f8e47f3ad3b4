// TEMPORARY: minimal stand-ins for contracts that another branch delivers (inference: GenAIGenerator, OrtScorer, OpenAIBackend).
// This file is deleted when those land on main.
#pragma warning disable CS1591
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using RlaifOnnx.Inference;

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
