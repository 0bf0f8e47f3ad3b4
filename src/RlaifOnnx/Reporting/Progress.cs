using System.Globalization;
using System.Text;

namespace RlaifOnnx.Reporting;

/// <summary>
/// A progress bar on stderr: <c>label [########............] 42/100 3.1/s ETA 0:18</c>.
/// On a terminal it redraws one line in place (carriage return) at most ten times a second; when stderr
/// is a file or a pipe (CI logs) it prints a plain line at most every <c>plainInterval</c> (5 s by
/// default) and always a final line on <see cref="Dispose"/>. Safe to advance from several threads.
/// A total of 0 or less means "unknown": count and rate are shown, no bar and no ETA.
/// </summary>
public sealed class Progress : IDisposable
{
    const int BarWidth = 20;
    static readonly TimeSpan TerminalInterval = TimeSpan.FromMilliseconds(100);

    readonly string label;
    readonly long total;
    readonly TextWriter output;
    readonly bool interactive;
    readonly TimeSpan plainInterval;
    readonly TimeProvider clock;
    readonly long startTimestamp;
    readonly Lock gate = new();
    long done;
    long baseline;
    bool advanced;
    long lastDrawTimestamp;
    int lastWidth;
    string? status;
    bool disposed;

    /// <summary>
    /// A bar on stderr; interactive when stderr is a terminal. <paramref name="alreadyDone"/> counts items a
    /// resumed run finished before: they fill the bar but not the rate, so the ETA stays honest.
    /// </summary>
    public Progress(string label, long total, long alreadyDone = 0)
        : this(label, total, Console.Error, interactive: !Console.IsErrorRedirected, alreadyDone: alreadyDone) { }

    /// <summary>A bar on any writer (tests, logs). <paramref name="clock"/> defaults to the system clock.</summary>
    public Progress(string label, long total, TextWriter output, bool interactive, TimeSpan? plainInterval = null, TimeProvider? clock = null, long alreadyDone = 0)
    {
        this.label = label;
        this.total = total;
        this.output = output;
        this.interactive = interactive;
        this.plainInterval = plainInterval ?? TimeSpan.FromSeconds(5);
        this.clock = clock ?? TimeProvider.System;
        done = baseline = alreadyDone;
        startTimestamp = this.clock.GetTimestamp();
        lastDrawTimestamp = startTimestamp;
        if (interactive) Draw(final: false);
    }

    /// <summary>Items finished so far.</summary>
    public long Done => Interlocked.Read(ref done);

    /// <summary>The total the bar counts towards (0 or less: unknown).</summary>
    public long Total => total;

    /// <summary>Marks <paramref name="n"/> more items finished and redraws if it is time to.</summary>
    public void Advance(long n = 1)
    {
        Volatile.Write(ref advanced, true);
        Interlocked.Add(ref done, n);
        MaybeDraw();
    }

    /// <summary>
    /// Sets the count directly. Called before the first <see cref="Advance"/> (a resumed run reporting
    /// what it finished before), the items count for the bar but not for the rate.
    /// </summary>
    public void SetDone(long value)
    {
        lock (gate)
        {
            if (!Volatile.Read(ref advanced)) baseline = value;
            Interlocked.Exchange(ref done, value);
        }
        MaybeDraw();
    }

    /// <summary>A short text shown after the ETA (e.g. "loss 0.412"); null clears it.</summary>
    public void SetStatus(string? text)
    {
        lock (gate) status = text;
        MaybeDraw();
    }

    void MaybeDraw()
    {
        var now = clock.GetTimestamp();
        var interval = interactive ? TerminalInterval : plainInterval;
        if (clock.GetElapsedTime(Interlocked.Read(ref lastDrawTimestamp), now) < interval) return;
        lock (gate)
        {
            if (disposed || clock.GetElapsedTime(lastDrawTimestamp, now) < interval) return;
            Draw(final: false);
        }
    }

