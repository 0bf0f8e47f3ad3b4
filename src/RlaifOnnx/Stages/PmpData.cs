using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;

namespace RlaifOnnx.Stages;

/// <summary>One answer as the dump gives it: net vote Score, whether the asker accepted it, the body as plain text.</summary>
public sealed record StackExchangeAnswer(int Id, int Score, bool Accepted, string Text)
{
    /// <summary>The answer's preference-model pretraining score (<see cref="StackExchange.PmpScore"/>).</summary>
    public int PmpScore => StackExchange.PmpScore(Score, Accepted);
}

/// <summary>A question with its answers (in post-id order); Site and Id together name it across dumps.</summary>
public sealed record StackExchangeQuestion(string Site, int Id, string Title, string Body, IReadOnlyList<StackExchangeAnswer> Answers);

/// <summary>
/// What one Posts.xml held: the questions read (at most the limit, in file order) and the rows not used.
/// <paramref name="UnknownParentAnswers"/>: answers whose ParentId names no question in the file (a dump
/// trimmed by hand, or a question deleted after its answers were exported); they are skipped and counted,
/// since one stray row should not cost the rest of the site. <paramref name="OtherPosts"/>: rows of other
/// post types (tag wikis, excerpts, moderator nominations …).
/// </summary>
public sealed record StackExchangeDump(string Site, IReadOnlyList<StackExchangeQuestion> Questions, int UnknownParentAnswers, int OtherPosts);

/// <summary>A preference between two answers to one question: the higher PMP score is preferred.</summary>
public sealed record AnswerPair(StackExchangeAnswer Preferred, StackExchangeAnswer Other);

/// <summary>
/// Preference-model pretraining (PMP) data from Stack Exchange, after Askell et al. 2021, "A General
/// Language Assistant as a Laboratory for Alignment" §4 (the Constitutional AI paper's preference
/// models start from such a PMP run). Reads data-dump Posts.xml files as a stream (XmlReader, DTD
/// processing prohibited; never a whole-file DOM), turns each question and its answers into plain text,
/// scores every answer (<see cref="PmpScore"/>), pairs answers with different scores and writes
/// <see cref="MixedComparison"/> rows (source "stackexchange", p_a 1 or 0) — the preference-model
/// training format — split by question into pmp_train.jsonl and pmp_eval.jsonl (each shuffled with the
/// seed), plus stats.json.
/// Run: <c>rlaif pmp-data --config configs/stages/pmp-data.yaml</c>.
/// </summary>
public static partial class StackExchange
{
    public const string TrainFile = "pmp_train.jsonl";
    public const string EvalFile = "pmp_eval.jsonl";
    public const string StatsFile = "stats.json";
    public const string Source = "stackexchange";

    /// <summary>Configuration of the PMP data step.</summary>
    public sealed record Config : IValidatableConfig
    {
        /// <summary>Stack Exchange data-dump Posts.xml files (one path or a list). Each file is one site, named after the file (beer.Posts.xml → beer) or, for a plain Posts.xml, its folder.</summary>
        [ConfigPath, ConfigOneOrList] public required IReadOnlyList<string> Posts { get; init; }
        /// <summary>Folder for pmp_train.jsonl, pmp_eval.jsonl and stats.json.</summary>
        [ConfigPath] public required string OutputDir { get; init; }
        /// <summary>Most comparisons per question, drawn with the seed from all pairs of its answers whose scores differ.</summary>
        public int PairsPerQuestion { get; init; } = 4;
        /// <summary>Share of questions held out for evaluation, in [0, 1); each question's draw depends only on the seed and its site and id, so no question is in both files.</summary>
        public double EvalFraction { get; init; } = 0.05;
        /// <summary>Seed for the pair draws, the A/B order and the split.</summary>
        public int Seed { get; init; }
        /// <summary>Answers with fewer characters of plain text are left out (1: only empty answers).</summary>
        public int MinAnswerChars { get; init; } = 1;
        /// <summary>Answers with more characters of plain text are left out (null: no upper bound).</summary>
        public int? MaxAnswerChars { get; init; }
        /// <summary>Questions to read in all, the first ones in file order across the files (null: all).</summary>
        public int? Limit { get; init; }

