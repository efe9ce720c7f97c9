"""Property-based tests of the refiners' mathematics: CRAYON-Attention's energy loss, GRADIA's
quadrant weights and RRR's input-gradient penalty, on the testing kit's strategies and tiny models."""

import pytest
import torch
import torch.nn.functional as F
from crayon_plugins.plugins.refiners.map_baselines import RightForTheRightReasons
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from crayon_plugins import create_refiner
from crayon_plugins.annotation.records import NOT_ANNOTATED, Answer
from crayon_plugins.api.finetuning import Batch
from crayon_plugins.model.maps import normalise_maps
from crayon_plugins.testing.strategies import answer_codes, map_shapes, object_masks, saliency_maps
from crayon_plugins.testing.tiny import TinyClassifier, tiny_context, tiny_image_set, tiny_model
from crayon_plugins.training.energy import ENERGIES, attention_terms, crayon_normalise, degenerate_yes, energy_no, energy_yes

FAST = settings(max_examples=80, deadline=None)
SLOW = settings(max_examples=8, deadline=None)  # each example runs a tiny model


def map_pairs(first=saliency_maps, second=saliency_maps):
    """``(first(shape), second(shape))`` for one drawn shape."""
    return map_shapes().flatmap(lambda shape: st.tuples(first(shape), second(shape)))


@FAST
@given(map_pairs())
def test_energy_terms_lie_in_unit_interval(maps):
    current, original = (crayon_normalise(m) for m in maps)
    for no_term, yes_term in ENERGIES.values():  # the published terms and the mass-share variant
        for term in (no_term(current, original), yes_term(current, original)):
            assert term.shape == current.shape[:1] and bool(torch.isfinite(term).all())
            assert bool((term >= 0).all()) and bool((term <= 1 + 1e-6).all())
    no_mass, yes_mass = ENERGIES["mass"]  # the variant's two shares add up to the whole map
    assert torch.allclose(no_mass(current, original) + yes_mass(current, original), torch.ones(len(current)), atol=1e-5)


@FAST
@given(map_shapes().flatmap(saliency_maps))
def test_uniform_attention_pays_the_full_terms(original):
    """Both terms are means of E weighted by P and 1−P, so E ≡ 1 pays 1 wherever the weights are not ~0."""
    original = crayon_normalise(original)
    ones = torch.ones_like(original)
    for term, weight in ((energy_no, original), (energy_yes, 1 - original)):
        held = weight.sum(dim=(-2, -1)) >= 1e-2
        assert torch.allclose(term(ones, original)[held], torch.ones(int(held.sum())), rtol=0, atol=1e-5)


@FAST
@given(map_pairs())
def test_no_term_vanishes_when_attention_left_the_original_region(maps):
    """L_no = 0 when the current map is zero wherever the original is positive (an original map
    with some mass: CRAYON's normalisation leaves none all-zero)."""
    current, original = maps
    current = current * (original == 0)
    held = original.sum(dim=(-2, -1)) > 0
    assert torch.equal(energy_no(current, original)[held], torch.zeros(int(held.sum())))


@FAST
@given(map_pairs(second=object_masks))
def test_yes_term_vanishes_inside_the_original_region(maps):
    """L_yes = 0 when the current map is non-zero only where the original is 1."""
    current, masks = maps
    original = normalise_maps(masks.float())  # stays binary: 1 + EPS rounds to 1 in float32
    assert bool(((original == 0) | (original == 1)).all())
    assert torch.equal(energy_yes(current * masks, original), torch.zeros(len(current)))


@FAST
@given(map_pairs())
def test_yes_term_is_at_least_the_mean_mass_outside_the_original(maps):
    """Each pixel where P = 0 weighs 1 in Σ E·(1−P) and at most h·w pixels share the denominator."""
    current, original = maps
    outside = (current * (original == 0)).sum(dim=(-2, -1))
    l_yes = energy_yes(current, original)
    clear = outside > 1e-30  # clear of float32 underflow
    assert bool((l_yes[clear] >= outside[clear] / current[0].numel() * (1 - 1e-5)).all())
    assert bool((l_yes[clear] > 0).all())


def raw_maps(shape):
    return saliency_maps(shape, normalised=False)


scales = st.floats(-3, 3).map(lambda e: 10.0**e)