    /// <summary>
    /// Ends without the final line: the run stopped on bad input met midway, whose one-line error is all
    /// the user should read (an interactive bar already drawn is ended with a newline, so the error starts a line).
    /// </summary>
    public void Abandon()
    {
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
            if (interactive && lastWidth > 0) { output.WriteLine(); output.Flush(); }
        }
    }

    /// <summary>Draws the final state (the end line) once.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
            Draw(final: true);
        }
    }

    // Called under the lock (or from the constructor).
    void Draw(bool final)
    {
        var now = clock.GetTimestamp();
        lastDrawTimestamp = now;
        var line = Format(label, Done, total, clock.GetElapsedTime(startTimestamp, now), final, status, baseline);
        if (interactive)
        {
            // Pad over the rest of a longer previous line, then return to column 0.
            var padded = line.Length < lastWidth ? line + new string(' ', lastWidth - line.Length) : line;
            lastWidth = line.Length;
            output.Write("\r" + padded + (final ? Environment.NewLine : ""));
        }
        else
        {
            output.WriteLine(line);
        }
        output.Flush();
    }

    /// <summary>
    /// The text of one progress line. Pure, so tests can check it with literal numbers:
    /// <c>label [#########...........] 42/100 3.1/s ETA 0:18</c>; at the end <c>... in 0:32</c>.
    /// The rate counts only items done since the start (<paramref name="baseline"/> were done before).
    /// </summary>
    public static string Format(string label, long done, long total, TimeSpan elapsed, bool final, string? status = null, long baseline = 0)
    {
        // A resumed run that found everything done says so, rather than "0 0.0/s".
        if (final && done == baseline)
            return baseline > 0 ? $"{label}: nothing to do ({baseline} done in an earlier run)" : $"{label}: nothing to do";
        var text = new StringBuilder(label);
        var seconds = elapsed.TotalSeconds;
        var rate = seconds > 0 ? (done - baseline) / seconds : 0;
        if (total > 0)
        {
            var filled = (int)Math.Clamp(done * BarWidth / total, 0, BarWidth);
            text.Append(" [").Append('#', filled).Append('.', BarWidth - filled).Append(']');
            text.Append(CultureInfo.InvariantCulture, $" {done}/{total}");
        }
        else
        {
            text.Append(CultureInfo.InvariantCulture, $" {done}");
        }
        text.Append(' ').Append(FormatRate(rate));
        if (final) text.Append(" in ").Append(FormatDuration(elapsed));
        else if (total > 0)
        {
            text.Append(" ETA ");
            text.Append(rate > 0 ? FormatDuration(TimeSpan.FromSeconds(Math.Max(0, total - done) / rate)) : "--:--");
        }
        if (!string.IsNullOrEmpty(status)) text.Append("  ").Append(status);
        return text.ToString();
    }

    /// <summary>"3.1/s", "42/s", "0.5/min" for slow work.</summary>
    public static string FormatRate(double perSecond)
    {
        var c = CultureInfo.InvariantCulture;
        if (perSecond <= 0 || double.IsNaN(perSecond)) return "0.0/s";
        if (perSecond >= 100) return perSecond.ToString("0", c) + "/s";
        if (perSecond >= 0.1) return perSecond.ToString("0.0", c) + "/s";
        return (perSecond * 60).ToString("0.0", c) + "/min";
    }

    /// <summary>"0:18", "12:05", "1:02:03".</summary>
    public static string FormatDuration(TimeSpan span)
    {
        if (span > TimeSpan.FromDays(99)) return ">99d";
        var total = (long)Math.Round(span.TotalSeconds);
        var h = total / 3600;
        var m = total / 60 % 60;
        var s = total % 60;
        return h > 0
            ? string.Create(CultureInfo.InvariantCulture, $"{h}:{m:00}:{s:00}")
            : string.Create(CultureInfo.InvariantCulture, $"{m}:{s:00}");
    }
}
