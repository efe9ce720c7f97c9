"""Mixed precision: the double-backward Grad-CAM stays correct under bf16 autocast, and ``fit``
trains with it; fp16 asks for CUDA."""

import pytest
import torch
import torch.nn.functional as F

from crayon_plugins.config import Optimisation
from crayon_plugins.errors import ConfigError
from crayon_plugins.model.gradcam import GradCam
from crayon_plugins.testing import tiny_image_set, tiny_model
from crayon_plugins.training.loop import fit


def test_bf16_grad_cam_and_its_weight_gradients_match_float32():
    model, images = tiny_model(0).eval(), tiny_image_set(n=8, seed=2).images.all()
    targets = torch.arange(8) % 2

    def maps_and_gradient(precision):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision is not None):
            maps, _ = GradCam().explain(model, images, targets)
        assert maps.dtype == torch.float32
        maps.sum().backward()  # through the double backward to the weights
        return maps.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    exact, exact_grad = maps_and_gradient(None)
    mixed, mixed_grad = maps_and_gradient(torch.bfloat16)
    assert (mixed - exact).abs().max() < 0.05
    assert F.cosine_similarity(mixed_grad, exact_grad, dim=0) > 0.99


def test_fit_trains_in_bf16_and_refuses_fp16_on_cpu():
    model, train = tiny_model(0), tiny_image_set(n=32, seed=3)
    loss = lambda i, x: F.cross_entropy(model(x), train.labels[i])  # noqa: E731
    with torch.no_grad():
        before = float(F.cross_entropy(model(train.images.all()), train.labels))
    fit(model, loss, len(train), Optimisation(epochs=5, lr=1e-2, batch_size=8, amp="bf16"), 0, "bf16", images=train.images)
    with torch.no_grad():
        assert float(F.cross_entropy(model(train.images.all()), train.labels)) < before
    with pytest.raises(ConfigError, match="fp16.*CUDA"):
        fit(model, loss, len(train), Optimisation(amp="fp16"), 0, "fp16", images=train.images)
