"""``crayon new-plugin NAME``: a new plugin distribution that installs, registers and passes its test.

The scaffold holds one working refiner (cross-entropy plus CRAYON's ``L_no`` on the images answered
*no*), its entry point in the group ``crayon``, and a test that runs
:func:`crayon_plugins.testing.check_refiner` on it and checks the installed plugin is discovered.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from crayon_plugins.errors import CrayonError

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

from crayon_plugins.api import hookimpl

from .refiner import $cls


@hookimpl
def crayon_refiners():
    return {"$name": $cls}
''')

REFINER = Template('''\
"""The refiner ``$name``."""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from crayon_plugins.api import Answer, Batch, Classifier, FineTuning, GradCam, Need, RefinementContext, crayon_normalise, energy_no, rows


class $cls(FineTuning):
    """Fine-tune with ``mean CE + λ · mean L_no`` over the images answered *no*.

    ``L_no`` (CRAYON's energy loss) is the share of the current Grad-CAM that stays where the original
    model looked; *yes* and *maybe* add nothing. Replace the loss in :meth:`loss` with your own: the
    training loop, validation and model selection are :class:`~crayon_plugins.api.FineTuning`'s.
    """

    needs = frozenset({Need.MAP_ANSWERS})

    class Params(FineTuning.Params):
        lam: float = Field(default=10.0, ge=0, description="weight λ of L_no")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self.gradcam = GradCam()

    def prepare(self, model: Classifier, context: RefinementContext) -> tuple[Tensor, Tensor]:
        """Once per refinement: the original model's maps and the answers, per training item."""
        return context.maps_for(self.gradcam, model), context.map_answers

    def loss(self, model: Classifier, batch: Batch, prepared: tuple[Tensor, Tensor]) -> Tensor:
        original_maps, answers = (rows(values, batch) for values in prepared)
        current, logits = self.gradcam.explain(model, batch.images, batch.labels)
        no = answers == Answer.NO
        loss = F.cross_entropy(logits, batch.labels)
        if no.any():
            maps = crayon_normalise(current[no]), crayon_normalise(original_maps[no])
            loss = loss + self.params.lam * energy_no(*maps).mean()
        return loss
''')

TEST = Template('''\
"""$cls keeps every promise of a refiner, and the installed plugin registers it."""

from crayon_plugins.testing import check_refiner, registered

from $package.refiner import $cls


def test_the_refiner_keeps_the_refiner_contract():
    check_refiner($cls())


def test_the_installed_plugin_registers_the_refiner():
    registration = registered("refiner", "$name")
    assert registration.component is $cls and registration.plugin == "$name"
''')


def new_plugin(name: str, parent: Path) -> Path:
    """Write the plugin distribution ``crayon-NAME`` into ``parent/NAME`` and return that folder.

    Raises:
        CrayonError: ``name`` is not lower-case words joined by hyphens, ``parent`` is not a folder,
            the plugin's folder exists or cannot be written.
    """
    if not NAME.fullmatch(name):
        raise CrayonError(f"new-plugin: NAME {name!r} must be lower-case letters and digits in words joined by hyphens, starting with a letter (e.g. 'my-refiner')")
    if not parent.exists():
        raise CrayonError(f"new-plugin: --dir {parent} does not exist (nothing was written)")
    if not parent.is_dir():
        raise CrayonError(f"new-plugin: --dir {parent} is a file, not a folder (nothing was written)")
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
    try:
        for relative, template in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(template.substitute(values))
    except OSError as error:
        raise CrayonError(f"new-plugin: cannot write {error.filename or root} ({error.strerror or error})") from None
    return root
