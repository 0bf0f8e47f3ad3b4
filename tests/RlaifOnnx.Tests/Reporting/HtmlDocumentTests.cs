using RlaifOnnx.Reporting;

namespace RlaifOnnx.Tests.Reporting;

public class HtmlDocumentTests
{
    [Fact]
    public void Escapes_text_embeds_figures_and_links_to_nothing()
    {
        var png = Plots.Lines("t", "x", "y", [new("c", [0, 1], [0, 1])]);
        var html = new HtmlDocument("a <b> & c").Heading(1, "<script>alert(1)</script>").Paragraph("x < y & \"z\"")
            .Table(["name", "value"], [["<i>", "1.5"]], caption: "cap").Figures((png, "fig \"one\"")).ToHtml();
        Assert.StartsWith("<!DOCTYPE html>", html);
        Assert.Contains("<title>a &lt;b&gt; &amp; c</title>", html);
        Assert.Contains("&lt;script&gt;alert(1)&lt;/script&gt;", html);
        Assert.Contains("<td>&lt;i&gt;</td><td class=\"num\">1.5</td>", html);
        Assert.Equal([(Plots.Width, Plots.Height)], HtmlReportCheck.AssertSelfContained(html));
        Assert.Equal([["name", "value"], ["<i>", "1.5"]], HtmlReportCheck.TableRows(html));
        Assert.Throws<ArgumentException>(() => new HtmlDocument("t").Table(["a", "b"], [["only one"]]));
    }

    [Fact]
    public void The_check_finds_an_outside_link_and_a_broken_image()
    {
        // Negative controls for the self-containment check the report tests rely on.
        Assert.ThrowsAny<Exception>(() => HtmlReportCheck.AssertSelfContained("<img src=\"https://example.org/a.png\">"));
        Assert.ThrowsAny<Exception>(() => HtmlReportCheck.AssertSelfContained("<link rel=\"stylesheet\" href=\"http://cdn.example/x.css\">"));
        Assert.ThrowsAny<Exception>(() => HtmlReportCheck.AssertSelfContained("<img src=\"data:image/png;base64,AAAA\">"));
        Assert.ThrowsAny<Exception>(() => HtmlReportCheck.AssertSelfContained("<script>1</script>"));
    }
}
