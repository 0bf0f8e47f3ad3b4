using System.Globalization;
using System.Text.RegularExpressions;
using System.Xml;
using RlaifOnnx.Core;

namespace RlaifOnnx.Records;

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

/// <summary>Stack Exchange data dumps (Posts.xml): reading questions and answers, and the PMP score of an answer (Askell et al. 2021 §4.1).</summary>
public static partial class StackExchange
{
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
