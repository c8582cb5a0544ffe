"""Compression: what a client's update becomes on its way to the server (``paradigm/compression``)
and what the global weights become on their way to the clients (``paradigm/download``: one
broadcast a round, decoded alike by every client; the server keeps its exact float32 copy and
takes each update from the weights the client received).

A codec encodes one flat vector, the parameter delta (and SCAFFOLD's control-variate change),
cut into the model's parameter tensors (``sizes``): it gives what the server decodes of it
(``roundtrip``) and how many bytes the encoding takes (``size``); the simulation aggregates
the decoded values and counts the encoded bytes. The BatchNorm statistics (a few values) are
sent as float32 with every codec: rounding a running variance's change could leave it
negative or near zero (``Simulation._compress``).

- fp16: every value cast to half precision (2 bytes a value).
- int8: per tensor, a symmetric scale ``max |x| / 127`` (float32) and codes in [-127, 127]
  drawn by stochastic rounding (``floor(x / scale + u)``, u uniform), so the decoded value
  is unbiased: E[decoded] = x (the QSGD family: Alistarh et al. 2017). 1 byte a value and
  4 bytes a tensor.
- top_k: per tensor, the ``round(fraction x numel)`` (at least 1) largest magnitudes as
  (float32 value, int32 index): 8 bytes an entry. With error feedback (Stich et al. 2018, "Sparsified SGD
  with memory"; Karimireddy et al. 2019) the client adds what it did not send (its residual)
  to its next update, so nothing is lost, only delayed.

Under client-level DP a client compresses, then clips: the clip is the last step before the
noise, so the sensitivity stays exactly ``C`` for every codec (clipping first, int8's
stochastic rounding or fp16's rounding could raise the norm above ``C``). Clipping only scales
the decoded vector: int8 and top_k fold the factor into their scales or values (same bytes),
fp16 sends it as one more float32.
"""

from __future__ import annotations

import torch


class Compression:
    """none: the update as trained, float32 (4 bytes a value)."""

    lossless = True  # the server gets the update bit for bit: the simulation skips the codec
    error_feedback = False  # the client keeps a residual of what it did not send

    def roundtrip(
        self, update: torch.Tensor, sizes: list[int], generator: torch.Generator
    ) -> torch.Tensor:
        """What the server decodes of the client's encoded ``update`` (a vector of tensors of
        ``sizes``); ``generator`` is the client's own stream for the round."""
        return update

    def size(self, sizes: list[int], clipped: bool) -> int:
        """Bytes of one encoded update (``clipped``: scaled by a DP clip factor)."""
        return 4 * sum(sizes)

    def send(
        self,
        update: torch.Tensor,
        residual: torch.Tensor | None,
        sizes: list[int],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the server decodes of ``update`` (plus the client's ``residual`` under error
        feedback; None: it has none yet) and the client's next residual (None without error
        feedback)."""
        if not self.error_feedback:
            return self.roundtrip(update, sizes, generator), None
        raw = update if residual is None else update + residual
        sent = self.roundtrip(raw, sizes, generator)
        return sent, raw - sent


class Fp16(Compression):
    """Half precision: 2 bytes a value (one float32 more for a DP clip factor)."""

    lossless = False

    def roundtrip(self, update, sizes, generator):
        return update.half().float()

    def size(self, sizes, clipped):
        return 2 * sum(sizes) + (4 if clipped else 0)


class Int8(Compression):
    """Per-tensor symmetric int8 with stochastic rounding: unbiased, 1 byte a value."""

    lossless = False
    levels = 127  # symmetric: -127..127, so 0 is exact and the scale is max |x| / 127

    def scales(self, update: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """Each value's tensor scale, ``max |x| / 127`` of its tensor."""
        peaks = torch.stack([chunk.abs().max() for chunk in update.split(sizes)])
        return (peaks / self.levels).repeat_interleave(torch.tensor(sizes))

    def roundtrip(self, update, sizes, generator):
        scale = self.scales(update, sizes)
        level = torch.where(scale > 0, update / scale, torch.zeros_like(update))
        noise = torch.rand(update.shape, generator=generator)
        return (level + noise).floor().clamp(-self.levels, self.levels) * scale

    def size(self, sizes, clipped):
        return sum(sizes) + 4 * len(sizes)


class TopK(Compression):
    """The ``fraction`` largest magnitudes of every tensor, as (value, index) pairs."""

    lossless = False

    def __init__(self, fraction: float = 0.01, error_feedback: bool = True) -> None:
        self.fraction, self.error_feedback = fraction, error_feedback

    def kept(self, size: int) -> int:
        """Entries sent of a tensor of ``size`` values: the nearest whole number, at least one."""
        return max(1, round(self.fraction * size))

    def roundtrip(self, update, sizes, generator):
        sent = torch.zeros_like(update)
        start = 0
        for size in sizes:
            chunk = update[start : start + size]
            index = chunk.abs().topk(self.kept(size)).indices + start
            sent[index] = update[index]
            start += size
        return sent

    def size(self, sizes, clipped):
        return 8 * sum(self.kept(size) for size in sizes)
