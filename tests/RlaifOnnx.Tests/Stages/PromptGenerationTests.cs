using RlaifOnnx.Core;
using RlaifOnnx.Stages;


namespace RlaifOnnx.Tests.Stages;

public class PromptGenerationTests
{
    [Fact]
    public void Reads_prompts_and_messages_with_line_numbers()
    {
        using var dir = new TempDir();
        var path = dir.File("p.jsonl");
        File.WriteAllText(path, "{\"prompt\": \"Hello\"}\n\n{\"messages\": [{\"role\": \"system\", \"content\": \"Be kind.\"}, {\"role\": \"user\", \"content\": \"Hi\"}]}\n");
        var entries = PromptGeneration.Read(path);
        Assert.Equal(2, entries.Count);
        Assert.Equal((1, "Hello"), (entries[0].Line, entries[0].Prompt));
        Assert.Equal(3, entries[1].Line);
        Assert.Equal([new ChatMessage("system", "Be kind."), new ChatMessage("user", "Hi")], entries[1].Messages);
    }

    [Fact]
    public void Reads_plain_text_one_prompt_per_line()
    {
        using var dir = new TempDir();
        var path = dir.File("p.txt");
        File.WriteAllText(path, "first\n\nsecond {not json}\n");
        Assert.Equal(["first", "second {not json}"], PromptGeneration.Read(path).Select(e => e.Prompt));
    }

    [Theory]
    [InlineData("{\"prompt\": 5}", ":2: prompt: must be a string")]
    [InlineData("{\"prompt\": \"a\"", ":2: malformed JSON")]
    [InlineData("{\"text\": \"a\"}", ":2: prompt: is missing")]
    [InlineData("[1, 2]", ":2: must be a JSON object")]
    [InlineData("{\"messages\": []}", ":2: messages: must be a non-empty array")]
    [InlineData("{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}", ":2: messages[0].role: 'robot' is not one of system, user, assistant")]
    [InlineData("{\"messages\": [{\"role\": \"user\"}]}", ":2: messages[0].content: must be a string")]
    [InlineData("{\"prompt\": \"a\", \"messages\": []}", ":2: prompt: give either")]
    public void A_bad_line_names_file_line_and_field(string badLine, string expected)
    {
        using var dir = new TempDir();
        var path = dir.File("p.jsonl");
        File.WriteAllText(path, "{\"prompt\": \"fine\"}\n" + badLine + "\n");
        var e = Assert.Throws<UserError>(() => PromptGeneration.Read(path));
        Assert.StartsWith(path + expected, e.Message);
    }
}
