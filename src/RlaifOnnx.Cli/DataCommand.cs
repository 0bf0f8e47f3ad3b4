using System.CommandLine;
using RlaifOnnx.Records;

namespace RlaifOnnx.Cli;

/// <summary>`rlaif data`: the public data sets the pipeline reads, where to get them and which config keys read them.</summary>
public static class DataCommand
{
    public static Command Create()
    {
        var command = new Command("data", "List the public data sets the pipeline reads: source, licence, expected files and the config keys that read them");
        command.SetAction(_ =>
        {
            foreach (var set in PublicDataSets.All)
            {
                Console.WriteLine(set.Name);
                Console.WriteLine($"  source:   {set.Source}");
                Console.WriteLine($"  licence:  {set.Licence}");
                Console.WriteLine($"  files:    {set.Files}");
                Console.WriteLine($"  read by:  {set.ReadBy}");
                Console.WriteLine($"  stand-in: {set.Example}");
                Console.WriteLine();
            }
            Console.WriteLine("Nothing is downloaded: put the files anywhere and name them in the stage configs.");
            return 0;
        });
        return command;
    }
}
