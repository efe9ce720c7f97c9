"""``gradcam`` and ``gradia-gradcam``: the differentiable Grad-CAMs of :mod:`crayon_plugins.model.gradcam` as interpreters."""

from __future__ import annotations

from crayon_plugins.api import GradCam, GradiaGradCam, hookimpl


@hookimpl
def crayon_interpreters():
    return {"gradcam": GradCam, "gradia-gradcam": GradiaGradCam}
