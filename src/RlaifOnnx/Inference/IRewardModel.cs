using RlaifOnnx.Core;

namespace RlaifOnnx.Inference;

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
