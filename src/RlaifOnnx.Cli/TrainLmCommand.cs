using System.CommandLine;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif train-lm`: causal-LM training of a model folder on JSONL text (see <see cref="TrainLm"/>).</summary>
public static class TrainLmCommand
{
    public static Command Build()
    {
        var defaults = new TrainLm.Config { Model = "", Data = "", Out = "" };
        var model = new Option<string>("--model") { Description = "Model folder to start from", Required = true };
        var data = new Option<string>("--data") { Description = "JSONL training data: {\"text\": …} or {\"prompt\": …, \"completion\": …} per line", Required = true };
        var output = new Option<string>("--out") { Description = "Output folder: metrics.jsonl, checkpoints/ (a rerun resumes), model/ (the trained model folder)", Required = true };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps in total", DefaultValueFactory = _ => defaults.Steps };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate", DefaultValueFactory = _ => defaults.LearningRate };
        var batchSize = new Option<int>("--batch-size") { Description = "Sequences per optimizer step", DefaultValueFactory = _ => defaults.BatchSize };
        var microBatchSize = new Option<int>("--micro-batch-size") { Description = "Sequences per ONNX Runtime run (gradients accumulated); 0 = the whole batch", DefaultValueFactory = _ => defaults.MicroBatchSize };
        var seqLen = new Option<int>("--seq-len") { Description = "Longest sequence in tokens (longer examples are truncated)", DefaultValueFactory = _ => defaults.SeqLen };
        var loraRank = new Option<int>("--lora-rank") { Description = "LoRA rank; 0 trains every weight", DefaultValueFactory = _ => defaults.LoraRank };
        var loraAlpha = new Option<double>("--lora-alpha") { Description = "LoRA alpha (scale alpha/rank); 0 = 2·rank", DefaultValueFactory = _ => defaults.LoraAlpha };
        var loraTargets = new Option<string>("--lora-targets") { Description = "Projections with adapters: comma-separated (q_proj,v_proj) or all-linear", DefaultValueFactory = _ => defaults.LoraTargets };
        var loraDropout = new Option<double>("--lora-dropout") { Description = "Dropout on the LoRA adapters' input; 0 = off", DefaultValueFactory = _ => defaults.LoraDropout };
        var seed = new Option<int>("--seed") { Description = "Seed of the data order and the LoRA initialisation", DefaultValueFactory = _ => defaults.Seed };
        var warmup = new Option<int>("--warmup") { Description = "Linear warm-up steps", DefaultValueFactory = _ => defaults.Warmup };
        var schedule = new Option<string>("--schedule") { Description = "Learning-rate schedule after warm-up: constant, linear, cosine", DefaultValueFactory = _ => defaults.Schedule };
        var weightDecay = new Option<double>("--weight-decay") { Description = "AdamW's decoupled weight decay", DefaultValueFactory = _ => defaults.WeightDecay };
        var maxGradNorm = new Option<double>("--max-grad-norm") { Description = "Clip gradients to this global norm; 0 = off", DefaultValueFactory = _ => defaults.MaxGradNorm };
        var saveEvery = new Option<int>("--save-every") { Description = "Checkpoint every this many steps (and at the end)", DefaultValueFactory = _ => defaults.SaveEvery };
        var command = new Command("train-lm", "Train a model folder as a causal LM on JSONL text or prompt/completion pairs; resumable; exports a model folder")
        {
            model, data, output, steps, lr, batchSize, microBatchSize, seqLen, loraRank, loraAlpha, loraTargets, loraDropout, seed, warmup, schedule,
            weightDecay, maxGradNorm, saveEvery,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            var config = new TrainLm.Config
            {
                Model = parse.GetValue(model)!, Data = parse.GetValue(data)!, Out = parse.GetValue(output)!,
                Steps = parse.GetValue(steps), LearningRate = parse.GetValue(lr), BatchSize = parse.GetValue(batchSize),
                MicroBatchSize = parse.GetValue(microBatchSize), SeqLen = parse.GetValue(seqLen), LoraRank = parse.GetValue(loraRank),
                LoraAlpha = parse.GetValue(loraAlpha), LoraTargets = parse.GetValue(loraTargets)!, LoraDropout = parse.GetValue(loraDropout), Seed = parse.GetValue(seed),
                Warmup = parse.GetValue(warmup), Schedule = parse.GetValue(schedule)!, WeightDecay = parse.GetValue(weightDecay),
                MaxGradNorm = parse.GetValue(maxGradNorm), SaveEvery = parse.GetValue(saveEvery),
            };
            var exported = TrainLm.Run(config, message => Console.Error.WriteLine(message), cancellationToken);
            Console.WriteLine($"wrote {exported}");
            return Task.FromResult(0);
        });
        return command;
    }
}
