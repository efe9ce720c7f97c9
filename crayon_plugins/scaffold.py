"""``crayon new-plugin NAME``: a new plugin distribution that installs, registers and passes its test.

The scaffold holds one working refiner (cross-entropy plus CRAYON's ``L_no`` on the images answered
*no*), its entry point in the group ``crayon``, and a test that runs
:func:`crayon_plugins.testing.check_refiner` on it and checks the installed plugin is discovered.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from .errors import CrayonError

NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")

PYPROJECT = Template('''\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "crayon-$name"
version = "0.1.0"
description = "A crayon plugin: the $name refiner."
requires-python = ">=3.10"
dependencies = ["crayon-plugins"]

[project.optional-dependencies]
test = ["pytest>=8"]

# crayon finds plugins through this entry point group; the module holds the @hookimpl functions.
[project.entry-points.crayon]
$name = "$package.plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
''')

README = Template('''\
# crayon-$name

A [crayon-plugins](https://pypi.org/project/crayon-plugins/) plugin adding the refiner `$name`.

```sh
pip install -e '.[test]'   # into the environment where crayon-plugins is installed
crayon plugins             # lists refiner $name (plugin $name)
pytest                     # the contract checks of crayon_plugins.testing
crayon run -r $name        # refine a model with it
```

Edit `src/$package/refiner.py`; the guide to every hook and promise is crayon-plugins' `docs/plugins.md`.
''')

INIT = Template('''"""The crayon plugin crayon-$name."""
''')

PLUGIN = Template('''\
"""The module the entry point names: one @hookimpl function per component kind this plugin adds."""

from crayon_plugins import hookimpl

from .refiner import $cls


@hookimpl
def crayon_refiners():
    return {"$name": $cls}
''')

REFINER = Template('''\
"""The refiner ``$name``."""

from __future__ import annotations

import copy

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from crayon_plugins.components import RefinementContext, Refiner
from crayon_plugins.config import Optimisation
from crayon_plugins.data import Answer
from crayon_plugins.energy import energy_no
from crayon_plugins.model import Classifier
from crayon_plugins.plugins.gradcam import GradCam
from crayon_plugins.training import fit


class $cls(Refiner):
    """Fine-tune with ``mean CE + λ · mean L_no`` over the images answered *no*.

    ``L_no`` (CRAYON's energy loss) is the share of the current Grad-CAM that stays where the original
    model looked; *yes* and *maybe* add nothing. Replace the loss in :meth:`refine` with your own.
    """

    needs = frozenset({"map-answers"})

    class Params(Optimisation):
        epochs: int = Field(default=3, gt=0)
        lr: float = Field(default=1e-4, gt=0)
        lam: float = Field(default=10.0, ge=0, description="weight λ of L_no")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.gradcam = GradCam()

    def refine(self, model: Classifier, context: RefinementContext) -> Classifier:
        refined = copy.deepcopy(model).to(context.device)  # never modify the model you are given
        train, device = context.train, context.device
        original_maps = context.maps_for(self.gradcam, model)

        def batch_loss(indices: Tensor) -> Tensor:
            images, labels = train.images[indices].to(device), train.labels[indices].to(device)
            current, logits = self.gradcam.explain(refined, images, labels)
            no = context.map_answers[indices].to(device) == Answer.NO
            loss = F.cross_entropy(logits, labels)
            if no.any():
                loss = loss + self.params.lam * energy_no(current[no], original_maps[indices].to(device)[no]).mean()
            return loss

        fit(refined, batch_loss, len(train), self.params, context.seed, "refine $name")
        return refined
''')

TEST = Template('''\
"""$cls keeps every promise of a refiner, and the installed plugin registers it."""

from crayon_plugins.registry import default_registry
from crayon_plugins.testing import check_refiner

from $package.refiner import $cls


def test_the_refiner_keeps_the_refiner_contract():
    check_refiner($cls())


def test_the_installed_plugin_registers_the_refiner():
    registration = default_registry().get("refiner", "$name")
    assert registration.component is $cls and registration.plugin == "$name"
''')


def new_plugin(name: str, parent: Path) -> Path:
    """Write the plugin distribution ``crayon-NAME`` into ``parent/NAME`` and return that folder.

    Raises:
        CrayonError: ``name`` is not lower-case words joined by hyphens, or the folder exists.
    """
    if not NAME.fullmatch(name):
        raise CrayonError(f"new-plugin: NAME {name!r} must be lower-case letters and digits in words joined by hyphens, starting with a letter (e.g. 'my-refiner')")
    root = parent / name
    if root.exists():
        raise CrayonError(f"new-plugin: {root} already exists; choose another NAME or folder (nothing was written)")
    package = f"crayon_{name.replace('-', '_')}"
    values = {"name": name, "package": package, "cls": "".join(part.title() for part in name.split("-")) + "Refiner"}
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"src/{package}/__init__.py": INIT,
        f"src/{package}/plugin.py": PLUGIN,
        f"src/{package}/refiner.py": REFINER,
        "tests/test_contracts.py": TEST,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(values))
    return root
