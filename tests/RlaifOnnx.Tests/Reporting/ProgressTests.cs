using RlaifOnnx.Core;
using RlaifOnnx.Reporting;


namespace RlaifOnnx.Tests.Reporting;

/// <summary>A clock the test moves by hand.</summary>
sealed class ManualClock : TimeProvider
{
    long ticks;
    public DateTimeOffset Start { get; } = new(2026, 1, 2, 3, 4, 5, TimeSpan.Zero);
    public void Advance(TimeSpan by) => Interlocked.Add(ref ticks, by.Ticks);
    public override long GetTimestamp() => Interlocked.Read(ref ticks);
    public override long TimestampFrequency => TimeSpan.TicksPerSecond;
    public override DateTimeOffset GetUtcNow() => Start + TimeSpan.FromTicks(Interlocked.Read(ref ticks));
}

public class ProgressTests
{
    [Fact]
    public void Format_LiteralLine()
    {
        Assert.Equal("label [########............] 42/100 3.1/s ETA 0:19",
            Progress.Format("label", 42, 100, TimeSpan.FromSeconds(42 / 3.1), final: false));
        Assert.Equal("revise [####################] 100/100 2.0/s in 0:50",
            Progress.Format("revise", 100, 100, TimeSpan.FromSeconds(50), final: true));
        Assert.Equal("scan 7 0.0/s", Progress.Format("scan", 7, 0, TimeSpan.Zero, final: false));
        Assert.Equal("revise: nothing to do (16 done in an earlier run)", Progress.Format("revise", 16, 16, TimeSpan.FromSeconds(1), final: true, baseline: 16));
        Assert.Equal("scan: nothing to do", Progress.Format("scan", 0, 0, TimeSpan.Zero, final: true));
        Assert.Equal("x [....................] 0/10 0.0/s ETA --:--", Progress.Format("x", 0, 10, TimeSpan.FromSeconds(3), final: false));
        Assert.Equal("x [##########..........] 5/10 250/s ETA 0:00  loss 0.41", Progress.Format("x", 5, 10, TimeSpan.FromSeconds(0.02), final: false, status: "loss 0.41"));
    }

    [Fact]
    public void FormatRateAndDuration_LiteralValues()
    {
        Assert.Equal("3.1/s", Progress.FormatRate(3.1));
        Assert.Equal("123/s", Progress.FormatRate(123.4));
        Assert.Equal("3.0/min", Progress.FormatRate(0.05));
        Assert.Equal("0:18", Progress.FormatDuration(TimeSpan.FromSeconds(18)));
        Assert.Equal("12:05", Progress.FormatDuration(TimeSpan.FromSeconds(725)));
        Assert.Equal("1:02:03", Progress.FormatDuration(TimeSpan.FromSeconds(3723)));
    }

