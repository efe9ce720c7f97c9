from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image

from crayon_plugins.annotation.answers import Record
from crayon_plugins.annotation.records import Answer
from crayon_plugins.annotation.report import answer_mix_figure, summarise_people, summary_table

START = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)


def click(annotator: str, item: str, answer: str | None, second: float, question: str = "maps") -> Record:
    return Record(item=item, question=question, answer=answer, annotator=annotator, time=START + timedelta(seconds=second))


# alice replaces her answer on i2 (no → yes) and undoes i7; a 10-minute break lies between i3 and i4.
# Her gaps: 10, 4, 6, [600], 6, 34, 10, 2 → without the break sorted 2 4 6 6 10 10 34, median 6
# (with the break 8; from latest answers only 10). Bob's gaps are all 7 s.
RECORDS = [
    click("alice", "i1", "yes", 0),
    click("alice", "i2", "no", 10),
    click("alice", "i2", "yes", 14),
    click("alice", "i3", "no", 20),
    click("bob", "i1", "yes", 100),
    click("bob", "i2", "no", 107),
    click("bob", "i3", "no", 114),
    click("bob", "i4", "maybe", 121),
    click("bob", "i5", "yes", 128),
    click("bob", "i7", "no", 135),
    click("alice", "i4", "maybe", 620),
    click("alice", "i5", "yes", 626),
    click("alice", "i6", "no", 660),
    click("alice", "i7", "maybe", 670),
    click("alice", "i7", None, 672),
]
# Items both answered (i7 undone by alice): i1..i5. alice Y Y N M Y, bob Y N N M Y.
# p_o = 4/5 = 0.8. Marginals alice (Y .6, N .2, M .2), bob (Y .4, N .4, M .2):
# p_e = .6·.4 + .2·.4 + .2·.2 = 0.36, κ = (0.8 − 0.36) / (1 − 0.36) = 0.6875.
KAPPA_ALICE_BOB = 0.6875

# alice's latest answers i1..i6: Y Y N M Y N; oracle on them: Y N N Y Y N.
# p_o = 4/6. Marginals alice (Y 3/6, N 2/6, M 1/6), oracle (Y 3/6, N 3/6, M 0):
# p_e = 9/36 + 6/36 = 15/36, κ = (24/36 − 15/36) / (21/36) = 3/7.
ORACLE = {"i1": Answer.YES, "i2": Answer.NO, "i3": Answer.NO, "i4": Answer.YES, "i5": Answer.YES, "i6": Answer.NO, "i7": Answer.YES}


def test_shares_counts_and_time_per_answer():
    alice, bob = summarise_people(RECORDS)
    assert (alice.annotator, alice.answers) == ("alice", 6)  # replaced i2 once, undone i7 left out
    assert (alice.yes, alice.no, alice.maybe) == pytest.approx((3 / 6, 2 / 6, 1 / 6), abs=1e-12)
    assert alice.seconds_per_answer == pytest.approx(6.0)
    assert (bob.annotator, bob.answers) == ("bob", 6)
    assert (bob.yes, bob.no, bob.maybe) == pytest.approx((2 / 6, 3 / 6, 1 / 6), abs=1e-12)
    assert bob.seconds_per_answer == pytest.approx(7.0)


def test_kappa_between_annotators_and_with_oracle():
    alice, bob = summarise_people(RECORDS, oracle=ORACLE)
    assert alice.kappa_others == pytest.approx(KAPPA_ALICE_BOB, abs=1e-9)
    assert bob.kappa_others == pytest.approx(KAPPA_ALICE_BOB, abs=1e-9)
    assert alice.kappa_oracle == pytest.approx(3 / 7, abs=1e-9)


def test_nan_cases():
    # carol shares no item with anyone and clicked once: no κ with others, no pace; alice's κ is bob's alone.
    alice, bob, carol = summarise_people([*RECORDS, click("carol", "i9", "yes", 50)])
    assert alice.kappa_others == pytest.approx(KAPPA_ALICE_BOB, abs=1e-9)
    assert math.isnan(carol.kappa_others) and math.isnan(carol.seconds_per_answer)
    assert math.isnan(alice.kappa_oracle)  # no oracle
    (only,) = summarise_people([r for r in RECORDS if r.annotator == "alice"])
    assert math.isnan(only.kappa_others)


def test_mixed_questions_are_refused():
    with pytest.raises(ValueError, match="one question"):
        summarise_people([*RECORDS, click("bob", "n1", "yes", 200, question="neurons")])


def test_table_cells():
    table = summary_table(summarise_people(RECORDS))
    assert [c.header for c in table.columns] == ["annotator", "answers", "yes", "no", "maybe", "s/answer", "κ others", "κ oracle"]
    assert [list(c.cells)[0] for c in table.columns] == ["alice", "6", "50.0%", "33.3%", "16.7%", "6.0", "0.69", "—"]


def test_figure_shows_annotators_and_the_papers_datasets(tmp_path):
    path = tmp_path / "mix.png"
    labels = answer_mix_figure(summarise_people(RECORDS), "maps", path)
    assert labels == [
        "alice (n=6)",
        "bob (n=6)",
        "Waterbirds (CRAYON paper, n=4795)",
        "Biased CelebA (CRAYON paper, n=20200)",
        "Backgrounds Challenge (CRAYON paper, n=45405)",
    ]
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > height / 4
    assert answer_mix_figure([], "neurons", tmp_path / "neurons.png")[0] == "Waterbirds (CRAYON paper, n=2048)"
