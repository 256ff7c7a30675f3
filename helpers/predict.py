"""Using a trained model: one file that holds everything prediction needs, and prediction
on image files that fails clearly on bad input.

A model's weights alone cannot predict anything useful: the outputs are numbered columns,
and the image must be prepared exactly as in training. So the file written here holds:

- the weights (a ``state_dict``: tensors only, no pickled Python objects);
- the architecture as a name and keyword arguments, rebuilt by :func:`build_model`;
- the label vocabulary, in output order;
- the preprocessing, as plain numbers and strings (:class:`Preprocessing`);
- the thresholds tuned on validation data (chapter 5), one per label. A threshold of
  ``inf`` means "never predict this label" (chapter 12), as everywhere in ``helpers``
  (:func:`helpers.labels.per_label_thresholds`); the file stores it as the string
  ``"never"``, so that every field besides the weights stays plain JSON, which has no
  infinity. Finite thresholds are stored as numbers, as before: files written before
  "never" existed load unchanged (and an older reader refuses "never", naming the field).

It is written with :func:`helpers.checkpoint.save_checkpoint` (atomic) and read with
:func:`helpers.checkpoint.load_checkpoint` (``weights_only=True``: loading runs no code).
Loading checks everything prediction relies on and refuses a bad file naming the field:
a SHA-256 checksum of the contents (a flipped byte), finite weights, thresholds in [0, 1]
(or "never") and one per label, a vocabulary as long as the model's output, positive
normalisation std, a sane image size. A file that is truncated, empty or not a classifier
is refused naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from helpers.checkpoint import load_checkpoint, save_checkpoint
from helpers.folder import image_to_tensor, load_image
from helpers.inference import run_model
from helpers.labels import apply_thresholds, check_scores, per_label_thresholds
from helpers.models import SmallCNN, resnet_multilabel

__all__ = [
    "Classifier",
    "FORMAT",
    "IMAGE_SUFFIXES",
    "Prediction",
    "Preprocessing",
    "RESIZE_RULES",
    "build_model",
    "image_files",
    "load_classifier",
    "open_image",
    "predict_folder",
    "predict_image",
    "predict_tensor",
    "prediction_table",
    "preprocess",
    "save_classifier",
]

FORMAT = "multilabel-book-classifier/2"  # /2: with a checksum
_NEVER_IN_FILE = "never"  # a threshold of inf ("never predict the label") in the file
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
RESIZE_RULES = ("pad", "stretch")
# What torch.load raises on a damaged file, depending on which byte is wrong.
_UNREADABLE = (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError,
              zipfile.BadZipFile, KeyError, IndexError, TypeError, UnicodeDecodeError)  # fmt: skip
_MAX_IMAGE_SIZE = 4096  # pixels a side; a larger input is a mistake, not a model


@dataclass(frozen=True)
class Preprocessing:
    """How an image file becomes the model's input, as plain data (no transform objects).

    ``channels`` 1 opens files as greyscale ("L"), 3 as RGB (see :func:`open_image` for the
    conversions). ``resize`` "pad" scales the longer side to ``image_size`` and pads the
    rest with ``pad_value`` (shapes keep their proportions); "stretch" resizes both sides
    to ``image_size``. Then pixels go to [0, 1] and are normalised: ``(x - mean) / std``
    per channel.
    """

    image_size: int = 64
    channels: int = 1
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: str = "pad"
    pad_value: int = 0  # 0..255; 0 is the black background of the digit canvases

    def __post_init__(self):
        def whole(v) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if not whole(self.image_size) or not 1 <= self.image_size <= _MAX_IMAGE_SIZE:
            raise ValueError(
                f"image_size must be a whole number of pixels from 1 to {_MAX_IMAGE_SIZE}, "
                f"not {self.image_size!r}"
            )
        if self.channels not in (1, 3) or not whole(self.channels):
            raise ValueError(f"channels must be 1 or 3, not {self.channels!r}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean and std need {self.channels} value(s) each (one per channel), got "
                f"{len(self.mean)} and {len(self.std)}: mean {self.mean}, std {self.std}"
            )
        numbers = [*self.mean, *self.std]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
            raise ValueError(f"mean and std must be finite numbers, got {self.mean}, {self.std}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive (it divides), got {self.std}")
        if self.resize not in RESIZE_RULES:
            raise ValueError(f"resize must be one of {RESIZE_RULES}, not {self.resize!r}")
        if not whole(self.pad_value) or not 0 <= self.pad_value <= 255:
            raise ValueError(f"pad_value must be a whole number 0..255, not {self.pad_value!r}")


def build_model(arch: dict) -> nn.Module:
    """The architecture named in ``arch`` ({"name": ..., "kwargs": {...}}), untrained.

    A plain if/else: every model the book saves is listed here, nothing is looked up by a
    string in a registry. ResNets are built with ``weights=None``: the file brings weights.
    """
    name, kwargs = arch["name"], dict(arch.get("kwargs", {}))
    if name == "SmallCNN":
        return SmallCNN(**kwargs)
    if name == "resnet_multilabel":
        return resnet_multilabel(**{**kwargs, "weights": None})
    raise ValueError(f"unknown architecture {name!r}: known are 'SmallCNN', 'resnet_multilabel'")


@dataclass
class Classifier:
    """A loaded model with everything needed to turn image files into label names."""

    model: nn.Module
    arch: dict
    vocab: list[str]
    preprocessing: Preprocessing
    thresholds: torch.Tensor  # one per label, tuned on validation data; inf: never predict
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def save_classifier(
    path: str | Path,
    model: nn.Module,
    arch: dict,
    vocab: Sequence[str],
    preprocessing: Preprocessing,
    thresholds,
) -> None:
    """Write one file with weights, architecture, labels, preprocessing and thresholds.

    Only tensors, numbers, strings, lists and dicts go in, so ``weights_only=True`` can load
    it. Everything :func:`load_classifier` would refuse is refused now, not discovered by
    whoever loads the file: a vocabulary or thresholds that do not match the model's
    outputs, thresholds outside [0, 1] (``inf``, never predict, is stored as
    ``"never"``), non-finite weights. A SHA-256 checksum of the contents goes in
    too, so a byte changed on disk is caught at load time.
    """
    vocab = [str(v) for v in vocab]
    t = per_label_thresholds(thresholds, len(vocab), vocab=vocab)
    n_out = _n_outputs(model, preprocessing)
    if n_out != len(vocab):
        raise ValueError(f"the model has {n_out} outputs but the vocabulary {len(vocab)} labels")
    state = {
        "format": FORMAT,
        "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "arch": {"name": arch["name"], "kwargs": dict(arch.get("kwargs", {}))},
        "vocab": vocab,
        "preprocessing": asdict(preprocessing),
        "thresholds": [_NEVER_IN_FILE if x == math.inf else x for x in t.tolist()],
    }
    _check_fields(state, "the classifier to save")
    state["sha256"] = _checksum(state)
    save_checkpoint(path, state)


def _checksum(state: dict) -> str:
    """SHA-256 of every tensor's bytes (with name, dtype and shape) and the other fields."""
    h = hashlib.sha256()
    for name in sorted(state["model"]):
        t = state["model"][name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    rest = {k: v for k, v in state.items() if k not in ("model", "sha256")}
    h.update(json.dumps(rest, sort_keys=True).encode())
    return h.hexdigest()


def _check_fields(state: dict, where: str) -> Preprocessing:
    """Every field prediction relies on, checked; a ValueError names the field at fault."""

    def bad(field_name: str, why: str):
        return ValueError(f"{where}: field {field_name!r} {why}")

    for key, kind in [("model", dict), ("arch", dict), ("vocab", list), ("preprocessing", dict),
                      ("thresholds", list)]:  # fmt: skip
        if not isinstance(state.get(key), kind):
            raise bad(key, f"is missing or not a {kind.__name__}")
    for name, t in state["model"].items():
        if not isinstance(t, torch.Tensor):
            raise bad(f"model.{name}", "is not a tensor")
        if t.is_floating_point() and not torch.isfinite(t).all():
            n = int((~torch.isfinite(t)).sum())
            raise bad(f"model.{name}", f"has {n} NaN or infinite weight(s)")
    if not isinstance(state["arch"].get("name"), str) or not isinstance(
        state["arch"].get("kwargs", {}), dict
    ):
        raise bad("arch", "needs a 'name' (str) and 'kwargs' (dict)")
    vocab = state["vocab"]
    if not vocab or not all(isinstance(v, str) for v in vocab) or len(set(vocab)) != len(vocab):
        raise bad(
            "vocab", f"must be a non-empty list of distinct label names, {_vocab_fault(vocab)}"
        )
    t = state["thresholds"]
    if len(t) != len(vocab):
        raise bad("thresholds", f"has {len(t)} values for {len(vocab)} labels (one per label)")
    try:
        _thresholds_from_file(t, vocab)
    except ValueError as err:  # "... or inf for 'never predict'; label 1 ('dog') has 1.5"
        which = str(err).split("'never predict'; ", 1)[-1]  # the label and its value
        raise bad(
            "thresholds", f"must be numbers in [0, 1] or {_NEVER_IN_FILE!r}; {which}"
        ) from None
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in state["preprocessing"].items()}
    try:
        return Preprocessing(**fields)
    except (TypeError, ValueError) as err:
        raise bad("preprocessing", str(err)) from None


