namespace RlaifOnnx.Inference;

/// <summary>
/// A radix tree over questions' token sequences: the tokens all questions share (<see cref="Shared"/>),
/// then nodes, each a span [Start, End) of tokens that all its member questions have in common after its
/// parent's span. A question ends at the node whose End is its length (or at the root). Running each
/// node once, continuing from its parent's cache, runs every shared token once. A span shorter than
/// <see cref="MinSharedSpan"/> tokens that would split again right after is not worth a pass of its own:
/// its members' nodes each run it instead (e.g. "Which answer" opening several different principles).
/// </summary>
internal sealed class QuestionTree
{
    /// <summary>The parent of the top nodes: the shared tokens, run before the tree.</summary>
    public const int Root = -1;
    public const int MinSharedSpan = 16;

    public sealed record Node(int Index, int Parent, int Start, int End, int Depth, List<int> Members, List<int> Ending, List<int> Children);

    public IReadOnlyList<int[]> Questions { get; }
    /// <summary>Tokens every question begins with.</summary>
    public int Shared { get; }
    public List<Node> Nodes { get; } = [];
    /// <summary>Questions that are the shared tokens alone.</summary>
    public List<int> EndingAtRoot { get; } = [];

    public QuestionTree(IReadOnlyList<int[]> questions)
    {
        if (questions.Count == 0) throw new ArgumentException("no questions", nameof(questions));
        Questions = questions;
        Shared = questions.Min(q => OrtScorer.CommonPrefixLength(questions[0], q));
        Split(Enumerable.Range(0, questions.Count).ToList(), Shared, Root, 0, EndingAtRoot);
    }

    /// <summary>Nodes level by level (depth 0 first): a level's parents have all run before it.</summary>
    public IEnumerable<List<int>> Levels() => Nodes.GroupBy(n => n.Depth).OrderBy(g => g.Key).Select(g => g.Select(n => n.Index).ToList());

    /// <summary>Tokens one pass per node runs: the shared tokens and every node's span once.</summary>
    public long TokensRun => Shared + Nodes.Sum(n => (long)(n.End - n.Start));

    /// <summary>Members sharing tokens [0, at): those of length at end here; the rest grow nodes, one per next token.</summary>
    void Split(List<int> members, int at, int parent, int depth, List<int> ending)
    {
        ending.AddRange(members.Where(q => Questions[q].Length == at));
        foreach (var group in members.Where(q => Questions[q].Length > at).GroupBy(q => Questions[q][at]))
            Grow(group.ToList(), at, parent, depth);
    }

    void Grow(List<int> members, int at, int parent, int depth)
    {
        var first = Questions[members[0]];
        var end = members.Min(q => at + OrtScorer.CommonPrefixLength(first.AsSpan(at), Questions[q].AsSpan(at)));
        if (members.Count > 1 && end - at < MinSharedSpan && members.Any(q => Questions[q].Length > end))
        {
            // Too short to share: each way the members part at `end` (or end there) grows its own node from `at`.
            foreach (var part in members.GroupBy(q => Questions[q].Length == end ? -1 : Questions[q][end]))
                Grow(part.ToList(), at, parent, depth);
            return;
        }
        var node = new Node(Nodes.Count, parent, at, end, depth, members, [], []);
        Nodes.Add(node);
        if (parent != Root) Nodes[parent].Children.Add(node.Index);
        Split(members, end, node.Index, depth + 1, node.Ending);
    }
}
