"""Multi-digit images whose labels are correlated in known ways (chapter 13).

Heads that model label correlations (CSRA, Query2Label, ML-Decoder) are sold on data where
objects come in company: a fork next to a knife, a rider on a horse. To test whether such a
head helps, and whether it *leans* on the company, the correlation has to be known exactly
and switchable. Here:

- some digits come in **pairs** (by default 1 with 7, 3 with 8): when one of a pair is on
  a canvas, its partner joins with probability ``pair_rate`` (0.9 in training, so a 1 comes
  with its 7 on 95% of the canvases that hold a 1);
- in the **context** variant, the second digit of each pair is **degraded** (blurred and
  faded) so that it is hard to read on its own, and its partner is the best evidence;
- the **shifted** test split breaks the pairs (``pair_rate=0``: a partner never comes along),
  which exposes a model that predicts 7 because it saw a 1.

Canvases use the same real digits and the same split discipline as ``helpers.data``
(train/validation digits from the source's training pool, test digits from its test pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from helpers.data import DigitSource, MultiDigit, check_fits, digit_source

__all__ = [
    "CorrelatedDigitConfig",
    "compose_label_sets",
    "degrade_digits",
    "make_correlated_digits",
    "partner_rate",
    "resize_digits",
    "sample_label_sets",
]


@dataclass(frozen=True)
class CorrelatedDigitConfig:
    """One correlated multi-digit data set. Same config + same source = same images.

    Each canvas holds one or two *units*; a unit is a digit, or a digit with its partner.
    With two pairs and a 2x2 grid (``canvas=56``) every canvas fits in its four cells.
    """

    n_train: int = 3_000
    n_val: int = 600
    n_test: int = 1_000
    canvas: int = 56
    digit_size: int = 28  # digits are resized to this many pixels (14 with canvas=28: 4x faster)
    pairs: tuple[tuple[int, int], ...] = ((1, 7), (3, 8))
    pair_rate: float = 0.9  # P(partner joins | one of a pair drawn) in train, val and test
    shifted_pair_rate: float = 0.0  # the same in the shifted test split (0: pairs broken)
    degrade: bool = False  # the context variant: blur and fade the second digit of each pair
    blur_sigma: float = 2.5  # in pixels of the source's 28-px digits (degraded before resizing)
    contrast: float = 0.5
    seed: int = 0


def degrade_digits(images: torch.Tensor, blur_sigma: float, contrast: float) -> torch.Tensor:
    """Blur (Gaussian, ``blur_sigma`` px) and fade (multiply by ``contrast``) uint8 digits.

    ``blur_sigma=0`` and ``contrast=1`` return the digits unchanged. The blur kernel sums to
    one, so it moves ink around without adding any; the fade scales every pixel.
    """
    if images.dtype != torch.uint8 or images.ndim != 3:
        raise ValueError(
            f"expected uint8 digits of shape (N, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if not 0 < contrast <= 1:
        raise ValueError(f"contrast must be in (0, 1], got {contrast}")
    if not blur_sigma >= 0:  # also refuses NaN
        raise ValueError(f"blur_sigma must be >= 0, got {blur_sigma}")
    x = images.float().unsqueeze(1)
    if blur_sigma > 0:
        radius = max(1, int(np.ceil(3 * blur_sigma)))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        g = torch.exp(-(t**2) / (2 * blur_sigma**2))
        g = g / g.sum()
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0)), g.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, radius, radius)), g.view(1, 1, -1, 1))
    return (x * contrast).round().clamp(0, 255).to(torch.uint8).squeeze(1)


def resize_digits(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 digits (N, H, W) to (N, size, size), antialiased.

    Smaller digits make smaller canvases, which train faster.
    """
    if images.dtype != torch.uint8 or images.ndim != 3:
        raise ValueError(
            f"expected uint8 digits of shape (N, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if not 4 <= size <= 256:
        raise ValueError(f"digit size must be between 4 and 256 px, got {size}")
    x = F.interpolate(
        images.float().unsqueeze(1), size=(size, size), mode="bilinear", antialias=True
    )
    return x.round().clamp(0, 255).to(torch.uint8).squeeze(1)


def _check_pairs(pairs: tuple[tuple[int, int], ...]) -> dict[int, int]:
    partner = {}
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"each pair needs two different digits, got {pair}")
        for d, other in (pair, pair[::-1]):
            if not 0 <= d <= 9:
                raise ValueError(f"digits are 0-9, got {d} in pair {pair}")
            if d in partner:
                raise ValueError(
                    f"digit {d} is in two pairs, {(d, partner[d])} and {pair}: a digit can "
                    "have one partner"
                )
            partner[d] = other
    return partner


def sample_label_sets(
    n: int, pairs: tuple[tuple[int, int], ...], pair_rate: float, rng: np.random.Generator
) -> list[list[int]]:
    """Digit sets for `n` canvases: one or two units; a paired digit brings its partner.

    A unit is a digit drawn uniformly from those not yet on the canvas (nor excluded). If it
    has a partner, the partner joins with probability ``r = pair_rate``; otherwise the
    partner is excluded from this canvas. Either digit of a pair can be the one drawn, so a
    canvas holding a 1 holds its 7 with probability ``2r / (1 + r)``: 0.947 for r = 0.9,
    0 for r = 0 (the two never meet).
    """
    if not 0 <= pair_rate <= 1:
        raise ValueError(f"pair_rate must be between 0 and 1, got {pair_rate}")
    if n < 0:
        raise ValueError(f"n must be a number of canvases (0 or more), got {n}")
    partner = _check_pairs(pairs)
    sets = []
    for _ in range(n):
        present: list[int] = []
        excluded: set[int] = set()
        for _unit in range(int(rng.integers(1, 3))):
            free = [d for d in range(10) if d not in present and d not in excluded]
            d = int(rng.choice(free))
            present.append(d)
            if d in partner:
                if rng.random() < pair_rate:
                    present.append(partner[d])
                else:
                    excluded.add(partner[d])
        sets.append(present)
    return sets


