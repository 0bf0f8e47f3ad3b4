
namespace RlaifOnnx.Inference;

/// <summary>One token's log-probability and the most likely alternatives at its position.</summary>
public sealed record TokenLogProb(int Id, double LogProb, IReadOnlyList<(int Id, double LogProb)> Top);
