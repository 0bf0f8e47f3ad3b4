using System.Text.Json;
using System.Text.Json.Nodes;
using RlaifOnnx.Constitution;
using RlaifOnnx.Core;
using RlaifOnnx.Records;

namespace RlaifOnnx.Sandbox;

/// <summary>
/// Writes the sandbox world's files: the prompt sets each stage reads (training prompts from the train
/// side of the split, without <see cref="World.UnseenKind"/>), the held-out evaluation sets, the checks
/// (the exact truth of every request written), the helpfulness comparisons (a correct answer over a wrong
/// one, the stand-in for human helpfulness labels), and optionally the pretraining corpus. Every file is
/// written atomically and is a pure function of the seed and sizes.
/// </summary>
public static class SandboxFiles
{
    /// <summary>Requests per file.</summary>
    public sealed record Sizes(int Revise = 96, int Helpful = 192, int Label = 96, int HelpfulPairs = 96, int PpoHarmful = 64, int PpoBenign = 64,
        int EvalHarmful = 120, int EvalUnseen = 60, int EvalBenign = 120);

    public const string RevisePrompts = "revise_prompts.jsonl";
    public const string HelpfulPrompts = "helpful_prompts.jsonl";
    public const string LabelPrompts = "label_prompts.jsonl";
    public const string HelpfulnessPairs = "helpfulness_pairs.jsonl";
    public const string PpoPrompts = "ppo_prompts.jsonl";
    public const string EvalHarmful = "eval_harmful.jsonl";
    public const string EvalUnseen = "eval_unseen_kind.jsonl";
    public const string EvalBenign = "eval_benign.jsonl";
    public const string Checks = "checks.jsonl";

    /// <summary>Writes the prompt sets and checks into <paramref name="dir"/>; returns the file names written.</summary>
    public static List<string> Write(World world, string dir, Sizes sizes)
    {
        Directory.CreateDirectory(dir);
        var seenKinds = HarmScenarios.Kinds.Where(k => k != World.UnseenKind).ToList();
        var sets = new List<(string File, List<Request> Requests)>
        {
            (RevisePrompts, world.Draw(ResponseCheck.Harmful, false, sizes.Revise, "revise", seenKinds)),
            (HelpfulPrompts, world.Draw(ResponseCheck.Benign, false, sizes.Helpful, "helpful")),
            (LabelPrompts, world.Draw(ResponseCheck.Harmful, false, sizes.Label, "label", seenKinds)),
            // Harmful and benign interleaved, so every rollout batch holds both.
            (PpoPrompts, Interleave(world.Draw(ResponseCheck.Harmful, false, sizes.PpoHarmful, "ppo-harmful", seenKinds),
                                    world.Draw(ResponseCheck.Benign, false, sizes.PpoBenign, "ppo-benign"))),
            (EvalHarmful, world.Draw(ResponseCheck.Harmful, true, sizes.EvalHarmful, "harmful", seenKinds)),
            (EvalUnseen, world.Draw(ResponseCheck.Harmful, true, sizes.EvalUnseen, "unseen", [World.UnseenKind])),
            (EvalBenign, world.Draw(ResponseCheck.Benign, true, sizes.EvalBenign, "benign")),
        };
        foreach (var (file, requests) in sets)
            AtomicFile.WriteAllText(Path.Combine(dir, file), string.Concat(requests.Select(r => Json(new JsonObject { ["id"] = r.Id, ["prompt"] = r.Text }))));

        var pairs = world.Draw(ResponseCheck.Benign, false, sizes.HelpfulPairs, "helpfulness-pairs");
        AtomicFile.WriteAllText(Path.Combine(dir, HelpfulnessPairs), string.Concat(pairs.Select(r => Json(new JsonObject
        {
            ["id"] = r.Id,
            ["prompt"] = r.Text,
            ["chosen"] = r.Compliance,
            ["rejected"] = r.Wrong,
        }))));

        var checks = sets.SelectMany(s => s.Requests).Select(r => r.Check).OrderBy(c => c.Id, StringComparer.Ordinal);
        AtomicFile.WriteAllText(Path.Combine(dir, Checks), string.Concat(checks.Select(c => JsonSerializer.Serialize(c, CheckOptions) + "\n")));
        return [.. sets.Select(s => s.File), HelpfulnessPairs, Checks];
    }

    /// <summary>Writes the pretraining corpus (JSONL) and returns its line count.</summary>
    public static int WriteCorpus(World world, string path, PretrainingCorpus.Sizes sizes, int seed)
    {
        var lines = PretrainingCorpus.Build(world, ConstitutionSet.Load("default"), sizes, seed);
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        AtomicFile.WriteAllText(path, PretrainingCorpus.ToJsonl(lines));
        return lines.Count;
    }

    static List<Request> Interleave(List<Request> a, List<Request> b) =>
        Enumerable.Range(0, Math.Max(a.Count, b.Count)).SelectMany(i => a.Skip(i).Take(1).Concat(b.Skip(i).Take(1))).ToList();

    static string Json(JsonObject o) => o.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n";

    static readonly JsonSerializerOptions CheckOptions = new()
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
    };
}