    [Fact]
    public void NonTerminal_PrintsPlainLinesAtMostEveryInterval_AndAFinalLine()
    {
        var clock = new ManualClock();
        var output = new StringWriter();
        using (var progress = new Progress("label", 100, output, interactive: false, TimeSpan.FromSeconds(5), clock))
        {
            for (var i = 0; i < 100; i++)
            {
                clock.Advance(TimeSpan.FromSeconds(0.5));
                progress.Advance();
            }
        }
        var lines = output.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries);
        // 50 s of work, a line every 5 s (10), plus the final one; no carriage returns in a log.
        Assert.Equal(11, lines.Length);
        Assert.DoesNotContain("\r", output.ToString());
        Assert.Equal("label [##..................] 10/100 2.0/s ETA 0:45", lines[0]);
        Assert.Equal("label [####................] 20/100 2.0/s ETA 0:40", lines[1]);
        Assert.Equal("label [####################] 100/100 2.0/s in 0:50", lines[^1]);
    }

    [Fact]
    public void Terminal_RedrawsInPlaceWithCarriageReturns()
    {
        var clock = new ManualClock();
        var output = new StringWriter();
        using (var progress = new Progress("t", 4, output, interactive: true, clock: clock))
        {
            for (var i = 0; i < 4; i++)
            {
                clock.Advance(TimeSpan.FromSeconds(1));
                progress.Advance();
            }
        }
        var text = output.ToString();
        Assert.StartsWith("\rt [....................] 0/4 0.0/s ETA --:--", text);
        Assert.Contains("\rt [#####...............] 1/4 1.0/s ETA 0:03", text);
        // The final line is padded over the longer ETA line before it.
        Assert.EndsWith("\rt [####################] 4/4 1.0/s in 0:04 " + Environment.NewLine, text);
        Assert.Single(text.Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void Abandoned_DrawsNoFinalLine_AndEndsAnInteractiveBarWithANewline()
    {
        var clock = new ManualClock();
        var plain = new StringWriter();
        using (var progress = new Progress("label", 10, plain, interactive: false, TimeSpan.FromSeconds(5), clock))
        {
            clock.Advance(TimeSpan.FromSeconds(1));
            progress.Abandon();
        }
        Assert.Equal("", plain.ToString());

        var terminal = new StringWriter();
        using (var progress = new Progress("t", 4, terminal, interactive: true, clock: clock))
        {
            clock.Advance(TimeSpan.FromSeconds(1));
            progress.Advance();
            progress.Abandon();
        }
        Assert.EndsWith("1/4 1.0/s ETA 0:03 " + Environment.NewLine, terminal.ToString());
        Assert.DoesNotContain("in 0:", terminal.ToString());
    }

    [Fact]
    public void ResumedRun_ItemsDoneBeforeFillTheBarButNotTheRate()
    {
        var clock = new ManualClock();
        var output = new StringWriter();
        using (var progress = new Progress("r", 100, output, interactive: false, TimeSpan.FromSeconds(10), clock, alreadyDone: 60))
        {
            for (var i = 0; i < 40; i++)
            {
                clock.Advance(TimeSpan.FromSeconds(0.5));
                progress.Advance();
            }
        }
        var lines = output.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("r [################....] 80/100 2.0/s ETA 0:10", lines[0]);
        Assert.Equal("r [####################] 100/100 2.0/s in 0:20", lines[^1]);
    }

    [Fact]
    public void SetDoneBeforeTheFirstAdvance_IsABaselineToo()
    {
        var clock = new ManualClock();
        var output = new StringWriter();
        using (var progress = new Progress("s", 10, output, interactive: false, TimeSpan.FromSeconds(100), clock))
        {
            progress.SetDone(6);
            for (var i = 0; i < 4; i++)
            {
                clock.Advance(TimeSpan.FromSeconds(1));
                progress.Advance();
            }
        }
        Assert.Equal("s [####################] 10/10 1.0/s in 0:04", output.ToString().Trim());
    }

    [Fact]
    public void ConcurrentAdvances_CountEveryItem()
    {
        var output = new StringWriter();
        using var progress = new Progress("p", 10_000, TextWriter.Synchronized(output), interactive: false, TimeSpan.Zero);
        Parallel.For(0, 10_000, _ => progress.Advance());
        Assert.Equal(10_000, progress.Done);
    }
}

public class MetricsLogTests
{
    [Fact]
    public void AppendsOneFlushedJsonLinePerStep_AndReadsBack()
    {
        using var dir = new TempDir();
        var path = dir.File("stage/metrics.jsonl");
        var clock = new ManualClock();
        using (var log = new MetricsLog(path, clock))
        {
            log.Write(1, [new("loss", 2.5), new("lr", 1e-4)]);
            // Visible before the log is closed.
            Assert.Single(File.ReadAllLines(path));
            clock.Advance(TimeSpan.FromSeconds(2));
            log.Write(2, "loss", double.NaN);
        }
        var lines = File.ReadAllLines(path);
        Assert.Equal("""{"step":1,"timestamp":"2026-01-02T03:04:05+00:00","loss":2.5,"lr":0.0001}""", lines[0]);
        Assert.Equal("""{"step":2,"timestamp":"2026-01-02T03:04:07+00:00","loss":"NaN"}""", lines[1]);

        var entries = MetricsLog.Read(path);
        Assert.Equal([1L, 2L], entries.Select(e => e.Step));
        Assert.Equal(1e-4, entries[0].Values["lr"]);
        Assert.True(double.IsNaN(entries[1].Values["loss"]));
    }

    [Fact]
    public void ResumedLog_CutsATornLineAndAppends()
    {
        using var dir = new TempDir();
        var path = dir.File("metrics.jsonl");
        using (var log = new MetricsLog(path)) log.Write(1, "loss", 1);
        File.AppendAllText(path, "{\"step\":2,\"ti");
        using (var log = new MetricsLog(path)) log.Write(2, "loss", 0.5);
        Assert.Equal(2, File.ReadAllLines(path).Length);
        Assert.Equal([1.0, 0.5], MetricsLog.Read(path).Select(e => e.Values["loss"]));
    }

    [Fact]
    public void Read_BadLineInTheMiddle_NamesIt()
    {
        using var dir = new TempDir();
        var path = dir.File("metrics.jsonl");
        File.WriteAllText(path, "{\"step\":1,\"timestamp\":\"2026-01-01T00:00:00Z\",\"loss\":1}\nnope\n{\"step\":2,\"timestamp\":\"2026-01-01T00:00:00Z\"}\n");
        var e = Assert.Throws<UserError>(() => MetricsLog.Read(path));
        Assert.StartsWith($"{path}:2: not a metrics line", e.Message);
    }

    [Fact]
    public void Read_SkipsATornLastLine()
    {
        using var dir = new TempDir();
        var path = dir.File("metrics.jsonl");
        using (var log = new MetricsLog(path)) log.Write(1, "loss", 1);
        File.AppendAllText(path, "{\"step\":2,\"ti");
        Assert.Single(MetricsLog.Read(path));
    }
}
