using System.Text.Json.Nodes;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Models;

/// <summary>
/// Picks the canonical graph builder for a config's architecture. Every caller that needs a model's
/// inference graph, training graph or genai_config.json comes through here; a plain switch, one arm
/// per family.
/// </summary>
public static class DecoderGraphs
{
    /// <summary>The inference graph (weights as initializers, KV cache in GenAI's layout).</summary>
    public static ModelProto Inference(ModelConfig config, WeightSet weights) => config.Architecture switch
    {
        Architecture.Llama => LlamaGraph.Inference(config, weights),
        Architecture.Gpt2 => Gpt2Graph.Inference(config, weights),
        _ => throw new ArgumentOutOfRangeException(nameof(config), config.Architecture, null),
    };

    /// <summary>The training graph (no cache, every canonical weight a graph input) in Float or Double.</summary>
    public static ModelProto Training(ModelConfig config, DataType floatType) => config.Architecture switch
    {
        Architecture.Llama => LlamaGraph.Training(config, floatType),
        Architecture.Gpt2 => Gpt2Graph.Training(config, floatType),
        _ => throw new ArgumentOutOfRangeException(nameof(config), config.Architecture, null),
    };

    /// <summary>
    /// Emits the decoder without its LM head into <paramref name="g"/> (no cache): the final-normed hidden
    /// state [B, S, h]. The caller declares the inputs and the weights (by canonical name).
    /// </summary>
    internal static string FinalHidden(GraphBuilder g, ModelConfig config, string inputIds, string attentionMask, string positionIds) => config.Architecture switch
    {
        Architecture.Llama => LlamaGraph.FinalHidden(g, config, inputIds, attentionMask, positionIds),
        Architecture.Gpt2 => Gpt2Graph.FinalHidden(g, config, inputIds, attentionMask, positionIds),
        _ => throw new ArgumentOutOfRangeException(nameof(config), config.Architecture, null),
    };

    /// <summary>
    /// The residual stream entering layer <paramref name="layer"/> (the embeddings for 0, the final norm's input for
    /// num_layers) in the training graphs that name it (Llama's), e.g. for gradient checkpointing.
    /// </summary>
    public static string LayerInput(int layer) => $"layer{layer}/input";

    /// <summary>The <see cref="LayerInput"/> values a forward graph has, in layer order (none for a graph that does not name them).</summary>
    public static IReadOnlyList<string> LayerInputs(ModelProto forward)
    {
        var produced = forward.Graph.Node.SelectMany(n => n.Output).ToHashSet(StringComparer.Ordinal);
        var found = new List<string>();
        for (var i = 0; produced.Contains(LayerInput(i)); i++) found.Add(LayerInput(i));
        return found;
    }

    /// <summary>The whole genai_config.json for a model folder holding this config's inference graph.</summary>
    public static JsonObject GenAIConfig(ModelConfig config)
    {
        var decoder = config.Architecture switch
        {
            Architecture.Llama => LlamaGraph.GenAIDecoderSection(config),
            Architecture.Gpt2 => Gpt2Graph.GenAIDecoderSection(config),
            _ => throw new ArgumentOutOfRangeException(nameof(config), config.Architecture, null),
        };
        return new JsonObject
        {
            ["model"] = new JsonObject
            {
                // GenAI picks its decoder-only pipeline from "type": llama, qwen2, mistral and gpt2 all run it.
                ["type"] = config.ModelType,
                ["bos_token_id"] = config.BosTokenId,
                ["eos_token_id"] = config.EosTokenId,
                ["pad_token_id"] = config.PadTokenId,
                ["vocab_size"] = config.VocabSize,
                ["context_length"] = config.MaxPositions,
                ["decoder"] = decoder,
            },
            ["search"] = new JsonObject
            {
                ["diversity_penalty"] = 0.0,
                ["do_sample"] = false,
                ["early_stopping"] = true,
                ["length_penalty"] = 1.0,
                ["max_length"] = config.MaxPositions,
                ["min_length"] = 0,
                ["no_repeat_ngram_size"] = 0,
                ["num_beams"] = 1,
                ["num_return_sequences"] = 1,
                // Our graphs concatenate past and new keys (present is a new, longer tensor), so GenAI
                // must not share one buffer between past and present.
                ["past_present_share_buffer"] = false,
                ["repetition_penalty"] = 1.0,
                ["temperature"] = 1.0,
                ["top_k"] = 1,
                ["top_p"] = 1.0,
            },
        };
    }
}
