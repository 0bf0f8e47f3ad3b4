using System.Text.Json;
using System.Text.Json.Nodes;
using RlaifOnnx.Core;
using RlaifOnnx.Models;
using RlaifOnnx.Models.Import;

namespace RlaifOnnx.Training;

/// <summary>
/// What a checkpoint's state.json holds besides tensors: optimizer steps taken (the schedule's position
/// and AdamW's bias-correction step), the schedule, and the caller's own state (data order seed, samples
/// consumed …) as JSON — together with the weights and moments, everything a resumed run needs to
/// continue exactly as an uninterrupted one.
/// </summary>
public sealed record CheckpointState(long Step, LrSchedule? Schedule, JsonObject Extra);

/// <summary>
/// Training checkpoints: a folder step-NNNNNNNN/ holding weights.safetensors (the trainable weights),
/// optimizer.safetensors (AdamW's exp_avg.NAME and exp_avg_sq.NAME) and state.json. The folder is
/// written under a temporary name and renamed into place, so a crash leaves either the whole checkpoint
/// or none; <see cref="Latest"/> ignores anything else. Values are float32 bytes as they are in memory,
/// so a resume is bit-for-bit.
/// </summary>
public static class Checkpoint
{
    public const string WeightsFile = "weights.safetensors";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string StateFile = "state.json";
    const string Prefix = "step-";

    static readonly JsonSerializerOptions Json = new(ModelFolder.Json);

    /// <summary>Writes a checkpoint of <paramref name="trainer"/> into <paramref name="root"/>; keeps the newest <paramref name="keep"/>. Returns its folder.</summary>
    public static string Save(string root, Trainer trainer, LrSchedule? schedule, JsonObject extra, int keep = 2)
    {
        Directory.CreateDirectory(root);
        var name = $"{Prefix}{trainer.StepCount:D8}";
        var final = Path.Combine(root, name);
        var temp = Path.Combine(root, $".{name}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(temp);
        try
        {
            var weights = trainer.TrainableWeights();
            SafetensorsFile.Write(Path.Combine(temp, WeightsFile), weights);
            var moments = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
            for (var i = 0; i < trainer.Parameters.Count; i++)
            {
                var p = trainer.Parameters[i];
                moments["exp_avg." + p.Name] = new WeightTensor(p.Shape, trainer.Optimizer.FirstMoments[i]);
                moments["exp_avg_sq." + p.Name] = new WeightTensor(p.Shape, trainer.Optimizer.SecondMoments[i]);
            }
            SafetensorsFile.Write(Path.Combine(temp, OptimizerFile), moments);
            var state = new CheckpointState(trainer.StepCount, schedule, extra);
            AtomicFile.WriteAllText(Path.Combine(temp, StateFile), JsonSerializer.Serialize(state, Json));
            if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
            Directory.Move(temp, final);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
        foreach (var old in Complete(root).SkipLast(keep)) Directory.Delete(old, recursive: true);
        return final;
    }

    /// <summary>
    /// Deletes the temporary folders of checkpoints whose writer died before renaming them (a kill between
    /// creating ".step-N.PID.GUID.tmp" and the rename); a folder whose process is still alive is left alone.
    /// </summary>
    public static void RemoveOrphans(string root)
    {
        if (!Directory.Exists(root)) return;
        foreach (var dir in Directory.GetDirectories(root, $".{Prefix}*.tmp"))
        {
            // ".step-00000010.PID.GUID.tmp"
            var parts = Path.GetFileName(dir).Split('.');
            var pid = parts.Length >= 5 && int.TryParse(parts[2], out var p) ? p : -1;
            if (pid == Environment.ProcessId || (pid > 0 && IsAlive(pid))) continue;
            Directory.Delete(dir, recursive: true);
        }
    }

    static bool IsAlive(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    /// <summary>
    /// Resumes <paramref name="trainer"/> from the newest checkpoint under <paramref name="root"/> when there
    /// is one, after checking it was made with the same <paramref name="settings"/> (kept under "settings" in
    /// its state, as the training commands save them): another run's checkpoint is refused, not continued.
    /// <paramref name="otherOutput"/> names the setting that picks a fresh folder (e.g. "--out"). Returns the
    /// folder resumed from, or null for a fresh start.
    /// </summary>
    public static string? Resume(string root, Trainer trainer, JsonObject settings, string otherOutput)
    {
        RemoveOrphans(root);
        if (Latest(root) is not { } latest) return null;
        var state = Load(latest, trainer);
        var saved = state.Extra["settings"]?.ToJsonString();
        if (saved != settings.ToJsonString())
            throw UserError.At(Path.Combine(latest, StateFile), null, "settings",
                $"this checkpoint was made with {saved}; rerun with those settings or use a new {otherOutput}");
        return latest;
    }

    /// <summary>The newest complete checkpoint folder under <paramref name="root"/>, or null.</summary>
    public static string? Latest(string root) => Directory.Exists(root) ? Complete(root).LastOrDefault() : null;

    static List<string> Complete(string root) => Directory.GetDirectories(root, Prefix + "*")
        .Where(d => File.Exists(Path.Combine(d, StateFile)))
        .OrderBy(d => d, StringComparer.Ordinal).ToList();

    /// <summary>Loads weights and moments into <paramref name="trainer"/>'s buffers (in place) and returns the state.</summary>
    public static CheckpointState Load(string dir, Trainer trainer)
    {
        var statePath = Path.Combine(dir, StateFile);
        CheckpointState state;
        try { state = JsonSerializer.Deserialize<CheckpointState>(File.ReadAllText(statePath), Json) ?? throw UserError.At(statePath, null, null, "is empty"); }
        catch (JsonException e) { throw UserError.At(statePath, (int?)e.LineNumber + 1, e.Path, "malformed checkpoint state"); }
        var first = new List<float[]>();
        var second = new List<float[]>();
        using (var weights = SafetensorsFile.Open(Path.Combine(dir, WeightsFile)))
        using (var moments = SafetensorsFile.Open(Path.Combine(dir, OptimizerFile)))
        {
            foreach (var p in trainer.Parameters)
            {
                CopyInto(weights, p.Name, p.Weight);
                first.Add(CopyInto(moments, "exp_avg." + p.Name, new float[p.Weight.Length]));
                second.Add(CopyInto(moments, "exp_avg_sq." + p.Name, new float[p.Weight.Length]));
            }
        }
        trainer.Optimizer.Restore(state.Step, first, second);
        return state;
    }

    static float[] CopyInto(SafetensorsFile file, string name, float[] destination)
    {
        if (!file.Entries.ContainsKey(name)) throw UserError.At(file.Path, null, name, "tensor is missing from the checkpoint (was it written by a different model or LoRA setting?)");
        var t = file.ReadFloat(name);
        if (t.Data.Length != destination.Length)
            throw UserError.At(file.Path, null, name, $"holds {t.Data.Length} values, the model needs {destination.Length}");
        t.Data.CopyTo(destination, 0);
        return destination;
    }
}
