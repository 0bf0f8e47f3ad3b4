namespace RlaifOnnx.Training;

/// <summary>How the learning rate decays after warm-up.</summary>
public enum DecayKind { Constant, Linear, Cosine }

/// <summary>
/// Linear warm-up from 0 to <see cref="PeakLearningRate"/> over <see cref="WarmupSteps"/> updates, then
/// constant, linear or cosine decay to <see cref="MinLearningRate"/> at <see cref="TotalSteps"/>
/// (Hugging Face's get_*_schedule_with_warmup, with a floor). Steps count from 0: the first update uses At(0).
/// </summary>
public sealed record LearningRateSchedule(double PeakLearningRate, long TotalSteps, long WarmupSteps = 0, DecayKind Decay = DecayKind.Cosine, double MinLearningRate = 0)
{
    public double At(long step)
    {
        if (step < WarmupSteps) return PeakLearningRate * (step + 1) / WarmupSteps;
        if (Decay == DecayKind.Constant) return PeakLearningRate;
        var decaySteps = Math.Max(1, TotalSteps - WarmupSteps);
        var progress = Math.Clamp((double)(step - WarmupSteps) / decaySteps, 0, 1);
        var fraction = Decay == DecayKind.Linear ? 1 - progress : 0.5 * (1 + Math.Cos(Math.PI * progress));
        return MinLearningRate + (PeakLearningRate - MinLearningRate) * fraction;
    }
}
