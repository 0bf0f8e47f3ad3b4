using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using RlaifOnnx.Inference;

namespace RlaifOnnx.Serving;

public sealed partial class OpenAIServer
{
    /// <summary>
    /// stream=true: every token goes out as soon as GenAI's GenerateNextToken has made it (after the
    /// <paramref name="opening"/> chunks: the role, or echoed prompts), then each choice's finish chunk. The
    /// generator's callback feeds a channel the response drains, so a slow client never holds generation up; a
    /// client that disconnects cancels generation before its next token. A piece whose last character is an
    /// incomplete UTF-8 sequence (U+FFFD) waits for the tokens that complete it; a token that adds no text sends an
    /// empty piece instead, since only a failing write tells the server its client has gone. <paramref name="sampling"/>
    /// null generates nothing (max_tokens 0 with echo).
    /// </summary>
    EventStream Streamed(IReadOnlyList<string> prompts, SamplingOptions? sampling, int promptTokens, IReadOnlyList<JsonObject> opening,
        Func<int, string, JsonObject> piece, Func<int, string, JsonObject> finish) => new(async (send, cancellationToken) =>
    {
        foreach (var chunk in opening) await send(chunk);
        var ids = prompts.Select(_ => new List<int>()).ToArray();
        var sent = new int[prompts.Count];   // characters of each answer already sent
        var held = new int[prompts.Count];   // tokens held back in a row for an unfinished character
        long generated = 0;
        IReadOnlyList<Generation>? generations = null;
        try
        {
            if (sampling is not null)
            {
                var tokens = Channel.CreateUnbounded<(int Index, int Token)>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
                var run = Task.Run(async () =>
                {
                    try
                    {
                        return await generator.GenerateAsync(prompts, sampling, (i, token) =>
                        {
                            Interlocked.Increment(ref generated);
                            tokens.Writer.TryWrite((i, token));
                        }, cancellationToken);
                    }
                    finally { tokens.Writer.TryComplete(); }
                }, CancellationToken.None);
                try
                {
                    await foreach (var (i, token) in tokens.Reader.ReadAllAsync(cancellationToken))
                    {
                        ids[i].Add(token);
                        var text = Decode(CollectionsMarshal.AsSpan(ids[i]));
                        // A UTF-8 character spans at most 4 byte tokens: past 3 held back, the U+FFFD is in the text for good.
                        if (text.Length > sent[i] && (text[^1] != '\uFFFD' || held[i] >= 3))
                        {
                            await send(piece(i, text[sent[i]..]));
                            sent[i] = text.Length;
                            held[i] = 0;
                        }
                        else
                        {
                            if (text.Length > sent[i]) held[i]++;
                            await send(piece(i, ""));   // no text yet: an empty piece, so a client that left is noticed
                        }
                    }
                    generations = await run;
                }
                catch
                {
                    // Generation stops at the cancellation; wait for it, so the slot is free when the request ends.
                    try { await run; } catch (Exception) { }
                    throw;
                }
            }
            for (var i = 0; i < prompts.Count; i++)
            {
                var text = generations?[i].Text ?? "";
                if (text.Length > sent[i]) await send(piece(i, text[sent[i]..]));   // what was held back, if anything
                await send(finish(i, generations?[i].FinishReason ?? "length"));
            }
        }
        finally
        {
            metrics.AddTokens(promptTokens, Interlocked.Read(ref generated));
        }
    });
}
