using System.Globalization;
using RlaifOnnx.Models;
using RlaifOnnx.Training;
using DataType = Onnx.TensorProto.Types.DataType;

namespace RlaifOnnx.Tests.Training;

/// <summary>
/// PPO's low-memory mode binds the policy's frozen base as OrtValues over a memory map of the rollout folder's
/// model.onnx.data (the file GenAI's session maps too): the values must be the file's own pages, not a copy, and a
/// forward pass and a training step over them must give exactly what the same graphs give over arrays.
/// </summary>
public class MappedWeightsTests
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>The address ranges at which <paramref name="file"/> is mapped into this process (/proc/self/maps).</summary>
    static List<(ulong Start, ulong End)> MappingsOf(string file)
    {
        var ranges = new List<(ulong, ulong)>();
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            if (!line.TrimEnd().EndsWith(" " + file, StringComparison.Ordinal)) continue;
            var range = line.Split(' ', 2)[0].Split('-');
            ranges.Add((ulong.Parse(range[0], NumberStyles.HexNumber), ulong.Parse(range[1], NumberStyles.HexNumber)));
        }
        return ranges;
    }

    static unsafe ulong Address(Microsoft.ML.OnnxRuntime.OrtValue value)
    {
        fixed (float* p = value.GetTensorDataAsSpan<float>()) return (ulong)p;
    }

    [Fact]
    public void The_values_are_the_data_files_pages_not_a_copy_and_equal_the_arrays()
    {
        using var temp = new TempDir();
        var lm = TinyModels.Folder(temp.File("lm"), seed: 5);
        var config = TinyModels.Config;
        var arrays = ModelFolder.ReadWeights(lm);
        using var mapped = new MappedWeights(Path.Combine(lm, ModelFolder.ModelFile), WeightNames.Shapes(config));
        Assert.Equal(Path.GetFullPath(Path.Combine(lm, ModelFolder.DataFile)), mapped.DataFile);

        var ranges = MappingsOf(mapped.DataFile);
        Assert.NotEmpty(ranges);
        var inFile = 0;
        foreach (var (name, w) in arrays)
        {
            Assert.Equal(w.Data, mapped.Span(name).ToArray());
            Assert.Equal(w.Shape, mapped.Shape(name));
            var address = Address(mapped.Values[name]);
            var bytes = (ulong)w.Data.Length * 4;
            // Every tensor stored in the data file is read where the file is mapped; only the small ones kept inside
            // model.onnx (below the external-data threshold) are arrays.
            if (ranges.Any(r => address >= r.Start && address + bytes <= r.End)) inFile++;
            else Assert.True(bytes < RlaifOnnx.Onnx.OnnxFile.ExternalThresholdBytes, $"{name} ({bytes} bytes) is not read from the mapped file");
        }
        Assert.True(inFile >= config.NumLayers * 7, $"only {inFile} tensors lie in the mapped file");
        Assert.Equal(arrays.Count, mapped.Copy().Count);
    }

    [Fact]
    public void A_forward_pass_and_a_ppo_step_over_the_mapped_base_equal_those_over_arrays()
    {
        using var temp = new TempDir();
        var lm = TinyModels.Folder(temp.File("lm"), seed: 7);
        var config = TinyModels.Config;
        var arrays = ModelFolder.ReadWeights(lm);
        using var mapped = new MappedWeights(Path.Combine(lm, ModelFolder.ModelFile), WeightNames.Shapes(config));
        var lora = new LoraOptions(4, 8, [LoraOptions.AllLinear]);
        var adapters = Lora.Apply(DecoderGraphs.Training(config, DataType.Float), lora).Adapters;
        var rng = new Random(3);
        Dictionary<string, WeightTensor> Adapters()
        {
            var values = Lora.InitialWeights(adapters, 9);
            var r = new Random(4);
            foreach (var w in values.Values)
                for (var i = 0; i < w.Data.Length; i++) w.Data[i] = (float)(r.NextDouble() * 2 - 1) * 0.2f;
            return values;
        }

        // Two rows of 9 and 6 tokens, right-padded.
        const int rows = 2, length = 9;
        int[] lengths = [9, 6];
        var ids = new long[rows * length];
        var attention = new long[rows * length];
        var positions = new long[rows * length];
        for (var b = 0; b < rows; b++)
            for (var t = 0; t < length; t++)
            {
                ids[b * length + t] = t < lengths[b] ? rng.Next(3, config.VocabSize) : 0;
                attention[b * length + t] = t < lengths[b] ? 1 : 0;
                positions[b * length + t] = t;
            }
        TrainingBatch Tokens() => new()
        {
            ["input_ids"] = BatchTensor.Of(ids, rows, length),
            ["attention_mask"] = BatchTensor.Of(attention, rows, length),
            ["position_ids"] = BatchTensor.Of(positions, rows, length),
        };

        var graph = Ppo.RolloutLogProbGraph(config, lora, temperature: 0.7);
        var adapterValues = Adapters();
        using var overArrays = new BoundForward(graph, new Dictionary<string, WeightTensor>(arrays.Concat(adapterValues)), Ppo.TokenLogProbsOutput);
        using var overMap = new BoundForward(graph, adapterValues, Ppo.TokenLogProbsOutput, mapped.Values, cpuMemoryArena: false);
        var expected = overArrays.Run(Tokens(), out var width);
        Assert.Equal(expected, overMap.Run(Tokens(), out _));

        // One PPO step of the policy from the same adapters: same loss and the same adapters afterwards, to the bit.
        var batch = Tokens();
        var mask = new long[rows * width];
        var advantages = new float[rows * width];
        for (var b = 0; b < rows; b++)
            for (var t = 0; t < width; t++)
            {
                mask[b * width + t] = t >= 3 && t + 1 < lengths[b] ? 1 : 0;
                advantages[b * width + t] = (float)(rng.NextDouble() * 2 - 1);
            }
        var old = expected.Select((v, i) => mask[i] == 1 ? v - 0.05f : 0f).ToArray();
        batch[Ppo.OldLogProbsInput] = BatchTensor.Of(old, rows, width);
        batch[Ppo.AdvantagesInput] = BatchTensor.Of(advantages, rows, width);
        batch[Ppo.ResponseMaskInput] = BatchTensor.Of(mask, rows, width);
        var policyGraph = Ppo.PolicyGraph(config, lora, temperature: 0.7);
        var options = Ppo.PolicyOptions(new TrainerOptions { LearningRate = 1e-2 });
        using var trainerArrays = new Trainer(policyGraph, Ppo.LossOutput, Adapters(), arrays, options);
        using var trainerMap = new Trainer(policyGraph, Ppo.LossOutput, Adapters(), new Dictionary<string, WeightTensor>(), options with { CpuMemoryArena = false }, mapped.Values);
        var a = trainerArrays.Step(batch, Ct);
        var m = trainerMap.Step(batch, Ct);
        Assert.Equal(a.Loss, m.Loss);
        Assert.NotEqual(0, a.Metrics["grad_norm"]);
        var after = trainerMap.TrainableWeights();
        foreach (var (name, w) in trainerArrays.TrainableWeights()) Assert.Equal(w.Data, after[name].Data);
    }
}
