import torch

from crayon_plugins import create_interpreter


def test_differentiable_gradcam_agrees_with_captum(tiny_model):
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 0, 1, 1, 0])
    ours = create_interpreter("gradcam")(tiny_model, images, targets)
    captum = create_interpreter("captum-gradcam")(tiny_model, images, targets)
    assert ours.shape == captum.shape == (6, 4, 4)
    assert (ours >= 0).all() and ours.amax(dim=(1, 2)).le(1).all()
    assert (ours - captum).abs().max() <= 1e-4


def test_gradcam_maps_are_differentiable_and_batch_independent(tiny_model):
    interpreter = create_interpreter("gradcam")
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([1, 0, 1, 0])
    maps, logits = interpreter.explain(tiny_model, images, targets)
    assert maps.requires_grad and logits.shape == (4, 2)
    maps.sum().backward()
    grads = [p.grad for p in tiny_model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    tiny_model.zero_grad()
    alone = interpreter(tiny_model, images[2:3], targets[2:3])
    assert torch.allclose(alone[0], maps[2].detach(), atol=1e-5)


def test_input_space_captum_interpreters_give_image_sized_maps(tiny_model):
    images = torch.rand(2, 3, 32, 32)
    for name in ("captum-saliency", "captum-integrated-gradients"):
        maps = create_interpreter(name, {"steps": 4} if "integrated" in name else None)(tiny_model, images, torch.tensor([0, 1]))
        assert maps.shape == (2, 32, 32)
        assert (maps >= 0).all() and torch.allclose(maps.amax(dim=(1, 2)), torch.ones(2), atol=1e-4)