def _vocab_fault(vocab: list) -> str:
    """What is wrong with a stored vocabulary, naming the entry at fault."""
    if not vocab:
        return "got an empty list"
    j = next((j for j, v in enumerate(vocab) if not isinstance(v, str)), None)
    if j is not None:
        return f"got {vocab[j]!r} ({type(vocab[j]).__name__}) at position {j}"
    twice = next(v for j, v in enumerate(vocab) if v in vocab[:j])
    return f"got {twice!r} twice (positions {[j for j, v in enumerate(vocab) if v == twice]})"


def _thresholds_from_file(values: list, vocab: list[str]) -> torch.Tensor:
    """The file's thresholds as float32 ("never" -> inf), checked by ``per_label_thresholds``
    in float64 (the numbers stored), so 1.0000001 is refused, not rounded to 1. A float
    infinity is refused: save_classifier never writes one."""
    numbers = []
    for j, x in enumerate(values):
        if isinstance(x, str) and x == _NEVER_IN_FILE:
            numbers.append(math.inf)
        elif isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isinf(x):
            numbers.append(x)
        else:  # inf too: the file has one way to say "never", so an edited inf is a fault
            raise ValueError(f"label {j} ({vocab[j]!r}) has {x!r}")
    return per_label_thresholds(numbers, len(vocab), torch.float64, vocab).float()


