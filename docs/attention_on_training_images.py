"""Where crayon-attention's maps go on the training images its loss saw, against the test images:
docs/attention.md's check that the published energy terms narrow the maps rather than move them.

    .venv/bin/python docs/attention_on_training_images.py [CORRELATION] [SEED] [ENERGY]

Runs (or loads from the cache) the original model and crayon-attention on the embedded benchmark at
CORRELATION (default 0.99) for SEED (default 0) with ``energy`` = ENERGY (default ``crayon``), then
draws the differentiable Grad-CAM the loss trains through, for the true label, on the first 1,000
training images (in training mode, as the loss saw them, and in evaluation mode) and 1,000 test images,
and prints the attention metric's numbers over the images whose original map a noise-free oracle
answers *no*: the original model's → the refined model's, with the mean ``L_no`` of the published
terms and of the ``mass`` variant (the original map against itself → the refined map against it).
"""

import copy
import sys

import torch
from crayon_plugins.plugins.metrics.attention import answered, on_object, per_image, summary

import crayon_plugins
from crayon_plugins import Pipeline, RunConfig
from crayon_plugins.data.items import TensorItems
from crayon_plugins.factory import create_interpreter
from crayon_plugins.run.stages.load import load
from crayon_plugins.training.energy import ENERGIES, crayon_normalise

IMAGES = 1000


def maps(model, split, train_mode: bool, interpreter) -> torch.Tensor:
    """The interpreter's maps of the first IMAGES images of ``split`` for their labels, on a copy of ``model``."""
    model = copy.deepcopy(model).train(train_mode)  # training mode updates batch norm's statistics: a copy
    found = []
    for start in range(0, IMAGES, 64):
        indices = torch.arange(start, min(start + 64, IMAGES))
        found.append(interpreter.explain(model, split.images[indices], split.labels[indices])[0].detach())
    return torch.cat(found)


def main(correlation: float = 0.99, seed: int = 0, energy: str = "crayon") -> None:
    torch.set_num_threads(1)
    config = RunConfig(
        dataset={"name": "spurious-bars", "correlation": correlation},
        refiners=["crayon-attention"],
        refiner={"crayon-attention": {"energy": energy}},
        seed=seed,
        metrics=["accuracy", "group-accuracy", "reasonability", "attention"],
    )
    results = crayon_plugins.run(config)
    original, refined = results.models["original"], results.models["crayon-attention"]
    print(f"correlation {correlation}, seed {seed}, energy {energy}: WGA", {m: round(100 * results.row(m).metrics["wga"], 1) for m in ("original", "crayon-attention")})
    pipeline, gradcam = Pipeline.from_config(config), create_interpreter("gradcam")
    for name in ("train", "test"):
        split = load(pipeline, name)
        masks = TensorItems(torch.stack([split.masks[i] for i in range(IMAGES)]))
        before = maps(original, split, False, gradcam)
        share = on_object(before, masks)
        no = answered(share)["no"] & (before.amax(dim=(-2, -1)) > 0)
        was = summary(per_image(before, before, share), no)
        for train_mode in (True, False) if name == "train" else (False,):
            after = maps(refined, split, train_mode, gradcam)
            now = summary(per_image(after, before, on_object(after, masks)), no)
            numbers = ", ".join(f"{k} {100 * was[k]:.1f} → {100 * now[k]:.1f}" for k in ("energy_on_object", "energy_where_original_looked", "entropy", "spread"))
            p, e0, e1 = (crayon_normalise(m[no]) for m in (before, before, after))
            numbers += "".join(f", L_no {kind} {float(terms[0](e0, p).mean()):.3f} → {float(terms[0](e1, p).mean()):.3f}" for kind, terms in ENERGIES.items())
            print(f"{name} images, {'training' if train_mode else 'evaluation'} mode, {int(no.sum())} of {IMAGES} answered no: {numbers}")


if __name__ == "__main__":
    main(*(t(a) for t, a in zip((float, int, str), sys.argv[1:])))
