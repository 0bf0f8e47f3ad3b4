namespace RlaifOnnx.Inference;

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
