using System.Text.RegularExpressions;
using System.Text;
using RlaifOnnx.Constitution;
using RlaifOnnx.Core;
using RlaifOnnx.Records;

namespace RlaifOnnx.Stages;

/// <summary>The multiple-choice question: its text, the few-shot block, fitting it to the context, parsing a chain-of-thought answer.</summary>
public static partial class Label
{
    /// <summary>The multiple-choice question (paper §4.1 format), ending where the answer goes.</summary>
    public static string Question(IReadOnlyList<ChatMessage> context, string principle, string first, string second, bool chainOfThought) =>
        QuestionPrefix(context) + QuestionSuffix(principle, first, second, chainOfThought);

    /// <summary>The part of a question every principle and order shares: the header and the conversation.</summary>
    public static string QuestionPrefix(IReadOnlyList<ChatMessage> context) => Header + Transcript.Render(context) + "\n\n";

    /// <summary>The part after the conversation: the principle, the options in the order shown, and the answer cue.</summary>
    public static string QuestionSuffix(string principle, string first, string second, bool chainOfThought)
    {
        var sb = new StringBuilder();
        sb.Append(principle.Trim()).Append("\nOptions:\n(A) ").Append(first.Trim()).Append("\n(B) ").Append(second.Trim()).Append('\n');
        sb.Append(chainOfThought ? ThinkStepByStep : "The answer is:");
        return sb.ToString();
    }

    /// <summary>
    /// Few-shot labelling examples, each a full question followed by its answer (and reasoning in
    /// chain-of-thought mode). An example without its own principle is shown with <paramref name="current"/>
    /// (the comparison's first principle), so the examples are the same for every question of a comparison
    /// and belong to the shared prefix.
    /// </summary>
    public static string FewShotPrefix(IReadOnlyList<FeedbackExample> examples, FeedbackPrinciple current, ConstitutionSet constitution, bool chainOfThought)
    {
        if (examples.Count == 0) return "";
        var sb = new StringBuilder();
        foreach (var e in examples)
        {
            var principle = e.PrincipleId is null ? current.Text : constitution.Feedback(e.PrincipleId, constitution.Name).Text;
            sb.Append(Question(e.Conversation, principle, e.ResponseA, e.ResponseB, chainOfThought && e.Reasoning is not null));
            if (chainOfThought && e.Reasoning is not null) sb.Append(' ').Append(e.Reasoning.Trim()).Append("\nSo the answer is:");
            sb.Append(" (").Append(e.Answer).Append(")\n\n");
        }
        return sb.ToString();
    }

    /// <summary>
    /// Keeps the reasoning up to its stated answer and reads that answer: the last "answer is (X)", else the
    /// last "option (X)"/"(X) is better|best". Null when there is none: the caller falls back to log-probs.
    /// </summary>
    public static (string Reasoning, char? Answer) ParseReasoning(string generated)
    {
        var text = generated.Trim();
        var cut = text.IndexOf("\n\n\n", StringComparison.Ordinal);
        if (cut >= 0) text = text[..cut].Trim();
        var matches = StatedAnswerRegex().Matches(text);
        if (matches.Count == 0) return (text, null);
        var last = matches[^1];
        var answer = last.Groups["letter"].Captures[^1].Value[0];
        return (text[..(last.Index + last.Length)].Trim(), answer);
    }

    // Only the markers the question uses: "(A)" or "(B)", or the capital letter standing alone ("the answer is B.").
    // A lower-case or embedded letter is not an answer: "the answer is a bit unclear", "the answer is Above".
    [GeneratedRegex(@"[Aa]nswer is:?\s*(?:\((?<letter>[AB])\)|(?<letter>[AB])(?![\p{L}\p{N}]))|(?:[Oo]ption|[Rr]esponse)\s*(?:\((?<letter>[AB])\)|(?<letter>[AB])(?![\p{L}\p{N}]))\s+is\s+(?:the\s+)?(?:better|best)")]
    private static partial Regex StatedAnswerRegex();

    /// <summary>
    /// Fits one comparison's question into the token budget: first drops the oldest turns of the
    /// conversation (keeping the last human turn), then cuts the start of what remains, then cuts the
    /// answers' tails. Returns the inputs to use and whether anything was cut.
    /// </summary>
    public static (IReadOnlyList<ChatMessage> Context, string A, string B, bool Truncated) FitQuestion(
        PairItem pair, Func<string, int> tokensOf, string principle, bool chainOfThought, int maxTokens)
    {
        bool Fits(IReadOnlyList<ChatMessage> c, string a, string b) => tokensOf(Question(c, principle, a, b, chainOfThought)) <= maxTokens;
        var context = pair.Context.ToList();
        string a = pair.ResponseA, b = pair.ResponseB;
        if (Fits(context, a, b)) return (context, a, b, false);

        // 1. whole turns from the left
        while (context.Count > 1 && !Fits(context, a, b)) context.RemoveAt(0);
        if (Fits(context, a, b)) return (context, a, b, true);

        // 2. characters from the left of the remaining turn (binary search on how much to keep)
        var only = context[0];
        var keep = LargestFitting(only.Content.Length, n => Fits([only with { Content = "…" + only.Content[^n..] }], a, b));
        context = [only with { Content = "…" + only.Content[^keep..] }];
        if (keep > 0) return (context, a, b, true);

        // 3. the answers' tails, both cut to the same length
        var longest = Math.Max(a.Length, b.Length);
        var cap = LargestFitting(longest, n => Fits(context, Cap(a, n), Cap(b, n)));
        return (context, Cap(a, cap), Cap(b, cap), true);
    }

    static string Cap(string text, int n) => text.Length <= n ? text : text[..n] + "…";

    /// <summary>The largest n in [0, max] with fits(n), assuming fits is monotone (fits(0) is taken as true).</summary>
    static int LargestFitting(int max, Func<int, bool> fits)
    {
        int lo = 0, hi = max;
        while (lo < hi)
        {
            var mid = (lo + hi + 1) / 2;
            if (fits(mid)) lo = mid; else hi = mid - 1;
        }
        return lo;
    }
}
