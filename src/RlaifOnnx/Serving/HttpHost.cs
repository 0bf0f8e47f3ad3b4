using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Timeouts;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using RlaifOnnx.Core;
using RlaifOnnx.Inference;

namespace RlaifOnnx.Serving;

/// <summary>Where a server listens, who may call it and how much it takes on; the defaults suit one CPU machine.</summary>
public sealed record ServingOptions
{
    /// <summary>The address to bind: 127.0.0.1 (this machine only), 0.0.0.0 / :: (every interface) or one address.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>The bearer key every /v1 request must carry; null lets anyone call (refused beyond loopback unless <see cref="AllowUnauthenticated"/>).</summary>
    public string? ApiKey { get; init; }
    /// <summary>Serve beyond loopback without a key, knowingly.</summary>
    public bool AllowUnauthenticated { get; init; }
    /// <summary>The largest request body; bigger ones get 413.</summary>
    public long MaxRequestBodyBytes { get; init; } = 4 * 1024 * 1024;
    /// <summary>Requests worked on at once; the model runs them one batch at a time, so more would only queue inside.</summary>
    public int MaxConcurrentRequests { get; init; } = 4;
    /// <summary>Requests waiting for a slot; one more gets 429 with Retry-After.</summary>
    public int MaxQueuedRequests { get; init; } = 64;
    /// <summary>The most tokens one request may need in all (prompts plus max_tokens, summed over its prompts); more is a 400.</summary>
    public int MaxBatchTokens { get; init; } = 16384;
    /// <summary>How long a client may take to send its headers (slow clients are cut off).</summary>
    public TimeSpan RequestHeadersTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>How long one request may run before it is cancelled (answered 504 if nothing was sent yet).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromMinutes(10);
}

/// <summary>
/// The ASP.NET Core host both servers share (<see cref="OpenAIServer"/>, <see cref="RewardServer"/>):
/// Kestrel with its limits (body size, header timeout, request timeout), a concurrency limiter that
/// answers 429 with Retry-After when its queue is full, bearer-key authentication on /v1 compared in
/// constant time, GET /health, and GET /metrics in Prometheus text format.
/// </summary>
public static class HttpHost
{
    const string Limited = "work";

    /// <summary>Checks what can be checked before a model loads: the port, the host, and that a host beyond loopback has a key.</summary>
    public static void Check(int port, ServingOptions options)
    {
        if (port is < 0 or > 65535) throw UserError.At("serve", null, "port", $"must be 0 (any free port) to 65535, got {port}");
        if (options.Host != "localhost" && !IPAddress.TryParse(options.Host, out _))
            throw UserError.At("serve", null, "host", $"must be an IP address (127.0.0.1, 0.0.0.0, ::) or localhost, got \"{options.Host}\"");
        if (!IsLoopback(options.Host) && options.ApiKey is null && !options.AllowUnauthenticated)
            throw UserError.At("serve", null, "host", $"{options.Host} is reachable from other machines; give --api-key-env VARIABLE, or --allow-unauthenticated to serve without a key");
        if (options.MaxRequestBodyBytes <= 0) throw UserError.At("serve", null, "max_request_body_bytes", $"must be positive, got {options.MaxRequestBodyBytes}");
        if (options.MaxConcurrentRequests <= 0) throw UserError.At("serve", null, "max_concurrent_requests", $"must be positive, got {options.MaxConcurrentRequests}");
        if (options.MaxQueuedRequests < 0) throw UserError.At("serve", null, "max_queued_requests", $"must be 0 or more, got {options.MaxQueuedRequests}");
        if (options.MaxBatchTokens <= 0) throw UserError.At("serve", null, "max_batch_tokens", $"must be positive, got {options.MaxBatchTokens}");
    }

    static bool IsLoopback(string host) => host == "localhost" || (IPAddress.TryParse(host, out var a) && IPAddress.IsLoopback(a));

    /// <summary>The URL a client on this machine uses for a server bound to <paramref name="host"/>.</summary>
    public static Uri BaseUrl(string host, int port)
    {
        var reach = host switch { "0.0.0.0" => "127.0.0.1", "::" => "[::1]", _ => host.Contains(':') ? $"[{host}]" : host };
        return new Uri($"http://{reach}:{port}/");
    }

