using System.CommandLine;
using System.Reflection;
using RlaifOnnx.Configuration;
using RlaifOnnx.Core;
using RlaifOnnx.Stages;

namespace RlaifOnnx.Cli;

/// <summary>
/// One command per row of the pipeline's table of stage kinds (<see cref="Pipeline.Kinds"/>):
/// `rlaif NAME --config FILE`, with `--help-config` for the keys, `--out` for output_dir and a flag for
/// every top-level key (`--steps 5` sets steps), which replaces the file's value or, without --config,
/// makes the config from flags alone. A new stage is a new row there; nothing here changes.
/// </summary>
public static class StageCommands
{
    public static IEnumerable<Command> Create() => Pipeline.Kinds.Select(Create);

    static Command Create(Pipeline.StageKind kind)
    {
        var config = new Option<string?>("--config") { Description = $"Stage config YAML (keys: see `rlaif {kind.Name} --help-config`)" };
        var helpConfig = new Option<bool>("--help-config") { Description = "List the config keys with their meaning and defaults" };
        var command = new Command(kind.Name, kind.Description) { config, helpConfig };
        var keyOptions = new List<(string Key, Option<string?> Option)>();
        foreach (var key in FlagKeys(kind.ConfigType))
        {
            var option = new Option<string?>("--" + key.Replace('.', '-').Replace('_', '-'))
            {
                Description = $"{StageConfig.DocumentationOf(kind.ConfigType, key) ?? "See --help-config."} (key {key})",
            };
            if (key == "output_dir") option.Aliases.Add("--out");
            command.Options.Add(option);
            keyOptions.Add((key, option));
        }
        command.SetAction(async (parse, cancellationToken) =>
        {
            if (parse.GetValue(helpConfig)) { Console.Write(StageConfig.Describe(kind.ConfigType)); return 0; }
            var path = parse.GetValue(config);
            var overrides = keyOptions
                .Where(k => parse.GetResult(k.Option) is { Implicit: false })
                .Select(k => (k.Key, Flag: parse.GetResult(k.Option)!.IdentifierToken?.Value ?? k.Option.Name, Value: parse.GetValue(k.Option) ?? ""))
                .ToList();
            if (path is null && overrides.Count == 0) throw new UserError($"{kind.Name}: give --config FILE (or the keys as flags; see `rlaif {kind.Name} --help`)");
            var loaded = kind.Load(path, overrides);
            var summary = await kind.Run(loaded, path ?? kind.Name, Console.Error.WriteLine, cancellationToken);
            Console.WriteLine(summary);
            return 0;
        });
        return command;
    }

    /// <summary>The keys a flag can set: every scalar key, and those of nested sections as section.key (--lora-rank).</summary>
    static IEnumerable<string> FlagKeys(Type configType)
    {
        foreach (var property in StageConfig.ConfigProperties(configType))
        {
            var key = StageConfig.KeyOf(property);
            if (IsScalar(property)) yield return key;
            else if (property.PropertyType.IsClass && property.PropertyType.GetInterface(nameof(IValidatableConfig)) is not null)
                foreach (var inner in StageConfig.ConfigProperties(property.PropertyType).Where(IsScalar))
                    yield return $"{key}.{StageConfig.KeyOf(inner)}";
        }
    }

    static bool IsScalar(PropertyInfo p)
    {
        var t = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
        return t == typeof(string) || t == typeof(int) || t == typeof(long) || t == typeof(double) || t == typeof(bool) || t.IsEnum;
    }
}
