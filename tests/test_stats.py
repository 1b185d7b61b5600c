"""rmpsnn.analysis.stats: intervals checked against published values and by simulated coverage."""

import math
import random

import pytest

from rmpsnn.analysis.stats import (
    mcnemar_p,
    paired_difference,
    unpaired_difference,
    wilson_interval,
    z_value,
)
from rmpsnn.app.claims import supported_within_from
from rmpsnn.conversion import first_within
from rmpsnn.errors import InputError


def test_z_value_is_the_normal_quantile():
    assert z_value(0.95) == pytest.approx(1.959964, abs=1e-5)
    assert z_value(0.99) == pytest.approx(2.575829, abs=1e-5)


def test_wilson_matches_newcombes_table():
    # Newcombe (1998), Statistics in Medicine 17:857, Table I: 81/263 -> 0.2553-0.3662; 0/10 -> 0-0.2775
    ci = wilson_interval(81, 263)
    assert (round(ci.low, 4), round(ci.high, 4)) == (0.2553, 0.3662)
    ci = wilson_interval(0, 10)
    assert ci.low == 0 and round(ci.high, 4) == 0.2775
    assert wilson_interval(10, 10).high == 1.0


def test_newcombe_unpaired_difference_matches_the_paper():
    # Newcombe (1998), Stat Med 17:873, example (c): 56/70 - 48/80 -> 0.0524 to 0.3339 (method 10)
    d = unpaired_difference(56, 70, 48, 80)
    assert d.value == pytest.approx(0.2)
    assert (round(d.low, 4), round(d.high, 4)) == (0.0524, 0.3339)
    assert d.excludes_zero and not d.paired


