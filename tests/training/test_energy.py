import pytest
import torch

from crayon_plugins.annotation.records import NOT_ANNOTATED, Answer
from crayon_plugins.training.energy import attention_terms, crayon_normalise, energy_no, energy_yes


def test_energy_terms_match_hand_computed_values():
    original = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])  # Σ P = 1.5, Σ (1 − P) = 2.5
    current = torch.tensor([[[0.2, 1.0], [0.4, 0.6]]])
    # L_no = (0.2·1 + 0.4·0.5) / 1.5 ;  L_yes = (0.2·0 + 1·1 + 0.4·0.5 + 0.6·1) / 2.5
    assert torch.allclose(energy_no(current, original), torch.tensor([0.4 / 1.5]))
    assert torch.allclose(energy_yes(current, original), torch.tensor([1.8 / 2.5]))


def test_loss_divides_the_weights_by_the_whole_sets_counts_and_ignores_maybe():
    """The minibatch holds 2 *no* and 1 *yes*, the whole annotation set 5 and 4: w_no/5 and w_yes/4."""
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.0]])
    labels = torch.tensor([0, 1, 0, 1])
    original = torch.rand(4, 3, 3, generator=torch.Generator().manual_seed(0))
    current = torch.rand(4, 3, 3, generator=torch.Generator().manual_seed(1))
    answers = torch.tensor([Answer.NO, Answer.NO, Answer.YES, Answer.MAYBE])
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
    l_no = energy_no(crayon_normalise(current), crayon_normalise(original))
    l_yes = energy_yes(crayon_normalise(current), crayon_normalise(original))
    expected = ce + 7.0 / 5 * (l_no[0] + l_no[1]) + 3.0 / 4 * l_yes[2]
    got = ce + attention_terms(current, original, answers, w_yes=3.0, w_no=7.0, n_yes=4, n_no=5)
    assert torch.allclose(got, expected)


def test_maybe_and_unannotated_add_nothing():
    logits, labels = torch.randn(3, 2), torch.tensor([0, 1, 0])
    maps = torch.rand(3, 4, 4)
    answers = torch.tensor([Answer.MAYBE, NOT_ANNOTATED, Answer.MAYBE])
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
    assert torch.equal(ce + attention_terms(maps, maps.flip(0), answers, w_yes=1e6, w_no=1e6, n_yes=3, n_no=3), ce)


def test_the_mass_variant_by_hand():
    """The maps of the published example with ``energy = "mass"``: each term divided by Σ(E).

    P_no = [[1, 0], [0, 0]], E_no = [[0.5, 1], [0, 0]]: L_no = Σ(E·P) / Σ(E) = 0.5 / 1.5 = 1/3.
    P_yes = [[1, 0.5], [0, 0]], E_yes = [[1, 0], [1, 0]]: L_yes = Σ(E·(1−P)) / Σ(E) = 1 / 2 = 0.5.
    Attention terms = 8/4 · 1/3 + 10/5 · 0.5 = 5/3."""
    original = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.5], [0.0, 0.0]]])
    current = torch.tensor([[[0.5, 1.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]])
    answers = torch.tensor([Answer.NO, Answer.YES])
    assert float(attention_terms(current, original, answers, w_yes=10.0, w_no=8.0, n_yes=5, n_no=4, energy="mass")) == pytest.approx(5 / 3, rel=1e-6)


def test_narrowing_inside_where_the_original_looked_lowers_the_published_l_no_but_not_the_mass_share():
    """P covers two cells. A map on both pays L_no = 1 either way; narrowed to one of them it pays the
    published 1/2 but still the whole mass share 1; moved off P it pays 0 either way."""
    original = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]).expand(3, 2, 2)
    current = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]]])
    answers = torch.full((3,), int(Answer.NO))
    per_image = lambda energy: [float(attention_terms(current[i : i + 1], original[i : i + 1], answers[:1], w_yes=0.0, w_no=1.0, n_yes=0, n_no=1, energy=energy)) for i in range(3)]  # noqa: E731
    assert per_image("crayon") == pytest.approx([1.0, 0.5, 0.0], abs=1e-6)
    assert per_image("mass") == pytest.approx([1.0, 1.0, 0.0], abs=1e-6)
