using System.Net;
using System.Text;

namespace RlaifOnnx.Reporting;

/// <summary>
/// A self-contained HTML page built top to bottom: headings, paragraphs, tables and PNG figures embedded as
/// base64 data URLs. It has no script and links to nothing outside the file, so it opens offline, in a mail
/// attachment or a CI artifact viewer exactly as written. All text is HTML-escaped.
/// </summary>
public sealed class HtmlDocument(string title)
{
    readonly StringBuilder body = new();

    const string Style = """
        body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; margin: 24px auto; max-width: 1160px; color: #222; line-height: 1.45; padding: 0 16px; }
        h1 { font-size: 26px; margin-bottom: 4px; } h2 { font-size: 20px; margin-top: 32px; border-bottom: 1px solid #ddd; padding-bottom: 4px; } h3 { font-size: 16px; margin-top: 20px; }
        p { margin: 6px 0 10px; } p.note { color: #666; font-size: 13px; }
        table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
        th, td { border: 1px solid #ccc; padding: 4px 10px; } th { background: #f3f3f3; text-align: left; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
        caption { caption-side: top; text-align: left; color: #444; font-size: 13px; padding-bottom: 4px; }
        .figures { display: flex; flex-wrap: wrap; gap: 16px; } figure { margin: 0; } figcaption { color: #555; font-size: 13px; max-width: 560px; }
        img { border: 1px solid #eee; }
        """;

    /// <summary>A heading of level 1–3.</summary>
    public HtmlDocument Heading(int level, string text)
    {
        if (level is < 1 or > 3) throw new ArgumentOutOfRangeException(nameof(level));
        body.Append("<h").Append(level).Append('>').Append(Escape(text)).Append("</h").Append(level).AppendLine(">");
        return this;
    }

    /// <summary>A paragraph of plain text.</summary>
    public HtmlDocument Paragraph(string text)
    {
        body.Append("<p>").Append(Escape(text)).AppendLine("</p>");
        return this;
    }

    /// <summary>A small grey paragraph: where a figure's numbers came from, or why a section is empty.</summary>
    public HtmlDocument Note(string text)
    {
        body.Append("<p class=\"note\">").Append(Escape(text)).AppendLine("</p>");
        return this;
    }

    /// <summary>A table; every column after the first is right-aligned (numbers).</summary>
    public HtmlDocument Table(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows, string? caption = null)
    {
        body.AppendLine("<table>");
        if (caption is not null) body.Append("<caption>").Append(Escape(caption)).AppendLine("</caption>");
        body.Append("<thead><tr>");
        foreach (var h in headers) body.Append("<th>").Append(Escape(h)).Append("</th>");
        body.AppendLine("</tr></thead><tbody>");
        foreach (var row in rows)
        {
            if (row.Count != headers.Count) throw new ArgumentException($"a row has {row.Count} cells for {headers.Count} columns");
            body.Append("<tr>");
            for (var i = 0; i < row.Count; i++)
                body.Append(i == 0 ? "<td>" : "<td class=\"num\">").Append(Escape(row[i])).Append("</td>");
            body.AppendLine("</tr>");
        }
        body.AppendLine("</tbody></table>");
        return this;
    }

    /// <summary>A row of figures: PNG images embedded as data URLs, each with a caption.</summary>
    public HtmlDocument Figures(params IReadOnlyList<(byte[] Png, string Caption)> figures)
    {
        body.AppendLine("<div class=\"figures\">");
        foreach (var (png, caption) in figures)
            body.Append("<figure><img src=\"data:image/png;base64,").Append(Convert.ToBase64String(png))
                .Append("\" alt=\"").Append(Escape(caption)).Append("\" width=\"").Append(Plots.Width).Append("\" height=\"").Append(Plots.Height)
                .Append("\"><figcaption>").Append(Escape(caption)).AppendLine("</figcaption></figure>");
        body.AppendLine("</div>");
        return this;
    }

    /// <summary>The whole page.</summary>
    public string ToHtml() =>
        $"""
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <title>{Escape(title)}</title>
        <style>
        {Style}
        </style>
        </head>
        <body>
        {body}</body>
        </html>

        """;

    public static string Escape(string text) => WebUtility.HtmlEncode(text);
}
