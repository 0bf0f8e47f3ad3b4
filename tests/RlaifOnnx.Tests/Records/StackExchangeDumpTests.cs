using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Stages;
using RlaifOnnx.Records;


namespace RlaifOnnx.Tests.Records;

/// <summary>Reading real and broken Posts.xml dumps, and the whole PMP data run.</summary>
public class StackExchangeDumpTests
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;
    static string Beer => SharedData.Require("stackexchange/beer.Posts.xml");
    static string Coffee => SharedData.Require("stackexchange/coffee.Posts.xml");

    [Fact]
    public void BeerDumpCountsMatchTheDataReadme()
    {
        var dump = StackExchange.Read(Beer, null, Ct);
        Assert.Equal("beer", dump.Site);
        Assert.Equal(663, dump.Questions.Count);
        Assert.Equal(1572, dump.Questions.Sum(q => q.Answers.Count));
        Assert.Equal(410, dump.Questions.Count(q => q.Answers.Count >= 2));
        Assert.Equal(0, dump.UnknownParentAnswers);
        Assert.Equal(119, dump.OtherPosts); // 58 tag-wiki excerpts, 58 tag wikis, 3 moderator nominations

        var first = dump.Questions[0];
        Assert.Equal(1, first.Id);
        Assert.Equal("What is a citra hop, and how does it differ from other hops?", first.Title);
        Assert.Equal("I was offered a beer the other day that was reportedly made with citra hops. What are citra hops? Why should I care that my beer is made with them?", first.Body);
        var accepted = Assert.Single(first.Answers);
        Assert.Equal(4, accepted.Id);
        Assert.True(accepted.Accepted);
        Assert.Equal(13, accepted.Score);
        Assert.Equal(5, accepted.PmpScore); // round(log2 14) = 4, +1 accepted
        Assert.EndsWith("For more information, you can read the Wikipedia article on the Citra brand.", accepted.Text);
        Assert.Contains("tropical fruit characters to beer.\n\nFor more", accepted.Text);

        // Every body is plain text: no paragraph tags or escaped entities left, no blank ends.
        var texts = dump.Questions.SelectMany(q => q.Answers.Select(a => a.Text).Prepend(q.Body)).ToList();
        Assert.DoesNotContain(texts, t => t.Contains("<p>") || t.Contains("</a>") || t.Contains("&amp;") || t.Contains("&quot;") || t.Contains("\n\n\n"));
        Assert.All(texts, t => Assert.Equal(t.Trim(), t));
        Assert.True(dump.Questions.Count(q => q.Answers.Any(a => a.Accepted)) > 300);
        Assert.All(dump.Questions, q => Assert.True(q.Answers.Count(a => a.Accepted) <= 1));
    }

    [Fact]
    public void CoffeeDumpCountsMatchTheDataReadme()
    {
        var dump = StackExchange.Read(Coffee, null, Ct);
        Assert.Equal("coffee", dump.Site);
        Assert.Equal(225, dump.Questions.Count);
        Assert.Equal(327, dump.Questions.Sum(q => q.Answers.Count));
        Assert.Equal(82, dump.Questions.Count(q => q.Answers.Count >= 2));
        Assert.Equal(0, dump.UnknownParentAnswers);
    }

    [Fact]
    public void LimitKeepsTheFirstQuestionsWithAllTheirAnswers()
    {
        var all = StackExchange.Read(Beer, null, Ct);
        var ten = StackExchange.Read(Beer, limit: 10, Ct);
        Assert.Equal(all.Questions.Take(10).Select(q => q.Id), ten.Questions.Select(q => q.Id));
        Assert.Equal(all.Questions.Take(10).Select(q => q.Answers.Count), ten.Questions.Select(q => q.Answers.Count));
        Assert.Equal(0, ten.UnknownParentAnswers); // answers of questions past the limit are not strays
    }

    [Fact]
    public void RunWritesPairsOfDifferentScoresSplitByQuestion()
    {
        using var dir = new TempDir();
        var config = new PmpData.Config { Posts = [Beer, Coffee], OutputDir = dir.File("out"), PairsPerQuestion = 4, EvalFraction = 0.2, Seed = 5 };
        var stats = PmpData.Run(config, Ct);
        Assert.Equal(888, stats.QuestionsRead);
        Assert.Equal(1899, stats.AnswersRead);
        Assert.Equal(492, stats.QuestionsWithTwoAnswers);
        Assert.Equal(1899, stats.ScoreHistogram.Values.Sum());
        Assert.Equal(stats, PmpData.ReadStats(config.OutputDir) with { ScoreHistogram = stats.ScoreHistogram });
        Assert.Equal(stats.ScoreHistogram, PmpData.ReadStats(config.OutputDir).ScoreHistogram);

        var train = Jsonl.ReadAll<MixedComparison>(dir.File("out/pmp_train.jsonl"));
        var eval = Jsonl.ReadAll<MixedComparison>(dir.File("out/pmp_eval.jsonl"));
        Assert.Equal(stats.PairsTrain, train.Count);
        Assert.Equal(stats.PairsEval, eval.Count);
        Assert.True(stats.PairsTrain + stats.PairsEval <= 4 * (stats.QuestionsTrain + stats.QuestionsEval));
        Assert.True(stats.PairsAvailable > stats.PairsTrain + stats.PairsEval);

        // No question in both files; about a fifth of the questions held out.
        var trainQuestions = train.Select(c => c.Messages[0].Content).ToHashSet();
        var evalQuestions = eval.Select(c => c.Messages[0].Content).ToHashSet();
        Assert.Empty(trainQuestions.Intersect(evalQuestions));
        Assert.Equal(stats.QuestionsTrain, trainQuestions.Count);
        Assert.Equal(stats.QuestionsEval, evalQuestions.Count);
        Assert.InRange(evalQuestions.Count / (double)(trainQuestions.Count + evalQuestions.Count), 0.1, 0.3);

        // Each row: the preferred answer (A when p_a = 1) has the higher PMP score in its question.
        var questions = StackExchange.Read(Beer, null, Ct).Questions.Concat(StackExchange.Read(Coffee, null, Ct).Questions)
            .GroupBy(q => $"{q.Title}\n\n{q.Body}").ToDictionary(g => g.Key, g => g.ToList());
        var all = train.Concat(eval).ToList();
        Assert.Equal(all.Count, all.Select(c => c.Id).Distinct().Count());
        foreach (var c in all)
        {
            Assert.Equal("stackexchange", c.Source);
            var answers = questions[c.Messages[0].Content].SelectMany(q => q.Answers).ToList();
            var a = answers.First(x => x.Text == c.ResponseA).PmpScore;
            var b = answers.First(x => x.Text == c.ResponseB).PmpScore;
            Assert.NotEqual(a, b);
            Assert.Equal(a > b ? 1.0 : 0.0, c.PA);
        }
        Assert.InRange(all.Average(c => c.PA), 0.4, 0.6);

        // Shuffled: one question's pairs do not follow each other.
        var sameQuestionInARow = train.Zip(train.Skip(1)).Count(p => p.First.Messages[0].Content == p.Second.Messages[0].Content);
        Assert.True(sameQuestionInARow < train.Count / 20, $"{sameQuestionInARow} of {train.Count} rows follow a row of the same question");
    }

    [Fact]
    public void RunIsDeterministicUnderASeedAndStableUnderALimit()
    {
        using var dir = new TempDir();
        var config = new PmpData.Config { Posts = [Beer], OutputDir = dir.File("a"), EvalFraction = 0.1, Seed = 11 };
        PmpData.Run(config, Ct);
        PmpData.Run(config with { OutputDir = dir.File("b") }, Ct);
        PmpData.Run(config with { OutputDir = dir.File("c"), Seed = 12 }, Ct);
        foreach (var file in new[] { PmpData.TrainFile, PmpData.EvalFile, PmpData.StatsFile })
            Assert.Equal(File.ReadAllText(dir.File($"a/{file}")), File.ReadAllText(dir.File($"b/{file}")));
        Assert.NotEqual(File.ReadAllText(dir.File($"a/{PmpData.TrainFile}")), File.ReadAllText(dir.File($"c/{PmpData.TrainFile}")));

        // The first 50 questions draw the same pairs, order and split whether or not the rest is read.
        PmpData.Run(config with { OutputDir = dir.File("d"), Limit = 50 }, Ct);
        string[] Lines(string folder, string file) => File.ReadAllLines(dir.File($"{folder}/{file}"));
        Assert.NotEmpty(Lines("d", PmpData.TrainFile));
        Assert.All(Lines("d", PmpData.TrainFile), l => Assert.Contains(l, Lines("a", PmpData.TrainFile)));
        Assert.All(Lines("d", PmpData.EvalFile), l => Assert.Contains(l, Lines("a", PmpData.EvalFile)));
    }

    [Fact]
    public void AnswerLengthBoundsDropAnswersBeforePairing()
    {
        using var dir = new TempDir();
        var config = new PmpData.Config { Posts = [Beer], OutputDir = dir.File("o"), EvalFraction = 0, MinAnswerChars = 200, MaxAnswerChars = 1000 };
        var stats = PmpData.Run(config, Ct);
        Assert.True(stats.AnswersOutsideLength > 100);
        var rows = Jsonl.ReadAll<MixedComparison>(dir.File("o/pmp_train.jsonl"));
        Assert.NotEmpty(rows);
        Assert.All(rows, c => Assert.All(new[] { c.ResponseA, c.ResponseB }, t => Assert.InRange(t.Length, 200, 1000)));
        Assert.Empty(Jsonl.ReadAll<MixedComparison>(dir.File("o/pmp_eval.jsonl")));
    }

    // ---- bad input -------------------------------------------------------------------------------

    static string Write(TempDir dir, string text, string name = "site.Posts.xml")
    {
        var path = dir.File(name);
        File.WriteAllText(path, text);
        return path;
    }

    const string Header = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<posts>\n";
    const string Question = "  <row Id=\"1\" PostTypeId=\"1\" Score=\"3\" Title=\"Why?\" Body=\"&lt;p&gt;Body&lt;/p&gt;\" />\n";

    [Fact]
    public void MalformedXmlNamesFileAndLine()
    {
        using var dir = new TempDir();
        var path = Write(dir, Header + Question + "  <row Id=\"2\" PostTypeId=\"2\" ParentId=\"1\" Score=\"1\" Body=\"fish & chips\" />\n</posts>\n");
        var e = Assert.Throws<UserError>(() => StackExchange.Read(path, null, Ct));
        Assert.StartsWith($"{path}:4: malformed XML", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void UnclosedRootIsMalformed()
    {
        using var dir = new TempDir();
        var path = Write(dir, Header + Question);
        var e = Assert.Throws<UserError>(() => StackExchange.Read(path, null, Ct));
        Assert.StartsWith($"{path}:", e.Message);
        Assert.Contains("malformed XML", e.Message);
    }

    [Fact]
    public void RowWithoutIdIsAnError()
    {
        using var dir = new TempDir();
        var path = Write(dir, Header + Question + "  <row PostTypeId=\"2\" ParentId=\"1\" Score=\"1\" Body=\"x\" />\n</posts>\n");
        Assert.Equal($"{path}:4: Id: is missing from the row", Assert.Throws<UserError>(() => StackExchange.Read(path, null, Ct)).Message);
    }

    [Fact]
    public void RowWithoutPostTypeIdIsAnError()
    {
        using var dir = new TempDir();
        var path = Write(dir, Header + "  <row Id=\"1\" Title=\"t\" Body=\"b\" />\n</posts>\n");
        Assert.Equal($"{path}:3: PostTypeId: is missing from the row", Assert.Throws<UserError>(() => StackExchange.Read(path, null, Ct)).Message);
    }

    [Fact]
    public void AnswerWithoutScoreOrWithATextScoreIsAnError()
    {
        using var dir = new TempDir();
        var missing = Write(dir, Header + Question + "  <row Id=\"2\" PostTypeId=\"2\" ParentId=\"1\" Body=\"x\" />\n</posts>\n", "a.Posts.xml");
        Assert.Equal($"{missing}:4: Score: is missing from the row", Assert.Throws<UserError>(() => StackExchange.Read(missing, null, Ct)).Message);
        var text = Write(dir, Header + Question + "  <row Id=\"2\" PostTypeId=\"2\" ParentId=\"1\" Score=\"many\" Body=\"x\" />\n</posts>\n", "b.Posts.xml");
        Assert.Equal($"{text}:4: Score: expected an integer, got 'many'", Assert.Throws<UserError>(() => StackExchange.Read(text, null, Ct)).Message);
    }

    [Fact]
    public void RepeatedIdIsAnError()
    {
        using var dir = new TempDir();
        var path = Write(dir, Header + Question + Question + "</posts>\n");
        Assert.Equal($"{path}:4: Id: post 1 appears twice (first on line 3)", Assert.Throws<UserError>(() => StackExchange.Read(path, null, Ct)).Message);
    }

    [Fact]
    public void AnswerToAnUnknownQuestionIsSkippedAndCounted()
    {
        using var dir = new TempDir();
        var path = Write(dir, Header + Question
            + "  <row Id=\"2\" PostTypeId=\"2\" ParentId=\"1\" Score=\"1\" Body=\"kept\" />\n"
            + "  <row Id=\"3\" PostTypeId=\"2\" ParentId=\"99\" Score=\"5\" Body=\"stray\" />\n"
            + "  <row Id=\"4\" PostTypeId=\"5\" Body=\"a tag wiki\" />\n</posts>\n");
        var dump = StackExchange.Read(path, null, Ct);
        var question = Assert.Single(dump.Questions);
        Assert.Equal("Body", question.Body);
        Assert.Equal("kept", Assert.Single(question.Answers).Text);
        Assert.Equal(1, dump.UnknownParentAnswers);
        Assert.Equal(1, dump.OtherPosts);
    }

    [Fact]
    public void AnswerBeforeItsQuestionIsAttached()
    {
        using var dir = new TempDir();
        var path = Write(dir, Header + "  <row Id=\"2\" PostTypeId=\"2\" ParentId=\"1\" Score=\"-3\" Body=\"early\" />\n" + Question.Replace("Id=\"1\" PostTypeId=\"1\"", "Id=\"1\" PostTypeId=\"1\" AcceptedAnswerId=\"2\"") + "</posts>\n");
        var answer = Assert.Single(Assert.Single(StackExchange.Read(path, null, Ct).Questions).Answers);
        Assert.True(answer.Accepted);
        Assert.Equal(-1, answer.PmpScore);
    }

    [Fact]
    public void EmptyFileIsAnError()
    {
        using var dir = new TempDir();
        var path = Write(dir, "");
        var e = Assert.Throws<UserError>(() => StackExchange.Read(path, null, Ct));
        Assert.StartsWith($"{path}: empty file", e.Message);
    }

    [Fact]
    public void DtdIsRefused()
    {
        using var dir = new TempDir();
        var path = Write(dir, "<?xml version=\"1.0\"?>\n<!DOCTYPE posts [ <!ENTITY big \"xxxxxxxx\"> ]>\n<posts>\n  <row Id=\"1\" PostTypeId=\"1\" Title=\"&big;\" Body=\"b\" />\n</posts>\n");
        var e = Assert.Throws<UserError>(() => StackExchange.Read(path, null, Ct));
        Assert.StartsWith($"{path}:2: malformed XML", e.Message);
        Assert.Contains("DTD", e.Message);
    }

    [Fact]
    public void OtherDumpFileIsRefusedByItsRoot()
    {
        using var dir = new TempDir();
        var path = Write(dir, "<?xml version=\"1.0\"?>\n<comments>\n  <row Id=\"1\" PostId=\"1\" Text=\"hi\" />\n</comments>\n", "Comments.xml");
        Assert.Equal($"{path}:2: expected <posts> as the root element, got <comments>; is this a Posts.xml?", Assert.Throws<UserError>(() => StackExchange.Read(path, null, Ct)).Message);
    }

    [Fact]
    public void RunWithoutQuestionsOrWithOneSiteTwiceIsAnError()
    {
        using var dir = new TempDir();
        var empty = Write(dir, Header + "</posts>\n", "empty.Posts.xml");
        Assert.Equal("cfg.yaml: posts: the files hold no questions",
            Assert.Throws<UserError>(() => PmpData.Run(new PmpData.Config { Posts = [empty], OutputDir = dir.File("o") }, Ct, "cfg.yaml")).Message);
        var twice = Assert.Throws<UserError>(() => PmpData.Run(new PmpData.Config { Posts = [Beer, Beer], OutputDir = dir.File("o") }, Ct, "cfg.yaml"));
        Assert.Contains("both site 'beer'", twice.Message);
        Assert.False(Directory.Exists(dir.File("o")));
    }

    // ---- config and command ----------------------------------------------------------------------


    [Fact]
    public void PostsTakesOnePathOrAList()
    {
        var one = StageConfig.Parse<PmpData.Config>("posts: a.Posts.xml\noutput_dir: o\n", "c.yaml", "/data");
        Assert.Equal(["/data/a.Posts.xml"], one.Posts);
        var two = StageConfig.Parse<PmpData.Config>("posts: [a.Posts.xml, /x/b.Posts.xml]\noutput_dir: o\n", "c.yaml", "/data");
        Assert.Equal(["/data/a.Posts.xml", "/x/b.Posts.xml"], two.Posts);
        Assert.Equal("c.yaml:3: eval_fraction: must be in [0, 1), got 1",
            Assert.Throws<UserError>(() => StageConfig.Parse<PmpData.Config>("posts: a\noutput_dir: o\neval_fraction: 1\n", "c.yaml")).Message);
        var shipped = StageConfig.Load<PmpData.Config>(System.IO.Path.Combine(Repository.Root, "configs", "stages", "pmp-data.yaml"));
        Assert.Single(shipped.Posts);
        Assert.Empty(shipped.Problems());
    }

    [Fact]
    public void CommandWritesTheFilesAndRefusesABadKey()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("pmp.yaml"), $"posts: {Beer}\noutput_dir: out\npairs_per_question: 2\neval_fraction: 0.1\nseed: 3\n");
        var run = CliProcess.Run("pmp-data", "--config", dir.File("pmp.yaml"));
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Contains("questions: 663 read, 410 with ≥2 answers; answers: 1572 read", run.Stdout);
        var stats = PmpData.ReadStats(dir.File("out"));
        Assert.Equal(663, stats.QuestionsRead);
        Assert.Equal(stats.PairsTrain, Jsonl.ReadAll<MixedComparison>(dir.File("out/pmp_train.jsonl")).Count);
        Assert.Equal(stats.PairsEval, Jsonl.ReadAll<MixedComparison>(dir.File("out/pmp_eval.jsonl")).Count);

        File.WriteAllText(dir.File("bad.yaml"), $"posts: {Beer}\noutput_dir: out2\npairs_per_questoin: 2\n");
        var bad = CliProcess.Run("pmp-data", "--config", dir.File("bad.yaml"));
        Assert.Equal(2, bad.ExitCode);
        Assert.Equal($"error: {dir.File("bad.yaml")}:3: pairs_per_questoin: unknown key; did you mean 'pairs_per_question'?", bad.Stderr.Trim());
        Assert.False(Directory.Exists(dir.File("out2")));

        var broken = Write(dir, Header + Question, "broken.Posts.xml");
        File.WriteAllText(dir.File("broken.yaml"), $"posts: {broken}\noutput_dir: out3\n");
        var malformed = CliProcess.Run("pmp-data", "--config", dir.File("broken.yaml"));
        Assert.Equal(2, malformed.ExitCode);
        Assert.StartsWith($"error: {broken}:", malformed.Stderr.Trim());
        Assert.Single(malformed.Stderr.Trim().Split('\n'));
    }
}
