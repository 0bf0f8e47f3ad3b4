using System.Text.Json.Serialization;
using RlaifOnnx.Core;

namespace RlaifOnnx.Models;

/// <summary>The two canonical graph families. Llama covers Llama, SmolLM2, TinyLlama, Qwen2 and Mistral.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<Architecture>))]
public enum Architecture { Llama, Gpt2 }

/// <summary>
/// The hyperparameters of a decoder, enough to build both graph flavours. Stored in a model folder's
/// rlaif.json under "config"; read from a Hugging Face config.json by the checkpoint builder.
/// </summary>
public sealed record ModelConfig
{
    public required Architecture Architecture { get; init; }
    /// <summary>The Hugging Face model_type ("llama", "qwen2", "mistral", "gpt2"); GenAI's "type" too.</summary>
    public required string ModelType { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    /// <summary>Key/value heads (grouped-query attention); equals NumHeads for multi-head attention.</summary>
    public required int NumKvHeads { get; init; }
    /// <summary>MLP width: SwiGLU's intermediate size for Llama, 4×hidden by default for GPT-2.</summary>
    public required int IntermediateSize { get; init; }
    /// <summary>Longest sequence (prompt + generation) the model supports.</summary>
    public required int MaxPositions { get; init; }
    /// <summary>RMSNorm epsilon for Llama, LayerNorm epsilon for GPT-2.</summary>
    public double NormEps { get; init; } = 1e-5;
    /// <summary>RoPE base frequency (Llama family only).</summary>
    public double RopeTheta { get; init; } = 10000.0;
    /// <summary>Whether the output projection reuses the token embedding (always true for GPT-2).</summary>
    public bool TieEmbeddings { get; init; }
    /// <summary>Bias on the q/k/v projections (Qwen2).</summary>
    public bool AttentionBias { get; init; }
    /// <summary>MLP activation: "silu" (SwiGLU) for Llama, "gelu_new" (tanh approximation) or "gelu" for GPT-2.</summary>
    public string HiddenAct { get; init; } = "silu";
    public int BosTokenId { get; init; }
    public int EosTokenId { get; init; }
    public int PadTokenId { get; init; }

    /// <summary>Per-head width; <see cref="Validate"/> checks the division is exact.</summary>
    [JsonIgnore] public int HeadDim => HiddenSize / NumHeads;

    /// <summary>Throws a <see cref="UserError"/> naming <paramref name="source"/> when sizes do not fit together.</summary>
    public ModelConfig Validate(string source)
    {
        void Positive(int value, string field)
        {
            if (value <= 0) throw UserError.At(source, null, field, $"must be positive, got {value}");
        }
        Positive(VocabSize, "vocab_size"); Positive(HiddenSize, "hidden_size"); Positive(NumLayers, "num_hidden_layers");
        Positive(NumHeads, "num_attention_heads"); Positive(NumKvHeads, "num_key_value_heads");
        Positive(IntermediateSize, "intermediate_size"); Positive(MaxPositions, "max_position_embeddings");
        if (HiddenSize % NumHeads != 0)
            throw UserError.At(source, null, "num_attention_heads", $"hidden_size {HiddenSize} is not divisible by {NumHeads} heads");
        if (NumHeads % NumKvHeads != 0)
            throw UserError.At(source, null, "num_key_value_heads", $"{NumHeads} attention heads are not divisible by {NumKvHeads} key/value heads");
        if (Architecture == Architecture.Llama && HeadDim % 2 != 0)
            throw UserError.At(source, null, "hidden_size", $"RoPE needs an even head size, got {HeadDim}");
        if (Architecture == Architecture.Gpt2 && NumKvHeads != NumHeads)
            throw UserError.At(source, null, "num_key_value_heads", "GPT-2 has no grouped-query attention");
        foreach (var (id, field) in new[] { (BosTokenId, "bos_token_id"), (EosTokenId, "eos_token_id"), (PadTokenId, "pad_token_id") })
            if (id < 0 || id >= VocabSize) throw UserError.At(source, null, field, $"token id {id} is outside the vocabulary of {VocabSize}");
        // One tensor is one float array: sizes past what an array holds are refused here, not overflowed later.
        foreach (var (name, shape) in WeightNames.Shapes(this))
        {
            var elements = shape.Aggregate(1.0, (a, b) => a * b);
            if (elements > Array.MaxLength)
                throw UserError.At(source, null, "hidden_size", $"these sizes make {name} {string.Join("×", shape)} = {elements:N0} values, more than one tensor can hold ({Array.MaxLength:N0})");
        }
        return this;
    }

    /// <summary>Parameters in the canonical weight set (tied embeddings counted once).</summary>
    [JsonIgnore] public long ParameterCount => WeightNames.Shapes(this).Values.Sum(s => s.Aggregate(1L, (a, b) => a * b));
}
