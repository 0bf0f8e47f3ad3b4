using System.Globalization;
using System.Text.Json;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Records;

namespace RlaifOnnx.Stages;

/// <summary>
/// Preference-model pretraining (PMP) data from Stack Exchange, after Askell et al. 2021, "A General
/// Language Assistant as a Laboratory for Alignment" §4 (the Constitutional AI paper's preference
/// models start from such a PMP run). Reads data-dump Posts.xml files as a stream (XmlReader, DTD
/// processing prohibited; never a whole-file DOM), turns each question and its answers into plain text,
/// scores every answer (<see cref="StackExchange.PmpScore"/>), pairs answers with different scores and writes
/// <see cref="MixedComparison"/> rows (source "stackexchange", p_a 1 or 0) — the preference-model
/// training format — split by question into pmp_train.jsonl and pmp_eval.jsonl (each shuffled with the
/// seed), plus stats.json.
/// Run: <c>rlaif pmp-data --config configs/stages/pmp-data.yaml</c>.
/// </summary>
public static class PmpData
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
            var dump = StackExchange.Read(path, remaining, cancellationToken);
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
}
