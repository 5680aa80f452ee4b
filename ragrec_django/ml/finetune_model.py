"""Torch building blocks of CLIP fine-tuning: the locked-text model, the loss and batched augmentations.

Imported only by code that trains or runs a model (``ragrec_django.ml.finetune`` and
``ragrec_django.ml.locked_clip`` import it lazily), so importing either does not import torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: CLIP's initial temperature: logits are scaled by exp(logit_scale) = 1 / 0.07.
INIT_LOGIT_SCALE = math.log(1 / 0.07)
#: CLIP clamps the learned scale at 100.
MAX_LOGIT_SCALE = math.log(100.0)


class LockedTextClip(nn.Module):
    """Image tower (an open_clip vision tower) + a trainable projection of frozen sentence embeddings.

    The text tower itself (MiniLM) is not part of this module: it is frozen and
    its mean-pooled, L2-normalised sentence embeddings are the *input* of
    ``encode_text``. The module holds only what training changes:

    * ``visual``: any open_clip vision tower built from ``vision_cfg``, ending in
      its own projection to ``embed_dim``;
    * ``text_projection``: ``nn.Linear(text_hidden_size, embed_dim)``, initialised
      (semi-)orthogonal so the untrained projection keeps MiniLM's geometry;
    * ``logit_scale``: the learnable inverse temperature (log scale) of the loss.
    """

    def __init__(self, embed_dim: int, vision_cfg: dict, text_hidden_size: int, quick_gelu: bool = False):
        super().__init__()
        from open_clip.model import _build_vision_tower

        self.embed_dim = int(embed_dim)
        self.visual = _build_vision_tower(self.embed_dim, dict(vision_cfg), quick_gelu=quick_gelu)
        self.text_projection = nn.Linear(int(text_hidden_size), self.embed_dim)
        nn.init.orthogonal_(self.text_projection.weight)
        nn.init.zeros_(self.text_projection.bias)
        self.logit_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.visual(pixels)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, sentence_embeddings: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Project sentence embeddings of the frozen text model into the joint space."""
        features = self.text_projection(sentence_embeddings.to(self.text_projection.weight.dtype))
        return F.normalize(features, dim=-1) if normalize else features


def clip_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor, positives: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) loss over a batch.

    ``positives`` is a boolean (n, n) matrix: True where image i and text j
    belong together. Normally the identity; rows with several positives (two
    pairs of one product, or identical texts or images in one batch) get a
    target spread evenly over them instead of calling the duplicates negatives.
    """
    image_features = F.normalize(image_features.float(), dim=-1)
    text_features = F.normalize(text_features.float(), dim=-1)
    logits = logit_scale.float().exp() * image_features @ text_features.T
    targets = positives.float()
    image_to_text = F.cross_entropy(logits, targets / targets.sum(dim=1, keepdim=True))
    text_to_image = F.cross_entropy(logits.T, targets.T / targets.T.sum(dim=1, keepdim=True))
    return (image_to_text + text_to_image) / 2


def random_resized_crop_flip(
    pixels: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.6, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
) -> torch.Tensor:
    """Per-image random resized crop and horizontal flip of a batch, in one ``grid_sample``.

    ``pixels`` is a float (n, c, h, w) batch on any device; crops cover
    ``scale`` of the image area with aspect ratios in ``ratio``, lie inside the
    image and are resized back to (h, w) bilinearly. Random numbers come from
    ``generator`` (a CPU generator), so a seed gives the same crops on every device.
    """
    n = pixels.shape[0]
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = log_ratio.exp()
    width = (area * aspect).sqrt().clamp(max=1.0)  # fraction of the image width
    height = (area / aspect).sqrt().clamp(max=1.0)
    # Crop centres in [-1, 1] grid coordinates, keeping the crop inside the image.
    centre_x = (torch.rand(n, generator=generator) * 2 - 1) * (1 - width)
    centre_y = (torch.rand(n, generator=generator) * 2 - 1) * (1 - height)
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = width * mirror
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    theta = theta.to(device=pixels.device, dtype=pixels.dtype)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: no decay on biases, norms, embeddings-like 1-d tensors and the temperature."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if parameter.ndim < 2 or "logit_scale" in name or "bias" in name or ".ln" in name or "norm" in name:
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_with_warmup(step: int, total: int, warmup: int, elapsed: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``.

    ``elapsed`` (0..1, the share of a time budget used) moves the decay on when
    time runs out before the steps do.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = max((step - warmup) / max(1, total - warmup), elapsed)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
