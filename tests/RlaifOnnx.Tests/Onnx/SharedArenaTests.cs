using RlaifOnnx.Models;
using RlaifOnnx.Onnx;
using RlaifOnnx.Training;

namespace RlaifOnnx.Tests.Onnx;

/// <summary>
/// Sessions on the shared arena (<see cref="SharedArena"/>, the low-memory PPO's) compute what sessions on their own
/// allocators compute: a forward pass over inputs of new shapes each run (no memory pattern yet) and a training step.
/// </summary>
public sealed class SharedArenaTests
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    static TrainingBatch Tokens(int rows, int length, int vocab, int seed)
    {
        var rng = new Random(seed);
        var ids = new long[rows * length];
        var positions = new long[rows * length];
        for (var i = 0; i < ids.Length; i++) (ids[i], positions[i]) = (rng.Next(3, vocab), i % length);
        return new TrainingBatch
        {
            ["input_ids"] = BatchTensor.Of(ids, rows, length),
            ["attention_mask"] = BatchTensor.Of(Enumerable.Repeat(1L, ids.Length).ToArray(), rows, length),
            ["position_ids"] = BatchTensor.Of(positions, rows, length),
        };
    }

    [Fact]
    public void Forward_passes_on_the_shared_arena_equal_those_on_their_own()
    {
        using var temp = new TempDir();
        var config = TinyModels.Config;
        var weights = ModelFolder.ReadWeights(TinyModels.Folder(temp.File("lm"), seed: 7));
        var graph = Ppo.RolloutLogProbGraph(config, null, temperature: 0.7);
        using var own = new BoundForward(graph, weights, Ppo.TokenLogProbsOutput, cpuMemoryArena: false);
        using var shared = new BoundForward(graph, weights, Ppo.TokenLogProbsOutput, sharedArena: true);
        SharedArena.Register();   // again: a no-op
        foreach (var (rows, length) in new[] { (2, 9), (1, 5), (3, 12), (2, 9) })
        {
            var expected = own.Run(Tokens(rows, length, config.VocabSize, length), out var width);
            Assert.Equal(length - 1, width);
            Assert.Equal(expected, shared.Run(Tokens(rows, length, config.VocabSize, length), out _));
        }
    }

    [Fact]
    public void A_training_step_on_the_shared_arena_equals_one_on_its_own()
    {
        using var temp = new TempDir();
        var config = TinyModels.Config;
        var folder = TinyModels.Folder(temp.File("lm"), seed: 5);
        var rng = new Random(2);
        var sequences = Enumerable.Range(0, 3).Select(r => new TokenSequence(
            Enumerable.Range(0, 7 + r).Select(_ => rng.Next(3, config.VocabSize)).ToArray(), Enumerable.Repeat((byte)1, 7 + r).ToArray())).ToList();
        var batch = CausalLm.Batch(sequences, config.PadTokenId);
        var options = CausalLm.Options(new TrainerOptions { LearningRate = 1e-2, MicroBatchSize = 1, GradientCheckpointing = true });
        using var own = new Trainer(CausalLm.Graph(config), CausalLm.LossOutput, ModelFolder.ReadWeights(folder), new Dictionary<string, WeightTensor>(),
            options with { CpuMemoryArena = false });
        using var shared = new Trainer(CausalLm.Graph(config), CausalLm.LossOutput, ModelFolder.ReadWeights(folder), new Dictionary<string, WeightTensor>(),
            options with { SharedArena = true });
        for (var step = 0; step < 2; step++)
        {
            var (a, b) = (own.Step(batch, Ct), shared.Step(batch, Ct));
            Assert.Equal(a.Loss, b.Loss);
            Assert.Equal(a.Metrics["grad_norm"], b.Metrics["grad_norm"]);
        }
        var after = shared.TrainableWeights();
        foreach (var (name, w) in own.TrainableWeights()) Assert.Equal(w.Data, after[name].Data);
    }
}
