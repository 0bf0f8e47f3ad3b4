using System.CommandLine;
using RlaifOnnx.Constitution;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif constitution show|validate|import`.</summary>
public static class ConstitutionCommand
{
    /// <summary>The constitutional data commands: constitution, revise, label, mix.</summary>
    public static Command Create()
    {
        var command = new Command("constitution", "Show, validate or import a constitution (critique/revision pairs, feedback principles, few-shot examples)");

        var showSource = new Argument<string>("source") { Description = "\"default\" (the embedded constitution) or a YAML file", DefaultValueFactory = _ => ConstitutionSet.DefaultName };
        var yaml = new Option<bool>("--yaml") { Description = "Print the whole constitution as YAML instead of a summary" };
        var show = new Command("show", "Print a constitution") { showSource, yaml };
        show.SetAction(parse =>
        {
            var source = parse.GetValue(showSource)!;
            var c = ConstitutionSet.Load(source);
            if (parse.GetValue(yaml))
            {
                Console.Write(source == ConstitutionSet.DefaultName ? ConstitutionYaml.DefaultText() : ConstitutionYaml.ToYaml(c));
                return 0;
            }
            Console.WriteLine($"constitution {c.Name}: {c.Critiques.Count} critique/revision pairs, {c.FeedbackPrinciples.Count} feedback principles, " +
                              $"{c.CritiqueExamples.Count} critique examples, {c.FeedbackExamples.Count} labelling examples ({c.FeedbackExamples.Count(e => e.Reasoning is not null)} with reasoning)");
            Console.WriteLine("\ncritique/revision pairs:");
            foreach (var p in c.Critiques) Console.WriteLine($"  {p.Id}: {p.CritiqueRequest}\n  {new string(' ', p.Id.Length + 2)}→ {p.RevisionRequest}");
            Console.WriteLine("\nfeedback principles:");
            foreach (var p in c.FeedbackPrinciples) Console.WriteLine($"  {p.Id}: {p.Text}");
            return 0;
        });
        command.Subcommands.Add(show);

        var validateFile = new Argument<string>("file") { Description = "Constitution YAML file" };
        var validate = new Command("validate", "Check a constitution YAML file (exit 2 with file:line: field: problem when it is wrong)") { validateFile };
        validate.SetAction(parse =>
        {
            var c = ConstitutionYaml.Load(parse.GetValue(validateFile)!);
            Console.WriteLine($"ok: {c.Critiques.Count} critique/revision pairs, {c.FeedbackPrinciples.Count} feedback principles, {c.CritiqueExamples.Count + c.FeedbackExamples.Count} examples");
            return 0;
        });
        command.Subcommands.Add(validate);

        var importSource = new Argument<string>("source") { Description = "A folder with the paper's JSON prompt files, or a {critic, revision} JSON file" };
        var output = new Option<string>("--out") { Description = "Constitution YAML to write", Required = true };
        var name = new Option<string?>("--name") { Description = "Name of the imported constitution" };
        var import = new Command("import", "Convert a published constitution into this project's YAML") { importSource, output, name };
        import.SetAction(parse =>
        {
            var c = ConstitutionImport.Import(parse.GetValue(importSource)!, parse.GetValue(name));
            var path = parse.GetValue(output)!;
            ConstitutionYaml.Save(c, path);
            Console.WriteLine($"wrote {path}: {c.Critiques.Count} critique/revision pairs, {c.FeedbackPrinciples.Count} feedback principles, {c.CritiqueExamples.Count + c.FeedbackExamples.Count} examples");
            return 0;
        });
        command.Subcommands.Add(import);
        return command;
    }
}
