using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Training;

namespace RlaifOnnx.Stages;

/// <summary>The models of a PPO run and the ONNX Runtime sessions over them.</summary>
public static partial class TrainPolicy
{
    /// <summary>
    /// The policy (optionally LoRA over a frozen base), the reference, the value model and the reward scorer, each
    /// with its graphs, and GenAI's rollout copy of the policy; disposed together (the sessions before the memory
    /// they read).
    /// </summary>
    sealed class Sessions : IDisposable
    {
        public LoraOptions? Lora;
        public IReadOnlyList<LoraAdapter> Adapters = [], ValueAdapters = [];
        /// <summary>The policy's frozen base as arrays (empty without LoRA, or when <see cref="MappedBase"/> holds it).</summary>
        public IReadOnlyDictionary<string, WeightTensor> PolicyFrozen = new Dictionary<string, WeightTensor>();
        public IReadOnlyDictionary<string, WeightTensor> ValueFrozen = new Dictionary<string, WeightTensor>();
        /// <summary>With low_memory and LoRA: the policy's base, mapped from the rollout folder's data file GenAI maps too.</summary>
        public MappedWeights? MappedBase;
        /// <summary>With low_memory and LoRA: the value model's base (the PM's), mapped from its own data file.</summary>
        public MappedWeights? MappedValueBase;
        public Trainer PolicyTrainer = null!, ValueTrainer = null!;
        public BoundForward PolicyForward = null!, ReferenceForward = null!, ValueForward = null!;
        public RewardScorer RewardScorer = null!;
        public RolloutPolicy Rollout = null!;

        /// <summary>The policy's frozen base as arrays for the export (a copy when it is mapped).</summary>
        public IReadOnlyDictionary<string, WeightTensor> PolicyFrozenArrays() => MappedBase?.Copy() ?? PolicyFrozen;
        /// <summary>The value model's frozen base as arrays for the export (a copy when it is mapped; its head is the trainer's).</summary>
        public IReadOnlyDictionary<string, WeightTensor> ValueFrozenArrays() => MappedValueBase?.Copy() ?? ValueFrozen;

        public void Dispose()
        {
            // GenAI and every session before the mapped base they may read.
            Rollout?.Dispose();
            RewardScorer?.Dispose();
            ValueForward?.Dispose();
            ReferenceForward?.Dispose();
            PolicyForward?.Dispose();
            ValueTrainer?.Dispose();
            PolicyTrainer?.Dispose();
            MappedBase?.Dispose();
            MappedValueBase?.Dispose();
        }
    }

    /// <summary>Whether both folders have tokenizer.json and tokenizer_config.json and each pair is byte for byte the same.</summary>
    static bool SameTokenizerFiles(string a, string b)
    {
        foreach (var name in new[] { ModelFolder.TokenizerFile, ModelFolder.TokenizerConfigFile })
        {
            var (x, y) = (Path.Combine(a, name), Path.Combine(b, name));
            if (!File.Exists(x) || !File.Exists(y)) return false;
            using var fx = File.OpenRead(x);
            using var fy = File.OpenRead(y);
            if (fx.Length != fy.Length) return false;
            // In blocks: the files are megabytes, and whole-file arrays would be garbage on the large-object heap.
            var (bx, by) = (new byte[1 << 16], new byte[1 << 16]);
            int n;
            while ((n = fx.ReadAtLeast(bx, bx.Length, throwOnEndOfStream: false)) > 0)
                if (fy.ReadAtLeast(by, n, throwOnEndOfStream: false) != n || !bx.AsSpan(0, n).SequenceEqual(by.AsSpan(0, n))) return false;
        }
        return true;
    }

