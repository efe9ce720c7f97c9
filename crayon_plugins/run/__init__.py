"""One run, ``crayon run``: the pipeline and its stages, the artefact cache, results, the comparison
table and figures.

The package is also callable: ``crayon_plugins.run(config, **overrides)`` is
:func:`crayon_plugins.run.notebook.run`, so the run reads as one call from a notebook while its
modules stay importable as ``crayon_plugins.run.<module>``.
"""

import sys
import types


class _CallableModule(types.ModuleType):
    """This package, callable (Python allows a module's class to be replaced with a subclass)."""

    def __call__(self, *args, **kwargs):
        from crayon_plugins.run.notebook import run

        return run(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