def _weights_only_is_safe(version: str | None = None) -> bool:
    """Whether this PyTorch's ``torch.load(..., weights_only=True)`` keeps its promise.

    CVE-2025-32434: up to PyTorch 2.5.1 a crafted file could run code through
    ``weights_only=True``; 2.6.0 fixed it. `version` defaults to ``torch.__version__``.
    """
    version = version or torch.__version__
    major, minor = (int("".join(filter(str.isdigit, p)) or 0) for p in version.split(".")[:2])
    return (major, minor) >= (2, 6)


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> Classifier:
    """Read a file written by :func:`save_classifier` (``weights_only=True``), check it,
    rebuild the model, load its weights strictly and put it in eval mode on `device`.

    Warns on PyTorch before 2.6, where ``weights_only=True`` does not stop a crafted file
    from running code (`_weights_only_is_safe`).

    Refused with a ValueError, before any prediction: a file that is empty, truncated or
    not a classifier (naming the file); a checksum that does not match the contents (a
    changed byte); and, naming the field, non-finite weights, thresholds outside [0, 1]
    (other than "never") or not one per label, a vocabulary that is not as long as the
    model's output, a preprocessing with a non-positive std or an impossible image size.
    """
    device = torch.device(device)
    path = Path(path)
    if not _weights_only_is_safe():
        warnings.warn(
            f"torch {torch.__version__}: weights_only=True can run code from a crafted file "
            "before PyTorch 2.6 (CVE-2025-32434); load only files you trust, or upgrade torch",
            UserWarning,
            stacklevel=2,
        )
    state = _read_classifier_file(path)
    where = str(path)
    prep = _check_fields(state, where)
    if state.get("sha256") != _checksum(state):
        raise ValueError(
            f"{where}: field 'sha256' does not match the contents: the file changed after it "
            "was saved (a damaged copy or an edit); do not predict with it"
        )
    try:
        model = build_model(state["arch"])
        model.load_state_dict(state["model"])  # strict: a missing or extra tensor is an error
    except (RuntimeError, TypeError, ValueError) as err:
        reason = " ".join(str(err).split())[:300]
        raise ValueError(f"{where}: field 'model' does not fit field 'arch': {reason}") from None
    n_out = _n_outputs(model, prep)
    if n_out != len(state["vocab"]):
        raise ValueError(
            f"{where}: field 'vocab' has {len(state['vocab'])} labels but the model {n_out} outputs"
        )
    model.eval().to(device)
    t = _thresholds_from_file(state["thresholds"], state["vocab"])
    return Classifier(model, state["arch"], list(state["vocab"]), prep, t, device)


