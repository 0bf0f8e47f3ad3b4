using RlaifOnnx.Models;
using RlaifOnnx.Reporting;
using RlaifOnnx.Stages;


namespace RlaifOnnx.Tests.Stages;

public class TrainLmTests
{
    const string Data = """
        {"text": "The assistant is helpful, honest and harmless."}
        {"prompt": "How do I make tea?\n", "completion": "Boil water, add the leaves, wait three minutes."}
        {"text": "Twice a day, at 10:30 and at 16:00, the bell rings."}
        {"prompt": "Name a colour.\n", "completion": "Blue."}
        {"text": "A short line."}

        """;

    static string TinyModel(TempDir temp)
    {
        var dir = temp.File("base");
        var config = TinyLlama.Config("mha-tied", vocab: 300) with { MaxPositions = 64 };
        ModelWriter.Write(dir, config, WeightSet.Random(config, 2), TinyTokenizer.Train(300), "base", []);
        return dir;
    }

    static string[] Args(string model, string data, string output, params string[] more) =>
        ["train-lm", "--model", model, "--data", data, "--out", output, "--steps", "6", "--batch-size", "4",
         "--micro-batch-size", "2", "--max-length", "24", "--optimizer-learning-rate", "1e-2", "--save-every", "2", "--optimizer-warmup", "1", .. more];

    [Fact]
    public void Trains_checkpoints_exports_and_resumes_exactly()
    {
        using var temp = new TempDir();
        var model = TinyModel(temp);
        var data = temp.File("data.jsonl");
        File.WriteAllText(data, Data);
        var output = temp.File("run");

        var first = CliProcess.Run(Args(model, data, output));
        Assert.True(first.ExitCode == 0, first.Stderr);
        var metrics = MetricsLog.Read(Path.Combine(output, "metrics.jsonl"));
        Assert.Equal([1L, 2, 3, 4, 5, 6], metrics.Select(m => m.Step));
        Assert.All(metrics, m => Assert.True(double.IsFinite(m.Values["loss"]) && m.Values["loss"] > 0));
        Assert.True(metrics[^1].Values["loss"] < metrics[0].Values["loss"], "the loss falls");
        Assert.Equal(0.0, metrics[0].Values["lr"]); // warm-up starts at 0 (Hugging Face's schedule)
        var checkpoints = Path.Combine(output, "checkpoints");
        Assert.Equal(["step-00000004", "step-00000006"], Directory.GetDirectories(checkpoints).Select(Path.GetFileName).Order());
        var exported = Path.Combine(output, "model");
        var meta = ModelFolder.ReadMetadata(exported);
        Assert.Equal("train-lm", meta.Lineage[^1].Step);
        var before = ModelFolder.ReadWeights(model);
        var after = ModelFolder.ReadWeights(exported);
        Assert.NotEqual(before["model.layers.0.mlp.up_proj.weight"].Data, after["model.layers.0.mlp.up_proj.weight"].Data);
        var exportedBytes = File.ReadAllBytes(Path.Combine(exported, ModelFolder.DataFile));

        // A crash after step 4: the step-6 checkpoint and the export never happened. The rerun resumes
        // from step 4 and must reproduce steps 5 and 6 and the exported weights bit for bit.
        var firstRun = MetricsLog.Read(Path.Combine(output, "metrics.jsonl"));
        Directory.Delete(Path.Combine(checkpoints, "step-00000006"), recursive: true);
        Directory.Delete(exported, recursive: true);
        var second = CliProcess.Run(Args(model, data, output));
        Assert.True(second.ExitCode == 0, second.Stderr);
        Assert.Contains("resuming from", second.Stderr);
        var all = MetricsLog.Read(Path.Combine(output, "metrics.jsonl"));
        // The rows the crashed run logged past its checkpoint are replaced, not repeated: steps never go back.
        Assert.Equal([1L, 2, 3, 4, 5, 6], all.Select(m => m.Step));
        Assert.Equal(firstRun[4].Values["loss"], all[4].Values["loss"]);
        Assert.Equal(firstRun[5].Values["loss"], all[5].Values["loss"]);
        Assert.Equal(exportedBytes, File.ReadAllBytes(Path.Combine(exported, ModelFolder.DataFile)));

        // A changed setting does not silently continue someone else's run.
        var changed = CliProcess.Run(Args(model, data, output, "--seed", "7"));
        Assert.Equal(2, changed.ExitCode);
        Assert.Contains("settings", changed.Stderr);
    }