        public IEnumerable<ConfigProblem> Problems()
        {
            if (Posts.Count == 0) yield return new("posts", "needs at least one Posts.xml file");
            if (PairsPerQuestion < 1) yield return new("pairs_per_question", $"must be at least 1, got {PairsPerQuestion}");
            if (EvalFraction is < 0 or >= 1) yield return new("eval_fraction", $"must be in [0, 1), got {EvalFraction}");
            if (MinAnswerChars < 0) yield return new("min_answer_chars", $"must be at least 0, got {MinAnswerChars}");
            if (MaxAnswerChars is { } max && max < Math.Max(MinAnswerChars, 1)) yield return new("max_answer_chars", $"must be at least min_answer_chars and 1, got {max}");
            if (Limit is < 1) yield return new("limit", $"must be at least 1, got {Limit}");
        }
    }

    /// <summary>What stats.json holds. Answer counts cover the questions read (the limit applied).</summary>
    public sealed record Stats(
        int QuestionsRead,
        int AnswersRead,
        int QuestionsWithTwoAnswers,
        int AnswersUnknownParent,
        int OtherPosts,
        int AnswersOutsideLength,
        int PairsAvailable,
        int PairsTrain,
        int PairsEval,
        int QuestionsTrain,
        int QuestionsEval,
        IReadOnlyDictionary<int, int> ScoreHistogram);

    // ---- scoring ---------------------------------------------------------------------------------

    /// <summary>
    /// Askell et al. 2021 §4.1 (PMP data): score = round(log2(1 + upvotes)), +1 if the asker accepted the
    /// answer, and −1 if its votes are negative. The paper speaks of an answer's "upvotes"; a data dump has
    /// one net Score per post (up minus down votes, what the site shows beside the answer), and only a net
    /// count can be negative, so Score stands in for the upvotes when it is ≥ 0 and Score &lt; 0 gives −1,
    /// accepted or not. (Votes.xml lists single votes, but the paper's rule needs no more than this.)
    /// </summary>
    public static int PmpScore(int netScore, bool accepted)
    {
        if (netScore < 0) return -1;
        var score = RoundToNearest(Math.Log2(1.0 + netScore));
        return accepted ? score + 1 : score;
    }

    /// <summary>
    /// Rounds half away from zero (2.5 → 3), the school rounding "rounded to the nearest integer" means,
    /// not .NET's default banker's rounding (2.5 → 2). For PMP scores the choice never shows: log2(1 + n)
    /// is k + 0.5 only when 1 + n = 2^k·√2, which no integer is.
    /// </summary>
    public static int RoundToNearest(double x) => (int)Math.Round(x, MidpointRounding.AwayFromZero);

    // ---- pairs, order, split ---------------------------------------------------------------------

    /// <summary>
    /// All pairs of answers whose PMP scores differ (equal scores say nothing about which is better),
    /// preferred = higher score, in answer order; when there are more than <paramref name="maxPairs"/>,
    /// the first <paramref name="maxPairs"/> of a shuffle drawn from <paramref name="random"/>.
    /// </summary>
    public static IReadOnlyList<AnswerPair> PreferencePairs(IReadOnlyList<StackExchangeAnswer> answers, int maxPairs, Random random)
    {
        var pairs = new List<AnswerPair>();
        for (var i = 0; i < answers.Count; i++)
            for (var j = i + 1; j < answers.Count; j++)
            {
                int si = answers[i].PmpScore, sj = answers[j].PmpScore;
                if (si != sj) pairs.Add(si > sj ? new(answers[i], answers[j]) : new(answers[j], answers[i]));
            }
        if (pairs.Count <= maxPairs) return pairs;
        for (var k = 0; k < maxPairs; k++) // partial Fisher–Yates: a uniform draw without repetition
        {
            var r = random.Next(k, pairs.Count);
            (pairs[k], pairs[r]) = (pairs[r], pairs[k]);
        }
        return pairs.GetRange(0, maxPairs);
    }

    /// <summary>How many pairs <see cref="PreferencePairs"/> draws from when unbounded.</summary>
    public static int CountPairsOfDifferentScore(IReadOnlyList<StackExchangeAnswer> answers)
    {
        var count = 0;
        for (var i = 0; i < answers.Count; i++)
            for (var j = i + 1; j < answers.Count; j++)
                if (answers[i].PmpScore != answers[j].PmpScore) count++;
        return count;
    }

