namespace RlaifOnnx.Training;

/// <summary>One per-step input of a training graph: int64 (ids, masks) or float32 (targets, labels) values, row-major, axis 0 = batch.</summary>
public sealed record BatchTensor(long[] Shape, long[]? Int64s = null, float[]? Floats = null)
{
    public static BatchTensor Of(long[] values, params long[] shape) => new(shape, Int64s: values);
    public static BatchTensor Of(float[] values, params long[] shape) => new(shape, Floats: values);

    public int Rows => (int)Shape[0];
    int RowLength => (int)(Shape.Aggregate(1L, (a, b) => a * b) / Math.Max(1, Shape[0]));

    /// <summary>Rows [start, start + count) along axis 0.</summary>
    public BatchTensor Slice(int start, int count)
    {
        var shape = (long[])Shape.Clone();
        shape[0] = count;
        var n = RowLength;
        return Int64s is not null
            ? new BatchTensor(shape, Int64s: Int64s.AsSpan(start * n, count * n).ToArray())
            : new BatchTensor(shape, Floats: Floats!.AsSpan(start * n, count * n).ToArray());
    }
}

/// <summary>A batch: graph input name → tensor; every tensor has the same number of rows.</summary>
public sealed class TrainingBatch : Dictionary<string, BatchTensor>
{
    public TrainingBatch() : base(StringComparer.Ordinal) { }

    public int Rows
    {
        get
        {
            var rows = Values.Select(t => t.Rows).Distinct().ToList();
            if (rows.Count != 1) throw new ArgumentException($"batch tensors disagree on the batch size: {string.Join(", ", this.Select(kv => $"{kv.Key}={kv.Value.Rows}"))}");
            return rows[0];
        }
    }

    public TrainingBatch Slice(int start, int count)
    {
        var slice = new TrainingBatch();
        foreach (var (name, t) in this) slice[name] = t.Slice(start, count);
        return slice;
    }
}