@FAST
@given(map_pairs(raw_maps, raw_maps), scales, scales)
def test_energy_terms_are_invariant_to_rescaling_either_map(maps, c, d):
    """Compared where EPS is negligible (raw and rescaled maxima 0 or ≥ 0.1), with a tolerance growing as
    ΣP or Σ(1−P) → 0: both terms are weighted means of E, ill-conditioned when their weights vanish."""
    current, original = maps
    size = current[0].numel()

    def negligible_eps(maps, k):  # each map zero, or its peak ≥ 0.1 before and after rescaling by k
        peak = maps.amax(dim=(-2, -1)) * min(k, 1.0)
        return (peak == 0) | (peak >= 0.1)

    compared = negligible_eps(current, c) & negligible_eps(original, d)
    assume(bool(compared.any()))
    e, p = crayon_normalise(current), crayon_normalise(original)
    e_scaled, p_scaled = crayon_normalise(c * current), crayon_normalise(d * original)
    for m in (e, p, e_scaled, p_scaled):  # max-normalised: each peak is 1 (an all-zero map all ones)
        top = m.amax(dim=(-2, -1))[compared]
        assert bool(((top - 1).abs() < 1e-6).all())
    for term, weight in ((energy_no, p), (energy_yes, 1 - p)):
        reference, scaled = term(e, p)[compared], term(e_scaled, p_scaled)[compared]
        tolerance = 1e-5 * (1 + size / weight.sum(dim=(-2, -1))[compared])
        assert bool(((scaled - reference).abs() <= tolerance).all()), (term.__name__, scaled, reference)


def abstentions(n):
    """The kit's answer codes with each *no* turned into *maybe* and each *yes* into not annotated."""
    return answer_codes(n).map(
        lambda a: torch.where(a == Answer.NO, int(Answer.MAYBE), torch.where(a == Answer.YES, NOT_ANNOTATED, a))
    )


@FAST
@given(
    map_shapes().flatmap(
        lambda shape: st.tuples(
            saliency_maps(shape),
            saliency_maps(shape),
            abstentions(shape[0]),
            arrays("float32", (shape[0], 3), elements=st.floats(-30, 30, width=32)),
            st.lists(st.integers(0, 2), min_size=shape[0], max_size=shape[0]),
        )
    )
)
def test_abstentions_leave_exactly_the_summed_cross_entropy(drawn):
    current, original, answers, logits, labels = drawn
    logits, labels = torch.from_numpy(logits), torch.tensor(labels)
    assert bool(((answers == Answer.MAYBE) | (answers == NOT_ANNOTATED)).all())
    ce = F.cross_entropy(logits, labels, reduction="sum")
    assert torch.equal(ce + attention_terms(current, original, answers, w_yes=1e6, w_no=1e6, n_yes=9, n_no=7), ce)


@FAST
@given(
    map_shapes(max_side=6).flatmap(lambda shape: st.tuples(saliency_maps(shape), saliency_maps(shape), answer_codes(shape[0]))),
    st.integers(0, 50),
    st.integers(0, 50),
)
def test_the_minibatch_loss_scales_with_the_whole_sets_counts(drawn, extra_no, extra_yes):
    """Two annotation sets that differ only outside the minibatch (``extra`` answers elsewhere) give
    attention terms in the exact ratio of their counts: w_no/N_no and w_yes/N_yes, not the minibatch's."""
    current, original, answers = drawn
    n_no, n_yes = int((answers == Answer.NO).sum()), int((answers == Answer.YES).sum())
    small = attention_terms(current, original, answers, w_yes=0.0, w_no=3.0, n_yes=n_yes, n_no=n_no)  # one term at a time
    large = attention_terms(current, original, answers, w_yes=0.0, w_no=3.0, n_yes=n_yes + extra_yes, n_no=n_no + extra_no)
    if n_no:
        assert float(large) == pytest.approx(float(small) * n_no / (n_no + extra_no), rel=1e-5, abs=1e-9)
    yes_small = attention_terms(current, original, answers, w_yes=5.0, w_no=0.0, n_yes=n_yes, n_no=n_no)
    yes_large = attention_terms(current, original, answers, w_yes=5.0, w_no=0.0, n_yes=n_yes + extra_yes, n_no=n_no + extra_no)
    if n_yes:
        assert float(yes_large) == pytest.approx(float(yes_small) * n_yes / (n_yes + extra_yes), rel=1e-5, abs=1e-9)


