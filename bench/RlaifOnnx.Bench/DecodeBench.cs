using System.Diagnostics;
using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Models;

namespace RlaifOnnx.Bench;

/// <summary>
/// Decode throughput of ONNX Runtime GenAI on a ~100M-parameter Llama-style model folder written by
/// <see cref="ModelWriter"/> (random weights, the project's own tokenizer), at batch 1, 8 and 32.
/// Timed from the second generated token (the first includes the prefill) to the last.
/// </summary>
public static class DecodeBench
{
    public static string Run(BenchContext ctx)
    {
        // SmolLM-like shape: 12 layers of width 768, 12 query heads sharing 4 key/value heads, tied 32k vocabulary.
        var config = new ModelConfig
        {
            Architecture = Architecture.Llama, ModelType = "llama", VocabSize = 32000,
            HiddenSize = ctx.Quick ? 256 : 768, NumLayers = ctx.Quick ? 4 : 12, NumHeads = ctx.Quick ? 4 : 12, NumKvHeads = 4,
            IntermediateSize = ctx.Quick ? 688 : 2048, MaxPositions = 1024, TieEmbeddings = true,
            BosTokenId = TinyTokenizer.EndOfTextId, EosTokenId = TinyTokenizer.ImEndId, PadTokenId = TinyTokenizer.EndOfTextId,
        };
        var dir = Path.Combine(ctx.WorkDir, "decode-model");
        var sw = Stopwatch.StartNew();
        ModelWriter.Write(dir, config, WeightSet.Random(config, seed: 1), TinyTokenizer.Train(512), "base", []);
        Console.Error.WriteLine($"   model folder ({config.ParameterCount:N0} parameters) written in {sw.Elapsed.TotalSeconds:F1} s");

        const string prompt = "The assistant reads the question carefully, then answers in clear and simple words.";
        var newTokens = ctx.Quick ? 8 : 32;
        using var genaiConfig = new Config(dir);
        using var model = new Model(genaiConfig);
        using var tokenizer = new Tokenizer(model);
        int promptTokens;
        using (var encoded = tokenizer.Encode(prompt)) promptTokens = encoded[0].Length;
        var rows = new List<string>();
        var throughput = new Dictionary<int, double>();
        foreach (var batch in new[] { 1, 8, 32 })
        {
            using var genParams = new GeneratorParams(model);
            genParams.SetSearchOption("max_length", promptTokens + newTokens);
            genParams.SetSearchOption("min_length", promptTokens + newTokens); // never stop early at a random EOS
            genParams.SetSearchOption("do_sample", false);
            genParams.SetSearchOption("batch_size", batch);
            using var generator = new Generator(model, genParams);
            using var prompts = tokenizer.EncodeBatch(Enumerable.Repeat(prompt, batch).ToArray());
            generator.AppendTokenSequences(prompts);
            generator.GenerateNextToken(); // first token: prefill
            var steps = 0;
            var timer = Stopwatch.StartNew();
            while (!generator.IsDone()) { generator.GenerateNextToken(); steps++; }
            var seconds = timer.Elapsed.TotalSeconds;
            throughput[batch] = batch * steps / seconds;
            // ≈ 2 FLOPs per parameter per token (the tied embedding counts once: as the output projection).
            var mfu = ctx.GemmPeakFlops is { } peak ? $"{2.0 * config.ParameterCount * throughput[batch] / peak:P1}" : "n/a";
            rows.Add($"| {batch} | {throughput[batch]:F1} | {seconds / steps * 1000:F1} | {mfu} |");
        }
        return $"""
            ## Decode throughput (ONNX Runtime GenAI, Llama-style, {config.ParameterCount / 1e6:F0}M parameters)

            {config.NumLayers} layers, hidden {config.HiddenSize}, {config.NumHeads} heads / {config.NumKvHeads} kv heads, MLP {config.IntermediateSize}, vocab {config.VocabSize} (tied); fp32, CPU;
            prompt {promptTokens} tokens, {newTokens} new tokens per row, greedy; timed after the first (prefill) token.

            | batch | tokens/s | ms per step | MFU (vs GEMM peak) |
            |---|---|---|---|
            {string.Join("\n", rows)}

            Batch 32 / batch 1 throughput: **{throughput[32] / throughput[1]:F1}×**.

            """;
    }
}
