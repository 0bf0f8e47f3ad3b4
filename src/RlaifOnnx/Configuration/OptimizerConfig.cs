namespace RlaifOnnx.Configuration;

/// <summary>
/// AdamW and its learning-rate schedule, the `optimizer:` section of every training stage. Names follow
/// Hugging Face TrainingArguments (learning_rate, warmup_steps as warmup, lr_scheduler_type as schedule,
/// weight_decay, max_grad_norm).
/// </summary>
public sealed record OptimizerConfig : IValidatableConfig
{
    /// <summary>Peak learning rate (the schedule multiplies it).</summary>
    public double LearningRate { get; init; } = 1e-5;
    /// <summary>Linear warm-up steps from 0 to the peak.</summary>
    public int Warmup { get; init; }
    /// <summary>Learning-rate schedule after warm-up: constant, linear (to 0 at the last step) or cosine.</summary>
    public string Schedule { get; init; } = "linear";
    /// <summary>AdamW's decoupled weight decay.</summary>
    public double WeightDecay { get; init; }
    /// <summary>Clip gradients to this global L2 norm; 0 = off.</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>
    /// ONNX Runtime's CPU memory arena for the training step. Off (the default): buffers go back to the system after
    /// their last reader, so the peak is what a step holds at once; the fresh buffers' page faults are cheap because
    /// `rlaif` runs with the C heap on huge pages (Core.HugePages). On: the arena keeps every buffer it grew to, so
    /// later steps allocate nothing — a few percent faster, with a much higher peak. bench/RESULTS.md; on a ~100M
    /// model: 7.42 s per step at a 4.67 GiB peak off, 6.94 s at 7.88 GiB on.
    /// </summary>
    public bool CpuMemoryArena { get; init; }
    /// <summary>
    /// Recompute each decoder layer's activations in the backward pass instead of keeping them from the forward pass
    /// (Hugging Face's gradient_checkpointing): a step keeps one [rows, hidden] tensor per layer and one layer's
    /// activations at a time, for one more forward pass of compute. The gradients are the same values. Unset: on for
    /// ppo with low_memory, off elsewhere. Llama-family models (others train as without it).
    /// </summary>
    public bool? GradientCheckpointing { get; init; }

    public IEnumerable<ConfigProblem> Problems()
    {
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) yield return new("learning_rate", $"must be positive, got {LearningRate}");
        if (Warmup < 0) yield return new("warmup", $"must be 0 or more, got {Warmup}");
        if (Schedule.ToLowerInvariant() is not ("constant" or "linear" or "cosine")) yield return new("schedule", $"'{Schedule}' is not one of constant, linear, cosine");
        if (!(WeightDecay >= 0) || double.IsInfinity(WeightDecay)) yield return new("weight_decay", $"must be 0 or more, got {WeightDecay}");
        if (!(MaxGradNorm >= 0) || double.IsInfinity(MaxGradNorm)) yield return new("max_grad_norm", $"must be 0 or more, got {MaxGradNorm}");
    }
}
