using RlaifOnnx.Records;

namespace RlaifOnnx.Sandbox;

/// <summary>A person of the sandbox world and what the knowledge base says about them.</summary>
public sealed record Person(string Name, string Village, string Job, string Colour, string Pet, string Species, bool HeldOut);

/// <summary>
/// One user request of the world with its exact truth: the request text, the response a helpful-only
/// assistant gives (the correct answer, or the harmful procedure), and the <see cref="ResponseCheck"/> a
/// response is judged by. Harmful requests also carry the helpful refusal and the evasive one, which only
/// third-party texts of the corpus and the comparisons use.
/// </summary>
public sealed record Request(string Id, string Family, string Kind, string Text, string Compliance, ResponseCheck Check,
    bool HeldOut, string? HelpfulRefusal = null, string? EvasiveRefusal = null, string? Harm = null, string? Wrong = null,
    string? Act = null, string? Alternative = null);

/// <summary>
/// The sandbox world: invented people, villages, pets and a knowledge base, generated from a seed, and
/// requests in two families — benign tasks with one correct answer each (arithmetic, look-ups,
/// conversions, spelling, sorting) and harmful requests of six harm kinds, each revealing a fictional
/// procedure when complied with and having a safe alternative a helpful refusal offers.
///
/// The split: the last third of every kind's phrasings and a quarter of the people (and of the spelling
/// words) are held out; evaluation requests use only held-out phrasings and entities, training requests
/// only the others. The harm kind <see cref="UnseenKind"/> appears in no training request at all, so its
/// evaluation row tests whether harmlessness generalises to a kind of harm the pipeline never saw.
/// </summary>
public sealed class World
{
    /// <summary>The harm kind no revise, label or PPO prompt covers.</summary>
    public const string UnseenKind = "deception";

    public int Seed { get; }
    public IReadOnlyList<Person> People { get; }
    public IReadOnlyList<string> Villages { get; }
    public IReadOnlyList<string> Words { get; }
    public IReadOnlySet<string> HeldOutWords { get; }

    World(int seed, List<Person> people, List<string> villages, List<string> words, HashSet<string> heldOutWords)
    {
        Seed = seed; People = people; Villages = villages; Words = words; HeldOutWords = heldOutWords;
    }

    static readonly string[] Syllables = ["ka", "lo", "mi", "ren", "ta", "vi", "so", "nu", "el", "dar", "pim", "wen", "bo", "fi", "ra", "tun", "sel", "ma", "qui", "zo"];
    static readonly string[] VillageNames = ["Fennick", "Hollowmere", "Brackwater", "Dunmoor", "Lindle", "Orrinvale", "Tollbury", "Wickham", "Ashgrove", "Marrow"];
    static readonly string[] Jobs = ["baker", "weaver", "potter", "smith", "fisher", "miller", "tailor", "carter", "beekeeper", "shepherd"];
    static readonly string[] Colours = ["red", "blue", "green", "yellow", "purple", "orange", "grey", "white"];
    static readonly string[] SpeciesNames = ["goat", "dog", "cat", "parrot", "pony", "rabbit", "duck", "pig"];
    static readonly string[] SpellingWords =
    [
        "lantern", "garden", "window", "basket", "candle", "river", "pencil", "silver", "market", "ladder", "bridge", "button",
        "kettle", "meadow", "pillow", "rocket", "saddle", "ticket", "valley", "wagon", "anchor", "barrel", "cotton", "dragon",
        "feather", "harbor", "island", "jacket", "lemon", "mirror", "needle", "orange", "puzzle", "rabbit", "spoon", "turtle",
    ];

    /// <summary>Generates the world of <paramref name="seed"/> with <paramref name="people"/> people.</summary>
    public static World Create(int seed, int people = 40)
    {
        var rng = new Random(seed);
        var names = new HashSet<string>();
        while (names.Count < people)
        {
            var n = Syllables[rng.Next(Syllables.Length)] + Syllables[rng.Next(Syllables.Length)];
            names.Add(char.ToUpperInvariant(n[0]) + n[1..]);
        }
        var petNames = new HashSet<string>(names);
        var pets = new List<string>();
        while (pets.Count < people)
        {
            var n = Syllables[rng.Next(Syllables.Length)] + Syllables[rng.Next(Syllables.Length)] + "y";
            if (petNames.Add(n)) pets.Add(char.ToUpperInvariant(n[0]) + n[1..]);
        }
        var ordered = names.ToList();
        var list = ordered.Select((n, i) => new Person(n, VillageNames[rng.Next(VillageNames.Length)], Jobs[rng.Next(Jobs.Length)],
            Colours[rng.Next(Colours.Length)], pets[i], SpeciesNames[rng.Next(SpeciesNames.Length)], HeldOut: i % 4 == 3)).ToList();
        var heldOutWords = SpellingWords.Where((_, i) => i % 4 == 3).ToHashSet();
        return new World(seed, list, [.. VillageNames], [.. SpellingWords], heldOutWords);
    }

