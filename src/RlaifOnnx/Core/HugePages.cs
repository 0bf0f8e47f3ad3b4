using System.Collections;
using System.Runtime.InteropServices;

namespace RlaifOnnx.Core;

/// <summary>
/// Transparent huge pages for the C heap that ONNX Runtime allocates from. With its CPU arena off (training and
/// PPO's low_memory), ONNX Runtime mallocs and frees every activation of a step; glibc serves the large ones with
/// fresh mmaps, and each first touch of a 4 KiB page is a page fault. On virtual machines a fault costs ~10 µs
/// (12 µs per page measured on this project's build machine), i.e. ~3 ms per MiB: a 100M model's training step
/// spent a third of its time there. glibc (2.35+) asks the kernel for 2 MiB pages on those mmaps when its
/// tunable <c>glibc.malloc.hugetlb=1</c> is set, one fault per 2 MiB instead of 512. Tunables are read only
/// when a process starts, so the command line restarts itself in place (execve: same process id, same
/// arguments, standard streams and environment, plus the tunable) before it does anything else.
/// Nothing happens when the kernel's THP mode is not "madvise" (with "always" the pages are huge already,
/// with "never" they cannot be), when the C library is not glibc 2.35 or newer, when the user has set the
/// tunable either way, or when RLAIF_HUGE_PAGES=0.
/// </summary>
public static class HugePages
{
    public const string Tunable = "glibc.malloc.hugetlb";
    public const string OptOutVariable = "RLAIF_HUGE_PAGES";

    /// <summary>True when this process's C heap asks for huge pages (the tunable is set in its environment).</summary>
    public static bool Active => (Environment.GetEnvironmentVariable("GLIBC_TUNABLES") ?? "").Contains($"{Tunable}=1");

    /// <summary>
    /// Replaces this process with itself started with the tunable set, when that helps (see the class); returns
    /// only when it did not restart (not needed, not possible, or execve refused, in which case nothing changed).
    /// Call first thing in Main, before any output or thread of the program's own.
    /// </summary>
    public static void RestartWithHugePagesIfUseful()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable(OptOutVariable) == "0") return;
        var tunables = Environment.GetEnvironmentVariable("GLIBC_TUNABLES") ?? "";
        if (tunables.Contains(Tunable)) return; // the user's (or our earlier start's) choice stands
        if (!KernelAdvisesOnly() || !GlibcKnowsTheTunable()) return;

        string[] argv;
        string exe;
        try
        {
            argv = File.ReadAllText("/proc/self/cmdline").TrimEnd('\0').Split('\0');
            exe = new FileInfo("/proc/self/exe").LinkTarget ?? "";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return; }
        if (argv.Length == 0 || exe.Length == 0) return;

        var environment = new List<string>();
        foreach (DictionaryEntry variable in Environment.GetEnvironmentVariables())
            if ((string)variable.Key != "GLIBC_TUNABLES") environment.Add($"{variable.Key}={variable.Value}");
        environment.Add($"GLIBC_TUNABLES={(tunables.Length > 0 ? tunables + ":" : "")}{Tunable}=1");
        Execute(exe, argv, environment);
    }

    /// <summary>The THP mode in /sys is "madvise": huge pages only where a program asks for them.</summary>
    static bool KernelAdvisesOnly()
    {
        try { return File.ReadAllText("/sys/kernel/mm/transparent_hugepage/enabled").Contains("[madvise]"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>glibc 2.35 brought the tunable; older glibc and other C libraries would ignore it.</summary>
    static bool GlibcKnowsTheTunable()
    {
        try
        {
            var version = Marshal.PtrToStringUTF8(GnuGetLibcVersion()) ?? "";
            return Version.TryParse(version, out var parsed) && parsed >= new Version(2, 35);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }

    static void Execute(string path, IReadOnlyList<string> argv, IReadOnlyList<string> environment)
    {
        var arguments = ToNative(argv);
        var variables = ToNative(environment);
        _ = ExecVe(path, arguments, variables); // returns only on failure: carry on as we are
        foreach (var pointer in arguments.Concat(variables)) Marshal.FreeCoTaskMem(pointer);
    }

    static IntPtr[] ToNative(IReadOnlyList<string> strings) =>
        [.. strings.Select(Marshal.StringToCoTaskMemUTF8), IntPtr.Zero];

    [DllImport("libc.so.6", EntryPoint = "gnu_get_libc_version")]
    static extern IntPtr GnuGetLibcVersion();

    [DllImport("libc.so.6", EntryPoint = "execve", SetLastError = true)]
    static extern int ExecVe([MarshalAs(UnmanagedType.LPUTF8Str)] string path, IntPtr[] argv, IntPtr[] envp);
}
