"""Label-preserving data augmentation, on whatever device the batch is on: the ops each kind of input allows
(1-D shift, noise and scale for sequences; flip, rotation, translation, contrast and noise for images; noise for
a table's columns, which have no geometry), run on training batches only (`lightning_modules.data`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from lightning_modules.config import ConfigError

Kind = Literal["sequence", "image", "tabular"]

# The ops that keep a label, per kind of input.
AUGMENT_OPS: dict[Kind, tuple[str, ...]] = {
    "sequence": ("shift", "noise", "scale"),
    "image": ("flip", "rotate", "translate", "contrast", "noise"),
    "tabular": ("noise",),
}
# The order ops run in, whatever order the config lists them: geometry first, then amplitude,
# then noise, so that noise is never rotated or rescaled.
_OP_ORDER = ("flip", "rotate", "translate", "shift", "scale", "contrast", "noise")



def in_order(ops: Sequence[str]) -> tuple[str, ...]:
    """`ops` in the order they run (`_OP_ORDER`), whatever order the config lists them in."""
    return tuple(op for op in _OP_ORDER if op in ops)


MAX_SHIFT = 3  # positions; MNIST-1D's digits are 12-point templates in 40, a few steps keep them whole
NOISE_STD = 0.05  # in normalized units: small next to the unit spread of every feature
SCALE_RANGE = (0.9, 1.1)  # amplitude factor; a digit at 90% or 110% height is the same digit
MAX_ROTATION_DEG = 10.0  # handwriting tilts this much without changing the digit
MAX_TRANSLATE = 1  # pixel; on an 8x8 digit, 2 pixels already push strokes off the image
CONTRAST_RANGE = (0.8, 1.2)  # factor on the deviation from the image's own mean intensity


def augment_batch(
    x: torch.Tensor,
    ops: Sequence[str],
    kind: Kind,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply label-preserving augmentation ops to a batch of normalized inputs.

    x: (B, L) sequences, (B, H, W) images or (B, F) tables, normalized with `mean` and `std`
    (shape x.shape[1:]; None = not normalized). Geometric and amplitude ops act on the raw
    values (a rotated image must rotate pixels, not per-pixel z-scores whose scales differ);
    noise is added afterwards in normalized units. Ops run in a fixed order (`_OP_ORDER`);
    randomness comes from torch's global generator (seeded by the trainer).
    """
    allowed = AUGMENT_OPS[kind]
    bad = [op for op in ops if op not in allowed]
    if bad:
        raise ConfigError(f"data.augment = {list(ops)!r}: {bad} not available for {kind} inputs; allowed: {allowed}")
    if not ops:
        return x
    mean = torch.zeros((), device=x.device) if mean is None else mean
    std = torch.ones((), device=x.device) if std is None else std
    raw = x * std + mean
    ordered = in_order(ops)
    for op in ordered:
        if op != "noise":
            raw = _RAW_OPS[op](raw)
    out = (raw - mean) / std
    if "noise" in ordered:
        out = out + NOISE_STD * torch.randn_like(out)
    return out


def _uniform(batch: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(batch, device=like.device, dtype=like.dtype).uniform_(low, high)


def _shift_1d(x: torch.Tensor) -> torch.Tensor:
    """Circularly shift each sequence (B, L) by its own random offset in [-MAX_SHIFT, MAX_SHIFT]."""
    batch, length = x.shape[0], x.shape[-1]
    offset = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (batch, 1), device=x.device)
    index = (torch.arange(length, device=x.device) - offset) % length  # (B, L)
    return torch.gather(x, -1, index.expand_as(x))


def _scale(x: torch.Tensor) -> torch.Tensor:
    """Multiply each example by its own amplitude factor ~ U(SCALE_RANGE)."""
    factor = _uniform(x.shape[0], *SCALE_RANGE, like=x)
    return x * factor.view(-1, *([1] * (x.dim() - 1)))


def _flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image (B, H, W) left-right with probability 1/2."""
    mirror = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(mirror.view(-1, 1, 1), x.flip(-1), x)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample images (B, H, W) through affine maps theta (B, 2, 3); outside pixels are 0 (blank)."""
    images = x.unsqueeze(1)  # (B, 1, H, W)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(1)


def _rotate(x: torch.Tensor) -> torch.Tensor:
    """Rotate each image by its own angle ~ U(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)."""
    angle = torch.deg2rad(_uniform(x.shape[0], -MAX_ROTATION_DEG, MAX_ROTATION_DEG, like=x))
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    return _affine(x, theta)


def _translate(x: torch.Tensor) -> torch.Tensor:
    """Shift each image by whole pixels in [-MAX_TRANSLATE, MAX_TRANSLATE] along each axis, blank-filled."""
    batch, height, width = x.shape
    pixels = torch.randint(-MAX_TRANSLATE, MAX_TRANSLATE + 1, (batch, 2), device=x.device).to(x.dtype)
    theta = torch.zeros(batch, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    # With align_corners=False one pixel is 2/size in grid units; sampling at -shift moves content by +shift.
    theta[:, 0, 2] = -2.0 * pixels[:, 0] / width
    theta[:, 1, 2] = -2.0 * pixels[:, 1] / height
    return _affine(x, theta)


def _contrast(x: torch.Tensor) -> torch.Tensor:
    """Scale each image's deviation from its own mean intensity by a factor ~ U(CONTRAST_RANGE)."""
    factor = _uniform(x.shape[0], *CONTRAST_RANGE, like=x).view(-1, 1, 1)
    image_mean = x.mean(dim=(-2, -1), keepdim=True)
    return image_mean + factor * (x - image_mean)


_RAW_OPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "shift": _shift_1d,
    "scale": _scale,
    "flip": _flip,
    "rotate": _rotate,
    "translate": _translate,
    "contrast": _contrast,
}