    /// <summary>Whether phrasing i of n is held out: the last third (at least one).</summary>
    public static bool PhrasingHeldOut(int index, int count) => index >= count - Math.Max(1, count / 3);

    /// <summary>
    /// Draws <paramref name="count"/> requests of one family, held out or not, deterministic in (seed, salt).
    /// Harmful draws skip <see cref="UnseenKind"/> unless <paramref name="kinds"/> names it.
    /// </summary>
    public List<Request> Draw(string family, bool heldOut, int count, string salt, IReadOnlyCollection<string>? kinds = null)
    {
        // Not HashCode.Combine: it is randomised per process, and the files must be the same on every run.
        var rng = new Random(StableHash($"{Seed}/{family}/{salt}/{heldOut}"));
        var people = People.Where(p => p.HeldOut == heldOut).ToList();
        var makers = family == ResponseCheck.Benign
            ? BenignTasks.All.Where(t => kinds is null || kinds.Contains(t.Kind)).Select(t => (t.Kind, Phrasings: t.Phrasings.Length, Make: (Func<int, Random, Person, Request>)((ph, r, p) => t.Make(this, ph, r, p, heldOut))))
            : HarmScenarios.All.Where(s => kinds is null ? s.Kind != UnseenKind : kinds.Contains(s.Kind)).Select(s => (s.Kind, Phrasings: s.Requests.Length, Make: (Func<int, Random, Person, Request>)((ph, r, p) => s.Make(this, ph, r, p, heldOut))));
        var options = makers.ToList();
        if (options.Count == 0) throw new ArgumentException($"no {family} kinds among [{string.Join(", ", kinds ?? [])}]");
        var seen = new HashSet<string>();
        var result = new List<Request>();
        for (var attempt = 0; result.Count < count && attempt < count * 50; attempt++)
        {
            var m = options[rng.Next(options.Count)];
            var phrasings = Enumerable.Range(0, m.Phrasings).Where(i => PhrasingHeldOut(i, m.Phrasings) == heldOut).ToList();
            var request = m.Make(phrasings[rng.Next(phrasings.Count)], rng, people[rng.Next(people.Count)]);
            if (seen.Add(request.Text)) result.Add(request with { Id = $"{(heldOut ? "eval" : "train")}-{salt}-{result.Count:D4}", Check = request.Check with { Id = $"{(heldOut ? "eval" : "train")}-{salt}-{result.Count:D4}" } });
        }
        return result;
    }

    /// <summary>Any request of any phrasing and entity (for the pretraining corpus, which is the base model's whole experience).</summary>
    public Request Any(string family, Random rng)
    {
        var person = People[rng.Next(People.Count)];
        if (family == ResponseCheck.Benign)
        {
            var t = BenignTasks.All[rng.Next(BenignTasks.All.Count)];
            return t.Make(this, rng.Next(t.Phrasings.Length), rng, person, person.HeldOut);
        }
        var s = HarmScenarios.All[rng.Next(HarmScenarios.All.Count)];
        return s.Make(this, rng.Next(s.Requests.Length), rng, person, person.HeldOut);
    }

    /// <summary>The knowledge base as sentences: where each person lives, their work, colour and pet.</summary>
    public IEnumerable<string> Facts() => People.Select(p =>
        $"{p.Name} lives in {p.Village} and works as a {p.Job}. {p.Name}'s favourite colour is {p.Colour}. {p.Name} has a {p.Species} called {p.Pet}.");

    internal static int StableHash(string text)
    {
        var h = 2166136261u;
        foreach (var c in text) h = (h ^ c) * 16777619u;
        return (int)h;
    }
}
