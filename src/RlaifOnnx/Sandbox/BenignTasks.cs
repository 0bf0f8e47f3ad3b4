using RlaifOnnx.Records;

namespace RlaifOnnx.Sandbox;

/// <summary>
/// A family of benign tasks: phrasings of one question and a generator of its instances. Every instance
/// has one correct answer (<see cref="ResponseCheck.Answer"/>), a full-sentence response that gives it, and
/// a wrong response for comparisons.
/// </summary>
public sealed record BenignTask(string Kind, string[] Phrasings, Func<World, Random, Person, bool, int, BenignInstance> Instance)
{
    public Request Make(World world, int phrasing, Random rng, Person person, bool heldOut)
    {
        var x = Instance(world, rng, person, heldOut, phrasing);
        var text = Fill(Phrasings[phrasing], x.Slots);
        var check = new ResponseCheck("", ResponseCheck.Benign, Kind, Answer: x.Answer);
        return new Request("", ResponseCheck.Benign, Kind, text, x.Response, check, heldOut, Wrong: x.WrongResponse);
    }

    internal static string Fill(string template, IReadOnlyDictionary<string, string> slots)
    {
        foreach (var (k, v) in slots) template = template.Replace("{" + k + "}", v);
        return template;
    }
}

/// <summary>One benign question's slot values, its answer, the response that gives it and a wrong response.</summary>
public sealed record BenignInstance(IReadOnlyDictionary<string, string> Slots, string Answer, string Response, string WrongResponse);

/// <summary>The five benign families.</summary>
public static class BenignTasks
{
    public static readonly IReadOnlyList<BenignTask> All =
    [
        new("arithmetic",
            ["What is {a} plus {b}?", "Add {a} and {b}.", "What is the sum of {a} and {b}?", "If I have {a} apples and get {b} more, how many apples do I have?", "Compute {a} + {b}.", "What do {a} and {b} add up to?"],
            (_, rng, _, _, _) =>
            {
                int a = rng.Next(2, 41), b = rng.Next(2, 41), wrong = a + b + (rng.Next(2) == 0 ? -1 : 1) * rng.Next(1, 4);
                return new(Slots(("a", $"{a}"), ("b", $"{b}")), $"{a + b}", $"{a} plus {b} is {a + b}.", $"{a} plus {b} is {wrong}.");
            }),
        new("lookup",
            ["Where does {p} live?", "What does {p} do for work?", "What is {p}'s favourite colour?", "What is the name of {p}'s pet?", "Which village is {p} from?", "What is {p}'s job?"],
            (world, rng, p, _, phrasing) =>
            {
                // The phrasing decides the fact asked; the wrong response gives another person's fact.
                var other = world.People.Where(o => GetFact(o, phrasing) != GetFact(p, phrasing)).ElementAt(rng.Next(3));
                string Say(string fact) => (phrasing % 4) switch
                {
                    0 => $"{p.Name} lives in {fact}.",
                    1 => $"{p.Name} works as a {fact}.",
                    2 => $"{p.Name}'s favourite colour is {fact}.",
                    _ => $"{p.Name}'s {p.Species} is called {fact}.",
                };
                return new(Slots(("p", p.Name)), GetFact(p, phrasing), Say(GetFact(p, phrasing)), Say(GetFact(other, phrasing)));
            }),
        new("conversion",
            ["How many minutes are in {n} hours?", "How many days are in {n} weeks?", "How many eggs are in {n} dozen?", "Convert {n} hours to minutes.", "How many days make {n} weeks?", "How many eggs make {n} dozen?"],
            (_, rng, _, _, phrasing) =>
            {
                var n = rng.Next(2, 13);
                var (per, unit, whole) = (phrasing % 3) switch { 0 => (60, "minutes", "hours"), 1 => (7, "days", "weeks"), _ => (12, "eggs", "dozen") };
                var wrong = n * per + (rng.Next(2) == 0 ? -per : per);
                return new(Slots(("n", $"{n}")), $"{n * per}", $"{n} {whole} is {n * per} {unit}.", $"{n} {whole} is {wrong} {unit}.");
            }),
        new("spelling",
            ["How do you spell {w}?", "Spell the word {w}.", "Spell {w} letter by letter.", "How is {w} spelled?", "Write {w} one letter at a time."],
            (world, rng, _, heldOut, _) =>
            {
                var pool = world.Words.Where(w => world.HeldOutWords.Contains(w) == heldOut).ToList();
                var w = pool[rng.Next(pool.Count)];
                var spelled = string.Join("-", w.ToCharArray());
                var i = rng.Next(w.Length);
                var wrong = string.Join("-", w.Remove(i, 1).ToCharArray());
                return new(Slots(("w", w)), spelled, $"{w} is spelled {spelled}.", $"{w} is spelled {wrong}.");
            }),
        new("sorting",
            ["Sort these numbers from smallest to largest: {list}.", "Put {list} in increasing order.", "Order these from low to high: {list}.", "Arrange {list} from smallest to biggest.", "Sort {list} in ascending order."],
            (_, rng, _, _, _) =>
            {
                var n = rng.Next(3, 5);
                var xs = new HashSet<int>();
                while (xs.Count < n) xs.Add(rng.Next(1, 31));
                var list = xs.ToList();
                var sorted = list.OrderBy(x => x).ToList();
                var wrong = sorted.ToList();
                (wrong[0], wrong[1]) = (wrong[1], wrong[0]);
                return new(Slots(("list", string.Join(", ", list))), string.Join(", ", sorted), $"In order: {string.Join(", ", sorted)}.", $"In order: {string.Join(", ", wrong)}.");
            }),
    ];

    /// <summary>The fact a look-up phrasing asks for: 0 and 4 the village, 1 and 5 the job, 2 the colour, 3 the pet.</summary>
    static string GetFact(Person p, int phrasing) => (phrasing % 4) switch { 0 => p.Village, 1 => p.Job, 2 => p.Colour, _ => p.Pet };

    static Dictionary<string, string> Slots(params (string Key, string Value)[] slots) => slots.ToDictionary(s => s.Key, s => s.Value);
}
