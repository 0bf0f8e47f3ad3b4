namespace RlaifOnnx.Models;

/// <summary>
/// The canonical weight names and shapes of each family: Hugging Face's parameter names, with every
/// linear weight stored in MatMul layout [in, out] (nn.Linear's [out, in] transposed; GPT-2's Conv1D
/// already is). These names are the initializer names of every inference graph we write, so a model
/// folder's model.onnx is also its weight store.
/// </summary>
public static class WeightNames
{
    public static Dictionary<string, long[]> Shapes(ModelConfig c) => c.Architecture switch
    {
        Architecture.Llama => LlamaShapes(c),
        Architecture.Gpt2 => Gpt2Shapes(c),
        _ => throw new ArgumentOutOfRangeException(nameof(c)),
    };

    public static string LlamaLayer(int i, string rest) => $"model.layers.{i}.{rest}";
    public static string Gpt2Layer(int i, string rest) => $"transformer.h.{i}.{rest}";

    static Dictionary<string, long[]> LlamaShapes(ModelConfig c)
    {
        long h = c.HiddenSize, q = c.NumHeads * c.HeadDim, kv = c.NumKvHeads * c.HeadDim, m = c.IntermediateSize;
        var s = new Dictionary<string, long[]> { ["model.embed_tokens.weight"] = [c.VocabSize, h] };
        for (var i = 0; i < c.NumLayers; i++)
        {
            s[LlamaLayer(i, "input_layernorm.weight")] = [h];
            s[LlamaLayer(i, "self_attn.q_proj.weight")] = [h, q];
            s[LlamaLayer(i, "self_attn.k_proj.weight")] = [h, kv];
            s[LlamaLayer(i, "self_attn.v_proj.weight")] = [h, kv];
            if (c.AttentionBias)
            {
                s[LlamaLayer(i, "self_attn.q_proj.bias")] = [q];
                s[LlamaLayer(i, "self_attn.k_proj.bias")] = [kv];
                s[LlamaLayer(i, "self_attn.v_proj.bias")] = [kv];
            }
            s[LlamaLayer(i, "self_attn.o_proj.weight")] = [q, h];
            s[LlamaLayer(i, "post_attention_layernorm.weight")] = [h];
            s[LlamaLayer(i, "mlp.gate_proj.weight")] = [h, m];
            s[LlamaLayer(i, "mlp.up_proj.weight")] = [h, m];
            s[LlamaLayer(i, "mlp.down_proj.weight")] = [m, h];
        }
        s["model.norm.weight"] = [h];
        if (!c.TieEmbeddings) s["lm_head.weight"] = [h, c.VocabSize];
        return s;
    }

    static Dictionary<string, long[]> Gpt2Shapes(ModelConfig c)
    {
        long h = c.HiddenSize, m = c.IntermediateSize;
        var s = new Dictionary<string, long[]>
        {
            ["transformer.wte.weight"] = [c.VocabSize, h],
            ["transformer.wpe.weight"] = [c.MaxPositions, h],
        };
        for (var i = 0; i < c.NumLayers; i++)
        {
            s[Gpt2Layer(i, "ln_1.weight")] = [h];
            s[Gpt2Layer(i, "ln_1.bias")] = [h];
            s[Gpt2Layer(i, "attn.c_attn.weight")] = [h, 3 * h];
            s[Gpt2Layer(i, "attn.c_attn.bias")] = [3 * h];
            s[Gpt2Layer(i, "attn.c_proj.weight")] = [h, h];
            s[Gpt2Layer(i, "attn.c_proj.bias")] = [h];
            s[Gpt2Layer(i, "ln_2.weight")] = [h];
            s[Gpt2Layer(i, "ln_2.bias")] = [h];
            s[Gpt2Layer(i, "mlp.c_fc.weight")] = [h, m];
            s[Gpt2Layer(i, "mlp.c_fc.bias")] = [m];
            s[Gpt2Layer(i, "mlp.c_proj.weight")] = [m, h];
            s[Gpt2Layer(i, "mlp.c_proj.bias")] = [h];
        }
        s["transformer.ln_f.weight"] = [h];
        s["transformer.ln_f.bias"] = [h];
        return s;
    }
}
