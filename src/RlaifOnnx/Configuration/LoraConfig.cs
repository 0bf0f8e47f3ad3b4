namespace RlaifOnnx.Configuration;

/// <summary>
/// LoRA adapters (Hu et al. 2021) on the model's linear projections, the `lora:` section of every training
/// stage. Rank 0 trains every weight instead. Names and defaults follow PEFT's LoraConfig (r, lora_alpha,
/// target_modules, lora_dropout).
/// </summary>
public sealed record LoraConfig : IValidatableConfig
{
    /// <summary>Adapter rank r; 0 trains every weight (no adapters).</summary>
    public int Rank { get; init; }
    /// <summary>Adapter alpha (the update is scaled by alpha/rank); 0 means 2·rank.</summary>
    public double Alpha { get; init; }
    /// <summary>Projections that get adapters: comma-separated (q_proj,v_proj) or all-linear.</summary>
    public string Targets { get; init; } = "q_proj,v_proj";
    /// <summary>Dropout on the adapters' input during training; 0 = off.</summary>
    public double Dropout { get; init; }

    /// <summary>Whether adapters are on (rank above 0).</summary>
    public bool Enabled => Rank > 0;

    /// <summary>The scale numerator: alpha, or 2·rank when alpha is 0.</summary>
    public double EffectiveAlpha => Alpha > 0 ? Alpha : 2.0 * Rank;

    /// <summary>The target projections as a list.</summary>
    public IReadOnlyList<string> TargetList => Targets.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public IEnumerable<ConfigProblem> Problems()
    {
        if (Rank < 0) yield return new("rank", $"must be 0 or more, got {Rank}");
        if (!(Alpha >= 0)) yield return new("alpha", $"must be 0 or more, got {Alpha}");
        if (Dropout is < 0 or >= 1 || double.IsNaN(Dropout)) yield return new("dropout", $"must be in [0, 1), got {Dropout}");
        if (Rank > 0 && TargetList.Count == 0) yield return new("targets", "names no projection");
    }
}
