namespace RlaifOnnx.Tests;

/// <summary>Tiny Llama model folders for the data-stage tests (written once per test into its temp folder).</summary>
public static class TinyModels
{
    public static string Folder(string dir, int seed = 1) => throw new NotImplementedException($"pending ModelWriter ({dir}, {seed})");
}
