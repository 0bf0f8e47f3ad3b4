using RlaifOnnx.Core;
using RlaifOnnx.Stages;
using RlaifOnnx.Records;


namespace RlaifOnnx.Tests.Stages;

/// <summary>The PMP score (Askell et al. 2021 §4.1), HTML → text and the pair draws, with literal values.</summary>
public class StackExchangeTests
{
    [Theory]
    [InlineData(0, false, 0)]  // log2(1) = 0
    [InlineData(1, false, 1)]  // log2(2) = 1
    [InlineData(3, false, 2)]  // log2(4) = 2
    [InlineData(7, false, 3)]  // log2(8) = 3
    [InlineData(0, true, 1)]   // accepted: +1
    [InlineData(7, true, 4)]
    [InlineData(1000, false, 10)] // log2(1001) = 9.967
    [InlineData(-1, false, -1)]   // voted down: −1
    [InlineData(-5, true, -1)]    // voted down wins over accepted
    public void PmpScoreOfUpvotesAcceptedAndNegative(int score, bool accepted, int expected) =>
        Assert.Equal(expected, StackExchange.PmpScore(score, accepted));

    [Theory]
    // Either side of each k + 0.5: log2(1 + n) for n = 1, 2 (1.585), 4 (2.322), 5 (2.585), 10 (3.459), 11 (3.585).
    [InlineData(1, 1)]
    [InlineData(2, 2)]
    [InlineData(4, 2)]
    [InlineData(5, 3)]
    [InlineData(10, 3)]
    [InlineData(11, 4)]
    public void PmpScoreRoundsToTheNearestInteger(int upvotes, int expected) =>
        Assert.Equal(expected, StackExchange.PmpScore(upvotes, accepted: false));

    [Theory]
    [InlineData(0.5, 1)]
    [InlineData(1.5, 2)]
    [InlineData(2.5, 3)]   // banker's rounding (ToEven) would give 2
    [InlineData(3.5, 4)]
    [InlineData(-0.5, -1)]
    [InlineData(2.49, 2)]
    public void RoundingIsHalfAwayFromZero(double x, int expected) =>
        Assert.Equal(expected, StackExchange.RoundToNearest(x));

    [Theory]
    [InlineData("<p>Fish &amp; chips &lt;3 &quot;yes&quot; &#39;no&#39; caf&eacute; &#x263A; a&nbsp;b</p>", "Fish & chips <3 \"yes\" 'no' café ☺ a b")]
    [InlineData("<p>One\ntwo</p>\n\n<p>Three</p>\n", "One two\n\nThree")]
    [InlineData("line one<br>line two<br/>line three<br /><br />after", "line one\nline two\nline three\n\nafter")]
    [InlineData("  <p>  lots   of \t space  </p>  ", "lots of space")]
    [InlineData("<em>x</em>y and <em>x</em> y", "xy and x y")]
    [InlineData("<p>Run <code>ls -la</code> first:</p>\n\n<pre><code>for x in y:\n    print(x &lt; 3)\n</code></pre>\n\n<p>Done.</p>", "Run ls -la first:\n\nfor x in y:\n    print(x < 3)\n\nDone.")]
    [InlineData("<pre><code>&lt;p&gt;  keep  &amp;  this\n\n  indented</code></pre>", "<p>  keep  &  this\n\n  indented")]
    [InlineData("<blockquote><p>Quoted <strong>bold <em>and italic</em></strong> text</p></blockquote><ul><li>one</li><li>two <b>2</b></li></ul><ol><li>first</li><li>second</li></ol>", "Quoted bold and italic text\n\n- one\n- two 2\n\n1. first\n2. second")]
    [InlineData("<ul><li>outer<ul><li>inner</li></ul></li><li>next</li></ul>", "- outer\n  - inner\n- next")]
    [InlineData("<p>See the <a href=\"http://example.com/a?b=1&amp;c=2\" rel=\"nofollow\">Wikipedia article</a> on it.</p>", "See the Wikipedia article on it.")]
    [InlineData("<a title=\"a>b\" href='x'>text</a> <img src=\"x.png\" alt=\"pic\"> after", "text after")]
    [InlineData("a < b and c > d", "a < b and c > d")]
    [InlineData("a<!-- hidden <p> -->b", "ab")]
    [InlineData("<h1>Title</h1><hr><p>text</p>", "Title\n\ntext")]
    [InlineData("", "")]
    public void HtmlToTextOnLiteralStrings(string html, string expected) =>
        Assert.Equal(expected, HtmlText.ToText(html));

    static StackExchangeAnswer Answer(int id, int score, bool accepted = false) => new(id, score, accepted, $"answer {id}");

    // PMP scores: 1 → 0, 2 → 1, 3 → 2 (accepted 1 vote), 4 → 1, 5 → −1, 6 → 3 (7 votes).
    static readonly StackExchangeAnswer[] Answers = [Answer(1, 0), Answer(2, 1), Answer(3, 1, accepted: true), Answer(4, 1), Answer(5, -2), Answer(6, 7)];

