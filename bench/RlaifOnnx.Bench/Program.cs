// Benchmarks: each one measures side by side in one run and appends its section to bench/RESULTS.md.
Console.WriteLine("no benchmarks yet");
