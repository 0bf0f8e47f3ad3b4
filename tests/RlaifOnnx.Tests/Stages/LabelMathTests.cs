using RlaifOnnx.Stages;


namespace RlaifOnnx.Tests.Stages;

public class LabelMathTests
{
    [Fact]
    public void NormalisesTwoLogProbs()
    {
        // exp(-1) / (exp(-1) + exp(-2)) = 1 / (1 + e^-1) = 0.7310585786300049
        Assert.Equal(0.7310585786300049, LabelMath.ProbabilityOfFirst(-1.0, -2.0), 12);
        Assert.Equal(0.5, LabelMath.ProbabilityOfFirst(-3.0, -3.0), 12);
        // ln 0.2 and ln 0.6 → 0.2 / 0.8 = 0.25 (the two need not sum to one)
        Assert.Equal(0.25, LabelMath.ProbabilityOfFirst(Math.Log(0.2), Math.Log(0.6)), 12);
        // far apart: no overflow
        Assert.Equal(1.0, LabelMath.ProbabilityOfFirst(0, -1000), 12);
        Assert.Equal(0.0, LabelMath.ProbabilityOfFirst(-1000, 0), 12);
        Assert.Equal(0.5, LabelMath.ProbabilityOfFirst(double.NegativeInfinity, double.NegativeInfinity));
    }

    [Fact]
    public void AveragesBothOrders()
    {
        // a shown first: P(A) = 0.8; swapped: P(A) = 0.4, so a (now B) has 0.6 → mean 0.7
        Assert.Equal(0.7, LabelMath.AverageOrders(0.8, 0.4), 12);
        // a labeller that always says (A) with 0.9 learns nothing: 0.5
        Assert.Equal(0.5, LabelMath.AverageOrders(0.9, 0.9), 12);
        Assert.Equal(0.3, LabelMath.FromSwappedOrder(0.7), 12);
    }

    [Fact]
    public void EnsemblesByMean()
    {
        Assert.Equal(0.6, LabelMath.Ensemble([0.9, 0.5, 0.4]), 12);
        Assert.Equal(0.25, LabelMath.Ensemble([0.25]), 12);
        Assert.Throws<ArgumentException>(() => LabelMath.Ensemble([]));
    }

    [Fact]
    public void ClampsChainOfThought()
    {
        Assert.Equal(0.6, LabelMath.Clamp(0.97));
        Assert.Equal(0.4, LabelMath.Clamp(0.02));
        Assert.Equal(0.55, LabelMath.Clamp(0.55));
        Assert.Equal(0.7, LabelMath.Clamp(0.97, 0.3, 0.7));
    }

    [Fact]
    public void AgreementCountsTiesHalf()
    {
        // right, wrong, tie, right → (1 + 0 + 0.5 + 1) / 4
        Assert.Equal(0.625, LabelMath.Agreement([0.9, 0.8, 0.5, 0.3], [true, false, true, false]), 12);
    }

    [Fact]
    public void PositionConsistencyComparesChoices()
    {
        // same, different, tie (inconsistent), same
        Assert.Equal(0.5, LabelMath.PositionConsistency([0.7, 0.6, 0.5, 0.2], [0.9, 0.4, 0.8, 0.1]), 12);
    }

    [Fact]
    public void CalibrationBinsAndExpectedError()
    {
        // Two bins. Bin [0, 0.5): p = 0.2, 0.4 (mean 0.3), people chose a once in two (0.5) → |0.3 − 0.5| = 0.2.
        // Bin [0.5, 1]: p = 0.6, 1.0 (mean 0.8), people chose a twice (1.0) → 0.2. ECE = 0.5·0.2 + 0.5·0.2 = 0.2.
        var c = LabelMath.Calibrate([0.2, 0.4, 0.6, 1.0], [false, true, true, true], bins: 2);
        Assert.Equal(0.2, c.ExpectedCalibrationError, 12);
        Assert.Equal(2, c.Bins[0].Count);
        Assert.Equal(0.3, c.Bins[0].MeanPredicted, 12);
        Assert.Equal(0.5, c.Bins[0].FractionChoseA, 12);
        Assert.Equal(0.8, c.Bins[1].MeanPredicted, 12);
        Assert.Equal(1.0, c.Bins[1].FractionChoseA, 12);

        var tenBins = LabelMath.Calibrate([0.05, 0.95], [false, true]);
        Assert.Equal(10, tenBins.Bins.Count);
        Assert.Equal(0.05, tenBins.ExpectedCalibrationError, 12);
        Assert.True(double.IsNaN(tenBins.Bins[5].MeanPredicted));
    }
}