    [Fact]
    public void PairsOnlyBetweenDifferentScoresHigherPreferred()
    {
        Assert.Equal([0, 1, 2, 1, -1, 3], Answers.Select(a => a.PmpScore));
        var pairs = PmpData.PreferencePairs(Answers, maxPairs: 100, new Random(1));
        Assert.Equal(14, pairs.Count); // 15 pairs less (2, 4), the one with equal scores
        Assert.Equal(14, PmpData.CountPairsOfDifferentScore(Answers));
        Assert.All(pairs, p => Assert.True(p.Preferred.PmpScore > p.Other.PmpScore));
        Assert.DoesNotContain(pairs, p => new[] { p.Preferred.Id, p.Other.Id }.Order().SequenceEqual([2, 4]));
        Assert.Equal(14, pairs.Select(p => (Math.Min(p.Preferred.Id, p.Other.Id), Math.Max(p.Preferred.Id, p.Other.Id))).Distinct().Count());
        Assert.Empty(PmpData.PreferencePairs([Answer(1, 1), Answer(2, 1), Answer(3, 1)], 4, new Random(1)));
    }

    [Fact]
    public void AtMostPairsPerQuestionDrawnWithTheSeed()
    {
        var all = PmpData.PreferencePairs(Answers, 100, new Random(0));
        var four = PmpData.PreferencePairs(Answers, 4, new Random(7));
        Assert.Equal(4, four.Count);
        Assert.Equal(4, four.Distinct().Count());
        Assert.All(four, p => Assert.Contains(p, all));
        Assert.Equal(four, PmpData.PreferencePairs(Answers, 4, new Random(7)));
        var draws = Enumerable.Range(0, 20).Select(s => string.Join(",", PmpData.PreferencePairs(Answers, 4, new Random(s)).Select(p => p.Preferred.Id * 10 + p.Other.Id))).Distinct().Count();
        Assert.True(draws > 10, $"only {draws} distinct draws out of 20 seeds");
    }

    [Fact]
    public void ComparisonsPutThePreferredAnswerAsAOrBAtRandom()
    {
        var question = new StackExchangeQuestion("site", 9, "Title", "Body text", Answers);
        var labels = new List<double>();
        for (var seed = 0; seed < 30; seed++)
        {
            var comparisons = PmpData.Comparisons(question, Answers, 3, seed);
            Assert.Equal(3, comparisons.Count);
            Assert.Equal(comparisons.Select(Jsonl.Serialize), PmpData.Comparisons(question, Answers, 3, seed).Select(Jsonl.Serialize));
            foreach (var c in comparisons)
            {
                Assert.Equal("stackexchange", c.Source);
                Assert.StartsWith("stackexchange/", c.Id);
                Assert.Equal("user", Assert.Single(c.Messages).Role);
                Assert.Equal("Title\n\nBody text", c.Messages[0].Content);
                var a = Answers.Single(x => x.Text == c.ResponseA);
                var b = Answers.Single(x => x.Text == c.ResponseB);
                Assert.Equal(a.PmpScore > b.PmpScore ? 1.0 : 0.0, c.PA);
                labels.Add(c.PA);
            }
        }
        var share = labels.Average();
        Assert.InRange(share, 0.3, 0.7);
    }

    [Fact]
    public void ComparisonIdsDependOnTheAnswersNotTheOrder()
    {
        var question = new StackExchangeQuestion("site", 9, "T", "B", Answers);
        var byId = new Dictionary<string, (string, string)>();
        for (var seed = 0; seed < 40; seed++)
            foreach (var c in PmpData.Comparisons(question, Answers, 14, seed))
            {
                var answers = string.CompareOrdinal(c.ResponseA, c.ResponseB) < 0 ? (c.ResponseA, c.ResponseB) : (c.ResponseB, c.ResponseA);
                if (byId.TryGetValue(c.Id, out var seen)) Assert.Equal(seen, answers);
                else byId[c.Id] = answers;
            }
        Assert.Equal(14, byId.Count);
        var other = PmpData.Comparisons(question with { Site = "other" }, Answers, 14, 0);
        Assert.DoesNotContain(other, c => byId.ContainsKey(c.Id));
    }

    [Fact]
    public void EvalDrawIsPerQuestionAndNearTheFraction()
    {
        var questions = Enumerable.Range(1, 2000).Select(i => new StackExchangeQuestion("s", i, "t", "b", [])).ToList();
        var eval = questions.Count(q => PmpData.IsEval(q, 0.1, 3));
        Assert.InRange(eval, 150, 250);
        Assert.Equal(eval, questions.Count(q => PmpData.IsEval(q, 0.1, 3)));
        Assert.Equal(0, questions.Count(q => PmpData.IsEval(q, 0.0, 3)));
        Assert.All(questions.Where(q => PmpData.IsEval(q, 0.05, 3)), q => Assert.True(PmpData.IsEval(q, 0.1, 3))); // the same draw against a larger share
    }

    [Theory]
    [InlineData("/data/beer.Posts.xml", "beer")]
    [InlineData("/dumps/coffee.stackexchange.com/Posts.xml", "coffee.stackexchange.com")]
    [InlineData("/x/other.xml", "other")]
    public void SiteNames(string path, string site) => Assert.Equal(site, StackExchange.SiteOf(path));
}
