using RlaifOnnx.Models;

namespace RlaifOnnx.Bench;

/// <summary>
/// The training's peak resident set split into what the math needs — float32 weights, gradients, AdamW's
/// two moments (4 + 4 + 8 bytes per parameter) and the activations a textbook backward pass keeps — and
/// the rest (runtime and libraries, ONNX Runtime's intermediate buffers beyond those, allocator slack).
///
/// Activations kept per token and layer (float32 elements): the input and output of both RMSNorms (4h),
/// q (h), k and v (2·kvH·D), the softmax probabilities (H·T), the attention output before o_proj (h), and
/// the MLP's gate, up and silu(gate)·up (3·I); after the layers the final norm's input and output (2h) and
/// one [V] row of log-probabilities for the cross-entropy's gradient. This is what PyTorch's autograd saves
/// for this model (Korthikanti et al. 2022, §4, counted for this architecture without dropout).
/// </summary>
public sealed record MemoryAccount(ModelConfig Config, long Parameters, int Batch, int Length,
    long ResidentBefore, long ResidentBetweenSteps, long ResidentPeak)
{
    public long Weights => 4 * Parameters;
    public long Gradients => 4 * Parameters;
    public long AdamWMoments => 8 * Parameters;

    public long ActivationsNeeded
    {
        get
        {
            var c = Config;
            long h = c.HiddenSize, kv = c.NumKvHeads * c.HeadDim, perLayer = 6 * h + 2 * kv + c.NumHeads * (long)Length + 3L * c.IntermediateSize;
            var perToken = c.NumLayers * perLayer + 2 * h + c.VocabSize;
            return 4 * perToken * Batch * Length;
        }
    }

    public long Needed => Weights + Gradients + AdamWMoments + ActivationsNeeded;

    public string Section()
    {
        static string G(long bytes) => $"{bytes / (1024.0 * 1024 * 1024):F2} GiB";
        var goal = 1.5 * Needed;
        var rest = ResidentPeak - ResidentBefore - Needed;
        return $"""
            ### Memory of the training (resident set from /proc/self/status)

            | part | size |
            |---|---:|
            | weights (float32, 4·N) | {G(Weights)} |
            | gradients (4·N) | {G(Gradients)} |
            | AdamW moments m and v (8·N) | {G(AdamWMoments)} |
            | activations the math needs (see below) | {G(ActivationsNeeded)} |
            | **needed: the four above** | **{G(Needed)}** |
            | measured: resident before the training (runtime, libraries, earlier benchmarks) | {G(ResidentBefore)} |
            | measured: resident between steps (adds weights, gradients, moments, sessions, kept buffers) | {G(ResidentBetweenSteps)} |
            | measured: peak during the training | **{G(ResidentPeak)}** |
            | a step's transient peak (peak − between steps): activations and ONNX Runtime's buffers | {G(ResidentPeak - ResidentBetweenSteps)} |
            | rest (peak − before − needed): buffers beyond the math's, allocator slack | {G(rest)} |

            Peak above the process's resting size: {G(ResidentPeak - ResidentBefore)} = **{(ResidentPeak - ResidentBefore) / (double)Needed:F2}×** the needed
            {G(Needed)} (goal ≤ 1.5×, i.e. ≤ {G((long)goal)}). Activations counted per token and layer: the input and output
            of both RMSNorms, q, k, v, the softmax probabilities (heads × T), the attention output, gate, up and silu(gate)·up;
            plus the final norm and one vocabulary row of log-probabilities per token.

            """;
    }
}
