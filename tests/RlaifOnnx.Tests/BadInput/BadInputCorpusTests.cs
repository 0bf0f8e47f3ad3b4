using System.IO.Compression;
using System.Text;
using RlaifOnnx.Models;

namespace RlaifOnnx.Tests.BadInput;

/// <summary>
/// A tiny language model and a tiny preference model, made once, plus a folder per case to break things in.
/// Cases copy the model folder before breaking it, so each sees exactly one fault.
/// </summary>
public sealed class CorpusFixture : IDisposable
{
    public LlamaFolder Lm { get; } = new();
    public PmFolder Pm { get; } = new();
    readonly TempDir root = new();

    /// <summary>A fresh empty folder for one case.</summary>
    public string CaseDir(string name)
    {
        var dir = Path.Combine(root.Path, name);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A copy of the language model folder inside <paramref name="caseDir"/>.</summary>
    public string LmCopy(string caseDir) => Copy(Lm.Dir, Path.Combine(caseDir, "lm"));
    public string PmCopy(string caseDir) => Copy(Pm.Dir, Path.Combine(caseDir, "pm"));

    static string Copy(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        return to;
    }

    public void Dispose()
    {
        Lm.Dispose();
        Pm.Dispose();
        root.Dispose();
    }
}

/// <summary>
/// The bad-input corpus: the compiled `rlaif` run as a process, as a user runs it, on broken model folders,
/// hostile JSONL/YAML/gz/XML, NaN/negative/huge numbers, outputs that are folders and wrong serve flags.
/// Every case must end with exit 2, exactly one line on stderr naming the problem, no stack trace and
/// nothing written where the output would go.
/// </summary>
public class BadInputCorpusTests(CorpusFixture fixture) : IClassFixture<CorpusFixture>
{
    /// <summary>One case: set up files in its folder, return the arguments, what the line must name and what must not be left behind.</summary>
    public sealed record Case(Func<CorpusFixture, string, (string[] Args, string Naming, string[] LeftBehind)> Make);

    static string Write(string dir, string name, string text)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    static string WriteBytes(string dir, string name, byte[] bytes)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static string Prompts(string dir) => Write(dir, "prompts.jsonl", "{\"prompt\": \"Hello\"}\n");
    static string TextData(string dir) => Write(dir, "data.jsonl", "{\"text\": \"Tea is good.\"}\n{\"text\": \"Bread is good.\"}\n");

    static (string[], string, string[]) Generate(CorpusFixture f, string dir, string naming, params string[] extra)
    {
        var output = Path.Combine(dir, "out.jsonl");
        string[] tokens = extra.Contains("--max-new-tokens") ? [] : ["--max-new-tokens", "4"];
        return ([.. new[] { "generate", "--model", f.LmCopy(dir), "--prompts", Prompts(dir), "--out", output }, .. tokens, .. extra], naming, [output]);
    }

    static (string[], string, string[]) TrainLm(CorpusFixture f, string dir, string naming, params string[] extra)
    {
        var output = Path.Combine(dir, "run");
        return ([.. new[] { "train-lm", "--model", f.LmCopy(dir), "--data", TextData(dir), "--out", output, "--steps", "1" }, .. extra], naming, [output]);
    }

    static (string[], string, string[]) TrainLmOn(string model, string dir, string naming)
    {
        var output = Path.Combine(dir, "run");
        return (["train-lm", "--model", model, "--data", TextData(dir), "--out", output, "--steps", "1", "--batch-size", "1"], naming, [output]);
    }

    static (string[], string, string[]) ModelCreate(string dir, string naming, params string[] extra)
    {
        var output = Path.Combine(dir, "made");
        return ([.. new[] { "model", "create", "--arch", "llama", "--out", output }, .. extra], naming, [output]);
    }

    static (string[], string, string[]) Serve(CorpusFixture f, string dir, string naming, params string[] extra) =>
        ([.. new[] { "serve", "--model", f.LmCopy(dir), "--port", "0" }, .. extra], naming, []);

    static string Break(string model, string file, string? text)
    {
        var path = Path.Combine(model, file);
        if (text is null) File.Delete(path); else File.WriteAllText(path, text);
        return model;
    }

    static string Edit(string model, string file, string from, string to)
    {
        var path = Path.Combine(model, file);
        var text = File.ReadAllText(path);
        Assert.Contains(from, text);
        File.WriteAllText(path, text.Replace(from, to));
        return model;
    }

    static string Truncate(string model, string file)
    {
        var path = Path.Combine(model, file);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        return model;
    }