def compose_label_sets(
    label_sets: list[list[int]],
    images: torch.Tensor,
    labels: torch.Tensor,
    canvas: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste one random handwritten example of each listed digit into distinct grid cells.

    The grid and the ink merge (a max) are those of ``helpers.data.compose_canvases``, which
    draws digits at random; here the digits of each canvas are given. Returns uint8 images
    (n, 1, canvas, canvas) and int64 digit counts (n, 10).
    """
    size = images.shape[-1]
    longest = max((len(s) for s in label_sets), default=1)
    per_side = check_fits(canvas, size, 1, max(longest, 1))
    cell = canvas // per_side
    by_digit = {d: np.flatnonzero(labels.numpy() == d) for d in range(10)}
    src = images.numpy()
    out = np.zeros((len(label_sets), canvas, canvas), dtype=np.uint8)
    counts = np.zeros((len(label_sets), 10), dtype=np.int64)
    for i, digits in enumerate(label_sets):
        cells = rng.permutation(per_side**2)[: len(digits)]
        for d, c in zip(digits, cells, strict=True):
            if len(by_digit[d]) == 0:
                raise ValueError(f"canvas {i} needs a {d} but the digit pool has none")
            img = src[rng.choice(by_digit[d])]
            r, col = divmod(int(c), per_side)
            y = r * cell + int(rng.integers(0, cell - size + 1))
            x = col * cell + int(rng.integers(0, cell - size + 1))
            patch = out[i, y : y + size, x : x + size]
            np.maximum(patch, img, out=patch)
            counts[i, d] += 1
    return torch.from_numpy(out).unsqueeze(1), torch.from_numpy(counts)


def make_correlated_digits(
    config: CorrelatedDigitConfig = CorrelatedDigitConfig(), source: DigitSource | None = None
) -> dict[str, MultiDigit]:
    """Splits ``train``, ``val``, ``test`` (pairs kept) and ``test_shifted`` (pairs broken).

    Validation digits are held out of the training pool (15%, stratified) as in
    ``helpers.data.make_multi_digit``; both test splits draw from the source's test digits.
    In the context variant (``degrade=True``) the second digit of each pair is degraded in
    every split, so the shifted test split asks for that digit without its partner's help.
    """
    source = source or digit_source()
    _check_pairs(config.pairs)
    for name in ("n_train", "n_val", "n_test"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")
    train_images, train_labels = source.train_images, source.train_labels
    test_images, test_labels = source.test_images, source.test_labels
    if config.degrade:
        weak = torch.tensor([b for _, b in config.pairs])

        def weaken(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            images = images.clone()
            hit = torch.isin(labels, weak)
            images[hit] = degrade_digits(images[hit], config.blur_sigma, config.contrast)
            return images

        train_images = weaken(train_images, train_labels)
        test_images = weaken(test_images, test_labels)
    if config.digit_size != train_images.shape[-1]:
        train_images = resize_digits(train_images, config.digit_size)
        test_images = resize_digits(test_images, config.digit_size)
    tr_idx, va_idx = train_test_split(
        np.arange(len(train_labels)),
        test_size=0.15,
        stratify=train_labels.numpy(),
        random_state=config.seed,
    )
    plan = {
        "train": (train_images[tr_idx], train_labels[tr_idx], config.n_train, config.pair_rate),
        "val": (train_images[va_idx], train_labels[va_idx], config.n_val, config.pair_rate),
        "test": (test_images, test_labels, config.n_test, config.pair_rate),
        "test_shifted": (test_images, test_labels, config.n_test, config.shifted_pair_rate),
    }
    splits = {}
    for i, (split, (images, labels, n, rate)) in enumerate(plan.items()):
        rng = np.random.default_rng([config.seed, 13, i])
        label_sets = sample_label_sets(n, config.pairs, rate, rng)
        canvases, counts = compose_label_sets(label_sets, images, labels, config.canvas, rng)
        splits[split] = MultiDigit(canvases, (counts > 0).float(), counts, source.name)
    return splits


def partner_rate(targets: torch.Tensor, digit: int, partner: int) -> float:
    """P(partner present | digit present) in multi-hot `targets`.

    Refused if `digit` never occurs: a rate over no canvases is undefined, not 0.
    """
    targets = torch.as_tensor(targets)
    for name, d in (("digit", digit), ("partner", partner)):
        if not 0 <= d < targets.shape[1]:  # -1 would silently be the last label
            raise ValueError(
                f"{name} {d} is not a label of these targets (0..{targets.shape[1] - 1})"
            )
    has = targets[:, digit] > 0
    if not has.any():
        raise ValueError(f"digit {digit} occurs in none of the {len(targets)} targets")
    return (targets[has, partner] > 0).float().mean().item()
