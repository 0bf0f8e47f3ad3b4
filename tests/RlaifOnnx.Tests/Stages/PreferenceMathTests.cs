using RlaifOnnx.Stages;


namespace RlaifOnnx.Tests.Stages;

/// <summary>Preference-model evaluation arithmetic with literal numbers.</summary>
public class PreferenceMathTests
{
    [Fact]
    public void ProbabilityIsTheSigmoidOfTheRewardMargin()
    {
        Assert.Equal(0.5, PreferenceMath.ProbabilityAPreferred(1.25, 1.25), 15);
        Assert.Equal(0.7310585786300049, PreferenceMath.ProbabilityAPreferred(2, 1), 15);     // σ(1)
        Assert.Equal(0.2689414213699951, PreferenceMath.ProbabilityAPreferred(1, 2), 15);     // σ(−1)
        Assert.Equal(1.0, PreferenceMath.ProbabilityAPreferred(800, 0), 15);                  // no overflow
        Assert.Equal(0.0, PreferenceMath.ProbabilityAPreferred(0, 800), 15);
    }

    [Fact]
    public void SoftLabelLossWithHardAndSoftLabels()
    {
        // Hard label: −log σ(r_good − r_bad).
        Assert.Equal(0.31326168751822286, PreferenceMath.SoftLabelLoss(2, 1, 1.0), 14);      // −log σ(1)
        Assert.Equal(1.3132616875182228, PreferenceMath.SoftLabelLoss(2, 1, 0.0), 14);       // −log σ(−1)
        // Soft label 0.75: 0.75·softplus(−1) + 0.25·softplus(1).
        Assert.Equal(0.75 * 0.31326168751822286 + 0.25 * 1.3132616875182228, PreferenceMath.SoftLabelLoss(2, 1, 0.75), 14);
        // Equal rewards: log 2 whatever the label.
        Assert.Equal(Math.Log(2), PreferenceMath.SoftLabelLoss(0.3, 0.3, 0.9), 14);
        Assert.Equal(1000.0, PreferenceMath.SoftLabelLoss(0, 1000, 1.0), 9);                 // no overflow
    }

    [Fact]
    public void EvaluateCountsAccuracyOnDecidedLabelsOnly()
    {
        // a better by the label and the model; b better by the label, model disagrees; a tie of rewards; an undecided label.
        double[] rA = [2, 2, 0.5, 3], rB = [1, 1, 0.5, 0], pA = [1, 0.1, 0.9, 0.5];
        var e = PreferenceMath.Evaluate(rA, rB, pA, bins: 2);
        Assert.Equal(4, e.Comparisons);
        Assert.Equal((1 + 0 + 0.5) / 3, e.Accuracy, 15);                                       // the 0.5 label is left out
        var expectedLoss = (PreferenceMath.SoftLabelLoss(2, 1, 1) + PreferenceMath.SoftLabelLoss(2, 1, 0.1)
            + PreferenceMath.SoftLabelLoss(0.5, 0.5, 0.9) + PreferenceMath.SoftLabelLoss(3, 0, 0.5)) / 4;
        Assert.Equal(expectedLoss, e.Loss, 14);
        Assert.Equal((1 + 1 + 0 + 3) / 4.0, e.MeanAbsMargin, 15);
        Assert.NotNull(e.ExpectedCalibrationError);
    }

    [Fact]
    public void EvaluateOfNothingIsNaNAndMismatchedLengthsThrow()
    {
        var e = PreferenceMath.Evaluate([], [], []);
        Assert.Equal(0, e.Comparisons);
        Assert.True(double.IsNaN(e.Accuracy));
        Assert.Throws<ArgumentException>(() => PreferenceMath.Evaluate([1], [2, 3], [1]));
    }
}
