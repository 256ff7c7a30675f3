"""A fingerprint of training under this process's kernels: the pins hold if it never moves.

    python scripts/pin_fingerprint.py

Trains the book's SmallCNN for a few dozen Adam steps on multi-digit canvases (convolutions,
batch norm, matrix products, reductions, exp and log: the kernels every chapter uses) and prints the
SHA-256 of the final weights, the last loss, and the kernels it ran on. Under the pins
(``helpers.pins.PINNED_ENV``) the fingerprint must be the same on every x86-64 CPU with
AVX2; ``tests/test_pins.py`` compares it with the value recorded when the stored runs were
made, and with runs whose machine underneath the pins differs.
"""

import hashlib
import os

import torch
from torch import nn

from helpers.data import MultiDigitConfig, digit_source, make_multi_digit
from helpers.models import SmallCNN


def fingerprint(steps: int = 40) -> tuple[str, float]:
    torch.manual_seed(0)
    data = make_multi_digit(MultiDigitConfig(n_train=640, n_val=1, n_test=1), digit_source())
    x, y = data["train"].images.float() / 255, data["train"].targets
    model = SmallCNN(n_labels=10, width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    for step in range(steps):
        batch = slice(16 * (step % 40), 16 * (step % 40) + 16)
        loss = loss_fn(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    weights = b"".join(p.detach().numpy().tobytes() for p in model.state_dict().values())
    with torch.no_grad():  # exp and log: vectorised differently for AVX2 and AVX-512
        scores = torch.log_softmax(model.eval()(x[:256]), dim=1).numpy().tobytes()
    return hashlib.sha256(weights + scores).hexdigest()[:16], loss.item()


if __name__ == "__main__":
    sha, loss = fingerprint()
    pins = {k: os.environ.get(k, "-") for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    print(f"fingerprint {sha} loss {loss:.10f}")
    print(f"kernels {torch.backends.cpu.get_cpu_capability()} threads {torch.get_num_threads()}"
          f" {pins}")  # fmt: skip
