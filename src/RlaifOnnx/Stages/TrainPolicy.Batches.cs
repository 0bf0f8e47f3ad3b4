using RlaifOnnx.Models;
using RlaifOnnx.Training;

namespace RlaifOnnx.Stages;

/// <summary>Rollout rows as ONNX Runtime batches: the forward passes over them and the mini-batches the PPO losses train on.</summary>
public static partial class TrainPolicy
{
    /// <summary>A forward output per row, cut to the row's own [L−1] positions (values [B, T] drop their last column too).</summary>
    static List<double[]> RowOutputs(BoundForward forward, IReadOnlyList<Rollout> rollouts, int padId, int chunkSize, CancellationToken cancellationToken)
    {
        var result = new List<double[]>();
        foreach (var chunk in rollouts.Chunk(chunkSize))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var output = forward.Run(Tokens(chunk, padId), out var width);                                          // [b, width], width = T−1 or T
            foreach (var (r, b) in chunk.Select((r, b) => (r, b)))
                result.Add(Enumerable.Range(0, r.Ids.Length - 1).Select(t => (double)output[b * width + t]).ToArray());
        }
        return result;
    }

    /// <summary>input_ids (right-padded), attention_mask and position_ids 0…T−1, [B, T] with T the longest row.</summary>
    static TrainingBatch Tokens(IReadOnlyList<Rollout> rows, int padId)
    {
        var length = rows.Max(r => r.Ids.Length);
        var ids = new long[rows.Count * length];
        var attention = new long[rows.Count * length];
        var positions = new long[rows.Count * length];
        for (var b = 0; b < rows.Count; b++)
            for (var t = 0; t < length; t++)
            {
                var real = t < rows[b].Ids.Length;
                ids[b * length + t] = real ? rows[b].Ids[t] : padId;
                attention[b * length + t] = real ? 1 : 0;
                positions[b * length + t] = t;
            }
        return new TrainingBatch
        {
            ["input_ids"] = BatchTensor.Of(ids, rows.Count, length),
            ["attention_mask"] = BatchTensor.Of(attention, rows.Count, length),
            ["position_ids"] = BatchTensor.Of(positions, rows.Count, length),
        };
    }

    /// <summary>A mini-batch for both loss graphs: the tokens plus the per-token arrays [B, T−1], zero past each row's end.</summary>
    static TrainingBatch MiniBatch(IReadOnlyList<(Rollout Rollout, RowArrays Arrays)> rows, int padId)
    {
        var batch = Tokens(rows.Select(r => r.Rollout).ToList(), padId);
        var width = (int)batch["input_ids"].Shape[1] - 1;
        float[] Floats(Func<RowArrays, double[]> pick)
        {
            var values = new float[rows.Count * width];
            for (var b = 0; b < rows.Count; b++)
            {
                var row = pick(rows[b].Arrays);
                for (var t = 0; t < row.Length; t++) values[b * width + t] = (float)row[t];
            }
            return values;
        }
        var mask = new long[rows.Count * width];
        for (var b = 0; b < rows.Count; b++)
            for (var t = 0; t < rows[b].Arrays.Mask.Length; t++) mask[b * width + t] = rows[b].Arrays.Mask[t] ? 1 : 0;
        batch[Ppo.OldLogProbsInput] = BatchTensor.Of(Floats(r => r.LogProbs), rows.Count, width);
        batch[Ppo.AdvantagesInput] = BatchTensor.Of(Floats(r => r.Advantages), rows.Count, width);
        batch[Ppo.OldValuesInput] = BatchTensor.Of(Floats(r => r.Values), rows.Count, width);
        batch[Ppo.ReturnsInput] = BatchTensor.Of(Floats(r => r.Returns), rows.Count, width);
        batch[Ppo.ResponseMaskInput] = BatchTensor.Of(mask, rows.Count, width);
        return batch;
    }

    static Dictionary<string, WeightTensor> Union(IReadOnlyDictionary<string, WeightTensor> a, IReadOnlyDictionary<string, WeightTensor> b)
    {
        var all = new Dictionary<string, WeightTensor>(a, StringComparer.Ordinal);
        foreach (var (name, w) in b) all[name] = w;
        return all;
    }
}
