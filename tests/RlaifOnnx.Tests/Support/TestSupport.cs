namespace RlaifOnnx.Tests;

/// <summary>A temporary folder removed when disposed.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("rlaif-test-").FullName;
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>The repository's root folder (the one holding RlaifOnnx.sln), found from the test binaries.</summary>
public static class Repository
{
    public static string Root { get; } = Find();

    static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (dir.GetFiles("RlaifOnnx.sln").Length > 0) return dir.FullName;
        throw new InvalidOperationException($"no RlaifOnnx.sln above {AppContext.BaseDirectory}");
    }
}

/// <summary>Finds ../shared/data beside the repository. Under CI=true a missing folder fails the test instead of skipping it.</summary>
public static class SharedData
{
    public static string Root { get; } = Find();

    static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = System.IO.Path.Combine(dir.FullName, "shared", "data");
            if (dir.GetFiles("RlaifOnnx.sln").Length > 0)
                return System.IO.Path.GetFullPath(System.IO.Path.Combine(dir.FullName, "..", "shared", "data"));
            if (Directory.Exists(candidate)) return candidate;
        }
        return System.IO.Path.GetFullPath("../shared/data");
    }

    /// <summary>The path of a shared file; fails under CI when it is missing, skips elsewhere.</summary>
    public static string Require(string relative)
    {
        var path = System.IO.Path.Combine(Root, relative);
        if (System.IO.File.Exists(path) || Directory.Exists(path)) return path;
        if (Environment.GetEnvironmentVariable("CI") == "true")
            throw new InvalidOperationException($"shared data {path} is missing (CI=true: tests that need it fail)");
        Assert.Skip($"shared data {path} is missing");
        return path;
    }
}

/// <summary>ONNX Runtime GenAI driven directly, for tests that check what it generates from a model folder.</summary>
public static class GenAI
{
    /// <summary>Greedy continuation of <paramref name="prompt"/>, up to <paramref name="maxLength"/> tokens in all (prompt included).</summary>
    public static int[] Greedy(string dir, int[] prompt, int maxLength, bool cpuOnly = false)
    {
        using var config = new Microsoft.ML.OnnxRuntimeGenAI.Config(dir);
        if (cpuOnly) config.ClearProviders();
        using var model = new Microsoft.ML.OnnxRuntimeGenAI.Model(config);
        using var parameters = new Microsoft.ML.OnnxRuntimeGenAI.GeneratorParams(model);
        parameters.SetSearchOption("max_length", maxLength);
        parameters.SetSearchOption("do_sample", false);
        using var generator = new Microsoft.ML.OnnxRuntimeGenAI.Generator(model, parameters);
        generator.AppendTokens(prompt);
        while (!generator.IsDone()) generator.GenerateNextToken();
        return generator.GetSequence(0).ToArray();
    }
}
