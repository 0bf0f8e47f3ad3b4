using System.IO.Compression;
using System.Text;
using RlaifOnnx.Core;

namespace RlaifOnnx.Tests.Core;

public enum Verdict { Better, MuchWorse }

public sealed record PromptRecord
{
    public required string Id { get; init; }
    public required string Prompt { get; init; }
    public int Round { get; init; }
    public Verdict Verdict { get; init; }
    public string? Note { get; init; }
    public List<Turn> Turns { get; init; } = [];
}

public sealed record Turn(string Role, string Content);

public class JsonlTests
{
    [Fact]
    public void RoundTrip_SnakeCaseKeys_EnumsAsSnakeStrings_NullsOmitted()
    {
        using var dir = new TempDir();
        var path = dir.File("records.jsonl");
        var records = new[]
        {
            new PromptRecord { Id = "a", Prompt = "héllo \"quoted\"\nnext", Round = 2, Verdict = Verdict.MuchWorse, Turns = [new("user", "hi")] },
            new PromptRecord { Id = "b", Prompt = "two", Note = "n" },
        };
        Jsonl.Write(path, records);

        var lines = File.ReadAllLines(path);
        Assert.Equal(2, lines.Length);
        Assert.Equal("""{"id":"a","prompt":"héllo \"quoted\"\nnext","round":2,"verdict":"much_worse","turns":[{"role":"user","content":"hi"}]}""", lines[0]);
        Assert.DoesNotContain("note", lines[0]);

        var read = Jsonl.Read<PromptRecord>(path).ToList();
        Assert.Equal([1, 2], read.Select(r => r.LineNumber));
        Assert.Equal(records[0].Prompt, read[0].Value.Prompt);
        Assert.Equal(Verdict.MuchWorse, read[0].Value.Verdict);
        Assert.Equal("n", read[1].Value.Note);
        Assert.Equal(new Turn("user", "hi"), read[0].Value.Turns.Single());
    }

    [Fact]
    public void BlankLinesAreSkipped_LineNumbersCountThem()
    {
        using var dir = new TempDir();
        var path = dir.File("in.jsonl");
        File.WriteAllText(path, "{\"id\":\"a\",\"prompt\":\"x\"}\n\n   \n{\"id\":\"b\",\"prompt\":\"y\"}\n");
        var read = Jsonl.Read<PromptRecord>(path).ToList();
        Assert.Equal([1, 4], read.Select(r => r.LineNumber));
    }

