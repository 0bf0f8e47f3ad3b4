using System.Net;
using System.Text;

namespace RlaifOnnx.Core;

/// <summary>Stack Exchange post bodies (HTML) as the plain text a preference model reads.</summary>
public static partial class HtmlText
{
    /// <summary>
    /// A post body (HTML, already unescaped from the XML attribute) as plain text: tags dropped, entities
    /// decoded, runs of whitespace one space; paragraphs and block elements become a blank line, &lt;br&gt;
    /// a line break, list items "- " or "1. " lines; &lt;pre&gt; blocks (code) keep their text, line breaks
    /// and indentation as they are; inline &lt;code&gt; and links keep their text (a link's address is dropped).
    /// </summary>
    public static string ToText(string html)
    {
        var text = new StringBuilder(html.Length);
        var pre = new StringBuilder();
        var preDepth = 0;
        var lists = new Stack<int>(); // per open list: 0 for <ul>, the next number for <ol>
        var pendingBreaks = 0;        // newlines owed before the next text: 1 line, 2 paragraph
        var pendingSpace = false;

        var i = 0;
        while (i < html.Length)
        {
            var lt = html.IndexOf('<', i);
            var end = lt < 0 ? html.Length : lt;
            if (end > i) Text(html[i..end]);
            if (lt < 0) break;
            if (!TryTag(html, lt, out var next, out var name, out var closing)) { Text("<"); i = lt + 1; continue; }
            i = next;
            if (name == "pre")
            {
                if (!closing) preDepth++;
                else if (preDepth > 0 && --preDepth == 0) FlushPre();
                continue;
            }
            if (preDepth > 0) continue; // <code>, <b> … inside a code block: keep only their text
            switch (name)
            {
                case "br": pendingBreaks = Math.Min(2, pendingBreaks + 1); pendingSpace = false; break;
                case "ul" or "ol":
                    if (closing) lists.TryPop(out _);
                    Break(lists.Count > 0 ? 1 : 2); // a list inside a list item starts on the next line
                    if (!closing) lists.Push(name == "ol" ? 1 : 0);
                    break;
                case "li":
                    Break(1);
                    if (!closing)
                    {
                        var marker = "- ";
                        if (lists.TryPop(out var number))
                        {
                            if (number > 0) marker = $"{number++}. ";
                            lists.Push(number);
                        }
                        Raw(new string(' ', 2 * Math.Max(0, lists.Count - 1)) + marker);
                    }
                    break;
                case "p" or "div" or "blockquote" or "hr" or "table" or "dl" or "h1" or "h2" or "h3" or "h4" or "h5" or "h6": Break(2); break;
                case "tr" or "dt" or "dd": Break(1); break;
                case "td" or "th": pendingSpace = true; break;
                default: break; // inline: a, code, em, strong, span, img, sup, sub, kbd …
            }
        }
        if (preDepth > 0) FlushPre();
        return text.ToString();

        void Break(int newlines) { pendingBreaks = Math.Max(pendingBreaks, newlines); pendingSpace = false; }

        void Text(string raw)
        {
            var decoded = WebUtility.HtmlDecode(raw);
            if (preDepth > 0) { pre.Append(decoded); return; }
            foreach (var c in decoded)
            {
                if (char.IsWhiteSpace(c)) { pendingSpace = true; continue; }
                if (pendingBreaks == 0 && pendingSpace && text.Length > 0 && text[^1] != '\n' && text[^1] != ' ') text.Append(' ');
                RawChar(c);
            }
        }

        // Appends as is, after any line breaks owed (none at the very start).
        void Raw(string s)
        {
            Owed();
            text.Append(s);
        }

        void RawChar(char c)
        {
            Owed();
            text.Append(c);
        }

        void Owed()
        {
            if (pendingBreaks > 0 && text.Length > 0) text.Append('\n', pendingBreaks);
            pendingBreaks = 0;
            pendingSpace = false;
        }

        void FlushPre()
        {
            // HTML drops one newline right after <pre>; the trailing newline before </pre> is layout too.
            var code = pre.ToString();
            if (code.StartsWith("\r\n", StringComparison.Ordinal)) code = code[2..];
            else if (code.StartsWith('\n')) code = code[1..];
            code = code.TrimEnd();
            pre.Clear();
            if (code.Length == 0) return;
            Break(2);
            Raw(code);
            Break(2);
        }
    }

    /// <summary>
    /// Reads the tag starting at html[start] == '&lt;': "&lt;p class='x'&gt;", "&lt;/p&gt;", "&lt;br/&gt;", a comment
    /// or a declaration (name "!"). False when the '&lt;' does not start a tag (e.g. "a &lt; b"), which is then text.
    /// </summary>
    static bool TryTag(string html, int start, out int next, out string name, out bool closing)
    {
        next = start + 1;
        name = "";
        closing = false;
        if (next >= html.Length) return false;
        if (html.AsSpan(next).StartsWith("!--"))
        {
            var endComment = html.IndexOf("-->", next + 3, StringComparison.Ordinal);
            next = endComment < 0 ? html.Length : endComment + 3;
            name = "!";
            return true;
        }
        var p = next;
        if (html[p] == '/') { closing = true; p++; }
        if (p >= html.Length) return false;
        if (html[p] is '!' or '?') { name = "!"; p++; }
        else
        {
            if (!char.IsAsciiLetter(html[p])) return false;
            var nameStart = p;
            while (p < html.Length && char.IsAsciiLetterOrDigit(html[p])) p++;
            name = html[nameStart..p].ToLowerInvariant();
        }
        char? quote = null;
        for (; p < html.Length; p++)
        {
            var c = html[p];
            if (quote is { } q) { if (c == q) quote = null; }
            else if (c is '"' or '\'') quote = c;
            else if (c == '>') { next = p + 1; return true; }
        }
        next = html.Length; // an unclosed tag runs to the end, as browsers read it
        return true;
    }
}
