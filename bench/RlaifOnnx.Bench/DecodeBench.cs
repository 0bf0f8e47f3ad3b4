using System.Diagnostics;
using System.Text;
using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Bench;

/// <summary>
/// Decode throughput of a ~100M-parameter Llama-style model folder run by ONNX Runtime GenAI, greedy, EOS
/// suppressed with min_length so every row makes the same count:
/// - the time of one decoder step at batch 1, without the prompt's prefill: the difference between two
///   generate calls that differ only in how many tokens they make, divided by that difference — for the
///   inference graph in ONNX Runtime's fused CPU operators (what ModelWriter writes) and, side by side in
///   the same run, the same weights in the standard-operator graph;
/// - new tokens per second over whole generate calls (prefill included) at batch 1, 8 and 32;
/// - memory bandwidth over a range of working-set sizes, and batch 1's step against the ceiling the
///   bandwidth at the weights' own size sets.
/// </summary>
public static class DecodeBench
{
    /// <summary>hidden 768, 12 layers, 12 heads / 4 KV heads, SwiGLU 2048, vocab 32000, tied: ~100M parameters.</summary>
    public static ModelConfig HundredMillionLlama(int vocab = 32000) => new()
    {
        Architecture = Architecture.Llama, ModelType = "llama", VocabSize = vocab, HiddenSize = 768, NumLayers = 12,
        NumHeads = 12, NumKvHeads = 4, IntermediateSize = 2048, MaxPositions = 1024, TieEmbeddings = true,
        BosTokenId = TinyTokenizer.EndOfTextId, EosTokenId = TinyTokenizer.ImEndId, PadTokenId = TinyTokenizer.EndOfTextId,
    };

    const int PromptLength = 16;

    public static string Run(BenchContext ctx)
    {
        var config = HundredMillionLlama();
        var fusedDir = Path.Combine(ctx.WorkDir, "llama-100m");
        var standardDir = Path.Combine(ctx.WorkDir, "llama-100m-standard-ops");
        if (!Directory.Exists(fusedDir))
            ModelWriter.Write(fusedDir, config, WeightSet.Random(config, seed: 1), TinyTokenizer.Train(config.VocabSize), "base", []);
        if (!Directory.Exists(standardDir)) WriteStandardCopy(fusedDir, standardDir, config);
        int Nodes(string dir) => OnnxFile.Load(Path.Combine(dir, ModelFolder.ModelFile), loadExternalData: false).Graph.Node.Count;

        // 1. One decoder step at batch 1, both graphs, rounds interleaved so load on the machine hits both alike.
        int shortRun = ctx.Quick ? 8 : 16, longRun = ctx.Quick ? 40 : 112, rounds = ctx.Quick ? 2 : 3;
        var step = new Dictionary<string, double> { ["fused"] = double.MaxValue, ["standard"] = double.MaxValue };
        var medianStep = new Dictionary<string, double>();
        var rate = new Dictionary<int, double>();
        using (var fused = new Model(fusedDir))
        using (var standard = new Model(standardDir))
        {
            foreach (var m in new[] { fused, standard }) Generate(m, 1, 4, out _);   // warm-up: kernels, arenas, prepacked weights
            for (var r = 0; r < rounds; r++)
                foreach (var (name, m) in new[] { ("fused", fused), ("standard", standard) })
                {
                    var shortSeconds = Generate(m, 1, shortRun, out _);
                    var longSeconds = Generate(m, 1, longRun, out var steps);
                    step[name] = Math.Min(step[name], (longSeconds - shortSeconds) / (longRun - shortRun));
                    medianStep[name] = steps.Order().ElementAt(steps.Count / 2);
                }
            // 2. Whole generate calls (prefill included) at batch 1, 8, 32 on the graph ModelWriter writes.
            var newTokens = ctx.Quick ? 16 : 64;
            foreach (var b in new[] { 1, 8, 32 })
                rate[b] = (double)b * newTokens / Generate(fused, b, newTokens, out _);
        }

        // 3. Memory bandwidth by working-set size, including the weights' own size.
        var weightBytes = 4.0 * config.ParameterCount;
        var sweep = MemoryBandwidth.Sweep(ctx.Quick, (long)weightBytes);
        var atWeights = sweep.First(p => p.WorkingSetBytes == (long)weightBytes);
        var largest = sweep[^1];
        var sweepRows = MemoryBandwidth.Table(sweep, (long)weightBytes, "the weights' size");
        var ceiling = atWeights.ReadBytesPerSecond / weightBytes;      // tokens/s if a step only streamed the weights
        string Share(double seconds) => $"{100 / seconds / ceiling:F0}%";

        var batchRows = string.Join("\n", new[] { 1, 8, 32 }.Select(b => $"| {b} | {rate[b]:F1} | {rate[b] / rate[1]:F2}× |"));
        return $"""
            ## Decode throughput (ONNX Runtime GenAI, {config.ParameterCount / 1e6:F1}M-parameter Llama-style model, CPU)

            ### Batch 1 against its memory-bandwidth limit

            A decoder step at batch 1 reads every weight once ({weightBytes / 1e9:F2} GB of float32 weights; the tied
            embedding is read whole as the LM head), so its ceiling is bandwidth ÷ those bytes. Bandwidth by working-set
            size (all cores, best of several passes; triad a = b + s·c counts 3 × 4 bytes per element, read = a sum over
            one buffer, 4 bytes per element):

            {sweepRows}

            The reported L3 size here is {Machine.LastLevelCache()}; the figures fall to
            {largest.ReadBytesPerSecond / 1e9:F1} GB/s (read) at {largest.WorkingSetBytes / 1e9:F1} GB. The weights are a
            {weightBytes / 1e9:F2} GB working set read once per step, so the ceiling uses the **read bandwidth at that size,
            {atWeights.ReadBytesPerSecond / 1e9:F1} GB/s: at most {ceiling:F1} tokens/s**.

            Decoder step time at batch 1 without the prefill: (time of a {longRun}-token generate − time of a
            {shortRun}-token one, same {PromptLength}-token prompt) ÷ {longRun - shortRun}, best of {rounds} rounds, both graphs
            interleaved in one process; the median of the single steps of the last long call is a check.

            | inference graph | nodes | ms per step | median single step ms | tokens/s (decode only) | of the ceiling |
            |---|---:|---:|---:|---:|---:|
            | fused CPU operators (written by ModelWriter) | {Nodes(fusedDir)} | {1e3 * step["fused"]:F2} | {1e3 * medianStep["fused"]:F2} | {1 / step["fused"]:F1} | **{Share(step["fused"])}** |
            | standard operators only (same weights) | {Nodes(standardDir)} | {1e3 * step["standard"]:F2} | {1e3 * medianStep["standard"]:F2} | {1 / step["standard"]:F1} | {Share(step["standard"])} |

            Fused over standard: **{step["standard"] / step["fused"]:F2}×** per decode step. Goal: a batch-1 decode step at
            ≥ 80% of the ceiling (the share above compares decode steps only; the prefill is excluded).

            ### Whole generate calls

            Prompt {PromptLength} tokens, {(ctx.Quick ? 16 : 64)} new tokens per row, greedy, fused graph; tokens/s counts new tokens
            of all rows over the whole generate call (prefill included).

            | batch | new tokens/s | vs batch 1 |
            |---|---|---|
            {batchRows}

            Batch 32 over batch 1: **{rate[32] / rate[1]:F2}×** (goal ≥ 4×).

            """;
    }

