using System.Diagnostics;
using RlaifOnnx.Core;

namespace RlaifOnnx.Tests.Core;

/// <summary>
/// `rlaif` restarts itself in place with glibc's huge-page tunable (see HugePages): the running process — the
/// same process id the caller started, serving on the port it was asked for — carries the tunable in its
/// environment, unless the user opted out or set the tunable themselves.
/// </summary>
public class HugePagesTests
{
    static readonly bool KernelAdvisesOnly =
        File.Exists("/sys/kernel/mm/transparent_hugepage/enabled") && File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled").Contains("[madvise]");

    /// <summary>The environment of `rlaif serve` once it listens (after any restart), read from /proc.</summary>
    static async Task<Dictionary<string, string>> ServingEnvironment(Dictionary<string, string?> environment)
    {
        using var model = new LlamaFolder();
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (name, value) in environment)
            if (value is null) start.Environment.Remove(name); else start.Environment[name] = value;
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "rlaif.dll"), "serve", "--model", model.Dir, "--port", "0" }) start.ArgumentList.Add(a);
        using var serve = Process.Start(start)!;
        try
        {
            var first = await serve.StandardOutput.ReadLineAsync(TestContext.Current.CancellationToken);
            Assert.StartsWith("listening on http://127.0.0.1:", first);
            // glibc ends each parsed tunable's value with a NUL in the environment block itself (parse_tunables writes
            // value[len] = '\0'), so /proc shows "a=1:b=2" as "a=1\0b=2": join those pieces back with ':'.
            return File.ReadAllText($"/proc/{serve.Id}/environ").Replace("\0glibc.", ":glibc.").Split('\0', StringSplitOptions.RemoveEmptyEntries)
                .Select(v => v.Split('=', 2)).ToDictionary(v => v[0], v => v[1]);
        }
        finally
        {
            serve.Kill();
            await serve.WaitForExitAsync(TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task The_process_the_user_started_runs_with_the_tunable_where_the_kernel_gives_huge_pages_on_request()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "/proc and glibc are Linux's");
        var environment = await ServingEnvironment(new() { ["GLIBC_TUNABLES"] = null, [HugePages.OptOutVariable] = null, ["RLAIF_TEST_MARK"] = "kept" });
        Assert.Equal("kept", environment["RLAIF_TEST_MARK"]);   // the rest of the environment survives the restart
        if (KernelAdvisesOnly) Assert.Equal("glibc.malloc.hugetlb=1", environment["GLIBC_TUNABLES"]);
        else Assert.False(environment.ContainsKey("GLIBC_TUNABLES"));
    }

    [Fact]
    public async Task Other_tunables_of_the_user_are_kept_beside_it()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "/proc and glibc are Linux's");
        var environment = await ServingEnvironment(new() { ["GLIBC_TUNABLES"] = "glibc.malloc.arena_max=2", [HugePages.OptOutVariable] = null });
        Assert.Equal(KernelAdvisesOnly ? "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1" : "glibc.malloc.arena_max=2", environment["GLIBC_TUNABLES"]);
    }

    [Fact]
    public async Task The_users_own_setting_and_the_opt_out_are_left_alone()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "/proc and glibc are Linux's");
        var own = await ServingEnvironment(new() { ["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=0", [HugePages.OptOutVariable] = null });
        Assert.Equal("glibc.malloc.hugetlb=0", own["GLIBC_TUNABLES"]);
        var optedOut = await ServingEnvironment(new() { ["GLIBC_TUNABLES"] = null, [HugePages.OptOutVariable] = "0" });
        Assert.False(optedOut.ContainsKey("GLIBC_TUNABLES"));
    }
}
