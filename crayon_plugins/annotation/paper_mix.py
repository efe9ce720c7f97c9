"""What real annotators answered in the CRAYON authors' public annotation files (their repository's
``annotation/`` folder), the reference simulated annotators are compared with."""

from __future__ import annotations

from dataclasses import dataclass

from crayon_plugins.annotation.records import Question


@dataclass(frozen=True)
class AnswerMix:
    """Shares of the answers real annotators gave on one dataset (each in ``[0, 1]``)."""

    maps_judged: int
    yes: float
    maybe: float
    no: float
    neurons_judged: int
    relevant: float

    def shares(self, question: Question) -> tuple[float, float, float]:
        """``(yes, maybe, no)`` shares of answers about maps or neurons (relevant /
        irrelevant; the files hold no *maybe* about neurons)."""
        if question == Question.MAPS:
            return self.yes, self.maybe, self.no
        return self.relevant, 0.0, 1 - self.relevant


REAL_ANNOTATORS = {
    "Waterbirds": AnswerMix(4795, yes=0.712, maybe=0.256, no=0.032, neurons_judged=2048, relevant=0.495),
    "Biased CelebA": AnswerMix(20200, yes=0.258, maybe=0.237, no=0.506, neurons_judged=2048, relevant=0.060),
    "Backgrounds Challenge": AnswerMix(45405, yes=0.053, maybe=0.943, no=0.004, neurons_judged=2048, relevant=0.801),
}
"""Dataset name → the answer mix of its real annotators."""


def relevant_rates_text() -> str:
    """``"49.5% (Waterbirds), …"``: the real relevant-rates, for printing beside an oracle's."""
    return ", ".join(f"{100 * mix.relevant:.1f}% ({name})" for name, mix in REAL_ANNOTATORS.items())
