"""The entry point's module: one hook implementation per component kind the plugin adds."""

from crayon_plugins.api import hookimpl

from .cosine_attention import CosineAttention
from .gradient_input import GradientTimesInput


@hookimpl
def crayon_interpreters():
    return {"gradient-x-input": GradientTimesInput}


@hookimpl
def crayon_refiners():
    return {"cosine-attention": CosineAttention}
