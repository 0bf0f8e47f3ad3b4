using RlaifOnnx.Inference;

namespace RlaifOnnx.Tests.Inference;

/// <summary>The tree of shared token spans the shared-prefix scorer runs: which tokens run once, and that every question's tokens are covered exactly.</summary>
public class QuestionTreeTests
{
    static int[] Tokens(params int[][] parts) => parts.SelectMany(p => p).ToArray();
    static int[] Span(int from, int count) => Enumerable.Range(from, count).ToArray();

    [Fact]
    public void Both_orders_of_a_principle_share_its_span_and_part_below_it()
    {
        int[] prefix = [1, 2, 3];
        var principle1 = Span(100, 20);
        var principle2 = Span(200, 30);
        int[] aFirst = [7, 8, 9], bFirst = [8, 7, 9];
        var questions = new[] { Tokens(prefix, principle1, aFirst), Tokens(prefix, principle1, bFirst), Tokens(prefix, principle2, aFirst), Tokens(prefix, principle2, bFirst) };

        var tree = new QuestionTree(questions);

        Assert.Equal(3, tree.Shared);
        AssertCovers(tree);
        var top = tree.Nodes.Where(n => n.Parent == QuestionTree.Root).ToList();
        Assert.Equal(new[] { (3, 23), (3, 33) }, top.Select(n => (n.Start, n.End)));
        Assert.All(top, n => Assert.Equal(2, n.Children.Count));
        Assert.Equal(2, tree.Levels().Count());
        // Shared tokens, each principle once, each order's 3 tokens: 3 + 20 + 30 + 4·3, against 4 questions' 4·3 + 2·(20 + 30) + 4·3 run one by one.
        Assert.Equal(3 + 20 + 30 + 4 * 3, tree.TokensRun);
    }

    [Fact]
    public void A_span_shorter_than_the_minimum_is_run_by_each_member_instead()
    {
        int[] prefix = [1, 2];
        var questions = new[] { Tokens(prefix, [50, 51, 52], Span(300, 20)), Tokens(prefix, [50, 51, 52], Span(400, 20)), Tokens(prefix, [60]) };

        var tree = new QuestionTree(questions);

        Assert.Equal(2, tree.Shared);
        AssertCovers(tree);
        Assert.Equal(3, tree.Nodes.Count);
        Assert.All(tree.Nodes, n => Assert.Equal(QuestionTree.Root, n.Parent));
        Assert.All(tree.Nodes, n => Assert.Equal(2, n.Start));
    }

    [Fact]
    public void Duplicates_and_a_question_that_begins_another_end_inside_the_tree()
    {
        var opening = Span(10, 20);
        var questions = new[] { Tokens(opening, Span(100, 20)), Tokens(opening, Span(100, 20)), Tokens(opening, Span(100, 20), Span(500, 5)), opening, Tokens(opening, [9]) };

        var tree = new QuestionTree(questions);

        Assert.Equal(20, tree.Shared);
        Assert.Equal(new[] { 3 }, tree.EndingAtRoot);
        AssertCovers(tree);
        var shared = Assert.Single(tree.Nodes, n => n.Ending.Count == 2);
        Assert.Equal(new[] { 0, 1 }, shared.Ending);
        Assert.Equal((20, 40), (shared.Start, shared.End));
        Assert.Equal((40, 45), (tree.Nodes[Assert.Single(shared.Children)].Start, tree.Nodes[shared.Children[0]].End));
    }

    [Fact]
    public void Questions_without_common_tokens_share_nothing()
    {
        var tree = new QuestionTree([[1, 2, 3], [4, 5], [6]]);
        Assert.Equal(0, tree.Shared);
        AssertCovers(tree);
        Assert.Equal(6, tree.TokensRun);
    }

    /// <summary>Every question ends exactly once; the path to where it ends spells its tokens; every member holds its node's span.</summary>
    static void AssertCovers(QuestionTree tree)
    {
        var endings = tree.EndingAtRoot.Concat(tree.Nodes.SelectMany(n => n.Ending)).Order().ToList();
        Assert.Equal(Enumerable.Range(0, tree.Questions.Count), endings);
        foreach (var node in tree.Nodes)
        {
            Assert.True(node.End > node.Start);
            Assert.Equal(node.Parent == QuestionTree.Root ? tree.Shared : tree.Nodes[node.Parent].End, node.Start);
            foreach (var q in node.Members) Assert.Equal(tree.Questions[node.Members[0]][node.Start..node.End], tree.Questions[q][node.Start..node.End]);
            foreach (var q in node.Ending) Assert.Equal(node.End, tree.Questions[q].Length);
            foreach (var child in node.Children) Assert.Subset(node.Members.ToHashSet(), tree.Nodes[child].Members.ToHashSet());
        }
    }
}
