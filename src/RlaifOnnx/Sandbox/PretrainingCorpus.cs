using System.Text.Json;
using System.Text.Json.Nodes;
using RlaifOnnx.Constitution;
using RlaifOnnx.Core;
using RlaifOnnx.Records;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Sandbox;

/// <summary>
/// The pretraining corpus of the sandbox base model: what the paper's helpful model brought to the
/// pipeline, and nothing more. Four parts, every line in a format `rlaif train-lm` reads:
/// <list type="number">
/// <item>assistant dialogues in the chat template in which the assistant complies with every request —
/// benign ones answered correctly, harmful ones with the procedure (a helpful-only assistant);</item>
/// <item>text saying which acts are harmful and why, and the facts of the knowledge base;</item>
/// <item>critique and revision episodes in the revise stage's chat format (the constitution's own critique
/// and revision requests) applied only to third-party texts — a forum reply quoted as "Reply by NAME: …" to
/// a question quoted as "Question by NAME on the VILLAGE board: …" — never to an answer of the assistant;</item>
/// <item>multiple-choice comparisons in the label stage's question format (<see cref="Label.Question"/>)
/// over replies to such forum questions, answered " (A)" or " (B)".</item>
/// </list>
/// No assistant turn that answers a user's request refuses; the only declining texts are the revised forum
/// replies of part 3 and the options of part 4. So the assistant's harmlessness can only come from the
/// pipeline stages applying the critique and comparison skills to the assistant itself.
/// </summary>
public static class PretrainingCorpus
{
    /// <summary>How many lines of each part.</summary>
    public sealed record Sizes(int BenignDialogues = 3000, int HarmfulDialogues = 2000, int Knowledge = 600, int Episodes = 1500, int Comparisons = 1500);

    public const string ThirdPartyQuestion = "Question by ";
    public const string ThirdPartyReply = "Reply by ";

    /// <summary>The corpus lines (JSON objects), in a seeded shuffled order.</summary>
    public static List<JsonObject> Build(World world, ConstitutionSet constitution, Sizes sizes, int seed)
    {
        var rng = new Random(seed);
        var lines = new List<JsonObject>();
        for (var i = 0; i < sizes.BenignDialogues; i++) lines.Add(Dialogue(world.Any(ResponseCheck.Benign, rng)));
        for (var i = 0; i < sizes.HarmfulDialogues; i++) lines.Add(Dialogue(world.Any(ResponseCheck.Harmful, rng)));
        foreach (var fact in world.Facts()) lines.Add(Text(fact));
        for (var i = 0; i < sizes.Knowledge; i++) lines.Add(Text(Knowledge(world.Any(ResponseCheck.Harmful, rng), rng)));
        for (var i = 0; i < sizes.Episodes; i++) lines.AddRange(Episode(world, constitution, rng));
        for (var i = 0; i < sizes.Comparisons; i++) lines.Add(Comparison(world, constitution, rng));
        rng.Shuffle(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(lines));
        return lines;
    }

    /// <summary>Part 1: the assistant complies.</summary>
    static JsonObject Dialogue(Request r) => Messages([new("user", r.Text), new("assistant", r.Compliance)]);

    /// <summary>Part 2: why an act is harmful, and what to do instead.</summary>
    static string Knowledge(Request r, Random rng)
    {
        return rng.Next(2) == 0
            ? $"Some people ask: \"{r.Text}\" Doing it is harmful, because {r.Harm}. {r.Alternative}"
            : $"Harm ({r.Kind}): {r.Compliance} This is wrong, because {r.Harm}.";
    }

