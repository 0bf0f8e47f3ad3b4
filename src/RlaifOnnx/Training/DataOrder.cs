using RlaifOnnx.Core;

namespace RlaifOnnx.Training;

/// <summary>
/// The example at a position of the endless stream of epochs, each epoch a Fisher–Yates shuffle seeded by
/// (seed, epoch) — so a resumed run computes the same order from the step alone.
/// </summary>
internal sealed class DataOrder(int count, int seed)
{
    readonly Dictionary<long, int[]> epochs = new();

    public int At(long position)
    {
        var epoch = position / count;
        if (!epochs.TryGetValue(epoch, out var permutation))
        {
            permutation = Enumerable.Range(0, count).ToArray();
            StableRandom.For(seed, $"epoch {epoch}").Shuffle(permutation);
            epochs.Clear();
            epochs[epoch] = permutation;
        }
        return permutation[position % count];
    }
}