def _read_classifier_file(path: Path) -> dict:
    """The dict a classifier file holds; an empty, damaged or foreign file is refused."""
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes): not a classifier file")
    try:
        state = load_checkpoint(path, "cpu")
    except FileNotFoundError:
        raise
    except _UNREADABLE as err:
        reason = " ".join(str(err).split())[:300]
        raise ValueError(
            f"{path} cannot be read as a classifier file (truncated, damaged or another kind "
            f"of file): {type(err).__name__}: {reason}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        keys = sorted(map(str, state))[:6] if isinstance(state, dict) else type(state).__name__
        older = isinstance(state, dict) and str(state.get("format", "")).startswith(
            "multilabel-book-classifier/"
        )
        raise ValueError(
            f"{path} is not a classifier file written by save_classifier (it holds {keys}); "
            + (
                f"it is format {state['format']!r}, this version reads {FORMAT!r}: save it again"
                if older
                else "a bare state_dict has no labels, preprocessing or thresholds to predict with"
            )
        )
    return state


def _n_outputs(model: nn.Module, prep: Preprocessing) -> int:
    """Number of outputs, from one blank image (eval mode, restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        blank = torch.zeros(1, prep.channels, prep.image_size, prep.image_size, device=device)
        with torch.inference_mode():
            return model(blank).shape[1]
    finally:
        model.train(was_training)


# --- From a file to a tensor ------------------------------------------------------------------


def open_image(
    source: str | Path | bytes,
    prep: Preprocessing,
    name: str | None = None,
    max_pixels: int | None = None,
) -> torch.Tensor:
    """An image file (a path, or the bytes of an upload) as the model's input (C, H, W).

    Every error names the file (``name`` for bytes):

    - a missing file raises FileNotFoundError; an empty one (0 bytes) ValueError;
    - a file that is not an image raises OSError ("cannot decode ...");
    - more pixels than ``max_pixels`` (default: PIL's decompression-bomb limit,
      ``PIL.Image.MAX_IMAGE_PIXELS``, about 89 million) raises ValueError before anything is
      decoded (:func:`helpers.folder._check_pixels`, used by every data set too);
    - channels are converted as :func:`helpers.folder.load_image` does: RGB -> greyscale by
      luminance, greyscale -> RGB by copying, transparency composited over black, 16-bit
      scaled to 8 bits (65535 -> 255), a 32-bit integer file scaled by the white level its
      format declares or refused (a 32-bit TIFF), EXIF rotation applied.

    Bytes are written to a temporary file so they go through exactly the same checks.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        shown = name or "uploaded file"
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(shown).name
            path.write_bytes(bytes(source))
            try:
                return open_image(path, prep, max_pixels=max_pixels)
            except (OSError, ValueError) as err:
                raise type(err)(str(err).replace(str(path), shown)) from None
    path = Path(source)
    if not path.is_file():
        what = "is a folder, not an image file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"{path} {what}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes)")
    image = load_image(path, "L" if prep.channels == 1 else "RGB", max_pixels=max_pixels)
    return preprocess(image, prep)


