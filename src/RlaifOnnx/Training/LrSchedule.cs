using RlaifOnnx.Core;

namespace RlaifOnnx.Training;

public enum ScheduleKind { Constant, Linear, Cosine }

/// <summary>
/// Learning-rate multipliers as Hugging Face transformers' get_{constant,linear,cosine}_schedule_with_warmup:
/// <see cref="Factor"/>(s) is the multiplier for the update after s completed updates (s = 0 for the first):
/// warm-up s/W for s &lt; W, then constant 1, linear (T − s)/(T − W), or cosine ½(1 + cos(π·p)) with
/// p = (s − W)/(T − W), floored at <see cref="MinRatio"/> (0 in Hugging Face).
/// </summary>
public sealed record LrSchedule(ScheduleKind Kind, int WarmupSteps, int TotalSteps, double MinRatio = 0)
{
    /// <summary>
    /// Optimizer steps per schedule step: the factor changes every this many updates (PPO steps its
    /// schedule once per iteration, over that iteration's mini-batch updates, as TRL does). 1 = every update.
    /// </summary>
    public int UpdatesPerStep { get; init; } = 1;

    public double Factor(long step)
    {
        step /= Math.Max(1, UpdatesPerStep);
        if (step < WarmupSteps) return (double)step / Math.Max(1, WarmupSteps);
        var decaySteps = Math.Max(1, TotalSteps - WarmupSteps);
        var progress = Math.Min(1.0, (double)(step - WarmupSteps) / decaySteps);
        var factor = Kind switch
        {
            ScheduleKind.Constant => 1.0,
            ScheduleKind.Linear => 1.0 - progress,
            ScheduleKind.Cosine => 0.5 * (1 + Math.Cos(Math.PI * progress)),
            _ => throw new ArgumentOutOfRangeException(nameof(Kind)),
        };
        return Kind == ScheduleKind.Constant ? factor : MinRatio + (1 - MinRatio) * factor;
    }

    public static ScheduleKind ParseKind(string name, string source) => name.ToLowerInvariant() switch
    {
        "constant" => ScheduleKind.Constant,
        "linear" => ScheduleKind.Linear,
        "cosine" => ScheduleKind.Cosine,
        _ => throw UserError.At(source, null, "schedule", $"'{name}' is not one of constant, linear, cosine"),
    };
}
