using System.Security.Cryptography;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;
using RlaifOnnx.Training;
using DataType = Onnx.TensorProto.Types.DataType;

namespace RlaifOnnx.Tests.Inference;

/// <summary>
/// PPO's weight sync with LoRA: the rollout folder holds the base once and GenAI runs the current adapters from an
/// ONNX Runtime adapter file. Its greedy tokens and their log-probs equal those of the adapters merged into the base
/// and written to disk as a plain model folder, at every sync, while the base weight file is never rewritten.
/// </summary>
public class RolloutPolicyTests
{
    static readonly string[] Prompts = ["hello there", "what is two plus two?", "tell me a story about a cat"];
    const int NewTokens = 12;

    static readonly LineageEntry[] Lineage = [new("test", null, DateTimeOffset.UtcNow)];

    /// <summary>Adapter values far from zero, so the adapted model's outputs differ clearly from the base's.</summary>
    static Dictionary<string, WeightTensor> RandomAdapters(IReadOnlyList<LoraAdapter> adapters, int seed)
    {
        var values = Lora.InitialWeights(adapters, seed);
        var rng = new Random(seed + 100);
        foreach (var a in adapters)
            foreach (var name in new[] { a.A, a.B })
                for (var i = 0; i < values[name].Data.Length; i++) values[name].Data[i] = (float)(rng.NextDouble() * 2 - 1) * 0.3f;
        return values;
    }

    static (string Data, DateTime Written, byte[] Hash) BaseFile(string dir)
    {
        var data = Path.Combine(dir, ModelFolder.DataFile);
        return (data, File.GetLastWriteTimeUtc(data), SHA256.HashData(File.ReadAllBytes(data)));
    }

    /// <summary>
    /// Low memory (what PPO runs by default): the base written before the first sync, GenAI without arenas or
    /// prepacking, and a forward pass over the same data file mapped by <see cref="MappedWeights"/> (the trainer's
    /// view of the base) gives GenAI's log-probs of the tokens it chose.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Adapter_rollouts_equal_the_merged_model_on_disk_and_the_base_file_is_written_once(bool lowMemory)
    {
        using var temp = new TempDir();
        var lm = TinyModels.Folder(temp.File("lm"), seed: 5);
        var config = TinyModels.Config;
        var baseWeights = ModelFolder.ReadWeights(lm);
        var lora = new LoraOptions(4, 8, [LoraOptions.AllLinear]);
        var adapters = Lora.Apply(DecoderGraphs.Training(config, DataType.Float), lora).Adapters;

        using var rollout = new RolloutPolicy(temp.File("rollout"), config, baseWeights, lora, adapters, lm,
            new InferenceOptions { CpuMemoryArena = !lowMemory, WeightPrepacking = !lowMemory });
        MappedWeights? mapped = null;
        if (lowMemory)
        {
            Assert.True(rollout.WriteBase(Lineage) > 0);
            mapped = new MappedWeights(rollout.ModelPath, WeightNames.Shapes(config));
        }
        using var mappedBase = mapped;
        using var plainBase = new GenAIGenerator(lm);
        (string Data, DateTime Written, byte[] Hash)? firstBase = null;
        for (var sync = 0; sync < 2; sync++)
        {
            var values = RandomAdapters(adapters, seed: 11 + sync);
            var generator = rollout.Sync(values, Lineage);
            firstBase ??= BaseFile(rollout.Dir);

            var mergedDir = temp.File($"merged-{sync}");
            ModelWriter.Write(mergedDir, config, Lora.Merge(baseWeights, adapters, values, lora.Scale), lm, "policy", Lineage);
            using var merged = new GenAIGenerator(mergedDir);
            var differsFromBase = false;
            foreach (var prompt in Prompts)
            {
                var (ids, logProbs) = generator.GreedyWithLogProbs(prompt, NewTokens);
                var (mergedIds, mergedLogProbs) = merged.GreedyWithLogProbs(prompt, NewTokens);
                var (baseIds, baseLogProbs) = plainBase.GreedyWithLogProbs(prompt, NewTokens);
                Assert.Equal(mergedIds, ids);
                Assert.Equal(mergedLogProbs.Length, logProbs.Length);
                for (var t = 0; t < logProbs.Length; t++)
                    Assert.True(Math.Abs(mergedLogProbs[t] - logProbs[t]) < 1e-4, $"token {t}: {logProbs[t]} vs merged {mergedLogProbs[t]}");
                differsFromBase |= !baseIds.SequenceEqual(ids) || baseLogProbs.Zip(logProbs).Any(p => Math.Abs(p.First - p.Second) > 1e-2);
                if (mappedBase is not null) TeacherForcedLogProbsEqual(generator, mappedBase, lora, values, prompt, ids, logProbs);
            }
            // The adapters really act: otherwise equality with the merged model would prove nothing.
            Assert.True(differsFromBase, $"sync {sync}: the adapted rollouts equal the base model's");

            // Only the adapter file moved: the base weights were written by the first sync and never again.
            var now = BaseFile(rollout.Dir);
            Assert.Equal(firstBase.Value.Written, now.Written);
            Assert.Equal(firstBase.Value.Hash, now.Hash);
            if (sync > 0) Assert.Equal(new FileInfo(Path.Combine(rollout.Dir, RolloutPolicy.AdapterFile)).Length, rollout.LastSyncBytes);
        }
        Assert.True(rollout.LastSyncBytes < new FileInfo(firstBase!.Value.Data).Length / 4, $"an adapter sync wrote {rollout.LastSyncBytes} bytes");
    }