    [Fact]
    public void Lora_run_with_dropout_exports_a_merged_model_and_resumes_exactly()
    {
        using var temp = new TempDir();
        var model = TinyModel(temp);
        var data = temp.File("data.jsonl");
        File.WriteAllText(data, Data);
        var output = temp.File("run");
        string[] lora = ["--lora-rank", "2", "--lora-targets", "all-linear", "--lora-dropout", "0.1"];
        var run = CliProcess.Run(Args(model, data, output, lora));
        Assert.True(run.ExitCode == 0, run.Stderr);
        var exported = Path.Combine(output, "model");
        var before = ModelFolder.ReadWeights(model);
        var after = ModelFolder.ReadWeights(exported);
        Assert.NotEqual(before["model.layers.1.self_attn.q_proj.weight"].Data, after["model.layers.1.self_attn.q_proj.weight"].Data);
        Assert.Equal(before["model.embed_tokens.weight"].Data, after["model.embed_tokens.weight"].Data); // no adapter there
        var exportedBytes = File.ReadAllBytes(Path.Combine(exported, ModelFolder.DataFile));

        // Resume from step 4: adapters, moments and the dropout masks of steps 5 and 6 come out the same.
        Directory.Delete(Path.Combine(output, "checkpoints", "step-00000006"), recursive: true);
        Directory.Delete(exported, recursive: true);
        var again = CliProcess.Run(Args(model, data, output, lora));
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Equal(exportedBytes, File.ReadAllBytes(Path.Combine(exported, ModelFolder.DataFile)));
    }

    [Theory]
    [InlineData("{\"text\": \"fine\"}\n{\"prompt\": \"p\", \"completion\": \"c\"}\n{\"text\": \"broken\"\n", 3, null)]
    [InlineData("{\"text\": \"fine\"}\n{\"prompt\": \"only a prompt\"}\n", 2, "completion")]
    [InlineData("{\"text\": \"both\", \"prompt\": \"p\", \"completion\": \"c\"}\n", 1, "text")]
    [InlineData("{\"text\": \"fine\"}\n{\"prompt\": [{\"role\": \"user\"}], \"completion\": \"c\"}\n", 2, "prompt[0]")]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n", 1, "messages")]
    public void Bad_data_line_names_file_and_line_and_exits_2(string contents, int line, string? field)
    {
        using var temp = new TempDir();
        var model = TinyModel(temp);
        var data = temp.File("data.jsonl");
        File.WriteAllText(data, contents);
        var run = CliProcess.Run(Args(model, data, temp.File("run")));
        Assert.Equal(2, run.ExitCode);
        Assert.Contains($"data.jsonl:{line}:", run.Stderr);
        if (field is not null) Assert.Contains($":{line}: {field}:", run.Stderr);
        Assert.False(Directory.Exists(Path.Combine(temp.File("run"), "model")));
    }

    [Fact]
    public void Conversational_lines_train_only_on_the_assistant_turn_rendered_by_the_chat_template()
    {
        using var temp = new TempDir();
        var model = TinyModel(temp);
        var data = temp.File("chat.jsonl");
        File.WriteAllText(data, """
            {"prompt": [{"role": "user", "content": "Name a colour."}], "completion": [{"role": "assistant", "content": "Blue."}]}
            {"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]}

            """);
        var config = ModelFolder.ReadMetadata(model).Config;
        var sequences = TrainLm.Tokenise(new TrainLm.Config { Model = model, Data = data, OutputDir = temp.File("run") }, config);

        Assert.Equal(2, sequences.Count);
        Assert.Equal(sequences[0].Ids, sequences[1].Ids);         // both spellings of one conversation
        Assert.Equal(sequences[0].TargetMask, sequences[1].TargetMask);
        using var genai = new Microsoft.ML.OnnxRuntimeGenAI.Model(model);
        using var tokenizer = new Microsoft.ML.OnnxRuntimeGenAI.Tokenizer(genai);
        var targets = sequences[0].Ids.Where((_, i) => sequences[0].TargetMask[i] == 1).ToArray();
        var context = sequences[0].Ids.Where((_, i) => sequences[0].TargetMask[i] == 0).ToArray();
        // ChatML: the prompt ends with the generation prompt; the targets are the answer and its end of turn
        // (GenAI's Decode leaves special tokens out of the text).
        Assert.Equal("Blue.\n", tokenizer.Decode(targets));
        Assert.Contains(TinyTokenizer.ImEndId, targets);
        Assert.EndsWith("assistant\n", tokenizer.Decode(context));

        var run = CliProcess.Run("train-lm", "--model", model, "--data", data, "--out", temp.File("run"), "--steps", "2", "--batch-size", "2", "--max-length", "64");
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.True(Directory.Exists(Path.Combine(temp.File("run"), "model")));
    }
}
