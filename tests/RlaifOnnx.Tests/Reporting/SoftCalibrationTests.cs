using RlaifOnnx.Reporting;

namespace RlaifOnnx.Tests.Reporting;

public class SoftCalibrationTests
{
    [Fact]
    public void Bins_predictions_and_averages_soft_targets_by_hand()
    {
        // 4 bins of width 0.25. Bin 0: {0.1 → 0.2}; bin 2: {0.6 → 1, 0.7 → 0.5}; bin 3: {0.9 → 1, 1.0 → 0.8} (1.0 goes in the last bin).
        var (bins, ece) = SoftCalibration.Bin([0.1, 0.6, 0.7, 0.9, 1.0], [0.2, 1, 0.5, 1, 0.8], bins: 4);
        Assert.Equal([1, 0, 2, 2], bins.Select(b => b.Count));
        Assert.Equal([0.0, 0.25, 0.5, 0.75], bins.Select(b => b.Low));
        Assert.Equal(0.65, bins[2].MeanPredicted, 12);
        Assert.Equal(0.75, bins[2].MeanTarget, 12);
        Assert.Equal(0.95, bins[3].MeanPredicted, 12);
        Assert.Equal(0.9, bins[3].MeanTarget, 12);
        Assert.True(double.IsNaN(bins[1].MeanPredicted) && double.IsNaN(bins[1].MeanTarget));
        // ECE = 1/5·|0.1 − 0.2| + 2/5·|0.65 − 0.75| + 2/5·|0.95 − 0.9| = 0.02 + 0.04 + 0.02
        Assert.Equal(0.08, ece, 12);
    }

    [Fact]
    public void A_calibrated_predictor_has_zero_error_and_an_empty_input_has_none()
    {
        var (_, ece) = SoftCalibration.Bin([0.3, 0.3, 0.8], [0.3, 0.3, 0.8], bins: 10);
        Assert.Equal(0, ece, 12);
        Assert.True(double.IsNaN(SoftCalibration.Bin([], [], 10).ExpectedCalibrationError));
        Assert.Throws<ArgumentException>(() => SoftCalibration.Bin([0.5], [], 10));
    }

    [Fact]
    public void Accuracy_counts_labels_that_pick_a_side_and_ties_half()
    {
        // label 0.5 is skipped; 0.9 vs 1 right; 0.2 vs 0.8 wrong; 0.5 vs 0 half.
        Assert.Equal(1.5 / 3, SoftCalibration.Accuracy([0.7, 0.9, 0.2, 0.5], [0.5, 1, 0.8, 0]), 12);
        Assert.True(double.IsNaN(SoftCalibration.Accuracy([0.7], [0.5])));
    }
}