    static readonly byte[] InvalidUtf8 = [.. Encoding.UTF8.GetBytes("{\"prompt\": \"caf"), 0xC3, 0x28, .. Encoding.UTF8.GetBytes("\"}\n")];

    public static TheoryData<string> Names => new(Cases.Keys.Order());

    static readonly Dictionary<string, Func<CorpusFixture, string, (string[] Args, string Naming, string[] LeftBehind)>> Cases = new()
    {
        // ---- broken model folders ----
        ["inspect-missing-folder"] = (f, d) => (["model", "inspect", Path.Combine(d, "nothing")], "nothing", []),
        ["inspect-weights-missing"] = (f, d) => (["model", "inspect", Break(f.LmCopy(d), "model.onnx.data", null)], "model.onnx.data", []),
        ["inspect-weights-truncated"] = (f, d) => (["model", "inspect", Truncate(f.LmCopy(d), "model.onnx.data")], "model.onnx.data", []),
        ["inspect-graph-missing"] = (f, d) => (["model", "inspect", Break(f.LmCopy(d), "model.onnx", null)], "model.onnx", []),
        ["inspect-rlaif-json-corrupt"] = (f, d) => (["model", "inspect", Break(f.LmCopy(d), "rlaif.json", "{ not json")], "rlaif.json", []),
        ["inspect-vocab-size-lies"] = (f, d) => (["model", "inspect", Edit(f.LmCopy(d), "rlaif.json", "\"vocab_size\": 300", "\"vocab_size\": 30000")], "does not match the config", []),
        ["inspect-pm-weights-truncated"] = (f, d) => (["model", "inspect", Truncate(f.PmCopy(d), "model.onnx.data")], "model.onnx", []),
        ["train-lm-tokenizer-missing"] = (f, d) => TrainLmOn(Break(f.LmCopy(d), "tokenizer.json", null), d, "tokenizer.json"),
        ["train-lm-tokenizer-corrupt"] = (f, d) => TrainLmOn(Break(f.LmCopy(d), "tokenizer.json", "{\"model\": 3"), d, "tokenizer.json"),
        ["train-lm-rlaif-json-missing"] = (f, d) => TrainLmOn(Break(f.LmCopy(d), "rlaif.json", null), d, "rlaif.json"),
        ["train-lm-rlaif-json-corrupt"] = (f, d) => TrainLmOn(Break(f.LmCopy(d), "rlaif.json", "[1, 2"), d, "rlaif.json"),
        ["train-lm-genai-config-corrupt"] = (f, d) => TrainLmOn(Break(f.LmCopy(d), "genai_config.json", "{"), d, "genai_config.json"),
        ["train-lm-weights-truncated"] = (f, d) => TrainLmOn(Truncate(f.LmCopy(d), "model.onnx.data"), d, "model.onnx.data"),
        ["train-lm-on-a-preference-model"] = (f, d) => TrainLmOn(f.PmCopy(d), d, "preference"),
        ["train-lm-model-folder-missing"] = (f, d) => TrainLmOn(Path.Combine(d, "absent"), d, "absent"),
        ["generate-genai-config-missing"] = (f, d) => (["generate", "--model", Break(f.LmCopy(d), "genai_config.json", null), "--prompts", Prompts(d), "--out", Path.Combine(d, "o.jsonl"), "--max-new-tokens", "4"], "genai_config.json", [Path.Combine(d, "o.jsonl")]),
        ["generate-genai-config-corrupt"] = (f, d) => (["generate", "--model", Break(f.LmCopy(d), "genai_config.json", "{\"model\": "), "--prompts", Prompts(d), "--out", Path.Combine(d, "o.jsonl"), "--max-new-tokens", "4"], "genai_config.json", [Path.Combine(d, "o.jsonl")]),
        ["generate-on-a-preference-model"] = (f, d) => (["generate", "--model", f.PmCopy(d), "--prompts", Prompts(d), "--out", Path.Combine(d, "o.jsonl"), "--max-new-tokens", "4"], "preference", [Path.Combine(d, "o.jsonl")]),
        ["serve-model-missing"] = (f, d) => (["serve", "--model", Path.Combine(d, "absent"), "--port", "0"], "absent", []),
        ["serve-genai-config-corrupt"] = (f, d) => (["serve", "--model", Break(f.LmCopy(d), "genai_config.json", "{"), "--port", "0"], "genai_config.json", []),

        // ---- hostile input files ----
        ["generate-prompts-missing"] = (f, d) => (["generate", "--model", f.LmCopy(d), "--prompts", Path.Combine(d, "none.jsonl"), "--out", Path.Combine(d, "o.jsonl"), "--max-new-tokens", "4"], "none.jsonl", [Path.Combine(d, "o.jsonl")]),
        ["generate-prompts-malformed-json"] = (f, d) => (["generate", "--model", f.LmCopy(d), "--prompts", Write(d, "p.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \n"), "--out", Path.Combine(d, "o.jsonl"), "--max-new-tokens", "4"], "p.jsonl:2", [Path.Combine(d, "o.jsonl")]),
        ["generate-prompts-number"] = (f, d) => (["generate", "--model", f.LmCopy(d), "--prompts", Write(d, "p.jsonl", "{\"prompt\": 42}\n"), "--out", Path.Combine(d, "o.jsonl"), "--max-new-tokens", "4"], "p.jsonl:1", [Path.Combine(d, "o.jsonl")]),
        ["generate-prompts-no-field"] = (f, d) => (["generate", "--model", f.LmCopy(d), "--prompts", Write(d, "p.jsonl", "{\"question\": \"a\"}\n"), "--out", Path.Combine(d, "o.jsonl"), "--max-new-tokens", "4"], "p.jsonl:1", [Path.Combine(d, "o.jsonl")]),
        ["generate-prompts-array-line"] = (f, d) => (["generate", "--model", f.LmCopy(d), "--prompts", Write(d, "p.jsonl", "[1, 2, 3]\n"), "--out", Path.Combine(d, "o.jsonl"), "--max-new-tokens", "4"], "p.jsonl:1", [Path.Combine(d, "o.jsonl")]),
        ["generate-prompts-invalid-utf8"] = (f, d) => (["generate", "--model", f.LmCopy(d), "--prompts", WriteBytes(d, "p.jsonl", InvalidUtf8), "--out", Path.Combine(d, "o.jsonl"), "--max-new-tokens", "4"], "p.jsonl:1: not valid UTF-8", [Path.Combine(d, "o.jsonl")]),
        ["generate-prompts-gz-not-gzip"] = (f, d) => (["generate", "--model", f.LmCopy(d), "--prompts", Write(d, "p.jsonl.gz", "{\"prompt\": \"a\"}\n"), "--out", Path.Combine(d, "o.jsonl"), "--max-new-tokens", "4"], "p.jsonl.gz", [Path.Combine(d, "o.jsonl")]),
        ["generate-out-is-a-folder"] = (f, d) => (["generate", "--model", f.LmCopy(d), "--prompts", Prompts(d), "--out", f.CaseDir(Path.Combine(Path.GetFileName(d), "outdir")), "--max-new-tokens", "4"], "outdir", []),
        ["train-lm-data-malformed"] = (f, d) => (["train-lm", "--model", f.LmCopy(d), "--data", Write(d, "t.jsonl", "{\"text\": \"a\"}\n{oops}\n"), "--out", Path.Combine(d, "run"), "--steps", "1"], "t.jsonl:2", [Path.Combine(d, "run")]),
        ["train-lm-data-no-text"] = (f, d) => (["train-lm", "--model", f.LmCopy(d), "--data", Write(d, "t.jsonl", "{\"title\": \"a\"}\n"), "--out", Path.Combine(d, "run"), "--steps", "1"], "t.jsonl:1", [Path.Combine(d, "run")]),
        ["train-lm-data-missing"] = (f, d) => (["train-lm", "--model", f.LmCopy(d), "--data", Path.Combine(d, "none.jsonl"), "--out", Path.Combine(d, "run"), "--steps", "1"], "none.jsonl", [Path.Combine(d, "run")]),
        ["train-lm-data-gz-not-gzip"] = (f, d) => (["train-lm", "--model", f.LmCopy(d), "--data", Write(d, "t.jsonl.gz", "{\"text\": \"a\"}\n"), "--out", Path.Combine(d, "run"), "--steps", "1"], "t.jsonl.gz", [Path.Combine(d, "run")]),
        ["revise-prompts-gz-not-gzip"] = (f, d) => (["revise", "--prompts", Write(d, "p.jsonl.gz", "not gzip at all"), "--helpful-model", f.LmCopy(d), "--out", Path.Combine(d, "run")], "p.jsonl.gz", [Path.Combine(d, "run")]),
        ["label-pairs-gz-not-gzip"] = (f, d) => (["label", "--pairs", Write(d, "pairs.jsonl.gz", "not gzip"), "--feedback-model", f.LmCopy(d), "--out", Path.Combine(d, "run")], "pairs.jsonl.gz", [Path.Combine(d, "run")]),
        ["constitution-validate-malformed-yaml"] = (f, d) => (["constitution", "validate", Write(d, "c.yaml", "critiques: [unclosed\n")], "c.yaml", []),
        ["constitution-validate-missing"] = (f, d) => (["constitution", "validate", Path.Combine(d, "none.yaml")], "none.yaml", []),
        ["config-malformed-yaml"] = (f, d) => (["train-lm", "--config", Write(d, "c.yaml", "steps: [1,\n")], "c.yaml", []),
        ["config-unknown-key"] = (f, d) => (["train-lm", "--config", Write(d, "c.yaml", $"model: {f.LmCopy(d)}\ndata: {TextData(d)}\noutput_dir: {Path.Combine(d, "run")}\nstepz: 3\n")], "stepz", [Path.Combine(d, "run")]),
        ["config-steps-negative"] = (f, d) => (["train-lm", "--config", Write(d, "c.yaml", $"model: {f.LmCopy(d)}\ndata: {TextData(d)}\noutput_dir: {Path.Combine(d, "run")}\nsteps: -3\n")], "steps", [Path.Combine(d, "run")]),
        ["config-learning-rate-nan"] = (f, d) => (["train-lm", "--config", Write(d, "c.yaml", $"model: {f.LmCopy(d)}\ndata: {TextData(d)}\noutput_dir: {Path.Combine(d, "run")}\nsteps: 1\noptimizer:\n  learning_rate: .nan\n")], "learning_rate", [Path.Combine(d, "run")]),
        ["config-label-temperature-nan"] = (f, d) => (["label", "--config", Write(d, "c.yaml", $"pairs: {Write(d, "pairs.jsonl", "{\"prompt\": \"p\", \"response_a\": \"a\", \"response_b\": \"b\"}\n")}\nfeedback_model: {f.LmCopy(d)}\noutput_dir: {Path.Combine(d, "run")}\nsampling:\n  temperature: .nan\n")], "temperature", [Path.Combine(d, "run")]),

        // ---- numbers in flags ----
        ["generate-temperature-nan"] = (f, d) => Generate(f, d, "temperature", "--temperature", "NaN"),
        ["generate-temperature-negative"] = (f, d) => Generate(f, d, "temperature", "--temperature", "-1"),
        ["generate-top-p-above-1"] = (f, d) => Generate(f, d, "top_p", "--top-p", "2"),
        ["generate-top-p-zero"] = (f, d) => Generate(f, d, "top_p", "--top-p", "0"),
        ["generate-top-k-negative"] = (f, d) => Generate(f, d, "top_k", "--top-k", "-1"),
        ["generate-max-new-tokens-zero"] = (f, d) => Generate(f, d, "max_new_tokens", "--max-new-tokens", "0"),
        ["generate-max-new-tokens-not-a-number"] = (f, d) => Generate(f, d, "--max-new-tokens", "--max-new-tokens", "lots"),
        ["generate-batch-size-zero"] = (f, d) => Generate(f, d, "batch", "--batch-size", "0"),
        ["generate-seed-huge"] = (f, d) => Generate(f, d, "--seed", "--seed", "99999999999999999999"),
        ["train-lm-steps-negative"] = (f, d) => TrainLm(f, d, "steps", "--steps", "-1"),
        ["train-lm-steps-not-a-number"] = (f, d) => TrainLm(f, d, "--steps", "--steps", "abc"),
        ["train-lm-batch-size-zero"] = (f, d) => TrainLm(f, d, "--batch-size", "--batch-size", "0"),
        ["train-lm-learning-rate-nan"] = (f, d) => TrainLm(f, d, "--optimizer-learning-rate", "--optimizer-learning-rate", "NaN"),
        ["train-lm-learning-rate-negative"] = (f, d) => TrainLm(f, d, "--optimizer-learning-rate", "--optimizer-learning-rate", "-0.1"),
        ["train-lm-lora-rank-negative"] = (f, d) => TrainLm(f, d, "rank", "--lora-rank", "-2"),
        ["train-lm-lora-dropout-above-1"] = (f, d) => TrainLm(f, d, "dropout", "--lora-dropout", "1.5"),
        ["train-lm-max-length-zero"] = (f, d) => TrainLm(f, d, "--max-length", "--max-length", "0"),
        ["train-lm-save-every-zero"] = (f, d) => TrainLm(f, d, "--save-every", "--save-every", "0"),
        ["train-lm-weight-decay-infinite"] = (f, d) => TrainLm(f, d, "--optimizer-weight-decay", "--optimizer-weight-decay", "Infinity"),
        ["train-lm-schedule-unknown"] = (f, d) => TrainLm(f, d, "schedule", "--optimizer-schedule", "zigzag"),
        ["model-create-hidden-size-huge"] = (f, d) => ModelCreate(d, "hidden", "--hidden-size", "100000000"),
        ["model-create-vocab-too-small"] = (f, d) => ModelCreate(d, "vocab", "--vocab-size", "10"),
        ["model-create-heads-do-not-divide"] = (f, d) => ModelCreate(d, "heads", "--heads", "3"),
        ["model-create-layers-zero"] = (f, d) => ModelCreate(d, "layers", "--layers", "0"),
        ["model-create-unknown-arch"] = (f, d) => (["model", "create", "--arch", "transformer-xl", "--out", Path.Combine(d, "made")], "arch", [Path.Combine(d, "made")]),
        ["model-create-max-positions-negative"] = (f, d) => ModelCreate(d, "max_position", "--max-positions", "-4"),

        ["generate-http-timeout-nan"] = (f, d) => Generate(f, d, "--http-timeout-seconds", "--http-timeout-seconds", "NaN"),
        ["generate-http-deadline-zero"] = (f, d) => Generate(f, d, "--http-deadline-seconds", "--http-deadline-seconds", "0"),
        ["revise-http-timeout-negative"] = (f, d) => (["revise", "--prompts", Prompts(d), "--helpful-model", "http://127.0.0.1:9/v1", "--out", Path.Combine(d, "run"), "--http-timeout-seconds", "-1"], "--http-timeout-seconds", [Path.Combine(d, "run")]),
        ["config-label-http-deadline-infinite"] = (f, d) => (["label", "--config", Write(d, "c.yaml", $"pairs: {Write(d, "pairs.jsonl", "{\"prompt\": \"p\", \"response_a\": \"a\", \"response_b\": \"b\"}\n")}\nfeedback_model: http://127.0.0.1:9/v1\noutput_dir: {Path.Combine(d, "run")}\nhttp_deadline_seconds: .inf\n")], "http_deadline_seconds", [Path.Combine(d, "run")]),
        ["config-evaluate-http-timeout-huge"] = (f, d) => (["evaluate", "--config", Write(d, "c.yaml", $"policies:\n  - {{name: a, model: http://127.0.0.1:9/v1}}\nprompt_sets:\n  - {{name: s, source: {Prompts(d)}}}\noutput_dir: {Path.Combine(d, "run")}\nhttp_timeout_seconds: 1e300\n")], "http_timeout_seconds", [Path.Combine(d, "run")]),

        // ---- serve flags ----
        ["serve-threads-negative"] = (f, d) => Serve(f, d, "--threads", "--threads", "-3"),
        ["serve-batch-size-zero"] = (f, d) => Serve(f, d, "--batch-size", "--batch-size", "0"),
        ["serve-port-out-of-range"] = (f, d) => Serve(f, d, "port", "--port", "70000"),
        ["serve-host-beyond-loopback-without-key"] = (f, d) => Serve(f, d, "--api-key-env", "--host", "0.0.0.0"),
        ["serve-host-not-an-address"] = (f, d) => Serve(f, d, "host", "--host", "my laptop"),
        ["serve-api-key-variable-unset"] = (f, d) => Serve(f, d, "RLAIF_TEST_UNSET_KEY_VARIABLE", "--api-key-env", "RLAIF_TEST_UNSET_KEY_VARIABLE"),
        ["serve-max-concurrent-zero"] = (f, d) => Serve(f, d, "max_concurrent_requests", "--max-concurrent-requests", "0"),
        ["serve-max-queued-negative"] = (f, d) => Serve(f, d, "max_queued_requests", "--max-queued-requests", "-1"),
        ["serve-max-batch-tokens-zero"] = (f, d) => Serve(f, d, "max_batch_tokens", "--max-batch-tokens", "0"),
        ["serve-max-request-bytes-negative"] = (f, d) => Serve(f, d, "max_request_body_bytes", "--max-request-bytes", "-5"),

        // ---- the command line itself ----
        ["unknown-command"] = (f, d) => (["trian-lm"], "trian-lm", []),
        ["unknown-option"] = (f, d) => (["generate", "--temprature", "1"], "--temprature", []),
    };

    [Theory]
    [MemberData(nameof(Names))]
    public void Refused_with_one_line_and_exit_2(string name)
    {
        var dir = fixture.CaseDir(name);
        var (args, naming, leftBehind) = Cases[name](fixture, dir);
        var result = CliProcess.Run(args);
        BadInputAssert.OneLineError(result, naming, leftBehind);
    }

    [Fact]
    public void The_corpus_holds_at_least_60_cases() => Assert.True(Cases.Count >= 60, $"{Cases.Count} cases");
}