    /// <summary>Part 3: a forum reply critiqued and revised, as two training lines (loss on the critique, then on the revision).</summary>
    static IEnumerable<JsonObject> Episode(World world, ConstitutionSet constitution, Random rng)
    {
        // Half harmful replies, a fifth replies that already decline helpfully (a later round sees those), the rest benign answers.
        var roll = rng.Next(10);
        var r = world.Any(roll < 8 ? ResponseCheck.Harmful : ResponseCheck.Benign, rng);
        var replyText = roll < 5 ? r.Compliance : roll < 8 ? r.HelpfulRefusal! : r.Compliance;
        var asker = world.People[rng.Next(world.People.Count)];
        var replier = world.People[rng.Next(world.People.Count)];
        var principle = constitution.Critiques[rng.Next(constitution.Critiques.Count)];
        var chat = new List<ChatMessage>
        {
            new("user", $"{ThirdPartyQuestion}{asker.Name} on the {asker.Village} board: {r.Text}"),
            new("assistant", $"{ThirdPartyReply}{replier.Name}: {replyText}"),
            new("user", principle.CritiqueRequest),
        };
        var critique = roll < 5
            ? $"The reply explains how to {r.Act}: \"{r.Compliance}\" That is harmful, because {r.Harm}."
            : roll < 8
                ? "The reply declines to help with harm and offers a safe alternative. It is harmless and helpful as it is."
                : "The reply answers the question correctly and contains nothing harmful.";
        var revision = roll < 5 ? r.HelpfulRefusal! : replyText;
        yield return Messages([.. chat, new("assistant", critique)]);
        yield return Messages([.. chat, new("assistant", critique), new("user", principle.RevisionRequest), new("assistant", revision)]);
    }

    /// <summary>Part 4: two replies to a forum question, the better one named.</summary>
    static JsonObject Comparison(World world, ConstitutionSet constitution, Random rng)
    {
        var harmful = rng.Next(10) < 7;
        var r = world.Any(harmful ? ResponseCheck.Harmful : ResponseCheck.Benign, rng);
        var asker = world.People[rng.Next(world.People.Count)];
        // (better, worse): harmless-and-helpful beats harmful and evasive; evasive beats harmful; correct beats wrong.
        var (better, worse) = harmful
            ? rng.Next(3) switch { 0 => (r.HelpfulRefusal!, r.Compliance), 1 => (r.HelpfulRefusal!, r.EvasiveRefusal!), _ => (r.EvasiveRefusal!, r.Compliance) }
            : (r.Compliance, r.Wrong!);
        var principle = constitution.FeedbackPrinciples[rng.Next(constitution.FeedbackPrinciples.Count)];
        var betterFirst = rng.Next(2) == 0;
        var question = Label.Question([new ChatMessage("user", $"{ThirdPartyQuestion}{asker.Name} on the {asker.Village} board: {r.Text}")],
            principle.Text, betterFirst ? better : worse, betterFirst ? worse : better, chainOfThought: false);
        return new JsonObject { ["prompt"] = question, ["completion"] = betterFirst ? Label.CandidateA : Label.CandidateB };
    }

    static JsonObject Text(string text) => new() { ["text"] = text };

    static JsonObject Messages(IEnumerable<ChatMessage> messages) => new()
    {
        ["messages"] = new JsonArray(messages.Select(m => (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content }).ToArray()),
    };

    /// <summary>
    /// The assistant turns of the corpus that answer a user's own request (the first assistant turn of a
    /// dialogue whose first user turn is not a quoted forum question): the turns that must never refuse.
    /// </summary>
    public static IEnumerable<string> AssistantAnswers(IEnumerable<JsonObject> lines)
    {
        foreach (var line in lines)
        {
            if (line["messages"] is not JsonArray messages || messages.Count < 2) continue;
            var first = messages[0]!["content"]!.GetValue<string>();
            if (first.StartsWith(ThirdPartyQuestion, StringComparison.Ordinal)) continue;
            yield return messages[1]!["content"]!.GetValue<string>();
        }
    }

    public static string ToJsonl(IEnumerable<JsonObject> lines) => string.Concat(lines.Select(l => l.ToJsonString(JsonlOptions) + "\n"));

    static readonly JsonSerializerOptions JsonlOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}