    /// <summary>The LoRA policy's log-prob graph over the mapped base and <paramref name="adapterValues"/> scores GenAI's greedy tokens as GenAI did.</summary>
    static void TeacherForcedLogProbsEqual(GenAIGenerator generator, MappedWeights mapped, LoraOptions lora, Dictionary<string, WeightTensor> adapterValues,
        string prompt, int[] newIds, double[] logProbs)
    {
        if (newIds.Length == 0) return;
        using var encoded = generator.Tokenizer.Encode(prompt);
        var promptIds = encoded[0].ToArray();
        long[] ids = [.. promptIds.Select(i => (long)i), .. newIds.Select(i => (long)i)];
        var batch = new TrainingBatch
        {
            ["input_ids"] = BatchTensor.Of(ids, 1, ids.Length),
            ["attention_mask"] = BatchTensor.Of(ids.Select(_ => 1L).ToArray(), 1, ids.Length),
            ["position_ids"] = BatchTensor.Of(Enumerable.Range(0, ids.Length).Select(t => (long)t).ToArray(), 1, ids.Length),
        };
        using var forward = new BoundForward(Ppo.RolloutLogProbGraph(TinyModels.Config, lora, temperature: 1.0), adapterValues, Ppo.TokenLogProbsOutput, mapped.Values, cpuMemoryArena: false);
        var tokenLogProbs = forward.Run(batch, out _);                      // position t ↔ token t+1
        for (var k = 0; k < newIds.Length; k++)
        {
            var forced = tokenLogProbs[promptIds.Length - 1 + k];
            Assert.True(Math.Abs(forced - logProbs[k]) < 1e-4, $"token {k}: teacher-forced over the mapped base {forced} vs GenAI {logProbs[k]}");
        }
    }

    [Fact]
    public void The_adapter_file_is_a_flatbuffer_with_the_onnx_runtime_identifier_and_aligned_data()
    {
        var bytes = OnnxAdapterFile.Serialize([("w.lora_A.weight", [2L, 3L], [1f, 2f, 3f, 4f, 5f, 6f])], adapterVersion: 7);
        Assert.Equal("TORT", System.Text.Encoding.ASCII.GetString(bytes, 4, 4));
        // The six floats appear once, contiguous and 8-byte aligned (ONNX Runtime makes a tensor over them in place).
        var floats = System.Runtime.InteropServices.MemoryMarshal.AsBytes(new float[] { 1, 2, 3, 4, 5, 6 }.AsSpan()).ToArray();
        var at = bytes.AsSpan().IndexOf(floats);
        Assert.True(at > 0);
        Assert.Equal(0, at % 8);
    }
}
