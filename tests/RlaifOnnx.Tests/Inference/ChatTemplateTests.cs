using Microsoft.ML.OnnxRuntimeGenAI;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;

namespace RlaifOnnx.Tests.Inference;

/// <summary>
/// The published chat templates of four model families, rendered by GenAI's own engine. The tokenizer
/// (for bos_token / eos_token) is the shared GPT-2 test model's, whose BOS and EOS are &lt;|endoftext|&gt;.
/// </summary>
public class ChatTemplateTests
{
    // As in the models' tokenizer_config.json files.
    const string ChatML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    const string Llama3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    const string Mistral = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";
    const string Qwen2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    static readonly ChatMessage[] Conversation =
    [
        new("user", "Hi there "),
        new("assistant", "Hello!"),
        new("user", "How are you?"),
    ];

    static Tokenizer SharedTokenizer() => new(SharedData.Require("genai-models/tiny-random-gpt2-fp32"));

    static string Render(string template, IReadOnlyList<ChatMessage> messages)
    {
        using var tokenizer = SharedTokenizer();
        return new ChatTemplate(template, "test/tokenizer_config.json").Render(tokenizer, messages);
    }

    [Fact]
    public void ChatML_renders_exactly()
    {
        Assert.Equal(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there <|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n",
            Render(ChatML, [new("system", "Be brief."), .. Conversation]));
    }

    [Fact]
    public void Llama3_renders_exactly_with_bos_and_trimmed_content()
    {
        Assert.Equal(
            "<|endoftext|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            Render(Llama3, Conversation));
    }

    [Fact]
    public void Mistral_renders_exactly_with_bos_and_eos()
    {
        Assert.Equal(
            "<|endoftext|>[INST] Hi there  [/INST]Hello!<|endoftext|>[INST] How are you? [/INST]",
            Render(Mistral, Conversation));
    }

    [Fact]
    public void Qwen2_adds_its_default_system_prompt()
    {
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there <|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n",
            Render(Qwen2, Conversation));
    }

    [Fact]
    public void A_template_raising_an_exception_is_a_user_error_naming_the_file_and_reason()
    {
        var e = Assert.Throws<UserError>(() => Render(Mistral, [new("system", "x"), new("user", "y")]));
        Assert.StartsWith("test/tokenizer_config.json: chat_template: ONNX Runtime GenAI cannot render this chat template: Conversation roles must alternate", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void A_template_with_an_unknown_filter_is_a_user_error()
    {
        var e = Assert.Throws<UserError>(() => Render("{{ messages | frobnicate }}", Conversation));
        Assert.StartsWith("test/tokenizer_config.json: chat_template: ONNX Runtime GenAI cannot render this chat template: ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void FromFolder_reads_string_and_named_list_forms()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("tokenizer_config.json"), """{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}""");
        Assert.Equal("D", ChatTemplate.FromFolder(dir.Path)!.Source);
        File.WriteAllText(dir.File("tokenizer_config.json"), """{"chat_template": "S"}""");
        Assert.Equal("S", ChatTemplate.FromFolder(dir.Path)!.Source);
        File.WriteAllText(dir.File("tokenizer_config.json"), """{"bos_token": "<s>"}""");
        Assert.Null(ChatTemplate.FromFolder(dir.Path));
        File.WriteAllText(dir.File("tokenizer_config.json"), """{"chat_template": 5}""");
        Assert.Contains("chat_template: must be a string", Assert.Throws<UserError>(() => ChatTemplate.FromFolder(dir.Path)).Message);
    }
}
