using System.Buffers.Binary;
using System.Net;
using System.Text.RegularExpressions;

namespace RlaifOnnx.Tests;

/// <summary>
/// Reads a report.html as a browser would load it: every src/href attribute, every image. A report is
/// self-contained when no attribute points outside the file, there is no script, and every image is an
/// embedded PNG that decodes.
/// </summary>
public static partial class HtmlReportCheck
{
    /// <summary>The PNG images of the page, checked: data:image/png;base64, the PNG signature, an IHDR of nonzero size, and SkiaSharp decodes it to that size.</summary>
    public static List<(int Width, int Height)> AssertSelfContained(string html)
    {
        Assert.DoesNotContain("<script", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("@import", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("url(", html, StringComparison.OrdinalIgnoreCase);
        foreach (Match attribute in SrcOrHref().Matches(html))
        {
            var value = attribute.Groups["value"].Value;
            Assert.False(Regex.IsMatch(value, @"^\s*(https?:)?//", RegexOptions.IgnoreCase), $"{attribute.Groups["name"].Value} points outside the file: {value}");
            Assert.StartsWith("data:", value);
        }
        Assert.DoesNotContain("http://", html.Replace("http://www.w3.org", ""), StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("https://", html, StringComparison.OrdinalIgnoreCase);

        var images = new List<(int, int)>();
        var tags = ImageTag().Matches(html);
        foreach (Match tag in tags)
        {
            var src = SrcOrHref().Match(tag.Value);
            Assert.True(src.Success, $"an <img> without src: {tag.Value[..Math.Min(80, tag.Value.Length)]}");
            const string prefix = "data:image/png;base64,";
            var value = src.Groups["value"].Value;
            Assert.StartsWith(prefix, value);
            var png = Convert.FromBase64String(value[prefix.Length..]);
            images.Add(AssertPng(png));
        }
        return images;
    }

    /// <summary>Checks one PNG file's bytes; returns its size from IHDR.</summary>
    public static (int Width, int Height) AssertPng(byte[] png)
    {
        Assert.True(png.Length > 33, "too short for a PNG");
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, png[..8]);
        Assert.Equal(13, BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(8)));
        Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(png, 12, 4));
        var width = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(16));
        var height = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(20));
        Assert.True(width > 0 && height > 0, $"IHDR size {width}×{height}");
        Assert.Equal("IEND", System.Text.Encoding.ASCII.GetString(png, png.Length - 8, 4));
        using var bitmap = SkiaSharp.SKBitmap.Decode(png);
        Assert.NotNull(bitmap);
        Assert.Equal((width, height), (bitmap.Width, bitmap.Height));
        return (width, height);
    }

    /// <summary>The text of every table cell (th and td), HTML-decoded, in page order.</summary>
    public static List<List<string>> TableRows(string html) =>
        RowTag().Matches(html).Select(row => CellTag().Matches(row.Value).Select(c => WebUtility.HtmlDecode(c.Groups["text"].Value)).ToList()).ToList();

    [GeneratedRegex(@"\b(?<name>src|href)\s*=\s*""(?<value>[^""]*)""", RegexOptions.IgnoreCase)]
    private static partial Regex SrcOrHref();

    [GeneratedRegex(@"<img\b[^>]*>", RegexOptions.IgnoreCase)]
    private static partial Regex ImageTag();

    [GeneratedRegex(@"<tr>.*?</tr>", RegexOptions.Singleline)]
    private static partial Regex RowTag();

    [GeneratedRegex(@"<t[hd][^>]*>(?<text>.*?)</t[hd]>", RegexOptions.Singleline)]
    private static partial Regex CellTag();
}
