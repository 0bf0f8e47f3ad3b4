using Microsoft.ML.OnnxRuntimeGenAI;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;
using RlaifOnnx.Stages;
using RlaifOnnx.Training;

namespace RlaifOnnx.Tests.Training;

public class TrainerTests
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    static ModelConfig Config(int vocab = 97) => TinyLlama.Config("gqa-untied", vocab);

    /// <summary>A deep copy, because a trainer updates the arrays it is given.</summary>
    static Dictionary<string, WeightTensor> Copy(IReadOnlyDictionary<string, WeightTensor> weights)
        => weights.ToDictionary(kv => kv.Key, kv => new WeightTensor(kv.Value.Shape, (float[])kv.Value.Data.Clone()), StringComparer.Ordinal);

    /// <summary>Random sequences of different lengths; the first <paramref name="promptLength"/> tokens of each are not targets.</summary>
    static TrainingBatch RandomBatch(int seed, int rows, int vocab, int promptLength = 0)
    {
        var rng = new Random(seed);
        var sequences = Enumerable.Range(0, rows).Select(r =>
        {
            var length = 8 + (r * 3) % 9;
            var ids = Enumerable.Range(0, length).Select(_ => rng.Next(3, vocab)).ToArray();
            var mask = Enumerable.Range(0, length).Select(t => (byte)(t >= promptLength ? 1 : 0)).ToArray();
            return new TokenSequence(ids, mask);
        }).ToList();
        return CausalLm.Batch(sequences, padId: 0);
    }

    static Trainer NewTrainer(ModelConfig config, IReadOnlyDictionary<string, WeightTensor> weights, TrainerOptions? options = null)
        => new(CausalLm.Graph(config), CausalLm.LossOutput, Copy(weights), new Dictionary<string, WeightTensor>(),
            CausalLm.Options(options ?? new TrainerOptions { LearningRate = 1e-2 }));

    [Fact]
    public void Tiny_model_overfits_a_small_batch()
    {
        var config = Config();
        var batch = RandomBatch(1, rows: 4, config.VocabSize);
        using var trainer = NewTrainer(config, WeightSet.Random(config, 3));
        var first = trainer.Step(batch, Ct).Loss;
        var last = first;
        for (var step = 1; step < 300 && last >= 0.05 * first; step++) last = trainer.Step(batch, Ct).Loss;
        Assert.True(last < 0.05 * first, $"loss {first:F3} → {last:F3} after {trainer.StepCount} steps");
        Assert.True(trainer.StepCount <= 300);
        Assert.Equal(last, trainer.Evaluate(batch, Ct), 0.05 * first); // eval sees the trained weights
    }

    [Fact]
    public void Accumulated_micro_batches_equal_one_batch()
    {
        var config = Config();
        var weights = TinyLlama.Weights(config, 5);
        var batch = RandomBatch(2, rows: 4, config.VocabSize, promptLength: 3); // rows carry different target counts
        using var whole = NewTrainer(config, weights);
        using var micro = NewTrainer(config, weights, new TrainerOptions { MicroBatchSize = 1 });
        var lossWhole = whole.ComputeGradients(batch, Ct);
        var lossMicro = micro.ComputeGradients(batch, Ct);
        Assert.Equal(lossWhole, lossMicro, lossWhole * 1e-6);
        for (var p = 0; p < whole.Parameters.Count; p++)
        {
            float[] a = whole.Parameters[p].Gradient, b = micro.Parameters[p].Gradient;
            var scale = a.Max(Math.Abs);
            var diff = a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
            Assert.True(scale > 0, whole.Parameters[p].Name);
            Assert.True(diff <= 1e-5 * scale, $"{whole.Parameters[p].Name}: max |Δ| {diff:E2} vs max |g| {scale:E2}");
        }
    }

    /// <summary>The low-memory setting (no ONNX Runtime arena, large freed blocks returned) changes where buffers live, not the numbers.</summary>
    [Fact]
    public void Training_without_the_memory_arena_gives_the_same_steps()
    {
        var config = Config();
        var weights = TinyLlama.Weights(config, 7);
        var batches = Enumerable.Range(0, 3).Select(i => RandomBatch(20 + i, rows: 4, config.VocabSize)).ToList();
        using var arena = NewTrainer(config, weights, new TrainerOptions { LearningRate = 1e-2 });
        using var plain = NewTrainer(config, weights, new TrainerOptions { LearningRate = 1e-2, CpuMemoryArena = false });
        foreach (var batch in batches)
        {
            var (a, b) = (arena.Step(batch, Ct).Loss, plain.Step(batch, Ct).Loss);
            Assert.Equal(a, b, Math.Abs(a) * 1e-6);
        }
        for (var p = 0; p < arena.Parameters.Count; p++)
        {
            float[] x = arena.Parameters[p].Weight, y = plain.Parameters[p].Weight;
            var diff = x.Zip(y, (u, v) => Math.Abs(u - v)).Max();
            Assert.True(diff <= 1e-5 * Math.Max(1, x.Max(Math.Abs)), $"{arena.Parameters[p].Name}: max |Δw| {diff:E2}");
        }
        if (OperatingSystem.IsLinux()) Assert.True(RlaifOnnx.Core.CHeap.ReturnLargeFreedBlocks()); // glibc accepted the threshold
        if (OperatingSystem.IsLinux()) Assert.True(RlaifOnnx.Core.CHeap.Trim());                   // and malloc_trim is there
    }

    [Fact]
    public void Metric_outputs_are_averaged_over_micro_batches_like_the_loss()
    {
        var config = Config();
        var weights = TinyLlama.Weights(config, 11);
        var g = Losses.Extend(CausalLm.Graph(config), "metrics/"); // a prefix of its own: CausalLm used "loss/"
        g.OutputAs(Losses.Mean(g, "logits"), "mean_logit", DataType.Float);
        var graph = g.ToModel();
        var rng = new Random(5);
        var sequences = Enumerable.Range(0, 4).Select(_ => new TokenSequence(
            Enumerable.Range(0, 10).Select(_ => rng.Next(3, config.VocabSize)).ToArray(), Enumerable.Repeat((byte)1, 10).ToArray())).ToList();
        var batch = CausalLm.Batch(sequences, 0); // equal lengths: the mean over rows is the mean over all logits
        TrainerOptions Options(int micro) => new() { LearningRate = 1e-3, MetricOutputs = ["mean_logit"], MicroBatchSize = micro };
        using var whole = new Trainer(graph, CausalLm.LossOutput, Copy(weights), new Dictionary<string, WeightTensor>(), Options(0));
        using var micro = new Trainer(graph, CausalLm.LossOutput, Copy(weights), new Dictionary<string, WeightTensor>(), Options(1));
        var a = whole.Step(batch, Ct);
        var b = micro.Step(batch, Ct);
        Assert.NotEqual(0.0, a.Metrics["mean_logit"]);
        Assert.Equal(a.Metrics["mean_logit"], b.Metrics["mean_logit"], 1e-6);
        Assert.Equal(a.Loss, b.Loss, 1e-5);
        Assert.Equal(1e-3, a.Metrics["lr"]);
        Assert.True(a.Metrics["grad_norm"] > 0);
    }

    [Fact]
    public void Stop_and_resume_reproduces_the_uninterrupted_losses_exactly()
    {
        using var temp = new TempDir();
        var config = Config();
        var weights = WeightSet.Random(config, 4);
        var batches = Enumerable.Range(0, 6).Select(i => RandomBatch(10 + i, rows: 4, config.VocabSize)).ToList();
        var schedule = new LrSchedule(ScheduleKind.Cosine, 2, 6);
        var options = new TrainerOptions { LearningRate = 3e-3, AdamW = new AdamWOptions(WeightDecay: 0.01), Schedule = schedule, MicroBatchSize = 2 };

        List<double> uninterrupted;
        using (var trainer = NewTrainer(config, weights, options))
            uninterrupted = batches.Select(b => trainer.Step(b, Ct).Loss).ToList();

        var resumed = new List<double>();
        using (var first = NewTrainer(config, weights, options))
        {
            resumed.AddRange(batches.Take(3).Select(b => first.Step(b, Ct).Loss));
            Checkpoint.Save(temp.Path, first, schedule, new System.Text.Json.Nodes.JsonObject { ["next_batch"] = 3 });
            first.Step(batches[3], Ct); // work after the checkpoint is lost by the "crash"
        }
        using (var second = NewTrainer(config, weights, options))
        {
            var state = Checkpoint.Load(Checkpoint.Latest(temp.Path)!, second);
            Assert.Equal(3, state.Step);
            Assert.Equal(schedule, state.Schedule);
            var next = (int)state.Extra["next_batch"]!;
            resumed.AddRange(batches.Skip(next).Select(b => second.Step(b, Ct).Loss));
        }
        Assert.Equal(uninterrupted, resumed);
        Assert.Single(Directory.GetDirectories(temp.Path));
    }

    [Fact]
    public void Lora_starts_at_the_base_trains_only_adapters_and_shares_the_base()
    {
        var config = Config();
        var baseWeights = WeightSet.Random(config, 6);
        var baseCopy = Copy(baseWeights);
        var lora = new LoraOptions(4, 8, [LoraOptions.AllLinear]);
        var (graph, adapters) = Lora.Apply(CausalLm.Graph(config), lora);
        Assert.Equal(7 * config.NumLayers, adapters.Count);
        var batch = RandomBatch(3, rows: 2, config.VocabSize);
        var options = CausalLm.Options(new TrainerOptions { LearningRate = 3e-2 });

        using var full = NewTrainer(config, baseWeights);
        var baseLoss = full.Evaluate(batch, Ct);
        // Two adapted models over the same base arrays (policy and reference, say).
        using var policy = new Trainer(graph, CausalLm.LossOutput, Lora.InitialWeights(adapters, 1), baseWeights, options);
        using var other = new Trainer(graph, CausalLm.LossOutput, Lora.InitialWeights(adapters, 2), baseWeights, options);
        Assert.Equal(baseLoss, policy.Evaluate(batch, Ct), 1e-6); // B = 0: the adapted model is the base
        Assert.Equal(14 * config.NumLayers, policy.Parameters.Count);
        var start = policy.Step(batch, Ct).Loss;
        double last = start;
        for (var i = 0; i < 30; i++) last = policy.Step(batch, Ct).Loss;
        other.Step(batch, Ct);
        Assert.True(last < start * 0.95, $"adapter training lowers the loss: {start:F3} → {last:F3}");
        foreach (var (name, w) in baseWeights) Assert.Equal(baseCopy[name].Data, w.Data); // base frozen
    }

    [Fact]
    public void Lora_merge_gives_the_adapted_models_logits()
    {
        var config = Config();
        var baseWeights = TinyLlama.Weights(config, 7);
        var lora = new LoraOptions(3, 6, [LoraOptions.AllLinear]);
        var forward = DecoderGraphs.Training(config, DataType.Float);
        var (adapted, adapters) = Lora.Apply(forward, lora);
        Assert.Equal(7 * config.NumLayers, adapters.Count);
        var adapterWeights = Lora.InitialWeights(adapters, 3);
        var rng = new Random(4);
        foreach (var a in adapters) for (var i = 0; i < adapterWeights[a.B].Data.Length; i++) adapterWeights[a.B].Data[i] = (float)(rng.NextDouble() - 0.5);
        var merged = Lora.Merge(baseWeights, adapters, adapterWeights, lora.Scale);

        var inputs = ForwardInputs([[5, 9, 11, 40, 2, 7]]);
        using var adaptedRun = new OrtTestRunner(adapted);
        using var mergedRun = new OrtTestRunner(forward);
        var expected = adaptedRun.Run(With(inputs, baseWeights.Concat(adapterWeights)))["logits"];
        var actual = mergedRun.Run(With(inputs, merged))["logits"];
        var changed = mergedRun.Run(With(inputs, baseWeights))["logits"];
        Assert.True(MaxDiff(expected, changed) > 1e-2, "the adapters change the logits");
        Assert.True(MaxDiff(expected, actual) < 1e-4, $"merged logits differ by {MaxDiff(expected, actual):E2}");
    }

    [Fact]
    public void Lora_dropout_masks_of_ones_are_no_dropout_and_random_masks_drop()
    {
        var config = Config();
        var baseWeights = TinyLlama.Weights(config, 12);
        var forward = DecoderGraphs.Training(config, DataType.Float);
        var plain = new LoraOptions(2, 4, ["q_proj", "v_proj"]);
        var dropped = plain with { Dropout = 0.5 };
        var (plainGraph, adapters) = Lora.Apply(forward, plain);
        var (dropGraph, _) = Lora.Apply(forward, dropped);
        var adapterWeights = Lora.InitialWeights(adapters, 3);
        foreach (var a in adapters) Array.Fill(adapterWeights[a.B].Data, 0.3f);
        var inputs = With(ForwardInputs([[5, 9, 11, 40, 2, 7]]), baseWeights.Concat(adapterWeights));

        var ones = Lora.DropoutMasks(adapters, dropped, 1, 6, random: null);
        var random = Lora.DropoutMasks(adapters, dropped, 1, 6, new Random(1));
        Assert.Equal(adapters.Count, ones.Count);
        var values = random.Values.SelectMany(m => m.Floats!).ToList();
        Assert.All(values, v => Assert.True(v is 0f or 2f));
        Assert.InRange(values.Count(v => v == 0f) / (double)values.Count, 0.4, 0.6);

        using var plainRun = new OrtTestRunner(plainGraph);
        using var dropRun = new OrtTestRunner(dropGraph);
        TestTensor Logits(OrtTestRunner runner, Dictionary<string, BatchTensor> masks)
        {
            var all = new Dictionary<string, TestTensor>(inputs);
            foreach (var (name, m) in masks) all[name] = TestTensor.Of(m.Floats!, m.Shape);
            return runner.Run(all)["logits"];
        }
        var expected = Logits(plainRun, []);
        Assert.True(MaxDiff(expected, Logits(dropRun, ones)) < 1e-6);
        Assert.True(MaxDiff(expected, Logits(dropRun, random)) > 1e-3);
        Assert.Throws<ArgumentException>(() => Lora.Apply(forward, plain with { Dropout = 1.0 }));
    }

    [Fact]
    public void Exported_folder_gives_the_training_graphs_logits_and_runs_in_GenAI()
    {
        using var temp = new TempDir();
        var config = Config(vocab: 300) with { MaxPositions = 64 };
        var tokenizer = TinyTokenizer.Train(300);
        var batch = RandomBatch(8, rows: 2, config.VocabSize);
        var lora = LoraOptions.Default(rank: 2);
        var baseWeights = WeightSet.Random(config, 9);
        var (graph, adapters) = Lora.Apply(CausalLm.Graph(config), lora);
        using var trainer = new Trainer(graph, CausalLm.LossOutput, Lora.InitialWeights(adapters, 1), baseWeights,
            CausalLm.Options(new TrainerOptions { LearningRate = 1e-2 }));
        for (var i = 0; i < 5; i++) trainer.Step(batch, Ct);
        var exported = Export.Weights(config, baseWeights, trainer, adapters, lora.Scale);
        var dir = Path.Combine(temp.Path, "model");
        ModelWriter.Write(dir, config, exported, tokenizer, "sl-cai", [new LineageEntry("test", null, DateTimeOffset.UtcNow)]);

        // Training graph (base + live adapters) vs the exported inference graph read back from disk.
        long[] prompt = [5, 17, 23, 99, 150, 7, 8];
        var inputs = ForwardInputs([prompt]);
        using var adaptedRun = new OrtTestRunner(Lora.Apply(DecoderGraphs.Training(config, DataType.Float), lora).Graph);
        var training = adaptedRun.Run(With(inputs, baseWeights.Concat(trainer.TrainableWeights())))["logits"];
        using var inference = new OrtTestRunner(RlaifOnnx.Onnx.OnnxFile.Load(Path.Combine(dir, ModelFolder.ModelFile)));
        long[][] ids = [prompt], mask = [prompt.Select(_ => 1L).ToArray()];
        var logits = inference.Run(TinyLlama.InferenceInputs(config, ids, mask, TinyLlama.PositionsFromMask(mask)))["logits"];
        Assert.True(MaxDiff(training, logits) < 1e-5, $"exported logits differ by {MaxDiff(training, logits):E2}");

        // GenAI loads the folder and its first greedy token is the training graph's argmax.
        using var genaiConfig = new Config(dir);
        using var model = new Model(genaiConfig);
        using var parameters = new GeneratorParams(model);
        parameters.SetSearchOption("max_length", prompt.Length + 2);
        parameters.SetSearchOption("do_sample", false);
        using var generator = new Generator(model, parameters);
        generator.AppendTokens(prompt.Select(i => (int)i).ToArray());
        generator.GenerateNextToken();
        var next = generator.GetSequence(0).ToArray()[prompt.Length];
        Assert.Equal(TinyLlama.ArgMax(TinyLlama.Row(training, 0, prompt.Length - 1)), next);
    }

    static Dictionary<string, TestTensor> ForwardInputs(long[][] ids)
    {
        long rows = ids.Length, length = ids[0].Length;
        return new Dictionary<string, TestTensor>
        {
            ["input_ids"] = TestTensor.Of(ids.SelectMany(r => r).ToArray(), rows, length),
            ["attention_mask"] = TestTensor.Of(ids.SelectMany(r => r.Select(_ => 1L)).ToArray(), rows, length),
            ["position_ids"] = TestTensor.Of(ids.SelectMany(r => r.Select((_, t) => (long)t)).ToArray(), rows, length),
        };
    }

    static Dictionary<string, TestTensor> With(Dictionary<string, TestTensor> inputs, IEnumerable<KeyValuePair<string, WeightTensor>> weights)
    {
        var all = new Dictionary<string, TestTensor>(inputs);
        foreach (var (name, w) in weights) all[name] = TestTensor.Of(w.Data, w.Shape);
        return all;
    }

    static double MaxDiff(TestTensor a, TestTensor b)
    {
        Assert.Equal(a.Shape, b.Shape);
        var max = 0.0;
        for (var i = 0; i < a.Floats!.Length; i++) max = Math.Max(max, Math.Abs(a.Floats[i] - b.Floats![i]));
        return max;
    }
}