    /// <summary>
    /// The comparisons of one question: its answers paired by <see cref="PreferencePairs"/>, each shown with
    /// the preferred answer as A or B at random, so p_a is 1.0 or 0.0 and a model cannot learn "A wins".
    /// The prompt is the question as one user turn, "Title\n\nBody". Draws depend only on (seed, site, id),
    /// and the id on the two answers, so the output is the same whatever else is read.
    /// </summary>
    public static IReadOnlyList<MixedComparison> Comparisons(StackExchangeQuestion question, IReadOnlyList<StackExchangeAnswer> answers, int pairsPerQuestion, int seed)
    {
        var random = StableRandom.For(seed, QuestionKey(question), "pairs");
        var messages = new[] { new ChatMessage("user", $"{question.Title}\n\n{question.Body}") };
        var comparisons = new List<MixedComparison>();
        foreach (var pair in PreferencePairs(answers, pairsPerQuestion, random))
        {
            var preferredIsA = random.Next(2) == 0;
            var (a, b) = preferredIsA ? (pair.Preferred, pair.Other) : (pair.Other, pair.Preferred);
            var id = StableId.Of(question.Site, Invariant(question.Id), Invariant(Math.Min(a.Id, b.Id)), Invariant(Math.Max(a.Id, b.Id)));
            comparisons.Add(new MixedComparison($"{Source}/{id}", Source, messages, a.Text, b.Text, preferredIsA ? 1.0 : 0.0));
        }
        return comparisons;
    }

    /// <summary>Whether a question goes to the eval file: a draw from (seed, site, id) alone, so the split holds under any limit or file order.</summary>
    public static bool IsEval(StackExchangeQuestion question, double evalFraction, int seed) =>
        evalFraction > 0 && StableRandom.For(seed, QuestionKey(question), "split").NextDouble() < evalFraction;

    static string QuestionKey(StackExchangeQuestion question) => $"{question.Site}/{Invariant(question.Id)}";

    static string Invariant(int n) => n.ToString(CultureInfo.InvariantCulture);

    // ---- the run ---------------------------------------------------------------------------------

    public static Stats Run(Config config, CancellationToken cancellationToken = default, string source = "pmp-data config")
    {
        foreach (var problem in config.Problems()) throw UserError.At(source, null, problem.Key, problem.Problem);

        // 1. read every dump (the limit counts questions across the files, in order)
        var dumps = new List<StackExchangeDump>();
        var sites = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var path in config.Posts)
        {
            var remaining = config.Limit - dumps.Sum(d => d.Questions.Count);
            if (remaining <= 0) break;
            var dump = Read(path, remaining, cancellationToken);
            if (!sites.TryAdd(dump.Site, path))
                throw UserError.At(source, null, "posts", $"{path} and {sites[dump.Site]} are both site '{dump.Site}'; their ids would collide");
            dumps.Add(dump);
        }
        var questions = dumps.SelectMany(d => d.Questions).ToList();
        if (questions.Count == 0) throw UserError.At(source, null, "posts", "the files hold no questions");

        // 2. answers within the length bounds, paired per question; questions split by their own draw
        var train = new List<MixedComparison>();
        var eval = new List<MixedComparison>();
        int outsideLength = 0, available = 0, questionsTrain = 0, questionsEval = 0;
        var histogram = new SortedDictionary<int, int>();
        foreach (var question in questions)
        {
            cancellationToken.ThrowIfCancellationRequested();
            foreach (var answer in question.Answers)
                histogram[answer.PmpScore] = histogram.GetValueOrDefault(answer.PmpScore) + 1;
            var kept = question.Answers.Where(a => a.Text.Length >= config.MinAnswerChars && a.Text.Length <= (config.MaxAnswerChars ?? int.MaxValue)).ToList();
            outsideLength += question.Answers.Count - kept.Count;
            available += CountPairsOfDifferentScore(kept);
            var comparisons = Comparisons(question, kept, config.PairsPerQuestion, config.Seed);
            if (comparisons.Count == 0) continue;
            if (IsEval(question, config.EvalFraction, config.Seed)) { eval.AddRange(comparisons); questionsEval++; }
            else { train.AddRange(comparisons); questionsTrain++; }
        }