def test_the_energy_loss_by_hand():
    """Two 2×2 maps, one *no* and one *yes*, in a set of 4 *no* and 5 *yes*: w_no = 8, w_yes = 10.

    P_no = [[1, 0], [0, 0]], E_no = [[0.5, 1], [0, 0]]: L_no = 0.5 / 1 = 0.5.
    P_yes = [[1, 0.5], [0, 0]], E_yes = [[1, 0], [1, 0]]: L_yes = Σ E(1−P) / Σ(1−P) = 1 / 2.5 = 0.4.
    Attention terms = 8/4 · 0.5 + 10/5 · 0.4 = 1.8."""
    original = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.5], [0.0, 0.0]]])
    current = torch.tensor([[[0.5, 1.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]])
    answers = torch.tensor([Answer.NO, Answer.YES])
    assert float(attention_terms(current, original, answers, w_yes=10.0, w_no=8.0, n_yes=5, n_no=4)) == pytest.approx(1.8, rel=1e-6)


class FixedMaps:
    """An interpreter stand-in that returns given maps and logits, so a refiner's ``loss`` can be
    checked against numbers worked by hand."""

    def __init__(self, maps, logits):
        self.maps, self.logits = maps, logits

    def explain(self, model, images, labels):
        return self.maps, self.logits


def test_the_reference_weighting_with_the_papers_waterbirds_values():
    """The public code's ``get_loss_expl`` weighting, ``loss_no·w_no/num_no + loss_yes·w_yes/num_yes``,
    with its Waterbirds script's ``--w_yes 1e7 --w_no 2e5`` (the paper's α and β), in a whole set of
    2 *yes* and 4 *no* answers. One *no* and one *yes* image, 2×2 maps:

    P_no = [[1, 0], [0, 0]], E_no = [[0.5, 1], [0, 0]]: L_no = 0.5 / 1 = 0.5.
    P_yes = [[1, 0.5], [0, 0]], E_yes = [[1, 0], [1, 0]]: L_yes = 1 / 2.5 = 0.4.
    Attention terms = 1e7/2 · 0.4 + 2e5/4 · 0.5 = 2,000,000 + 25,000 = 2,025,000."""
    original = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.5], [0.0, 0.0]]])
    current = torch.tensor([[[0.5, 1.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]])
    answers = torch.tensor([Answer.NO, Answer.YES])
    assert float(attention_terms(current, original, answers, w_yes=1e7, w_no=2e5, n_yes=2, n_no=4)) == pytest.approx(2_025_000, rel=1e-6)

    # The paper's α and β entered as w_yes and w_no give the same loss through the refiner itself.
    from crayon_plugins.plugins.refiners.crayon_attention import Guidance

    refiner = create_refiner("crayon-attention", {"w_yes": 1e7, "w_no": 2e5})
    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    refiner.interpreter = FixedMaps(current, logits)
    batch = Batch(indices=torch.tensor([0, 1]), images=torch.zeros(2, 3, 2, 2), labels=labels)
    loss = refiner.loss(None, batch, Guidance(original, answers, n_no=4, n_yes=2))
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, labels, reduction="sum")) + 2_025_000, rel=1e-6)

    # energy = "mass" divides each term by Σ(E) instead: L_no = 0.5 / 1.5, L_yes = 1 / 2.
    refiner = create_refiner("crayon-attention", {"w_yes": 1e7, "w_no": 2e5, "energy": "mass"})
    refiner.interpreter = FixedMaps(current, logits)
    loss = refiner.loss(None, batch, Guidance(original, answers, n_no=4, n_yes=2))
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, labels, reduction="sum")) + 1e7 / 2 * 0.5 + 2e5 / 4 / 3, rel=1e-6)


def test_the_papers_names_for_the_weights_are_refused_with_the_mapping():
    from crayon_plugins.errors import ConfigError

    for old, new in (("alpha", "w_yes"), ("beta", "w_no")):
        with pytest.raises(ConfigError, match=rf"'{old}' is not an option.*write {new} = 10000000.0.*α → w_yes, β → w_no"):
            create_refiner("crayon-attention", {old: 1e7}, where="refiner.crayon-attention")


@FAST
@given(map_shapes().flatmap(saliency_maps))
def test_an_all_zero_current_map_on_a_no_image_pays_the_full_loss(original):
    """CRAYON normalises ``(ε + x) / max(ε + x)``: an all-zero current map becomes all ones, so
    ``L_no = ΣP/ΣP = 1`` whatever the original map: switching Grad-CAM off cannot escape the loss."""
    zero = torch.zeros_like(original)
    normalised = crayon_normalise(original)
    assert torch.allclose(energy_no(crayon_normalise(zero), normalised), torch.ones(len(original)), rtol=1e-6, atol=0)
    answers = torch.full((len(original),), int(Answer.NO))
    assert float(attention_terms(zero, original, answers, w_yes=0.0, w_no=1.0, n_yes=0, n_no=len(original))) == pytest.approx(1.0, rel=1e-5)


