using RlaifOnnx.Constitution;
using RlaifOnnx.Sandbox;

namespace RlaifOnnx.Tests.Sandbox;

/// <summary>
/// models/sandbox-base is what `make sandbox-model` makes. The full recipe (1,500 steps) is too slow for the
/// suite, so: the committed tokenizer is exactly the one the recipe learns from the corpus of seed 7, and
/// the recipe at reduced size (the same commands, fewer steps and a smaller model) is deterministic.
/// </summary>
public class SandboxModelTests
{
    static readonly string Committed = Path.Combine(Repository.Root, "models", "sandbox-base");

    [Fact]
    public void The_committed_tokenizer_is_the_one_the_recipe_learns_from_the_corpus()
    {
        using var dir = new TempDir();
        var corpus = dir.File("corpus.jsonl");
        SandboxFiles.WriteCorpus(World.Create(7), corpus, new PretrainingCorpus.Sizes(), seed: 7);
        // The recipe's `model create` line (Makefile, sandbox-model).
        var result = CliProcess.Run("model", "create", "--arch", "llama", "--out", dir.File("random"), "--vocab-size", "1536", "--hidden-size", "160",
            "--layers", "4", "--heads", "4", "--kv-heads", "2", "--max-positions", "512", "--seed", "1", "--tokenizer-corpus", corpus);
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(File.ReadAllText(Path.Combine(Committed, "tokenizer.json")), File.ReadAllText(dir.File("random/tokenizer.json")));
        Assert.Equal(new FileInfo(Path.Combine(Committed, "model.onnx.data")).Length, new FileInfo(dir.File("random/model.onnx.data")).Length);
    }

    [Fact]
    public void The_recipe_at_reduced_size_is_deterministic()
    {
        using var dir = new TempDir();
        var corpus = dir.File("corpus.jsonl");
        SandboxFiles.WriteCorpus(World.Create(7), corpus, new PretrainingCorpus.Sizes(60, 40, 10, 20, 20), seed: 7);
        byte[] Train(string name)
        {
            var create = CliProcess.Run("model", "create", "--arch", "llama", "--out", dir.File($"{name}/random"), "--vocab-size", "300", "--hidden-size", "32",
                "--layers", "1", "--heads", "2", "--max-positions", "512", "--seed", "1", "--tokenizer-corpus", corpus);
            Assert.True(create.ExitCode == 0, create.Stderr);
            var train = CliProcess.Run("train-lm", "--model", dir.File($"{name}/random"), "--data", corpus, "--out", dir.File($"{name}/train"),
                "--steps", "3", "--batch-size", "4", "--max-length", "128", "--seed", "1");
            Assert.True(train.ExitCode == 0, train.Stderr);
            return File.ReadAllBytes(dir.File($"{name}/train/model/model.onnx.data"));
        }
        var first = Train("a");
        Assert.Equal(first, Train("b"));
        Assert.NotEqual(first, File.ReadAllBytes(dir.File("a/random/model.onnx.data")));
    }

    [Fact]
    public void Every_committed_file_is_under_10_MB()
    {
        foreach (var file in Directory.GetFiles(Committed))
            Assert.True(new FileInfo(file).Length < 10_000_000, $"{file} is {new FileInfo(file).Length:N0} bytes");
        Assert.True(ConstitutionSet.Load("default").Critiques.Count > 0);
    }
}
