namespace RlaifOnnx.Inference;

/// <summary>One chat turn: role is "system", "user" or "assistant".</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>
/// How to sample. Temperature 0 means greedy. TopK 0 and TopP 1 switch those filters off.
/// The seed makes a batch reproducible.
/// </summary>
public sealed record SamplingOptions
{
    public int MaxNewTokens { get; init; } = 128;
    public double Temperature { get; init; } = 1.0;
    public double TopP { get; init; } = 1.0;
    public int TopK { get; init; }
    public int Seed { get; init; }
}

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

/// <summary>
/// Log-probabilities of given text, the basis of AI feedback labels: one forward pass, no sampling.
/// Implemented by the ONNX Runtime scorer and the OpenAI-compatible HTTP backend.
/// </summary>
public interface IScorer : IDisposable
{
    /// <summary>For each (prompt, continuation), the summed natural-log probability of the continuation's tokens after the prompt.</summary>
    Task<IReadOnlyList<double>> ContinuationLogProbsAsync(IReadOnlyList<(string Prompt, string Continuation)> pairs, CancellationToken cancellationToken = default);

    /// <summary>
    /// For each prompt, the log-probability of every candidate answer (e.g. " (A)" and " (B)") as the
    /// text that follows the prompt. Candidates share the prompt's forward pass where the backend allows.
    /// </summary>
    Task<IReadOnlyList<double[]>> CandidateLogProbsAsync(IReadOnlyList<string> prompts, IReadOnlyList<string> candidates, CancellationToken cancellationToken = default);

    /// <summary>
    /// For each suffix, the log-probability of every candidate after the question prefix + suffix: the
    /// same numbers as <see cref="CandidateLogProbsAsync"/> over those questions. A backend that can keep
    /// a cache runs the shared prefix once and the suffixes from it (the ONNX Runtime scorer); by default
    /// each question is sent whole.
    /// </summary>
    Task<IReadOnlyList<double[]>> QuestionCandidateLogProbsAsync(string prefix, IReadOnlyList<string> suffixes, IReadOnlyList<string> candidates, CancellationToken cancellationToken = default) =>
        CandidateLogProbsAsync(suffixes.Select(s => prefix + s).ToList(), candidates, cancellationToken);
}

/// <summary>
/// A preference model's rewards for responses in context, the interface PPO scores rollouts with.
/// Implemented by the local <see cref="RewardScorer"/> (ONNX Runtime over a PM folder) and the remote
/// <see cref="RewardClient"/> (a PM served by `rlaif serve`); both give the same numbers.
/// </summary>
public interface IRewardModel : IDisposable
{
    /// <summary>One scalar reward per (conversation, response), in input order; each rendered with the PM's chat template.</summary>
    Task<double[]> RewardsAsync(IReadOnlyList<(IReadOnlyList<ChatMessage> Context, string Response)> items, CancellationToken cancellationToken = default);
}