    /// <summary>A copy of a model folder whose model.onnx is the standard-operator graph over the same weights.</summary>
    static void WriteStandardCopy(string fusedDir, string standardDir, ModelConfig config)
    {
        var weights = ModelFolder.ReadWeights(fusedDir);
        var temp = standardDir + ".tmp";
        Directory.CreateDirectory(temp);
        foreach (var file in Directory.GetFiles(fusedDir))
            if (Path.GetFileName(file) is not (ModelFolder.ModelFile or ModelFolder.DataFile))
                File.Copy(file, Path.Combine(temp, Path.GetFileName(file)));
        OnnxFile.Save(LlamaGraph.Inference(config, weights, fusedOperators: false), Path.Combine(temp, ModelFolder.ModelFile), ModelFolder.DataFile);
        Directory.Move(temp, standardDir);
    }

    /// <summary>
    /// Generates <paramref name="newTokens"/> for each of <paramref name="batch"/> rows after a 16-token prompt;
    /// returns the whole call's seconds and the time of each GenerateNextToken.
    /// </summary>
    static double Generate(Model model, int batch, int newTokens, out List<double> stepSeconds)
    {
        var sw = Stopwatch.StartNew();
        using var parameters = new GeneratorParams(model);
        parameters.SetSearchOption("batch_size", batch);
        parameters.SetSearchOption("max_length", PromptLength + newTokens);
        parameters.SetSearchOption("min_length", PromptLength + newTokens);
        parameters.SetSearchOption("do_sample", false);
        using var generator = new Generator(model, parameters);
        var rng = new Random(batch);
        var prompt = new int[batch * PromptLength];
        for (var i = 0; i < prompt.Length; i++) prompt[i] = rng.Next(300, 30000);
        generator.AppendTokens(prompt);
        stepSeconds = [];
        while (!generator.IsDone())
        {
            var t = sw.Elapsed.TotalSeconds;
            generator.GenerateNextToken();
            stepSeconds.Add(sw.Elapsed.TotalSeconds - t);
        }
        return sw.Elapsed.TotalSeconds;
    }
}