        // 3. shuffle (a trainer reading in order should not meet one question's pairs in a row), then
        //    write each file atomically, stats.json last
        var shuffle = StableRandom.For(config.Seed, Source, "shuffle");
        var trainRows = train.ToArray();
        var evalRows = eval.ToArray();
        shuffle.Shuffle(trainRows);
        shuffle.Shuffle(evalRows);
        var stats = new Stats(
            QuestionsRead: questions.Count,
            AnswersRead: questions.Sum(q => q.Answers.Count),
            QuestionsWithTwoAnswers: questions.Count(q => q.Answers.Count >= 2),
            AnswersUnknownParent: dumps.Sum(d => d.UnknownParentAnswers),
            OtherPosts: dumps.Sum(d => d.OtherPosts),
            AnswersOutsideLength: outsideLength,
            PairsAvailable: available,
            PairsTrain: train.Count,
            PairsEval: eval.Count,
            QuestionsTrain: questionsTrain,
            QuestionsEval: questionsEval,
            ScoreHistogram: histogram);
        Jsonl.Write(Path.Combine(config.OutputDir, TrainFile), trainRows);
        Jsonl.Write(Path.Combine(config.OutputDir, EvalFile), evalRows);
        AtomicFile.WriteAllText(Path.Combine(config.OutputDir, StatsFile), JsonSerializer.Serialize(stats, StatsJson) + "\n");
        return stats;
    }

    static readonly JsonSerializerOptions StatsJson = new(Jsonl.JsonlOptions) { WriteIndented = true };

    /// <summary>Reads a stats.json written by <see cref="Run"/>.</summary>
    public static Stats ReadStats(string outputDir) =>
        JsonSerializer.Deserialize<Stats>(File.ReadAllText(Path.Combine(outputDir, StatsFile)), StatsJson)!;

    /// <summary>The short summary the command prints.</summary>
    public static string Describe(Stats s) =>
        $"questions: {s.QuestionsRead} read, {s.QuestionsWithTwoAnswers} with ≥2 answers; answers: {s.AnswersRead} read, {s.AnswersOutsideLength} outside the length bounds, {s.AnswersUnknownParent} with an unknown question skipped\n" +
        $"comparisons: {s.PairsTrain} train ({s.QuestionsTrain} questions), {s.PairsEval} eval ({s.QuestionsEval} questions), from {s.PairsAvailable} pairs of different scores\n" +
        $"PMP scores: {string.Join(", ", s.ScoreHistogram.Select(kv => $"{kv.Key}: {kv.Value}"))}\n";

    // ---- reading a dump --------------------------------------------------------------------------

    /// <summary>The site a Posts.xml belongs to: "beer" for beer.Posts.xml, the folder's name for a plain Posts.xml.</summary>
    public static string SiteOf(string path)
    {
        var name = Path.GetFileName(path);
        var stem = name.EndsWith("Posts.xml", StringComparison.OrdinalIgnoreCase) ? name[..^"Posts.xml".Length].TrimEnd('.') : Path.GetFileNameWithoutExtension(name);
        return stem.Length > 0 ? stem : Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(path))) is { Length: > 0 } folder ? folder : "site";
    }

    /// <summary>
    /// Streams a Posts.xml (<c>&lt;posts&gt;&lt;row Id PostTypeId … /&gt;…&lt;/posts&gt;</c>): questions (PostTypeId 1)
    /// with Title and Body, answers (PostTypeId 2) with ParentId, Score and Body, bodies turned into plain
    /// text. Answers may come before or after their question. Malformed XML, a DTD, a missing or
    /// non-integer required attribute or a repeated Id is a <see cref="UserError"/> at the row's line.
    /// </summary>
    public static StackExchangeDump Read(string path, int? limit = null, CancellationToken cancellationToken = default)
    {
        if (!File.Exists(path)) throw UserError.At(path, null, null, "file not found");
        if (new FileInfo(path).Length == 0) throw UserError.At(path, null, null, "empty file; expected a Stack Exchange Posts.xml (<posts><row …/></posts>)");

        var questions = new List<(int Id, string Title, string Body, int? AcceptedAnswerId)>();
        var questionIds = new HashSet<int>();
        var keptIds = new HashSet<int>();
        var answersByParent = new Dictionary<int, List<(int Id, int Score, string Body)>>();
        var lineOfId = new Dictionary<int, int>();
        var otherPosts = 0;

        var settings = new XmlReaderSettings
        {
            DtdProcessing = DtdProcessing.Prohibit, // no entity expansion, no external fetches
            XmlResolver = null,
            IgnoreComments = true,
            IgnoreWhitespace = true,
            IgnoreProcessingInstructions = true,
        };
        using var reader = XmlReader.Create(path, settings);
        var lines = (IXmlLineInfo)reader;
        try
        {
            reader.MoveToContent();
            if (reader.NodeType != XmlNodeType.Element || reader.Name != "posts")
                throw UserError.At(path, lines.LineNumber, null, $"expected <posts> as the root element, got <{reader.Name}>; is this a Posts.xml?");
            while (reader.Read())
            {
                if (reader.NodeType != XmlNodeType.Element) continue;
                var line = lines.LineNumber;
                if (reader.Depth != 1 || reader.Name != "row")
                    throw UserError.At(path, line, null, $"expected <row …/> inside <posts>, got <{reader.Name}>");
                cancellationToken.ThrowIfCancellationRequested();

                var id = IntAttribute(reader, "Id", path, line) ?? throw Missing(path, line, "Id");
                var type = IntAttribute(reader, "PostTypeId", path, line) ?? throw Missing(path, line, "PostTypeId");
                if (!lineOfId.TryAdd(id, line)) throw UserError.At(path, line, "Id", $"post {id} appears twice (first on line {lineOfId[id]})");
                switch (type)
                {
                    case 1:
                        questionIds.Add(id);
                        if (questions.Count >= limit) break; // counted as a question, so its answers are not strays
                        keptIds.Add(id);
                        questions.Add((id,
                            reader.GetAttribute("Title") ?? throw Missing(path, line, "Title"),
                            reader.GetAttribute("Body") ?? throw Missing(path, line, "Body"),
                            IntAttribute(reader, "AcceptedAnswerId", path, line)));
                        break;
                    case 2:
                        var parent = IntAttribute(reader, "ParentId", path, line) ?? throw Missing(path, line, "ParentId");
                        var score = IntAttribute(reader, "Score", path, line) ?? throw Missing(path, line, "Score");
                        var body = reader.GetAttribute("Body") ?? throw Missing(path, line, "Body");
                        if (questionIds.Contains(parent) && !keptIds.Contains(parent)) break; // past the limit: not kept
                        if (!answersByParent.TryGetValue(parent, out var list)) answersByParent[parent] = list = [];
                        list.Add((id, score, body));
                        break;
                    default:
                        otherPosts++;
                        break;
                }
            }
        }
        catch (XmlException e)
        {
            // A refused DTD comes without a position; name its line and say why it is refused.
            if (e.LineNumber == 0 && DoctypeLine(path) is { } doctype)
                throw UserError.At(path, doctype, null, "malformed XML: a DTD (<!DOCTYPE …>) is not allowed; Stack Exchange dumps have none, and entity expansion stays off");
            var (line, column) = e.LineNumber > 0 ? (e.LineNumber, e.LinePosition) : (lines.LineNumber, lines.LinePosition);
            throw UserError.At(path, line > 0 ? line : null, null, $"malformed XML{(column > 0 ? $" (column {column})" : "")}: {XmlReason(e.Message)}");
        }

        var unknownParent = answersByParent.Where(kv => !questionIds.Contains(kv.Key)).Sum(kv => kv.Value.Count);
        var site = SiteOf(path);
        var read = questions.Select(q => new StackExchangeQuestion(site, q.Id, q.Title.Trim(), HtmlText.ToText(q.Body),
            answersByParent.GetValueOrDefault(q.Id, [])
                .OrderBy(a => a.Id)
                .Select(a => new StackExchangeAnswer(a.Id, a.Score, a.Id == q.AcceptedAnswerId, HtmlText.ToText(a.Body)))
                .ToList())).ToList();
        return new StackExchangeDump(site, read, unknownParent, otherPosts);
    }

    /// <summary>The line of a "&lt;!DOCTYPE" in the file's prolog (its first lines), if any.</summary>
    static int? DoctypeLine(string path)
    {
        var number = 0;
        foreach (var line in File.ReadLines(path).Take(100))
        {
            number++;
            if (line.Contains("<!DOCTYPE", StringComparison.OrdinalIgnoreCase)) return number;
        }
        return null;
    }

    static UserError Missing(string path, int line, string attribute) => UserError.At(path, line, attribute, "is missing from the row");

    static int? IntAttribute(XmlReader reader, string name, string path, int line)
    {
        var text = reader.GetAttribute(name);
        if (text is null) return null;
        if (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value)) return value;
        throw UserError.At(path, line, name, $"expected an integer, got '{text}'");
    }

    /// <summary>XmlException's message without its trailing "Line 3, position 7." (the error carries those).</summary>
    static string XmlReason(string message) => XmlPosition().Replace(message, "").Trim();

    [GeneratedRegex(@"\s*Line \d+, position \d+\.\s*$")]
    private static partial Regex XmlPosition();
}
