using RlaifOnnx.Models;
using RlaifOnnx.Stages;
using RlaifOnnx.Training;
using DataType = Onnx.TensorProto.Types.DataType;

namespace RlaifOnnx.Bench;

/// <summary>Diagnostics: the resident peak one PPO policy step adds (VmHWM after resetting it, minus VmRSS before).</summary>
public static class StepProbe
{

    static long Kb(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":")) return long.Parse(line.Split(':')[1].Trim().Split(' ')[0]);
        return 0;
    }

    public static int Run(string dir, int rows, int length, int micro)
    {
        var rollout = Path.Combine(dir, "run-low-memory", TrainPolicy.RolloutPolicySubdir);
        Core.CHeap.ReturnLargeFreedBlocks();
        var config = ModelFolder.ReadMetadata(Path.Combine(dir, "policy")).Config;
        var lora = LoraOptions.From(new Configuration.LoraConfig { Rank = 8 })!;
        using var mapped = new MappedWeights(Path.Combine(rollout, ModelFolder.ModelFile), WeightNames.Shapes(config));
        var adapters = Lora.Apply(DecoderGraphs.Training(config, DataType.Float), lora).Adapters;
        var trainable = Lora.InitialWeights(adapters, 1);
        using var trainer = new Trainer(Ppo.PolicyGraph(config, lora, 0.2, temperature: 0.7), Ppo.LossOutput, trainable, new Dictionary<string, WeightTensor>(),
            Ppo.PolicyOptions(new TrainerOptions { CpuMemoryArena = false, MicroBatchSize = micro }), mapped.Values);
        var random = new Random(1);
        var ids = new long[rows * length];
        for (var i = 0; i < ids.Length; i++) ids[i] = random.Next(3, config.VocabSize);
        var w = length - 1;
        var batch = new TrainingBatch
        {
            ["input_ids"] = BatchTensor.Of(ids, rows, length),
            ["attention_mask"] = BatchTensor.Of(Enumerable.Repeat(1L, rows * length).ToArray(), rows, length),
            ["position_ids"] = BatchTensor.Of(Enumerable.Range(0, rows * length).Select(i => (long)(i % length)).ToArray(), rows, length),
            [Ppo.OldLogProbsInput] = BatchTensor.Of(Enumerable.Repeat(-10f, rows * w).ToArray(), rows, w),
            [Ppo.AdvantagesInput] = BatchTensor.Of(Enumerable.Range(0, rows * w).Select(i => (float)Math.Sin(i)).ToArray(), rows, w),
            [Ppo.ResponseMaskInput] = BatchTensor.Of(Enumerable.Range(0, rows * w).Select(i => i % w >= w / 2 ? 1L : 0L).ToArray(), rows, w),
        };
        for (var s = 0; s < 4; s++)
        {
            GC.Collect();
            RlaifOnnx.Core.CHeap.Trim();
            var before = Kb("VmRSS");
            File.WriteAllText("/proc/self/clear_refs", "5");
            var clock = System.Diagnostics.Stopwatch.StartNew();
            trainer.Step(batch);
            Console.Error.WriteLine($"step {s}: {clock.Elapsed.TotalSeconds:F2} s, peak above before {(Kb("VmHWM") - before) / 1024.0:F0} MiB (rss before {before / 1024.0:F0}); {HeapTrace.Line("after step")}");
        }
        return 0;
    }
}
