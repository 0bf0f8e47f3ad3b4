using RlaifOnnx.Core;

namespace RlaifOnnx.Constitution;

/// <summary>
/// One critique/revision pair (paper §3.1): the request that asks the model to find what is wrong with
/// its last answer, and the request that asks it to rewrite the answer accordingly.
/// </summary>
public sealed record CritiquePrinciple(string Id, string CritiqueRequest, string RevisionRequest);

/// <summary>
/// One multiple-choice feedback principle (paper §4.1): the question or instruction shown to the feedback
/// model between the conversation and the options (A)/(B).
/// </summary>
public sealed record FeedbackPrinciple(string Id, string Text);

/// <summary>
/// A worked critique → revision dialogue prepended as a few-shot example. <see cref="Conversation"/> ends
/// with the assistant answer being critiqued. <see cref="PrincipleId"/> names the critique principle whose
/// requests the example uses, or is null when the example carries its own request texts.
/// </summary>
public sealed record CritiqueExample(
    IReadOnlyList<ChatMessage> Conversation,
    string? PrincipleId,
    string CritiqueRequest,
    string Critique,
    string RevisionRequest,
    string Revision);

/// <summary>
/// A worked multiple-choice question prepended as a few-shot labelling example. <see cref="Conversation"/>
/// is the context before the two candidate answers; <see cref="Answer"/> is "A" or "B";
/// <see cref="Reasoning"/>, when present, is the step-by-step text used in chain-of-thought mode.
/// </summary>
public sealed record FeedbackExample(
    IReadOnlyList<ChatMessage> Conversation,
    string? PrincipleId,
    string ResponseA,
    string ResponseB,
    string Answer,
    string? Reasoning);

/// <summary>
/// A constitution: the principles the revise and label stages draw from, and their few-shot examples.
/// Read and written as YAML by <see cref="ConstitutionYaml"/>; the default one is embedded in the library.
/// </summary>
public sealed record ConstitutionSet(
    string Name,
    IReadOnlyList<CritiquePrinciple> Critiques,
    IReadOnlyList<FeedbackPrinciple> FeedbackPrinciples,
    IReadOnlyList<CritiqueExample> CritiqueExamples,
    IReadOnlyList<FeedbackExample> FeedbackExamples)
{
    /// <summary>The name a constitution source uses for the embedded default.</summary>
    public const string DefaultName = "default";

    /// <summary>The default constitution shipped with the project (embedded YAML, written by the project).</summary>
    public static ConstitutionSet Default => ConstitutionYaml.LoadDefault();

    /// <summary>"default" (or empty) → the embedded constitution; anything else is a YAML file path.</summary>
    /// <remarks> A config loader may have resolved "default" against the config's folder; a missing file named "default" still means the default.</remarks>
    public static ConstitutionSet Load(string? source) =>
        string.IsNullOrWhiteSpace(source) || source == DefaultName || (Path.GetFileName(source) == DefaultName && !File.Exists(source))
            ? Default
            : ConstitutionYaml.Load(source);

    public CritiquePrinciple Critique(string id, string source) =>
        Critiques.FirstOrDefault(c => c.Id == id)
        ?? throw UserError.At(source, null, "principle_id", $"unknown critique principle id '{id}' (known: {string.Join(", ", Critiques.Select(c => c.Id))})");

    public FeedbackPrinciple Feedback(string id, string source) =>
        FeedbackPrinciples.FirstOrDefault(c => c.Id == id)
        ?? throw UserError.At(source, null, "principle_id", $"unknown feedback principle id '{id}' (known: {string.Join(", ", FeedbackPrinciples.Select(c => c.Id))})");
}
