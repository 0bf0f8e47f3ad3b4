namespace RlaifOnnx.Records;

/// <summary>A public data set the pipeline reads: where it is published, under which licence, which file and which config key.</summary>
public sealed record PublicDataSet(string Name, string Source, string Licence, string Files, string ReadBy, string Example);

/// <summary>
/// The real data sets the Constitutional AI pipeline is built for (`rlaif data` prints them). None is
/// downloaded by the toolkit: get the files, put them anywhere and name them in the stage configs. The
/// repository's examples/data holds small stand-ins in the same formats.
/// </summary>
public static class PublicDataSets
{
    public static readonly IReadOnlyList<PublicDataSet> All =
    [
        new("hh-rlhf (harmlessness)", "github.com/anthropics/hh-rlhf, folder harmless-base (also on the Hugging Face Hub as Anthropic/hh-rlhf)", "MIT",
            "harmless-base/train.jsonl.gz and test.jsonl.gz: one {\"chosen\", \"rejected\"} transcript pair per line",
            "label: pairs (agreement with people, calibration); revise/label/ppo: prompts (the human turns as red-team prompts)",
            "examples/data/harmlessness-pairs.jsonl"),
        new("hh-rlhf (helpfulness)", "github.com/anthropics/hh-rlhf, folders helpful-base, helpful-online, helpful-rejection-sampled", "MIT",
            "helpful-base/train.jsonl.gz: the same {\"chosen\", \"rejected\"} format",
            "mix: human_comparisons (human helpfulness labels beside the AI harmlessness labels); sft: helpfulness_prompts",
            "examples/data/helpfulness-pairs.jsonl"),
        new("red-team attempts", "github.com/anthropics/hh-rlhf, folder red-team-attempts", "MIT",
            "red_team_attempts.jsonl.gz: transcripts whose first human turns are red-team prompts",
            "revise, label, ppo, evaluate: prompts", "builtin:red-team-train (a small built-in set)"),
        new("Stack Exchange data dump", "archive.org/details/stackexchange (one .7z per site; unpack Posts.xml)", "CC BY-SA 4.0 (attribute the site and authors)",
            "SITE/Posts.xml, e.g. beer.stackexchange.com.7z → Posts.xml (name it beer.Posts.xml to keep the site name)",
            "pmp-data: posts (preference-model pretraining pairs)", "examples/data/stackexchange/tea.Posts.xml"),
        new("Constitutional AI paper prompts", "github.com/anthropics/ConstitutionalHarmlessnessPaper, folder prompts", "no licence file in that repository: check before redistributing",
            "CritiqueRevisionInstructions.json, CritiqueRevisionFewShotPrompts.json, RLMadisonInstructions.json, RLMadisonFewShotPrompts.json",
            "rlaif constitution import FOLDER --out constitution.yaml; then constitution: constitution.yaml in revise/label/evaluate",
            "the embedded default constitution (rlaif constitution show)"),
    ];
}