def test_mcnemar_exact():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 5) == 1.0
    # 10 discordant pairs all one way: 2 * 0.5**10
    assert mcnemar_p(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_p(7, 3) == pytest.approx(2 * sum(math.comb(10, i) for i in range(4)) / 1024)


def test_paired_difference_uses_only_discordant_images():
    a = [True] * 90 + [False] * 10
    b = [True] * 85 + [False] * 15
    d = paired_difference(a, b)
    assert d.value == pytest.approx(0.05) and (d.a_only, d.b_only) == (5, 0) and d.paired
    assert d.low > 0  # five images, all one way, out of 100: the sign is supported
    # the same accuracies, but the classifiers disagree on many images: not supported
    a2 = [i % 2 == 0 for i in range(100)]
    b2 = [i % 2 == 1 for i in range(95)] + [False] * 5
    assert not paired_difference(a2, b2).excludes_zero
    with pytest.raises(InputError, match="same images"):
        paired_difference([True], [True, False])


@pytest.mark.parametrize(("p", "n"), [(0.5, 300), (0.1, 1000), (0.03, 200)])
def test_wilson_coverage_is_near_95_percent(p, n):
    rng = random.Random(1)
    trials = 1000
    hits = 0
    for _ in range(trials):
        k = sum(rng.random() < p for _ in range(n))
        ci = wilson_interval(k, n)
        hits += ci.low <= p <= ci.high
    assert 0.93 <= hits / trials <= 0.975


def test_paired_interval_coverage():
    rng = random.Random(2)
    n, trials, hits = 400, 1000, 0
    # a is right with p 0.52, b agrees with a except on 6 % of images (half each way plus a bias)
    true_diff = 0.02
    for _ in range(trials):
        a, b = [], []
        for _ in range(n):
            u = rng.random()
            if u < 0.04:  # a right, b wrong
                a.append(True), b.append(False)
            elif u < 0.06:  # b right, a wrong
                a.append(False), b.append(True)
            else:
                same = rng.random() < 0.5
                a.append(same), b.append(same)
        d = paired_difference(a, b)
        hits += d.low <= true_diff <= d.high
    assert 0.93 <= hits / trials <= 0.98


def test_within_from_t_on_means_staying_in_the_band():
    r = {"timesteps": [1, 2, 4, 8, 16], "accuracy": [0.3, 0.50, 0.45, 0.50, 0.505]}
    assert first_within(r, 0.51, 0.01) == 8  # T = 2 touches the band, T = 4 leaves it
    assert first_within({**r, "accuracy": [0.3, 0.5, 0.5, 0.5, 0.4]}, 0.51, 0.01) is None
    assert first_within({**r, "accuracy": [0.6] * 5}, 0.51, 0.01) == 1


def test_supported_within_needs_every_longer_interval_above_the_band():
    class D:
        def __init__(self, low):
            self.low = low

    steps = [1, 2, 4, 8]
    assert supported_within_from([D(-0.2), D(-0.005), D(-0.02), D(-0.004)], steps) == 8
    assert supported_within_from([D(-0.2), D(-0.005), D(-0.009), D(-0.004)], steps) == 2
    assert supported_within_from([D(-0.2), D(-0.005), D(-0.009), D(-0.04)], steps) is None


def _synthetic_result(n: int, wrong: dict[str, list[int]], steps=(1, 2, 4, 8, 16, 32)) -> dict:
    """A conversion_per_image result: the ANN right on every image, each variant wrong on
    ``wrong[label][i]`` images at ``steps[i]``."""
    from rmpsnn.app.claims import DEFAULT, HARD, SOFT  # noqa: F401 -- labels the claims look up

    variants = {}
    for label, misses in wrong.items():
        correct = ["0" * k + "1" * (n - k) for k in misses]
        acc = [(n - k) / n for k in misses]
        variants[label] = {"timesteps": list(steps), "accuracy": acc, "correct": correct}
    return {
        "ann_accuracy": 1.0,
        "ann_correct": "1" * n,
        "timesteps": list(steps),
        "test_images": n,
        "variants": variants,
    }


def test_headline_claims_are_decided_by_their_intervals():
    from rmpsnn.app.claims import DEFAULT, FEW_STEPS, HARD, SOFT, conversion_claims

    n = 2000
    steps = [1, 2, 4, 8, 16, 32]
    enter = steps.index(FEW_STEPS)
    # default: 2 of 2000 wrong (-0.1 points, interval far above -1) from FEW_STEPS on; soft from
    # T = 8 on; hard 8 % wrong throughout (interval far below -1)
    default = [900] * enter + [2] * (len(steps) - enter)
    soft = [900, 900, 900, 2, 2, 2]
    hard = [160] * len(steps)
    c = conversion_claims(_synthetic_result(n, {DEFAULT: default, SOFT: soft, HARD: hard}))["claims"]
    assert c["default_within_1pct_at_few_steps"]["supported"]
    assert c["default_within_1pct_at_few_steps"]["within_from"] == FEW_STEPS
    assert (
        c["soft_fewer_steps_than_hard"]["supported"]
        and c["soft_fewer_steps_than_hard"]["soft_within_from"] == 8
    )
    # the default entering one grid step later, or hard reset only 1.5 points below at n = 200: not claimed
    late = [90] * (enter + 1) + [0] * (len(steps) - enter - 1)
    c = conversion_claims(
        _synthetic_result(200, {DEFAULT: late, SOFT: [90, 90, 90, 0, 0, 0], HARD: [3] * 6})
    )["claims"]
    assert not c["default_within_1pct_at_few_steps"]["supported"]
    assert "not supported" in c["default_within_1pct_at_few_steps"]["text"]
    assert not c["soft_fewer_steps_than_hard"]["supported"]
    assert "within noise" in c["soft_fewer_steps_than_hard"]["text"]


def test_claim_entering_at_the_longest_T_says_so():
    from rmpsnn.app.claims import DEFAULT, FEW_STEPS, conversion_claims

    steps = [1, 2, 4, 8, FEW_STEPS]
    c = conversion_claims(_synthetic_result(2000, {DEFAULT: [900, 900, 900, 900, 2]}, steps=steps))
    text = c["claims"]["default_within_1pct_at_few_steps"]["text"]
    assert c["claims"]["default_within_1pct_at_few_steps"]["supported"]
    assert "the longest T simulated" in text and f"from {FEW_STEPS} to {FEW_STEPS}" not in text


def _discordant_result(n: int, steps, soft_wrong: list[int], hard: tuple[int, int]) -> dict:
    """ANN wrong on the last fifth of the images; hard reset wrong on ``hard[0]`` images the ANN
    gets right and right on ``hard[1]`` of those it gets wrong (from T = 4 on; far below before);
    soft reset wrong on ``soft_wrong[i]`` images the ANN gets right."""
    from rmpsnn.app.claims import HARD, SOFT

    miss = n // 5
    ann = "1" * (n - miss) + "0" * miss
    lost, won = hard
    late = "0" * lost + "1" * (n - miss - lost) + "1" * won + "0" * (miss - won)
    early = "0" * (n // 2) + ann[n // 2 :]
    variants = {
        HARD: {"correct": [early if t < 4 else late for t in steps]},
        SOFT: {"correct": ["0" * k + ann[k:] for k in soft_wrong]},
    }
    for v in variants.values():
        v["timesteps"] = list(steps)
        v["accuracy"] = [bits.count("1") / n for bits in v["correct"]]
    return {"ann_accuracy": (n - miss) / n, "ann_correct": ann, "timesteps": list(steps), "test_images": n,
            "variants": variants}  # fmt: skip


def test_hard_reset_is_decided_on_the_further_images_too():
    """Hard reset 3 points below the ANN with many discordant images: inside noise on 1 000
    images (the interval reaches -1), supported on those and 3 000 further ones; the soft side
    and the table keep the first set."""
    from rmpsnn.app.claims import HARD, conversion_claims

    steps = [1, 2, 4, 8]
    main = _discordant_result(1000, steps, [500, 500, 0, 0], (150, 120))
    alone = conversion_claims(main)["claims"]["soft_fewer_steps_than_hard"]
    assert alone["soft_within_from"] == 4
    assert not alone["supported"] and "within noise" in alone["text"] and "n = 1000" in alone["text"]
    extra = _discordant_result(3000, steps, [0, 0, 0, 0], (450, 360))
    further = {"correct": extra["variants"][HARD]["correct"], "ann_correct": extra["ann_correct"]}
    main["variants"][HARD]["further"] = further  # the same SNN on 3 000 further images
    both = conversion_claims(main)
    claim = both["claims"]["soft_fewer_steps_than_hard"]
    assert claim["supported"] and claim["soft_within_from"] == 4
    assert claim["hard_minus_ann_at_that_T"]["n"] == 4000 and claim["hard_test_images"] == 4000
    assert "(paired, n = 4000)" in claim["text"] and "n = 1000" in claim["text"]
    assert both["variants"][HARD]["accuracy"][0]["n"] == 1000  # the table: the first set only
    with pytest.raises(ValueError, match="other timesteps"):
        main["variants"][HARD]["further"] = {**further, "correct": further["correct"][:3]}
        conversion_claims(main)


def test_mcnemar_holds_for_thousands_of_discordant_images():
    """2**m overflowed a float from about 1 000 discordant images (a 10 000-image comparison)."""
    from rmpsnn.analysis.stats import mcnemar_p

    p = mcnemar_p(480, 600)
    z = (600 - 480) / math.sqrt(1080)  # normal approximation, continuity-corrected below
    assert p == pytest.approx(math.erfc((abs(600 - 480) - 1) / math.sqrt(1080) / math.sqrt(2)), rel=0.1)
    assert 0 < p < 1e-3 and z > 3
    assert mcnemar_p(5000, 5000) == pytest.approx(1.0, abs=0.01)
    assert mcnemar_p(0, 3000) == 0.0 and mcnemar_p(3, 5) == pytest.approx(0.7265625)
