using RlaifOnnx.Core;

namespace RlaifOnnx.Inference;

/// <summary>
/// Text generation, the interface the data stages use (DESIGN §2 "Inference"). Implemented by the
/// local ONNX Runtime GenAI backend and the OpenAI-compatible HTTP backend. Results are in input order.
/// </summary>
public interface ITextGenerator : IDisposable
{
    /// <summary>Answers each conversation with the model's chat template applied.</summary>
    Task<IReadOnlyList<string>> ChatAsync(IReadOnlyList<IReadOnlyList<ChatMessage>> chats, SamplingOptions sampling, CancellationToken cancellationToken = default);

    /// <summary>Continues each raw text prompt (no chat template).</summary>
    Task<IReadOnlyList<string>> CompleteAsync(IReadOnlyList<string> prompts, SamplingOptions sampling, CancellationToken cancellationToken = default);
}
