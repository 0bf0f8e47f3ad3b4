using RlaifOnnx.Models;

namespace RlaifOnnx.Training;

/// <summary>
/// Trained weights back into an inference model folder (DESIGN §2): the full canonical weight set — the
/// trainer's trainable weights over the frozen ones, LoRA adapters merged into their base projections —
/// written by <see cref="ModelWriter"/> as a folder ONNX Runtime GenAI runs.
/// </summary>
public static class Export
{
    /// <summary>
    /// The canonical weights after training: frozen ∪ trainable, with <paramref name="lora"/>'s adapters merged
    /// (when given). <paramref name="shapes"/> names the weights the model has (null: the language model's).
    /// </summary>
    public static WeightSet Weights(ModelConfig config, IReadOnlyDictionary<string, WeightTensor> frozen, Trainer trainer,
        IReadOnlyList<LoraAdapter>? lora = null, double loraScale = 0, IReadOnlyDictionary<string, long[]>? shapes = null)
    {
        var canonical = shapes ?? WeightNames.Shapes(config);
        var all = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        foreach (var (name, w) in frozen) if (canonical.ContainsKey(name)) all[name] = w;
        var trained = trainer.TrainableWeights();
        foreach (var (name, w) in trained) if (canonical.ContainsKey(name)) all[name] = w;
        var set = lora is { Count: > 0 } ? Lora.Merge(all, lora, trained, loraScale) : ToSet(all);
        set.CheckAgainst(canonical, "trained weights");
        return set;
    }

    static WeightSet ToSet(Dictionary<string, WeightTensor> all)
    {
        var set = new WeightSet();
        foreach (var (name, w) in all) set[name] = w;
        return set;
    }
}
