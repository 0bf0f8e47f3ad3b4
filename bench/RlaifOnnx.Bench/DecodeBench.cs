using System.Diagnostics;
using System.Text;
using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Inference;
using RlaifOnnx.Models;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Bench;

/// <summary>
/// Decode throughput of a ~100M-parameter Llama-style model folder run by ONNX Runtime GenAI, greedy, EOS
/// suppressed with min_length so every row makes the same count:
/// - the time of one decoder step at batch 1, without the prompt's prefill: the difference between two
///   generate calls that differ only in how many tokens they make, divided by that difference — for the
///   folder ModelWriter writes (with GenAIGenerator's threads and with GenAI's default) and, side by side
///   in the same run, the same weights with attention in GroupQueryAttention and in the standard-operator graph;
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

    /// <summary>One row of the batch-1 comparison: a model folder opened with one set of GenAI session options.</summary>
    sealed record Variant(string Key, string Description, string Dir, string? Overlay);

    public static string Run(BenchContext ctx)
    {
        var config = HundredMillionLlama();
        var fusedDir = Path.Combine(ctx.WorkDir, "llama-100m");
        var gqaDir = Path.Combine(ctx.WorkDir, "llama-100m-group-query-attention");
        var standardDir = Path.Combine(ctx.WorkDir, "llama-100m-standard-ops");
        if (!Directory.Exists(fusedDir))
            ModelWriter.Write(fusedDir, config, WeightSet.Random(config, seed: 1), TinyTokenizer.Train(config.VocabSize), "base", []);
        if (!Directory.Exists(gqaDir)) WriteCopy(fusedDir, gqaDir, w => LlamaGraph.Inference(config, w, groupQueryAttention: true));
        if (!Directory.Exists(standardDir)) WriteCopy(fusedDir, standardDir, w => LlamaGraph.Inference(config, w, fusedOperators: false));
        int Nodes(string dir) => OnnxFile.Load(Path.Combine(dir, ModelFolder.ModelFile), loadExternalData: false).Graph.Node.Count;

        // GenAIGenerator's session options (one thread per physical core), and GenAI's own default when the thread
        // count is left out: half the logical processors.
        var inference = new InferenceOptions();
        var ours = GenAIGenerator.SessionOptionsOverlay(inference);
        var genAIDefaultThreads = Math.Max(1, Environment.ProcessorCount / 2);
        Variant[] variants =
        [
            new("fused", $"fused CPU operators (written by ModelWriter), {inference.IntraOpThreadsOrPhysicalCores} threads (GenAIGenerator)", fusedDir, ours),
            new("before", $"the same graph, GenAI's default threads ({genAIDefaultThreads}): before", fusedDir, null),
            new("gqa", $"fused with attention in GroupQueryAttention (not written), {inference.IntraOpThreadsOrPhysicalCores} threads", gqaDir, ours),
            new("shared", $"the same, GenAI's past_present_share_buffer on", gqaDir, SharedBuffer(ours)),
            new("standard", $"standard operators only, {inference.IntraOpThreadsOrPhysicalCores} threads", standardDir, ours),
        ];

        // 1. One decoder step at batch 1, all variants, rounds interleaved so load on the machine hits them alike.
        int shortRun = ctx.Quick ? 8 : 16, longRun = ctx.Quick ? 40 : 112, rounds = ctx.Quick ? 2 : 3;
        var step = variants.ToDictionary(v => v.Key, _ => double.MaxValue);
        var medianStep = new Dictionary<string, double>();
        var rate = new Dictionary<int, double>();
        var models = variants.Select(v => Open(v.Dir, v.Overlay)).ToArray();
        try
        {
            foreach (var m in models) Generate(m, 1, 4, out _);   // warm-up: kernels, arenas, prepacked weights
            for (var r = 0; r < rounds; r++)
                for (var i = 0; i < variants.Length; i++)
                {
                    var shortSeconds = Generate(models[i], 1, shortRun, out _);
                    var longSeconds = Generate(models[i], 1, longRun, out var steps);
                    step[variants[i].Key] = Math.Min(step[variants[i].Key], (longSeconds - shortSeconds) / (longRun - shortRun));
                    medianStep[variants[i].Key] = steps.Order().ElementAt(steps.Count / 2);
                }
            // 2. Whole generate calls (prefill included) at batch 1, 8, 32 on the folder ModelWriter writes.
            var newTokens = ctx.Quick ? 16 : 64;
            foreach (var b in new[] { 1, 8, 32 })
                rate[b] = (double)b * newTokens / Generate(models[0], b, newTokens, out _);
        }
        finally
        {
            foreach (var m in models) m.Dispose();
        }

        // 3. Memory bandwidth by working-set size, including the weights' own size.
        var weightBytes = 4.0 * config.ParameterCount;
        var sweep = MemoryBandwidth.Sweep(ctx.Quick, (long)weightBytes);
        var atWeights = sweep.First(p => p.WorkingSetBytes == (long)weightBytes);
        var largest = sweep[^1];
        var sweepRows = MemoryBandwidth.Table(sweep, (long)weightBytes, "the weights' size");
        var ceiling = atWeights.ReadBytesPerSecond / weightBytes;      // tokens/s if a step only streamed the weights
        string Share(double seconds) => $"{100 / seconds / ceiling:F0}%";

        var stepRows = string.Join("\n", variants.Select((v, i) =>
        {
            var bold = i == 0 ? "**" : "";
            return $"| {v.Description} | {Nodes(v.Dir)} | {1e3 * step[v.Key]:F2} | {1e3 * medianStep[v.Key]:F2} | {1 / step[v.Key]:F1} | {bold}{Share(step[v.Key])}{bold} |";
        }));
        var batchRows = string.Join("\n", new[] { 1, 8, 32 }.Select(b => $"| {b} | {rate[b]:F1} | {rate[b] / rate[1]:F2}× |"));
        return $"""
            ## Decode throughput (ONNX Runtime GenAI, {config.ParameterCount / 1e6:F1}M-parameter Llama-style model, CPU)

            ### Batch 1 against its memory-bandwidth limit

            A decoder step at batch 1 reads every weight once ({weightBytes / 1e9:F2} GB of float32 weights; the tied
            embedding is read whole as the LM head), so its ceiling is bandwidth ÷ those bytes. Bandwidth by working-set
            size (all {Environment.ProcessorCount} cores, best of several passes; triad a = b + s·c counts 3 × 4 bytes per element, read = a sum over
            one buffer, 4 bytes per element):

            {sweepRows}

            The reported L3 size here is {Machine.LastLevelCache()}; the figures fall to
            {largest.ReadBytesPerSecond / 1e9:F1} GB/s (read) at {largest.WorkingSetBytes / 1e9:F1} GB. The weights are a
            {weightBytes / 1e9:F2} GB working set read once per step, so the ceiling uses the **read bandwidth at that size,
            {atWeights.ReadBytesPerSecond / 1e9:F1} GB/s: at most {ceiling:F1} tokens/s ({1e3 / ceiling:F2} ms a step)**.

            The graph GenAI runs (what ModelWriter writes): ONNX Runtime's fused CPU operators — SimplifiedLayerNormalization,
            SkipSimplifiedLayerNormalization (residual Add fused into the next norm), RotaryEmbedding on q and k from
            position_ids, QuickGelu for SiLU, FusedMatMul with transB for the tied LM head — and attention as
            a broadcasting MatMul over the grouped KV heads with the padding-and-causal mask added (OrtScorer runs the same
            model.onnx, batched suffixes after a cache included). The GroupQueryAttention rows run the same weights with
            attention in com.microsoft GroupQueryAttention (mask as its attention bias; ONNX Runtime refuses a several-token
            suffix after a cache at batch > 1 there, so OrtScorer could not share the file). GenAIGenerator gives GenAI's
            session one thread per physical core
            ({inference.IntraOpThreadsOrPhysicalCores} here); left out, GenAI takes half the logical processors
            ({genAIDefaultThreads} here), and fewer cores stream the weights slower than all of them.

            Decoder step time at batch 1 without the prefill: (time of a {longRun}-token generate − time of a
            {shortRun}-token one, same {PromptLength}-token prompt) ÷ {longRun - shortRun}, best of {rounds} rounds, all rows
            interleaved in one process; the median of the single steps of the last long call is a check.

            | inference graph and session | nodes | ms per step | median single step ms | tokens/s (decode only) | of the ceiling |
            |---|---:|---:|---:|---:|---:|
            {stepRows}

            A share above 100% says the step streamed its weights faster than the read kernel read a buffer of the same size
            in this run: the bandwidth is measured minutes apart from the steps, other processes' memory traffic on a shared
            machine changes in between, and a last-level cache reported as {Machine.LastLevelCache()} may hold part of the
            weights; the ceiling is then an estimate, not a bound, and only rows of one run compare.

            Now over before: **{step["before"] / step["fused"]:F2}×** per decode step. GroupQueryAttention over the written graph,
            same threads: {step["fused"] / step["gqa"]:F2}× ({step["fused"] / step["shared"]:F2}× with GenAI's past_present_share_buffer,
            which allocates every cache at max_length up front). Goal: a batch-1 decode step at ≥ 80% of the ceiling (the share compares decode
            steps only; the prefill is excluded).

            ### Whole generate calls

            Prompt {PromptLength} tokens, {(ctx.Quick ? 16 : 64)} new tokens per row, greedy, the folder ModelWriter writes with
            GenAIGenerator's threads ({inference.IntraOpThreadsOrPhysicalCores}); tokens/s counts new tokens of all rows over the whole generate call (prefill included).

            | batch | new tokens/s | vs batch 1 |
            |---|---|---|
            {batchRows}

            Batch 32 over batch 1: **{rate[32] / rate[1]:F2}×** (goal ≥ 4×).

            """;
    }

    /// <summary>An overlay that also turns on GenAI's past_present_share_buffer (one max_length cache buffer, written in place).</summary>
    static string SharedBuffer(string overlay)
    {
        var json = System.Text.Json.Nodes.JsonNode.Parse(overlay)!.AsObject();
        json["search"] = new System.Text.Json.Nodes.JsonObject { ["past_present_share_buffer"] = true };
        return json.ToJsonString();
    }

    /// <summary>A GenAI model over a folder, with a genai_config.json overlay when given.</summary>
    static Model Open(string dir, string? overlay)
    {
        using var config = new Config(dir);
        if (overlay is not null) config.Overlay(overlay);
        return new Model(config);
    }

    /// <summary>A copy of a model folder whose model.onnx is another graph over the same weights.</summary>
    static void WriteCopy(string fromDir, string toDir, Func<WeightSet, global::Onnx.ModelProto> graph)
    {
        var weights = ModelFolder.ReadWeights(fromDir);
        var temp = toDir + ".tmp";
        Directory.CreateDirectory(temp);
        foreach (var file in Directory.GetFiles(fromDir))
            if (Path.GetFileName(file) is not (ModelFolder.ModelFile or ModelFolder.DataFile))
                File.Copy(file, Path.Combine(temp, Path.GetFileName(file)));
        OnnxFile.Save(graph(weights), Path.Combine(temp, ModelFolder.ModelFile), ModelFolder.DataFile);
        Directory.Move(temp, toDir);
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
