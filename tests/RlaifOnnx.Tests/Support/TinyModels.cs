using RlaifOnnx.Models;


namespace RlaifOnnx.Tests;

/// <summary>
/// Tiny Llama model folders for the data-stage tests: 2 layers, hidden 32, a 400-token byte-level BPE
/// tokenizer made by the project, and a context long enough for hh-rlhf questions (2,048 positions).
/// Weights are random (<see cref="TinyLlama.Weights"/>), so the models are real but know nothing.
/// </summary>
public static class TinyModels
{
    const int Vocab = 400;
    static readonly Lazy<TinyTokenizer> Tokenizer = new(() => TinyTokenizer.Train(Vocab));

    public static ModelConfig Config { get; } = TinyLlama.Config("gqa-untied", Vocab) with { MaxPositions = 2048 };

    /// <summary>Writes a model folder at <paramref name="dir"/> and returns its path; <paramref name="maxPositions"/> overrides the context length.</summary>
    public static string Folder(string dir, int seed = 1, int? maxPositions = null)
    {
        var config = maxPositions is { } m ? Config with { MaxPositions = m } : Config;
        ModelWriter.Write(dir, config, TinyLlama.Weights(config, seed), Tokenizer.Value, "feedback", [new LineageEntry("test", null, DateTimeOffset.UtcNow)]);
        return dir;
    }
}
