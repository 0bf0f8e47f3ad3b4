using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Onnx;
using RlaifOnnx.Stages;
using RlaifOnnx.Training;

namespace RlaifOnnx.Tests.Training;

/// <summary>
/// PPO takes log-probs of the distribution rollouts sample from, softmax(logits / T), everywhere: the rollout
/// log-prob graph (policy and reference) and the policy loss graph share <see cref="Losses.Tempered"/>.
/// </summary>
public sealed class PpoTemperatureTests
{
    /// <summary>log π(ids[t+1] | ids[..t]) of softmax(logits / T) for the logits [1, 2, 3] then [0.5, −1, 2], ids [?, 2, 0].</summary>
    static double[] ShiftedLogProbs(double temperature)
    {
        var g = new GraphBuilder("tempered", DataType.Double);
        var logits = g.Input("logits", DataType.Double, 1, 3, 3);
        var ids = g.Input("input_ids", DataType.Int64, 1, 3);
        g.OutputAs(Losses.ShiftedTokenLogProbs(g, Losses.Tempered(g, logits, temperature), ids), "out", DataType.Double);
        var outputs = GradientCheck.Run(g.ToModel(), new Dictionary<string, GradTensor>
        {
            ["logits"] = new([1, 3, 3], Doubles: [1, 2, 3, 0.5, -1, 2, 0, 0, 0]),
            ["input_ids"] = new([1, 3], Longs: [1, 2, 0]),
        }, DataType.Double);
        return outputs["out"];
    }

    [Fact]
    public void Log_probs_are_those_of_the_logits_divided_by_the_temperature()
    {
        // T = 0.5: log-softmax([2, 4, 6])[2] = 6 − log(e² + e⁴ + e⁶) = −0.14293162849989915.
        Assert.Equal(-0.14293162849989915, ShiftedLogProbs(0.5)[0], 12);
        // T = 0.7 at the second position: log-softmax([0.5, −1, 2] / 0.7)[0] = −4.408889824833571 … for id 0:
        // 0.5/0.7 − log(e^(0.5/0.7) + e^(−1/0.7) + e^(2/0.7)).
        Assert.Equal(0.5 / 0.7 - Math.Log(Math.Exp(0.5 / 0.7) + Math.Exp(-1 / 0.7) + Math.Exp(2 / 0.7)), ShiftedLogProbs(0.7)[1], 12);
        // T = 1 adds no node: the raw log-softmax.
        Assert.Equal(3 - Math.Log(Math.Exp(1) + Math.Exp(2) + Math.Exp(3)), ShiftedLogProbs(1.0)[0], 12);
    }

    [Fact]
    public void Rollout_and_policy_graphs_divide_by_the_temperature_and_refuse_a_bad_one()
    {
        var c = TinyLlama.Config("gqa-untied");
        static int Muls(global::Onnx.ModelProto m) => m.Graph.Node.Count(n => n.OpType == "Mul");
        Assert.Equal(Muls(Ppo.RolloutLogProbGraph(c, null)) + 1, Muls(Ppo.RolloutLogProbGraph(c, null, temperature: 0.7)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ppo.PolicyGraph(c, temperature: 0));
    }

    [Fact]
    public void Ppo_refuses_nucleus_sampling_and_counts_its_schedule_in_iterations()
    {
        const string required = "policy_model: p\nreward_model: r\nprompts: builtin:red-team-train\noutput_dir: o\n";
        var e = Assert.Throws<UserError>(() => StageConfig.Parse<TrainPolicy.Config>(required + "sampling:\n  top_p: 0.9\n", "ppo.yaml"));
        Assert.Contains("top_p must be 1 for PPO rollouts", e.Message);
        e = Assert.Throws<UserError>(() => StageConfig.Parse<TrainPolicy.Config>(required + "lora:\n  rank: 4\n  dropout: 0.1\n", "ppo.yaml"));
        Assert.Contains("lora: dropout must be 0 for PPO", e.Message);

        // Linear to 0 over 4 iterations of 2 epochs × 8/4 mini-batches = 4 updates each, as TRL steps its scheduler once per batch.
        var config = StageConfig.Parse<TrainPolicy.Config>(required + "iterations: 4\nrollout_batch_size: 8\nmini_batch_size: 4\nppo_epochs: 2\n", "ppo.yaml");
        var schedule = TrainPolicy.PolicyTrainerOptions(config).Schedule!;
        Assert.Equal([1.0, 1.0, 1.0, 1.0, 0.75, 0.75, 0.75, 0.75, 0.5, 0.25, 0.25], new long[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 15 }.Select(schedule.Factor));
        var constant = StageConfig.Parse<TrainPolicy.Config>(required + "optimizer:\n  schedule: constant\n", "ppo.yaml");
        Assert.All(new long[] { 0, 10, 1000 }, s => Assert.Equal(1.0, TrainPolicy.PolicyTrainerOptions(constant).Schedule!.Factor(s)));
    }
}