def test_a_yes_on_an_all_zero_original_map_adds_no_term_and_is_counted():
    original = torch.zeros(2, 3, 3)
    original[1, 0, 0] = 1.0
    current = torch.rand(2, 3, 3)
    answers = torch.tensor([Answer.YES, Answer.YES])
    term = attention_terms(current, original, answers, w_yes=2.0, w_no=0.0, n_yes=2, n_no=2)
    expected = energy_yes(crayon_normalise(current[1:]), crayon_normalise(original[1:])).sum()
    assert bool(torch.isfinite(term)) and float(term) == pytest.approx(float(expected), rel=1e-6)
    assert degenerate_yes(original, answers) == 1


@SLOW
@given(st.integers(2, 8).flatmap(lambda n: st.tuples(st.just(n), answer_codes(n))), st.integers(2, 3), st.integers(0, 3))
def test_gradia_weights_follow_the_published_table(drawn, num_classes, seed):
    """Through Gradia.weights, with GRADIA.py's pairs: yes-accurate (1, 0), no-accurate (0.4, 1.6),
    yes-inaccurate (0.8, 0.2), no-inaccurate (1, 1); maybe and unannotated (1, 0)."""
    n, answers = drawn
    with torch.random.fork_rng():
        model = tiny_model(seed, num_classes)
    train = tiny_image_set(n=n, num_classes=num_classes, seed=seed)
    w_pred, w_att = create_refiner("gradia").weights(model, tiny_context(model, train, map_answers=answers))
    with torch.no_grad():
        accurate = (model(train.images.all()).argmax(dim=1) == train.labels).tolist()
    table = {(Answer.YES, True): (1, 0), (Answer.NO, True): (0.4, 1.6), (Answer.YES, False): (0.8, 0.2), (Answer.NO, False): (1, 1)}
    for i in range(n):
        expected = table.get((int(answers[i]), accurate[i]), (1, 0))
        assert (float(w_pred[i]), float(w_att[i])) == pytest.approx(expected, abs=1e-6)


class KeepClassifier(TinyClassifier):
    """A :class:`TinyClassifier` that sees only the pixels in ``keep``: its input gradient is exactly
    zero everywhere else."""

    def __init__(self, keep: torch.Tensor, num_classes: int = 2) -> None:
        super().__init__(channels=4, stride=1, num_classes=num_classes)
        self.register_buffer("keep", keep)

    def forward_features(self, normalised: torch.Tensor) -> torch.Tensor:
        return super().forward_features(normalised * self.keep)


@SLOW
@given(
    st.tuples(st.integers(1, 4), st.integers(2, 12), st.integers(2, 12)).flatmap(
        lambda shape: st.tuples(object_masks((1, *shape[1:])), object_masks(shape))
    ),
    st.integers(0, 2**16),
)
def test_rrr_penalises_exactly_the_input_gradient_outside_the_region(masks, seed):
    """Regions holding ``keep`` pay exactly 0; a region pays the mean squared gradient it leaves out."""
    keep, drawn = masks[0][0], masks[1]
    assume(bool(keep.any()))
    b, h, w = drawn.shape
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = KeepClassifier(keep).eval()
        images, labels = torch.rand(b, 3, h, w), torch.randint(0, 2, (b,))
    rrr = RightForTheRightReasons()
    assert torch.equal(rrr.guidance(model, Batch(torch.arange(b), images, labels), drawn | keep, None)[1].detach(), torch.zeros(b))

    x = images.clone().requires_grad_(True)
    torch.log_softmax(model(x), dim=1).sum().backward()
    assert bool((x.grad[:, :, ~keep] == 0).all())
    missed = ((~drawn & keep)[:, None] * x.grad).pow(2)  # the squared gradient the region leaves out
    term = rrr.guidance(model, Batch(torch.arange(b), images, labels), drawn, None)[1].detach()
    assert torch.allclose(term, missed.mean(dim=(1, 2, 3)), rtol=1e-5, atol=0)
    assert torch.equal(term > 0, missed.flatten(1).sum(dim=1) > 0)