    /// <summary>An app with the limits, authentication, /health and /metrics in place; the model's routes are the caller's.</summary>
    internal static WebApplication Create(int port, ServingOptions options, ServingMetrics metrics)
    {
        Check(port, options);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            kestrel.Limits.RequestHeadersTimeout = options.RequestHeadersTimeout;
            kestrel.Limits.KeepAliveTimeout = TimeSpan.FromSeconds(60);
            kestrel.Limits.MaxConcurrentConnections = 1024;
        });
        var bind = options.Host.Contains(':') ? $"[{options.Host}]" : options.Host;
        builder.WebHost.UseUrls($"http://{bind}:{port}");
        builder.Services.AddRequestTimeouts(timeouts => timeouts.DefaultPolicy = new RequestTimeoutPolicy { Timeout = options.RequestTimeout });
        builder.Services.AddRateLimiter(limiter =>
        {
            limiter.AddPolicy(Limited, _ => RateLimitPartition.GetConcurrencyLimiter(Limited, _ => new ConcurrencyLimiterOptions
            {
                PermitLimit = options.MaxConcurrentRequests,
                QueueLimit = options.MaxQueuedRequests,
                QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
            }));
            limiter.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            limiter.OnRejected = async (rejected, cancellationToken) =>
            {
                rejected.HttpContext.Response.Headers.RetryAfter = "1";
                await Results.Json(new ErrorResponse(new ErrorBody(
                    $"the server is busy: {options.MaxConcurrentRequests} requests running and {options.MaxQueuedRequests} waiting; retry after 1 s", "rate_limit_error")),
                    OpenAIJson.Options, statusCode: 429).ExecuteAsync(rejected.HttpContext);
            };
        });

        var app = builder.Build();
        app.Use(metrics.MeasureAsync);
        app.UseRouting();
        if (options.ApiKey is { } key) app.Use(RequireKey(key));
        app.Use(metrics.QueueAsync);
        app.UseRateLimiter();
        app.Use(metrics.RunAsync);
        app.UseRequestTimeouts();
        app.MapGet("/health", () => Results.Json(new { status = "ok" }, OpenAIJson.Options));
        app.MapGet("/metrics", () => Results.Text(metrics.Render(), "text/plain; version=0.0.4; charset=utf-8"));
        return app;
    }

    /// <summary>Routes that run the model: limited to <see cref="ServingOptions.MaxConcurrentRequests"/> at once.</summary>
    internal static TBuilder Limit<TBuilder>(this TBuilder route) where TBuilder : IEndpointConventionBuilder => route.RequireRateLimiting(Limited);

    /// <summary>
    /// 401 for a /v1 request without "Authorization: Bearer KEY"; the keys' SHA-256 hashes are compared in
    /// constant time, so neither the key's content nor its length leaks through timing.
    /// </summary>
    static Func<HttpContext, RequestDelegate, Task> RequireKey(string key)
    {
        var expected = SHA256.HashData(Encoding.UTF8.GetBytes(key));
        return async (context, next) =>
        {
            if (context.Request.Path.StartsWithSegments("/v1"))
            {
                var header = context.Request.Headers.Authorization.ToString();
                var given = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : "";
                if (!CryptographicOperations.FixedTimeEquals(expected, SHA256.HashData(Encoding.UTF8.GetBytes(given))))
                {
                    context.Response.Headers.WWWAuthenticate = "Bearer";
                    await Error(401, "missing or wrong API key: send \"Authorization: Bearer KEY\"", "authentication_error").ExecuteAsync(context);
                    return;
                }
            }
            await next(context);
        };
    }

    /// <summary>OpenAI's error shape with a status.</summary>
    internal static IResult Error(int status, string message, string type) =>
        Results.Json(new ErrorResponse(new ErrorBody(message, type)), OpenAIJson.Options, statusCode: status);

    /// <summary>A POST body that is not declared as JSON: 400 naming the header, as the OpenAI API answers.</summary>
    internal static IResult? RequireJson(HttpContext context) =>
        context.Request.HasJsonContentType() ? null
            : Error(400, $"Content-Type must be application/json, got \"{context.Request.ContentType}\"", "invalid_request_error");

    /// <summary>Starts the app and returns the port it bound; a port it cannot listen on is a <see cref="UserError"/>, after <paramref name="cleanUp"/>.</summary>
    internal static async Task<int> StartAsync(WebApplication app, int port, string host, Func<ValueTask> cleanUp, CancellationToken cancellationToken)
    {
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (IOException e)
        {
            await cleanUp();
            throw UserError.At("serve", null, "port", $"cannot listen on {host}:{port}: {e.Message}");
        }
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new Uri(address).Port;
    }

    /// <summary>
    /// Runs until <paramref name="cancellationToken"/> is cancelled or the host is asked to stop (its
    /// console lifetime turns Ctrl+C and SIGTERM into that).
    /// </summary>
    internal static async Task WaitAsync(WebApplication app, CancellationToken cancellationToken)
    {
        using var either = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, app.Lifetime.ApplicationStopping);
        try { await Task.Delay(Timeout.Infinite, either.Token); }
        catch (OperationCanceledException) { }
    }
}
