using System.Diagnostics;
using RlaifOnnx.Core;

namespace RlaifOnnx.Tests.Core;

public class OrphansTests
{
    [Fact]
    public void Leftovers_of_dead_writers_go_those_of_live_ones_and_other_names_stay()
    {
        using var temp = new TempDir();
        // A process that has exited: its pid names a dead writer.
        using var gone = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        gone.WaitForExit();
        var dead = gone.Id;
        var target = temp.File("model");
        var deadFolder = temp.File($".model.{dead}.0a1b.tmp");
        var deadOld = temp.File($".model.{dead}.0a1b.old");
        var deadFile = temp.File($".model.{dead}.tmp");
        Directory.CreateDirectory(deadFolder);
        File.WriteAllText(Path.Combine(deadFolder, "model.onnx"), "half");
        Directory.CreateDirectory(deadOld);
        File.WriteAllText(deadFile, "half");
        var mine = temp.File($".model.{Environment.ProcessId}.0a1b.tmp");       // this process may be writing it now
        var other = temp.File($".modelx.{dead}.0a1b.tmp");                       // another target's
        var unrelated = temp.File(".model.notapid.tmp");
        Directory.CreateDirectory(mine);
        Directory.CreateDirectory(other);
        File.WriteAllText(unrelated, "");

        Orphans.RemoveBeside(target);

        Assert.False(Directory.Exists(deadFolder));
        Assert.False(Directory.Exists(deadOld));
        Assert.False(File.Exists(deadFile));
        Assert.True(Directory.Exists(mine));
        Assert.True(Directory.Exists(other));
        Assert.True(File.Exists(unrelated));
    }
}
