using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using RlaifOnnx.Core;

namespace RlaifOnnx.Serving;

/// <summary>The hosting both servers share (<see cref="OpenAIServer"/>, <see cref="RewardServer"/>): a slim ASP.NET Core app on 127.0.0.1.</summary>
internal static class LocalHttpHost
{
    /// <summary>An app bound to 127.0.0.1:<paramref name="port"/> (0 takes any free port), without console logging; routes are the caller's.</summary>
    public static WebApplication Create(int port)
    {
        CheckPort(port);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        return builder.Build();
    }

    /// <summary>A port number outside 0–65535 is a <see cref="UserError"/>; servers check it before loading a model.</summary>
    public static void CheckPort(int port)
    {
        if (port is < 0 or > 65535) throw UserError.At("serve", null, "port", $"must be 0 (any free port) to 65535, got {port}");
    }

    /// <summary>Starts the app and returns the port it bound; a port it cannot listen on is a <see cref="UserError"/>, after <paramref name="cleanUp"/>.</summary>
    public static async Task<int> StartAsync(WebApplication app, int port, Func<ValueTask> cleanUp, CancellationToken cancellationToken)
    {
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (IOException e)
        {
            await cleanUp();
            throw UserError.At("serve", null, "port", $"cannot listen on 127.0.0.1:{port}: {e.Message}");
        }
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new Uri(address).Port;
    }

    /// <summary>
    /// Runs until <paramref name="cancellationToken"/> is cancelled or the host is asked to stop (its
    /// console lifetime turns Ctrl+C and SIGTERM into that).
    /// </summary>
    public static async Task WaitAsync(WebApplication app, CancellationToken cancellationToken)
    {
        using var either = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, app.Lifetime.ApplicationStopping);
        try { await Task.Delay(Timeout.Infinite, either.Token); }
        catch (OperationCanceledException) { }
    }
}
