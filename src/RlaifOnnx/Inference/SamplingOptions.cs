namespace RlaifOnnx.Inference;

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
    /// <summary>Fewest new tokens: the end token is held back until this many (vLLM's min_tokens; 0 = off).</summary>
    public int MinNewTokens { get; init; }
}