    [Fact]
    public void MalformedLine_NamesFileLineAndColumn()
    {
        using var dir = new TempDir();
        var path = dir.File("bad.jsonl");
        File.WriteAllText(path, "{\"id\":\"a\",\"prompt\":\"x\"}\n{\"id\":\"b\", \"prompt\": x}\n");
        var e = Assert.Throws<UserError>(() => Jsonl.Read<PromptRecord>(path).ToList());
        Assert.StartsWith($"{path}:2: ", e.Message);
        Assert.Equal("F:2: prompt: malformed JSON (column 22): 'x' is an invalid start of a value", e.Message.Replace(path, "F"));
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void TruncatedLine_IsMalformedWithItsLineNumber()
    {
        using var dir = new TempDir();
        var path = dir.File("cut.jsonl");
        File.WriteAllText(path, "{\"id\":\"a\",\"prompt\":\"x\"}\n{\"id\":\"b\",\"pro");
        var e = Assert.Throws<UserError>(() => Jsonl.Read<PromptRecord>(path).ToList());
        Assert.StartsWith($"{path}:2: malformed JSON", e.Message);
    }

    [Fact]
    public void MissingRequiredProperty_NamesTheField()
    {
        using var dir = new TempDir();
        var path = dir.File("missing.jsonl");
        File.WriteAllText(path, "{\"id\":\"a\",\"prompt\":\"x\"}\n{\"id\":\"b\"}\n");
        var e = Assert.Throws<UserError>(() => Jsonl.Read<PromptRecord>(path).ToList());
        Assert.Equal($"{path}:2: prompt: is missing", e.Message);
    }

    [Fact]
    public void MissingPositionalRecordParameter_NamesTheField()
    {
        using var dir = new TempDir();
        var path = dir.File("turns.jsonl");
        File.WriteAllText(path, "{\"role\":\"user\"}\n");
        var e = Assert.Throws<UserError>(() => Jsonl.Read<Turn>(path).ToList());
        Assert.Equal($"{path}:1: content: is missing", e.Message);
    }

    [Fact]
    public void MissingFieldInNestedObject_NamesItsPath()
    {
        using var dir = new TempDir();
        var path = dir.File("nested.jsonl");
        File.WriteAllText(path, "{\"id\":\"a\",\"prompt\":\"x\",\"turns\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\"}]}\n");
        var e = Assert.Throws<UserError>(() => Jsonl.Read<PromptRecord>(path).ToList());
        Assert.Equal($"{path}:1: turns[1].content: is missing", e.Message);
    }

    [Fact]
    public void NullForNonNullableString_IsAnError()
    {
        using var dir = new TempDir();
        var path = dir.File("null.jsonl");
        File.WriteAllText(path, "{\"id\":\"a\",\"prompt\":null}\n");
        var e = Assert.Throws<UserError>(() => Jsonl.Read<PromptRecord>(path).ToList());
        Assert.StartsWith($"{path}:1: prompt: must not be null", e.Message);
    }

    [Fact]
    public void WrongType_NamesFieldAndExpectedType()
    {
        using var dir = new TempDir();
        var path = dir.File("type.jsonl");
        File.WriteAllText(path, "{\"id\":\"a\",\"prompt\":\"x\",\"round\":\"two\"}\n");
        var e = Assert.Throws<UserError>(() => Jsonl.Read<PromptRecord>(path).ToList());
        Assert.StartsWith($"{path}:1: round: expected an integer", e.Message);
    }

    [Fact]
    public void BadEnumValue_ListsTheValidNames()
    {
        using var dir = new TempDir();
        var path = dir.File("enum.jsonl");
        File.WriteAllText(path, "{\"id\":\"a\",\"prompt\":\"x\",\"verdict\":\"meh\"}\n");
        var e = Assert.Throws<UserError>(() => Jsonl.Read<PromptRecord>(path).ToList());
        Assert.StartsWith($"{path}:1: verdict: expected one of better, much_worse", e.Message);
    }

    [Fact]
    public void ArrayInsteadOfObject_SaysSo()
    {
        using var dir = new TempDir();
        var path = dir.File("array.jsonl");
        File.WriteAllText(path, "[1,2]\n");
        var e = Assert.Throws<UserError>(() => Jsonl.Read<PromptRecord>(path).ToList());
        Assert.StartsWith($"{path}:1: expected a JSON object", e.Message);
    }

    [Fact]
    public void GzipFiles_AreReadAndWritten()
    {
        using var dir = new TempDir();
        var path = dir.File("records.jsonl.gz");
        Jsonl.Write(path, Enumerable.Range(0, 100).Select(i => new PromptRecord { Id = $"p{i}", Prompt = $"prompt {i}" }));
        using (var gz = new GZipStream(File.OpenRead(path), CompressionMode.Decompress))
        using (var reader = new StreamReader(gz, Encoding.UTF8))
            Assert.StartsWith("{\"id\":\"p0\"", reader.ReadLine());
        var read = Jsonl.Read<PromptRecord>(path).ToList();
        Assert.Equal(100, read.Count);
        Assert.Equal("prompt 99", read[99].Value.Prompt);
        Assert.Equal(100, read[99].LineNumber);
    }

    [Fact]
    public void GzipMalformedLine_StillNamesTheLine()
    {
        using var dir = new TempDir();
        var path = dir.File("bad.jsonl.gz");
        using (var gz = new GZipStream(File.Create(path), CompressionLevel.Fastest))
            gz.Write(Encoding.UTF8.GetBytes("{\"id\":\"a\",\"prompt\":\"x\"}\n{oops\n"));
        var e = Assert.Throws<UserError>(() => Jsonl.Read<PromptRecord>(path).ToList());
        Assert.StartsWith($"{path}:2: malformed JSON", e.Message);
    }

    [Fact]
    public void SharedHhRlhfFile_StreamsEveryLine()
    {
        var path = SharedData.Require("hh-rlhf/harmless-base-test.dev.jsonl.gz");
        var pairs = Jsonl.Read<HhPair>(path).ToList();
        Assert.Equal(1156, pairs.Count);
        Assert.All(pairs, p => Assert.Contains("\n\nAssistant:", p.Value.Chosen));
    }

    public sealed record HhPair(string Chosen, string Rejected);

    [Fact]
    public void Reading_IsLazy_SoAnErrorLateInAFileComesAfterEarlierRecords()
    {
        using var dir = new TempDir();
        var path = dir.File("late.jsonl");
        File.WriteAllText(path, "{\"id\":\"a\",\"prompt\":\"x\"}\n{\"id\":\"b\",\"prompt\":\"y\"}\nnot json\n");
        var seen = new List<string>();
        var e = Assert.Throws<UserError>(() => { foreach (var l in Jsonl.Read<PromptRecord>(path)) seen.Add(l.Value.Id); });
        Assert.Equal(["a", "b"], seen);
        Assert.StartsWith($"{path}:3:", e.Message);
    }

    [Fact]
    public void MissingFile_IsAUserError()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<UserError>(() => Jsonl.Read<PromptRecord>(dir.File("nope.jsonl")));
        Assert.Contains("file not found", e.Message);
    }

    [Fact]
    public void Write_ReplacesTheWholeFileAtomically()
    {
        using var dir = new TempDir();
        var path = dir.File("out.jsonl");
        Jsonl.Write(path, [new PromptRecord { Id = "old", Prompt = "1" }, new PromptRecord { Id = "old2", Prompt = "2" }]);
        // A writer that fails midway leaves the previous file as it was, and no temp file behind.
        Assert.Throws<InvalidOperationException>(() => Jsonl.Write(path, Failing()));
        Assert.Equal(["old", "old2"], Jsonl.ReadAll<PromptRecord>(path).Select(r => r.Id));
        Assert.Single(Directory.GetFiles(dir.Path));

        static IEnumerable<PromptRecord> Failing()
        {
            yield return new PromptRecord { Id = "new", Prompt = "1" };
            throw new InvalidOperationException("boom");
        }
    }
}
