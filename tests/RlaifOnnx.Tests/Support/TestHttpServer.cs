using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace RlaifOnnx.Tests;

/// <summary>A real HTTP server on 127.0.0.1 (any free port) whose every request goes to one handler; counts requests.</summary>
public sealed class TestHttpServer : IAsyncDisposable
{
    readonly WebApplication app;
    int requests;
    public Uri BaseUrl { get; private set; } = null!;
    public int Requests => Volatile.Read(ref requests);
    public List<DateTimeOffset> Times { get; } = [];

    TestHttpServer(WebApplication app) => this.app = app;

    /// <summary><paramref name="handler"/> gets the context and the 1-based request number.</summary>
    public static async Task<TestHttpServer> StartAsync(Func<HttpContext, int, Task> handler)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var server = new TestHttpServer(app);
        app.Run(context =>
        {
            lock (server.Times) server.Times.Add(DateTimeOffset.UtcNow);
            return handler(context, Interlocked.Increment(ref server.requests));
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.BaseUrl = new Uri(address);
        return server;
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
