using RlaifOnnx.Reporting;
using RlaifOnnx.Training;

namespace RlaifOnnx.Tests.Reporting;

/// <summary>After a kill, a resumed stage rewrites the steps past its checkpoint: the log must not repeat them, and temp folders of dead writers go.</summary>
public class MetricsLogResumeTests
{
    [Fact]
    public void A_resumed_run_cuts_off_the_rows_an_earlier_run_left_past_its_checkpoint()
    {
        using var dir = new TempDir();
        var path = dir.File("metrics.jsonl");
        using (var first = new MetricsLog(path))
            for (var step = 1; step <= 13; step++) first.Write(step, "loss", 1.0 / step);
        // Killed after step 13; the newest checkpoint was step 10, so the rerun writes 11, 12, … again.
        using (var resumed = new MetricsLog(path))
        {
            resumed.Write(11, "loss", 0.5);
            resumed.Write(11, "eval_loss", 0.6);   // two rows at one step from one run are both kept
            resumed.Write(12, "loss", 0.4);
        }
        var steps = MetricsLog.Read(path).Select(e => e.Step).ToList();
        Assert.Equal([1L, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11, 12], steps);
        Assert.Equal(0.5, MetricsLog.Read(path)[10].Values["loss"]);

        // A rerun that logs the same final step again (e.g. a stage with nothing left to do) replaces it.
        using (var again = new MetricsLog(path)) again.Write(12, "loss", 0.4);
        Assert.Equal(13, MetricsLog.Read(path).Count);
        Assert.Equal(12, MetricsLog.Read(path)[^1].Step);
    }

    [Fact]
    public void Temp_folders_of_dead_checkpoint_writers_are_removed_and_live_ones_kept()
    {
        using var dir = new TempDir();
        var dead = Directory.CreateDirectory(Path.Combine(dir.Path, $".step-00000004.{int.MaxValue - 1}.{Guid.NewGuid():N}.tmp")).FullName;
        File.WriteAllText(Path.Combine(dead, "weights.safetensors"), "half");
        var mine = Directory.CreateDirectory(Path.Combine(dir.Path, $".step-00000005.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp")).FullName;
        var complete = Directory.CreateDirectory(Path.Combine(dir.Path, "step-00000003")).FullName;

        Checkpoint.RemoveOrphans(dir.Path);

        Assert.False(Directory.Exists(dead));
        Assert.True(Directory.Exists(mine));
        Assert.True(Directory.Exists(complete));
    }
}
