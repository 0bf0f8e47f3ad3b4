using System.Text.RegularExpressions;

namespace RlaifOnnx.Tests.Layering;

/// <summary>
/// The library's floors only point down (DESIGN §2): a top-level folder of src/RlaifOnnx may use the
/// folders before it in <see cref="Floors"/>, never one after it. A reference is a `using RlaifOnnx.X`
/// line or a qualified `RlaifOnnx.X.` name in code.
/// </summary>
public sealed partial class LayerTests
{
    static readonly string[] Floors =
        ["Core", "Configuration", "Records", "Reporting", "Onnx", "Models", "Training", "Inference", "Constitution", "Serving", "Stages", "Sandbox"];

    static string Library => Path.Combine(Repository.Root, "src", "RlaifOnnx");

    [Fact]
    public void Every_top_level_folder_is_a_floor()
    {
        var folders = Directory.GetDirectories(Library).Select(d => Path.GetFileName(d)!)
            .Where(name => name is not ("bin" or "obj") && Directory.EnumerateFiles(Path.Combine(Library, name), "*.cs", SearchOption.AllDirectories).Any())
            .Order().ToList();
        Assert.Equal(Floors.Order().ToList(), folders);
    }

    [Fact]
    public void Every_reference_points_down()
    {
        var upward = new List<string>();
        foreach (var floor in Floors)
        {
            var level = Array.IndexOf(Floors, floor);
            foreach (var file in Directory.EnumerateFiles(Path.Combine(Library, floor), "*.cs", SearchOption.AllDirectories))
                foreach (var used in References(File.ReadAllText(file)))
                {
                    var target = Array.IndexOf(Floors, used);
                    if (target > level) upward.Add($"{Path.GetRelativePath(Library, file)} uses {used}");
                }
        }
        Assert.True(upward.Count == 0, "references that point up:\n" + string.Join("\n", upward));
    }

    [Fact]
    public void The_check_finds_an_upward_reference()
    {
        // Negative control: the same parsing sees both forms of reference.
        Assert.Equal(["Stages", "Serving"], References("using RlaifOnnx.Stages;\nvar x = RlaifOnnx.Serving.OpenAIServer.Start();"));
        Assert.Empty(References("// using RlaifOnnx.Stages;\nvar s = \"RlaifOnnx.Stages.X\";"));
    }

    [Fact]
    public void No_source_file_is_over_500_lines()
    {
        var sources = Directory.EnumerateFiles(Path.Combine(Repository.Root, "src"), "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"));
        var long_ = sources.Select(f => (File: Path.GetRelativePath(Repository.Root, f), Lines: File.ReadLines(f).Count())).Where(f => f.Lines > 500).ToList();
        Assert.True(long_.Count == 0, string.Join("\n", long_.Select(f => $"{f.File}: {f.Lines} lines")));
    }

    /// <summary>The floors a C# text refers to, in order of first mention; comments and strings do not count.</summary>
    static List<string> References(string code)
    {
        var bare = Comment().Replace(Text().Replace(code, "\"\""), "");
        return Reference().Matches(bare).Select(m => m.Groups[1].Value).Where(Floors.Contains).Distinct().ToList();
    }

    [GeneratedRegex(@"\bRlaifOnnx\.([A-Z][A-Za-z]*)\b")]
    private static partial Regex Reference();

    [GeneratedRegex(@"//[^\n]*")]
    private static partial Regex Comment();

    [GeneratedRegex(@"""(?:\\.|[^""\\\n])*""")]
    private static partial Regex Text();
}
