using System.Text;
using RlaifOnnx.Core;

namespace RlaifOnnx.Tests.Core;

public class JsonlResumableWriterTests
{
    public sealed record Item(string Id, int Value, string Text);

    static Item Make(int i) => new($"item-{i}", i * i, $"text {i} ünïcode");

    [Fact]
    public void FreshFile_AppendsWholeLinesInOrder()
    {
        using var dir = new TempDir();
        var path = dir.File("sub/out.jsonl");
        using (var writer = ResumableJsonlWriter<Item>.Open(path, r => r.Id))
        {
            Assert.Equal(0, writer.Count);
            for (var i = 0; i < 5; i++) writer.Append(Make(i));
            Assert.Equal(5, writer.Count);
            Assert.True(writer.IsDone("item-3"));
            Assert.False(writer.IsDone("item-5"));
            // Each append is visible to a reader immediately (flushed), before the writer closes.
            Assert.Equal(5, Jsonl.ReadAll<Item>(path).Count);
        }
        Assert.EndsWith("\n", File.ReadAllText(path));
        Assert.Equal(Enumerable.Range(0, 5).Select(Make), Jsonl.ReadAll<Item>(path));
    }

    [Fact]
    public void ResumeAfterTornLine_NoLossNoDuplicateOrderPreserved()
    {
        using var dir = new TempDir();
        var path = dir.File("out.jsonl");
        const int total = 20;
        using (var writer = ResumableJsonlWriter<Item>.Open(path, r => r.Id))
            for (var i = 0; i < 12; i++) writer.Append(Make(i));

        // A crash in the middle of writing record 12: half of its line reached the file.
        var line12 = Jsonl.SerializeLine(Make(12));
        using (var f = new FileStream(path, FileMode.Append)) f.Write(line12.AsSpan(0, line12.Length / 2));
        var tornLength = new FileInfo(path).Length;

        using (var writer = ResumableJsonlWriter<Item>.Open(path, r => r.Id))
        {
            Assert.Equal(12, writer.ResumedCount);
            Assert.Equal(line12.Length / 2, writer.DroppedTornBytes);
            Assert.Equal(tornLength - line12.Length / 2, new FileInfo(path).Length);
            // The stage's loop: skip finished items, do the rest.
            var redone = 0;
            for (var i = 0; i < total; i++)
            {
                if (writer.IsDone(Make(i).Id)) continue;
                writer.Append(Make(i));
                redone++;
            }
            Assert.Equal(total - 12, redone);
            Assert.Equal(total, writer.Count);
        }

        var all = Jsonl.ReadAll<Item>(path);
        Assert.Equal(Enumerable.Range(0, total).Select(Make), all);
        Assert.Equal(total, all.Select(r => r.Id).Distinct().Count());
    }

    [Fact]
    public void UnparseableLastLineWithNewline_IsDroppedToo()
    {
        using var dir = new TempDir();
        var path = dir.File("out.jsonl");
        using (var writer = ResumableJsonlWriter<Item>.Open(path, r => r.Id))
            writer.Append(Make(0));
        // What a power loss can leave: the size grew but the block holds zeros.
        File.AppendAllText(path, "\0\0\0\0\n");
        using (var writer = ResumableJsonlWriter<Item>.Open(path, r => r.Id))
        {
            Assert.Equal(1, writer.Count);
            Assert.Equal(5, writer.DroppedTornBytes);
            writer.Append(Make(1));
        }
        Assert.Equal([Make(0), Make(1)], Jsonl.ReadAll<Item>(path));
    }

    [Fact]
    public void TornFirstLine_LeavesAnEmptyFile()
    {
        using var dir = new TempDir();
        var path = dir.File("out.jsonl");
        File.WriteAllText(path, "{\"id\":\"item-0\",\"va");
        using (var writer = ResumableJsonlWriter<Item>.Open(path, r => r.Id))
        {
            Assert.Equal(0, writer.Count);
            writer.Append(Make(0));
        }
        Assert.Equal([Make(0)], Jsonl.ReadAll<Item>(path));
    }

    [Fact]
    public void DuplicateAppend_Throws()
    {
        using var dir = new TempDir();
        using var writer = ResumableJsonlWriter<Item>.Open(dir.File("out.jsonl"), r => r.Id);
        writer.Append(Make(1));
        var e = Assert.Throws<InvalidOperationException>(() => writer.Append(Make(1) with { Value = 7 }));
        Assert.Contains("item-1", e.Message);
        Assert.Equal(1, writer.Count);
    }

    [Fact]
    public void DuplicateIdAlreadyInFile_IsAUserError()
    {
        using var dir = new TempDir();
        var path = dir.File("out.jsonl");
        Jsonl.Write(path, [Make(1), Make(2), Make(1)]);
        var e = Assert.Throws<UserError>(() => ResumableJsonlWriter<Item>.Open(path, r => r.Id));
        Assert.Equal($"{path}:3: duplicate id 'item-1': the file holds this record twice", e.Message);
    }

    [Fact]
    public void BadLineInTheMiddle_IsNotForgiven()
    {
        using var dir = new TempDir();
        var path = dir.File("out.jsonl");
        File.WriteAllText(path, Jsonl.Serialize(Make(0)) + "\n{broken\n" + Jsonl.Serialize(Make(2)) + "\n");
        var e = Assert.Throws<UserError>(() => ResumableJsonlWriter<Item>.Open(path, r => r.Id));
        Assert.StartsWith($"{path}:2: malformed JSON", e.Message);
        // Nothing was truncated.
        Assert.Equal(3, File.ReadAllLines(path).Length);
    }

    [Fact]
    public void SecondWriterOnTheSameFile_IsRefused()
    {
        using var dir = new TempDir();
        var path = dir.File("out.jsonl");
        using var first = ResumableJsonlWriter<Item>.Open(path, r => r.Id);
        var e = Assert.Throws<UserError>(() => ResumableJsonlWriter<Item>.Open(path, r => r.Id));
        Assert.Contains("another run", e.Message);
    }

    [Fact]
    public void ConcurrentAppends_AreWholeLines()
    {
        using var dir = new TempDir();
        var path = dir.File("out.jsonl");
        using (var writer = ResumableJsonlWriter<Item>.Open(path, r => r.Id))
            Parallel.For(0, 400, i => writer.Append(new Item($"item-{i}", i, new string('x', 500 + i))));
        var all = Jsonl.ReadAll<Item>(path);
        Assert.Equal(400, all.Count);
        Assert.Equal(400, all.Select(r => r.Id).Distinct().Count());
        Assert.All(all, r => Assert.Equal(500 + r.Value, r.Text.Length));
    }

    [Fact]
    public void LargeFile_IsScannedAcrossBufferBoundaries()
    {
        using var dir = new TempDir();
        var path = dir.File("out.jsonl");
        var big = Enumerable.Range(0, 300).Select(i => new Item($"item-{i}", i, new string('y', 997))).ToList();
        Jsonl.Write(path, big);
        using var writer = ResumableJsonlWriter<Item>.Open(path, r => r.Id);
        Assert.Equal(300, writer.Count);
        Assert.Equal(0, writer.DroppedTornBytes);
        Assert.True(writer.IsDone("item-299"));
        Assert.Equal(new FileInfo(path).Length, Encoding.UTF8.GetByteCount(string.Concat(big.Select(b => Jsonl.Serialize(b) + "\n"))));
    }
}
