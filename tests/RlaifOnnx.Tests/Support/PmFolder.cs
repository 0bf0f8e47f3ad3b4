using RlaifOnnx.Models;


namespace RlaifOnnx.Tests;

/// <summary>
/// A tiny preference model folder: a tiny Llama's decoder weights plus a fresh scalar head
/// (<see cref="PreferenceModelGraphs.FromLanguageModel"/>), written by <see cref="PreferenceModelFolder.Write"/>
/// with the project's ChatML tokenizer. Context 128 tokens, so a long text is truncated.
/// </summary>
public sealed class PmFolder : IDisposable
{
    readonly TempDir temp = new();
    public string Dir { get; }
    public ModelConfig Config { get; }

    public PmFolder(int seed = 5, string name = "tiny-pm")
    {
        Config = TinyLlama.Config("gqa-untied", vocab: 300);
        var weights = PreferenceModelGraphs.FromLanguageModel(Config, TinyLlama.Weights(Config, seed), seed);
        Dir = temp.File(name);
        PreferenceModelFolder.Write(Dir, Config, weights, TinyTokenizer.Train(Config.VocabSize), []);
    }

    public void Dispose() => temp.Dispose();
}
