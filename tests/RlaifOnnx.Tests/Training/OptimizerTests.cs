using RlaifOnnx.Core;
using RlaifOnnx.Configuration;
using RlaifOnnx.Stages;
using RlaifOnnx.Training;


namespace RlaifOnnx.Tests.Training;

public class OptimizerTests
{
    [Fact]
    public void AdamW_with_weight_decay_matches_hand_computed_torch_steps()
    {
        // Hand-computed in double with torch.optim.AdamW's update (lr 0.1, betas (0.9, 0.999), eps 1e-8, wd 0.1):
        // step 1: w = 1·0.99 − 0.1/(1−0.9) · 0.05/(√0.00025/√0.001 + 1e-8) = 0.890000002
        var p = new Parameter("w", [2], [1f, -2f]);
        p.Gradient[0] = 0.5f; p.Gradient[1] = -1f;
        var adam = new AdamW([p], new AdamWOptions(WeightDecay: 0.1));
        adam.Step(0.1);
        Assert.Equal(0.890000002, p.Weight[0], 6);
        Assert.Equal(-1.880000001, p.Weight[1], 6);
        Assert.Equal(0.05, adam.FirstMoments[0][0], 7);
        Assert.Equal(0.001, adam.SecondMoments[0][1], 8);
        p.Gradient[0] = -0.25f; p.Gradient[1] = 2f;
        adam.Step(0.1);
        Assert.Equal(0.8544662986878463, p.Weight[0], 6);
        Assert.Equal(-1.897810353462075, p.Weight[1], 6);
        Assert.Equal(0.0003122500000000003, adam.SecondMoments[0][0], 9);
        Assert.Equal(2, adam.StepCount);
    }

    [Theory]
    [InlineData(0, 0.0, 0.0, 0.0)]
    [InlineData(5, 0.5, 0.5, 0.5)]
    [InlineData(10, 1.0, 1.0, 1.0)]
    [InlineData(35, 0.8535533905932737, 0.75, 1.0)]
    [InlineData(60, 0.5, 0.5, 1.0)]
    [InlineData(110, 0.0, 0.0, 1.0)]
    [InlineData(200, 0.0, 0.0, 1.0)]
    public void Schedules_match_hugging_face_warmup_schedules(int step, double cosine, double linear, double constant)
    {
        // get_cosine_schedule_with_warmup(warmup 10, total 110): ½(1 + cos(π·(s−10)/100)) after warm-up s/10.
        Assert.Equal(cosine, new LrSchedule(ScheduleKind.Cosine, 10, 110).Factor(step), 12);
        Assert.Equal(linear, new LrSchedule(ScheduleKind.Linear, 10, 110).Factor(step), 12);
        Assert.Equal(constant, new LrSchedule(ScheduleKind.Constant, 10, 110).Factor(step), 12);
    }

    [Fact]
    public void The_optimizer_section_chooses_the_training_steps_memory_arena()
    {
        static TrainerOptions Options(string yaml) =>
            TrainerOptions.From(StageConfig.Parse<TrainLm.Config>("model: m\ndata: d.jsonl\noutput_dir: out\n" + yaml, "stage.yaml").Optimizer, 10);
        Assert.False(Options("steps: 10\n").CpuMemoryArena);
        Assert.False(Options("steps: 10\noptimizer:\n  cpu_memory_arena: false\n").CpuMemoryArena);
        Assert.True(Options("steps: 10\noptimizer:\n  cpu_memory_arena: true\n").CpuMemoryArena);
    }

    [Fact]
    public void Cosine_floor_keeps_a_minimum_ratio()
    {
        Assert.Equal(0.1, new LrSchedule(ScheduleKind.Cosine, 0, 100, MinRatio: 0.1).Factor(100), 12);
        Assert.Equal(0.55, new LrSchedule(ScheduleKind.Cosine, 0, 100, MinRatio: 0.1).Factor(50), 12);
        Assert.Throws<UserError>(() => LrSchedule.ParseKind("exponential", "--schedule"));
    }
}
