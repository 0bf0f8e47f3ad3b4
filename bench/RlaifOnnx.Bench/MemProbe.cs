using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Stages;
using RlaifOnnx.Training;
using DataType = Onnx.TensorProto.Types.DataType;

namespace RlaifOnnx.Bench;

/// <summary>Diagnostics: the memory each piece of the PPO stage adds, one at a time.</summary>
public static class MemProbe
{

    public static int Run(string dir)
    {
        var policy = Path.Combine(dir, "policy");
        var pm = Path.Combine(dir, "pm");
        var rollout = Path.Combine(dir, "run-low-memory", TrainPolicy.RolloutPolicySubdir);
        void T(string what) { GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect(); RlaifOnnx.Core.CHeap.Trim(); Console.Error.WriteLine(HeapTrace.Line(what)); }
        Core.CHeap.ReturnLargeFreedBlocks();
        T("start");
        var config = ModelFolder.ReadMetadata(policy).Config;
        var lora = LoraOptions.From(new Configuration.LoraConfig { Rank = 8 })!;
        using (var tok = RewardScorer.OpenTokenizer(pm)) T("pm tokenizer open");
        T("pm tokenizer closed");
        using var mapped = new MappedWeights(Path.Combine(rollout, ModelFolder.ModelFile), WeightNames.Shapes(config));
        T("mapped base");
        var adapters = Lora.Apply(DecoderGraphs.Training(config, DataType.Float), lora).Adapters;
        var trainable = Lora.InitialWeights(adapters, 1);
        var empty = new Dictionary<string, WeightTensor>();
        using (var f = new BoundForward(Ppo.RolloutLogProbGraph(config, lora, 0.7), trainable, Ppo.TokenLogProbsOutput, mapped.Values, cpuMemoryArena: false)) T("policy forward");
        T("policy forward closed");
        using (var tr = new Trainer(Ppo.PolicyGraph(config, lora, 0.2, temperature: 0.7), Ppo.LossOutput, trainable, empty,
            Ppo.PolicyOptions(new TrainerOptions { CpuMemoryArena = false }), mapped.Values)) T("policy trainer");
        T("policy trainer closed");
        var graphs = Training.Autodiff.GradientBuilder.Build(Ppo.PolicyGraph(config, lora, 0.2, temperature: 0.7), trainable.Keys.ToList(), Ppo.LossOutput, Ppo.PolicyMetrics);
        var bytes = Google.Protobuf.MessageExtensions.ToByteArray(graphs.Training);
        Console.Error.WriteLine($"training graph: {bytes.Length / 1048576.0:F1} MiB, {graphs.Training.Graph.Node.Count} nodes, {graphs.Training.Graph.Initializer.Count} initializers");
        T("graph built");
        foreach (var level in new[] { Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_DISABLE_ALL, Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_ENABLE_BASIC, Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_ENABLE_ALL })
        {
            using var o = new Microsoft.ML.OnnxRuntime.SessionOptions { GraphOptimizationLevel = level, EnableCpuMemArena = false, OptimizedModelFilePath = $"/tmp/probe-opt-{level}.onnx" };
            using (var sess = new Microsoft.ML.OnnxRuntime.InferenceSession(bytes, o)) T($"training session {level}");
            T("closed");
        }
        using (var o = new Microsoft.ML.OnnxRuntime.SessionOptions { GraphOptimizationLevel = Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_ENABLE_ALL, EnableCpuMemArena = false })
        {
            o.AddSessionConfigEntry("session.disable_prepacking", "1");
            using (var sess = new Microsoft.ML.OnnxRuntime.InferenceSession(bytes, o)) T($"training session, no prepacking");
            T("closed");
        }
        using (var g = new GenAIGenerator(rollout, new InferenceOptions { BatchSize = 4, CpuMemoryArena = false, WeightPrepacking = false }))
        {
            T("genai loaded");
            var s = new SamplingOptions { MaxNewTokens = 32, Temperature = 0.7, TopP = 1, Seed = 1 };
            g.GenerateAsync(["Hello there, how are you?", "Why is the sky blue?", "a", "b"], s).GetAwaiter().GetResult();
            T("genai generated");
        }
        T("genai closed");
        var pmWeights = PreferenceModelFolder.ReadWeights(pm);
        T("pm weights");
        using (var r = new RewardScorer(pm, pmWeights, new InferenceOptions { BatchSize = 4, CpuMemoryArena = false })) T("reward scorer");
        T("reward scorer closed");
        GC.KeepAlive(pmWeights);
        return 0;
    }
}
