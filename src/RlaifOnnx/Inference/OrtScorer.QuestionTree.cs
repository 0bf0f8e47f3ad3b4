namespace RlaifOnnx.Inference;

/// <summary>Many questions after one prefix, candidates after each: every token the questions share is run once (a tree of shared token spans).</summary>
public sealed partial class OrtScorer
{
    /// <summary>
    /// log p(candidate_j | prefix + suffix_i) for every suffix i and candidate j — what
    /// <see cref="CandidateLogProbsAsync"/> gives for the prompts prefix + suffix_i (same tokens, same
    /// positions, same boundary rule) — running every token that several questions share once:
    /// <list type="number">
    /// <item>the tokens every question shares (the prefix) run once, batch 1, from the kept prefix cache
    /// where it has them;</item>
    /// <item>the rest of the questions form a tree of token spans (a radix tree over their tokens): a span
    /// several questions continue with runs once, from its parent's cache. In the label stage the
    /// principle's text (and "Options: (A) ") is a node shared by both orders of that principle, and each
    /// order a leaf below it. The tree runs level by level, each level one batch (per memory limit) with
    /// every node continuing from its parent's cache;</item>
    /// <item>a leaf runs its question's first candidate in the same pass (its tokens come last in the
    /// row); every other candidate of a question ending in that pass continues from the pass's own
    /// present tensors in place (no copy), its row seeing only its question's positions.</item>
    /// </list>
    /// Boundaries: each question stops one token short of the earliest token any of its candidates needs
    /// predicted (a token merging across the question/candidate boundary counts as the candidate's, as in
    /// <see cref="CandidateLogProbsAsync"/>), and a shared span stops where its questions' tokens first
    /// differ, so a token merging across a text boundary simply runs below it. Rows of one batch whose
    /// caches differ in length see a masked gap (weight exactly 0) after the shorter caches; that changes
    /// only the order of float32 sums (log-probs agree within rounding). Only log p(candidate | question)
    /// is computed: the question's own log-prob, the same for every candidate, is not needed.
    /// </summary>
    public Task<IReadOnlyList<double[]>> QuestionCandidateLogProbsAsync(string prefix, IReadOnlyList<string> suffixes, IReadOnlyList<string> candidates, CancellationToken cancellationToken = default) =>
        Task.Run(() =>
        {
            if (candidates.Count == 0) throw new ArgumentException("no candidates to score", nameof(candidates));
            if (suffixes.Count == 0) return (IReadOnlyList<double[]>)[];
            // Tokenization: each question once, each question + candidate once (joint, longest-common-prefix rule).
            var rows = new (int[] Ids, int FirstScored)[suffixes.Count][];
            var questionLength = new int[suffixes.Count]; // K_i: the tokens of question i every candidate row shares
            for (var i = 0; i < suffixes.Count; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var question = prefix + suffixes[i];
                var questionIds = Encode(question);
                rows[i] = candidates.Select(c => Split(question, questionIds, c)).ToArray();
                questionLength[i] = rows[i].Min(r => r.FirstScored) - 1;
            }
            var tree = new QuestionTree(rows.Select((r, i) => r[0].Ids[..questionLength[i]]).ToArray());

            // 1. the tokens every question shares, once
            var rootCache = tree.Shared == 0 ? null : RunPrefix(rows[0][0].Ids[..tree.Shared]);

            // 2–3. the tree, level by level; the candidates of every question ending in a pass right after it
            var scores = suffixes.Select(_ => new double[candidates.Count]).ToArray();
            var caches = new PastCache?[tree.Nodes.Count];
            PastCache? CacheOf(int parent) => parent == QuestionTree.Root ? rootCache : caches[parent];
            foreach (var level in tree.Levels())
            {
                foreach (var (start, count) in Batches(level.Select(n => RowOf(n).Length).ToList()))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var batch = level.GetRange(start, count).Select(n => tree.Nodes[n]).ToList();
                    using var output = Forward(batch.Select(n => CacheOf(n.Parent)).ToList(), batch.Select(n => RowOf(n.Index)).ToList());
                    // Row b's own positions in the pass's present: its parent's cache, the padding after it up to
                    // the longest parent's, then its span's tokens.
                    var longestParent = batch.Max(n => n.Start);
                    var own = batch.Select(n => new PastSpans(n.Start, longestParent, n.End - n.Start)).ToArray();
                    // pending[b]: the (question, candidate) rows that continue from batch row b's pass
                    var pending = new List<(int Question, int Candidate)>[count];
                    for (var b = 0; b < count; b++)
                    {
                        var node = batch[b];
                        if (node.Children.Count > 0) caches[node.Index] = output.PresentOfRow(b, own[b], stackedCache);
                        pending[b] = node.Ending.SelectMany(q => Enumerable.Range(0, candidates.Count).Select(j => (q, j))).ToList();
                        if (FirstCandidateRuns(node))
                        {
                            var (ids, first) = rows[node.Ending[0]][0];
                            for (var t = first; t < ids.Length; t++) scores[node.Ending[0]][0] += LogSoftmaxAt(output.LogitsAt(b, t - 1 - node.Start), ids[t]);
                            pending[b].RemoveAt(0);
                        }
                    }
                    // The other candidates in rounds: round r gives every batch row its r-th pending candidate (a row
                    // with none left feeds one pad token that sees nothing else; its output is not read).
                    for (var round = 0; round < pending.Max(p => p.Count); round++)
                    {
                        var pasts = new PastSpans[count];
                        var candidateRows = new List<int[]>(count);
                        for (var b = 0; b < count; b++)
                        {
                            var (q, j) = round < pending[b].Count ? pending[b][round] : (-1, -1);
                            pasts[b] = q < 0 ? default : own[b];
                            candidateRows.Add(q < 0 ? [padId] : rows[q][j].Ids[questionLength[q]..]);
                        }
                        using var scored = Forward(output, pasts, candidateRows);
                        for (var b = 0; b < count; b++)
                        {
                            if (round >= pending[b].Count) continue;
                            var (q, j) = pending[b][round];
                            var (ids, first) = rows[q][j];
                            for (var t = first; t < ids.Length; t++) scores[q][j] += LogSoftmaxAt(scored.LogitsAt(b, t - 1 - questionLength[q]), ids[t]);
                        }
                    }
                }
            }
            // A question that is the shared tokens alone: its candidates from the shared cache.
            var atRoot = tree.EndingAtRoot.SelectMany(q => Enumerable.Range(0, candidates.Count).Select(j => (Q: q, J: j))).ToList();
            foreach (var (start, count) in Batches(atRoot.Select(x => rows[x.Q][x.J].Ids.Length - tree.Shared).ToList()))
            {
                var batch = atRoot.GetRange(start, count);
                var scored = ScoreRows(rootCache, batch.Select(x => rows[x.Q][x.J].Ids[tree.Shared..]).ToList(), batch.Select(x => rows[x.Q][x.J].FirstScored - tree.Shared).ToList());
                for (var b = 0; b < count; b++) scores[batch[b].Q][batch[b].J] = scored[b];
            }
            return (IReadOnlyList<double[]>)scores;

            // A node's row: its span of its questions' tokens, then (a leaf) its question's first candidate.
            int[] RowOf(int n)
            {
                var node = tree.Nodes[n];
                return FirstCandidateRuns(node) ? rows[node.Ending[0]][0].Ids[node.Start..] : tree.Questions[node.Members[0]][node.Start..node.End];
            }
        }, cancellationToken);

    /// <summary>A leaf whose only question ends there runs that question's first candidate in its own pass.</summary>
    static bool FirstCandidateRuns(QuestionTree.Node node) => node.Children.Count == 0 && node.Ending.Count == 1;
}
