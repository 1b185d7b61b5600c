import socket

import pytest
import torch

from rmpsnn import surrogate as S

BACKENDS = ["cpu", "torch"]


def write_two_class_folder(root, size=32, n_train=24, n_test=10):
    """An image folder ``root/{train,test}/{dark,light}/*.png`` whose two classes differ in
    brightness: learnable in one epoch."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, level in (("dark", 60), ("light", 190)):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(rng.normal(level, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")
    return root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def naive_lif(x, tau, v_th, reset, sg, v0=None, detach_reset=False):
    """Unrolled reference written with plain autograd ops and the surrogate spike function."""
    sg = S.get(sg)
    u = torch.zeros_like(x[0]) if v0 is None else v0
    spikes, upres = [], []
    for t in range(x.shape[0]):
        v = tau * u + x[t]
        o = sg(v - v_th)
        r = o.detach() if detach_reset else o
        u = v * (1 - r) if reset == "hard" else v - v_th * r
        spikes.append(o)
        upres.append(v)
    return torch.stack(spikes), torch.stack(upres), u


def closed_port() -> int:
    """A loopback port nothing listens on (for 'no network' download tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