    static Sessions OpenSessions(Config config, ModelMetadata policyMeta, ModelConfig referenceConfig, ModelConfig valueConfig, string referenceDir, string valueDir)
    {
        var model = policyMeta.Config;
        var s = new Sessions();
        try
        {
            var lora = s.Lora = LoraOptions.From(config.Lora);
            var lowMemory = config.LowMemory;
            var policyWeights = ModelFolder.ReadWeights(config.PolicyModel);
            s.Adapters = lora is null ? [] : Training.Lora.Apply(DecoderGraphs.Training(model, DataType.Float), lora).Adapters;
            IReadOnlyDictionary<string, WeightTensor> policyTrainable = lora is null ? policyWeights : Training.Lora.InitialWeights(s.Adapters, config.Seed);

            // GenAI's copy of the policy: with LoRA the base is written once and each sync moves only the adapters.
            var rolloutDir = Path.Combine(config.OutputDir, RolloutPolicySubdir);
            Orphans.RemoveBeside(rolloutDir);   // rollout policies a killed run was writing
            // With low_memory every ONNX Runtime session (GenAI's, the trainers' unless optimizer.cpu_memory_arena, the forward passes'
            // and the reward's) allocates from one shared arena handed back after each run: between runs the resident set is the
            // weights and the sessions, and a run's peak is its own activations without the C heap's fragmentation.
            var rolloutOptions = new InferenceOptions { BatchSize = config.MiniBatchSize, CpuMemoryArena = !lowMemory, WeightPrepacking = !lowMemory, SharedArena = lowMemory };
            s.Rollout = new RolloutPolicy(rolloutDir, model, policyWeights, lora, s.Adapters, config.PolicyModel, rolloutOptions);
            // With LoRA the frozen base is the reference when both are the same folder: one copy of the weights.
            var sharesBase = lora is not null && Path.GetFullPath(referenceDir) == Path.GetFullPath(config.PolicyModel);
            IReadOnlyDictionary<string, WeightTensor> referenceWeights;
            if (lora is not null && lowMemory)
            {
                // The base is written into the rollout folder now and read from there by everyone: GenAI's session maps
                // model.onnx.data and so do the trainers and forward passes (MappedWeights): one resident copy, no arrays.
                s.Rollout.WriteBase([.. policyMeta.Lineage, new LineageEntry("ppo rollout policy", Path.GetFullPath(config.PolicyModel), DateTimeOffset.UtcNow)]);
                s.MappedBase = new MappedWeights(s.Rollout.ModelPath, WeightNames.Shapes(model));
                referenceWeights = sharesBase ? new Dictionary<string, WeightTensor>() : ModelFolder.ReadWeights(referenceDir);
            }
            else
            {
                s.PolicyFrozen = lora is null ? new Dictionary<string, WeightTensor>() : policyWeights;
                referenceWeights = sharesBase ? policyWeights : ModelFolder.ReadWeights(referenceDir);
            }
            policyWeights = null;
            // With the base mapped, the arrays it was read into (one copy of the policy, in the large-object heap) are
            // garbage: collect them now and hand their memory back (Aggressive decommits it; a forced collection left the
            // GC holding ~260 MiB of it committed through the first iteration).
            if (s.MappedBase is not null) GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            var mapped = s.MappedBase?.Values;
            var referenceMapped = sharesBase ? mapped : null;

            // With LoRA the value model is adapters and its own head over the PM's frozen base, as the policy over its
            // base; when it starts from the reward model, that base scores the rewards too: one copy of the PM's weights.
            // With low_memory that base is read in place from the PM's own data file (MappedWeights), not into arrays: pages
            // become resident as they are read, and a preference model has no LM head reading its whole embedding table, so
            // of that table (a quarter of a ~100M model) only the rows of the tokens seen are.
            IReadOnlyDictionary<string, WeightTensor> valueWeights;
            if (lora is not null && lowMemory)
            {
                s.MappedValueBase = new MappedWeights(Path.Combine(valueDir, ModelFolder.ModelFile), PreferenceModelGraphs.Shapes(valueConfig));
                var head = s.MappedValueBase.Values[PreferenceModelGraphs.HeadWeight].GetTensorTypeAndShape().Shape;
                valueWeights = new Dictionary<string, WeightTensor>
                {
                    [PreferenceModelGraphs.HeadWeight] = new WeightTensor(head, s.MappedValueBase.Span(PreferenceModelGraphs.HeadWeight).ToArray()),
                };
            }
            else valueWeights = PreferenceModelFolder.ReadWeights(valueDir);
            var valueMapped = s.MappedValueBase?.Values.Where(v => v.Key != PreferenceModelGraphs.HeadWeight).ToDictionary(v => v.Key, v => v.Value, StringComparer.Ordinal);
            s.ValueAdapters = lora is null ? [] : Training.Lora.Apply(PreferenceModelGraphs.Values(valueConfig, DataType.Float), lora).Adapters;
            s.ValueFrozen = lora is null ? new Dictionary<string, WeightTensor>()
                : valueWeights.Where(w => w.Key != PreferenceModelGraphs.HeadWeight).ToDictionary(w => w.Key, w => w.Value, StringComparer.Ordinal);
            var valueHead = valueWeights[PreferenceModelGraphs.HeadWeight];
            IReadOnlyDictionary<string, WeightTensor> valueTrainable = lora is null ? valueWeights
                : new Dictionary<string, WeightTensor>(Training.Lora.InitialWeights(s.ValueAdapters, StableRandom.SeedFor(config.Seed, "value lora")), StringComparer.Ordinal)
                {
                    // Its own copy: the trainer updates it in place, and the reward reads the PM's head.
                    [PreferenceModelGraphs.HeadWeight] = new WeightTensor(valueHead.Shape, (float[])valueHead.Data.Clone()),
                };
            var sharesPm = lora is not null && Path.GetFullPath(valueDir) == Path.GetFullPath(config.RewardModel);

            // With low_memory the trainers join the shared arena too, unless optimizer.cpu_memory_arena asks for their own (faster,
            // holding its high-water mark).
            var trainersShareArena = lowMemory && !config.Optimizer.CpuMemoryArena;
            s.PolicyTrainer = new Trainer(Ppo.PolicyGraph(model, lora, config.ClipEpsilon, temperature: config.Sampling.Temperature), Ppo.LossOutput, policyTrainable, s.PolicyFrozen,
                Ppo.PolicyOptions(PolicyTrainerOptions(config) with { SharedArena = trainersShareArena }), mapped);
            s.ValueTrainer = new Trainer(Ppo.ValueGraph(valueConfig, config.ValueClip, lora: lora), Ppo.LossOutput, valueTrainable, s.ValueFrozen,
                Ppo.ValueOptions(new TrainerOptions { LearningRate = config.ValueLearningRate, MaxGradNorm = config.Optimizer.MaxGradNorm, MicroBatchSize = config.MicroBatchRows, CpuMemoryArena = config.Optimizer.CpuMemoryArena,
                    GradientCheckpointing = config.GradientCheckpointing, SharedArena = trainersShareArena }), valueMapped);
            // Rollout forward passes read the trainers' live arrays, so they always see the current weights.
            s.PolicyForward = new BoundForward(Ppo.RolloutLogProbGraph(model, lora, config.Sampling.Temperature), Union(s.PolicyFrozen, s.PolicyTrainer.TrainableWeights()),
                Ppo.TokenLogProbsOutput, mapped, cpuMemoryArena: !lowMemory, sharedArena: lowMemory);
            s.ReferenceForward = new BoundForward(Ppo.RolloutLogProbGraph(referenceConfig, null, config.Sampling.Temperature), referenceWeights, Ppo.TokenLogProbsOutput,
                referenceMapped, cpuMemoryArena: !lowMemory, sharedArena: lowMemory);
            s.ValueForward = new BoundForward(Ppo.ValuesGraph(valueConfig, lora), Union(s.ValueFrozen, s.ValueTrainer.TrainableWeights()), PreferenceModelGraphs.ValuesOutput,
                valueMapped, cpuMemoryArena: !lowMemory, sharedArena: lowMemory);
            // Reward batches of the forward passes' rows (one with low_memory): the PM's activations are a batch's.
            var scorerOptions = new InferenceOptions { BatchSize = config.ForwardRows, CpuMemoryArena = !lowMemory, SharedArena = lowMemory };
            // A GenAI tokenizer holds several MiB (tens with thousands of added tokens); when the reward model's tokenizer files are the policy's,
            // the scorer encodes with GenAI's (the rollout folder's copy of the policy's files) instead of loading its own.
            var rollout = s.Rollout;
            Func<Microsoft.ML.OnnxRuntimeGenAI.Tokenizer>? sharedTokenizer = SameTokenizerFiles(config.PolicyModel, config.RewardModel) ? () => rollout.Generator.Tokenizer : null;
            s.RewardScorer = sharesPm ? new RewardScorer(config.RewardModel, valueWeights, scorerOptions, sharedTokenizer, s.MappedValueBase?.Values)
                : new RewardScorer(config.RewardModel, scorerOptions);
            return s;
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }
}
