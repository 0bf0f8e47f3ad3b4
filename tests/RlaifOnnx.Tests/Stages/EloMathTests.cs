using RlaifOnnx.Stages;


namespace RlaifOnnx.Tests.Stages;

/// <summary>The evaluation stage's arithmetic with hand-computed numbers.</summary>
public class EloMathTests
{
    [Fact]
    public void Two_players_with_three_wins_to_one_are_400_log10_3_apart()
    {
        var strengths = EloMath.BradleyTerry(new double[,] { { 0, 1 }, { 3, 0 } })!;
        Assert.Equal(1.0, strengths[0], 12);
        Assert.Equal(3.0, strengths[1], 10);
        var elo = EloMath.Elo(strengths);
        Assert.Equal(0.0, elo[0]);
        Assert.Equal(190.848501887865, elo[1], 8); // 400·log10(3)
        // the paper's reading of an Elo difference gives back the observed share of wins
        Assert.Equal(0.75, EloMath.WinProbability(elo[1] - elo[0]), 10);
    }

    [Fact]
    public void Three_players_whose_win_counts_match_strengths_1_2_4_get_those_strengths_back()
    {
        // 30 games per pair, split as P(i beats j) = πi / (πi + πj) with π = (1, 2, 4):
        // 0 vs 1: 10:20, 0 vs 2: 6:24, 1 vs 2: 10:20. These counts solve the likelihood equations exactly.
        var wins = new double[,] { { 0, 10, 6 }, { 20, 0, 10 }, { 24, 20, 0 } };
        var strengths = EloMath.BradleyTerry(wins)!;
        Assert.Equal(1.0, strengths[0], 12);
        Assert.Equal(2.0, strengths[1], 9);
        Assert.Equal(4.0, strengths[2], 9);
        var elo = EloMath.Elo(strengths);
        Assert.Equal(120.411998265592, elo[1], 7); // 400·log10(2)
        Assert.Equal(240.823996531185, elo[2], 7); // 400·log10(4)
    }

    [Fact]
    public void Ties_count_half_in_win_rates_win_counts_and_the_fit()
    {
        double[] mine = [1.0, 2.0, 0.5, 3.0], theirs = [0.0, 2.0, 1.0, 1.0];
        // wins, tie, loss, win → (1 + 0.5 + 0 + 1) / 4
        Assert.Equal(0.625, EloMath.WinRate(mine, theirs));
        Assert.Equal(0.375, EloMath.WinRate(theirs, mine));
        var wins = EloMath.WinCounts([mine, theirs]);
        Assert.Equal(2.5, wins[0, 1]);
        Assert.Equal(1.5, wins[1, 0]);
        Assert.Equal(0.0, wins[0, 0]);
        // 2.5 : 1.5 → Elo 400·log10(5/3)
        var elo = EloMath.Elo(EloMath.BradleyTerry(wins)!);
        Assert.Equal(88.7394998465, elo[0] - elo[1], 7);
    }

    [Fact]
    public void A_player_who_wins_everything_has_no_finite_fit_without_a_prior()
    {
        var wins = new double[,] { { 0, 4 }, { 0, 0 } };
        Assert.Null(EloMath.BradleyTerry(wins));
        // half a pseudo-win per side: 4.5 : 0.5 → 400·log10(9)
        var elo = EloMath.Elo(EloMath.BradleyTerry(wins, prior: 0.5)!);
        Assert.Equal(-381.697003775730, elo[1], 7);
        // three players where one beat both others but the others beat each other: still no finite fit
        Assert.Null(EloMath.BradleyTerry(new double[,] { { 0, 2, 1 }, { 0, 0, 1 }, { 0, 1, 0 } }));
        // one player: strength 1, Elo 0
        Assert.Equal([0.0], EloMath.Elo(EloMath.BradleyTerry(new double[,] { { 0 } })!));
    }

    [Fact]
    public void Mean_and_standard_error()
    {
        double[] values = [2, 4, 4, 4, 5, 5, 7, 9];
        Assert.Equal(5.0, EloMath.Mean(values));
        // sample variance 32 / 7, standard error √(32/7) / √8 = √(4/7)
        Assert.Equal(0.755928946018, EloMath.StandardError(values), 11);
        Assert.True(double.IsNaN(EloMath.StandardError([3.0])));
        Assert.True(double.IsNaN(EloMath.Mean([])));
    }
}
