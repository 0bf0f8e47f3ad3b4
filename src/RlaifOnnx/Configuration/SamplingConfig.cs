namespace RlaifOnnx.Configuration;

/// <summary>
/// How a stage samples text from a model, the `sampling:` section of every stage that generates
/// (names as in Hugging Face generate / the OpenAI API). Temperature 0 is greedy.
/// </summary>
public sealed record SamplingConfig : IValidatableConfig
{
    /// <summary>Sampling temperature; 0 is greedy.</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Nucleus sampling: keep the most likely tokens up to this probability mass; 1 = off.</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>Most tokens generated per answer.</summary>
    public int MaxNewTokens { get; init; } = 128;

    public IEnumerable<ConfigProblem> Problems()
    {
        if (!(Temperature >= 0) || double.IsInfinity(Temperature)) yield return new("temperature", $"must be 0 or more, got {Temperature}");
        if (!(TopP is > 0 and <= 1)) yield return new("top_p", $"must be in (0, 1], got {TopP}");
        if (MaxNewTokens < 1) yield return new("max_new_tokens", $"must be at least 1, got {MaxNewTokens}");
    }
}