def preprocess(image: Image.Image, prep: Preprocessing) -> torch.Tensor:
    """A PIL image of the right mode -> normalised float tensor (C, size, size)."""
    size = prep.image_size
    if prep.resize == "stretch":
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    elif image.size != (size, size):  # "pad": keep proportions, centre on a blank canvas
        scale = size / max(image.size)
        w, h = (max(1, round(s * scale)) for s in image.size)
        fill = prep.pad_value if prep.channels == 1 else (prep.pad_value,) * 3
        canvas = Image.new(image.mode, (size, size), fill)
        canvas.paste(
            image.resize((w, h), Image.Resampling.BILINEAR), ((size - w) // 2, (size - h) // 2)
        )
        image = canvas
    x = image_to_tensor(image)  # (C, size, size) in [0, 1]
    mean = torch.tensor(prep.mean).view(-1, 1, 1)
    std = torch.tensor(prep.std).view(-1, 1, 1)
    return (x - mean) / std


# --- Prediction -------------------------------------------------------------------------------


def predict_tensor(classifier: Classifier, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Probabilities (N, labels) for a batch of preprocessed images, on the CPU in float32.

    The model runs on the classifier's device, in batches, through
    :func:`helpers.inference.run_model` (eval mode, no gradients, its mode restored).
    """
    if len(x) == 0:
        return torch.empty(0, len(classifier.vocab))
    batches = x.split(batch_size)
    probs, _ = run_model(classifier.model, batches, classifier.device, per_batch=torch.sigmoid)
    return probs


@dataclass(frozen=True)
class Prediction:
    """One image's result: every label's probability and threshold, most probable first."""

    source: str
    table: pd.DataFrame  # index: label; columns probability, threshold, predicted

    @property
    def labels(self) -> list[str]:
        """The predicted labels (probability >= the label's threshold), most probable first."""
        return self.table.index[self.table["predicted"]].tolist()


def prediction_table(probs: torch.Tensor, vocab: Sequence[str], thresholds) -> pd.DataFrame:
    """One image's probabilities as a table sorted by probability (ties: vocabulary order).

    ``predicted`` is :func:`helpers.labels.apply_thresholds` (``>=``), as in every report;
    a threshold of ``inf`` is never predicted.
    """
    probs = torch.as_tensor(probs).flatten()
    if len(probs) != len(vocab):
        raise ValueError(f"{len(probs)} probabilities but the vocabulary has {len(vocab)} labels")
    probs = check_scores(probs.reshape(1, -1), "probabilities")[0]
    t = per_label_thresholds(thresholds, len(vocab), probs.dtype, [str(v) for v in vocab])
    table = pd.DataFrame(
        {
            "probability": probs.tolist(),
            "threshold": t.tolist(),
            "predicted": apply_thresholds(probs.reshape(1, -1), t)[0].bool().tolist(),
        },
        index=pd.Index([str(v) for v in vocab], name="label"),
    )
    order = np.argsort(-probs.numpy(), kind="stable")
    return table.iloc[order]


def predict_image(
    classifier: Classifier, source: str | Path | bytes, name: str | None = None, thresholds=None
) -> Prediction:
    """Predict one image file (path or bytes). ``thresholds`` overrides the tuned ones."""
    x = open_image(source, classifier.preprocessing, name=name)
    probs = predict_tensor(classifier, x.unsqueeze(0))[0]
    t = classifier.thresholds if thresholds is None else thresholds
    shown = name or (Path(source).name if isinstance(source, (str, Path)) else "uploaded file")
    return Prediction(shown, prediction_table(probs, classifier.vocab, t))


def image_files(folder: str | Path) -> list[Path]:
    """The image files in `folder` (by suffix), sorted by name; subfolders are not searched."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def predict_folder(
    classifier: Classifier, folder: str | Path, batch_size: int = 64, errors: str = "raise"
) -> pd.DataFrame:
    """Predict every image file in `folder`, in batches: one row per file.

    Columns: ``labels`` (predicted, most probable first, space-separated), ``error`` (empty
    unless ``errors="report"``) and one probability column per label. With
    ``errors="raise"`` the first bad file stops everything with its clear error; with
    ``errors="report"`` a bad file gets its message in ``error`` and no probabilities.
    """
    if errors not in ("raise", "report"):
        raise ValueError(f"errors must be 'raise' or 'report', not {errors!r}")
    files = image_files(folder)
    rows, tensors, good = [], [], []
    for path in files:
        try:
            tensors.append(open_image(path, classifier.preprocessing))
            good.append(path.name)
        except (OSError, ValueError) as err:
            if errors == "raise":
                raise
            rows.append(
                {"file": path.name, "labels": "", "error": str(err).replace(str(path), path.name)}
            )
    probs = (
        predict_tensor(classifier, torch.stack(tensors), batch_size) if tensors else torch.empty(0)
    )
    vocab = classifier.vocab
    for name, p in zip(good, probs, strict=True):
        table = prediction_table(p, vocab, classifier.thresholds)
        rows.append(
            {
                "file": name,
                "labels": " ".join(table.index[table["predicted"]]),
                "error": "",
                **dict(zip(vocab, p.tolist(), strict=True)),
            }
        )
    columns = ["file", "labels", "error", *vocab]
    return pd.DataFrame(rows, columns=columns).sort_values("file").set_index("file")
