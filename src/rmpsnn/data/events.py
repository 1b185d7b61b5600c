"""Event-camera data: CIFAR10-DVS recordings, integration into frames and augmentation (the
emulator that turns static images into DVS-like events is :mod:`.emulated`).

CIFAR10-DVS (Li et al., Front. Neurosci. 2017) was recorded with a DVS128 sensor watching
CIFAR-10 images move on a monitor.  The original release holds one folder per class of
``cifar10_<class>_<i>.aedat`` files in the jAER **AEDAT 2.0** format:

* a text header of lines starting with ``#`` (the first is ``#!AER-DAT2.0``);
* then 8-byte events, big-endian: a 32-bit address and a 32-bit timestamp in microseconds;
* DVS128 address bits: polarity = bit 0, ``x_raw`` = bits 1-7, ``y_raw`` = bits 8-14.

As in SpikingJelly and Tonic, the sensor was mounted so that image coordinates are
``x = 127 - y_raw``, ``y = 127 - x_raw`` and the polarity is ``p = 1 - bit0`` (1 = ON).  The
maintained readers for AEDAT (``aedat``, ``dv-processing``) handle AEDAT 4 only and Tonic pulls
in audio libraries, so the ~20 lines of decoder here are the documented alternative.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import at_least, option
from ..errors import DataError, InputError
from ..io import atomic_write, write_bytes
from ._io import cache_dir, download_url, extract_archive
from .config import dataset_options, register_dataset
from .loader import mix_seed

__all__ = [
    "CIFAR10DVS",
    "CIFAR10DVS_CLASSES",
    "augment_event_frames",
    "events_to_frames",
    "read_aedat",
    "write_aedat",
]

CIFAR10DVS_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# the original release on figshare: one zip per class (file id, md5)
_CIFAR10DVS_URL = "https://ndownloader.figshare.com/files/{}"
_CIFAR10DVS_FILES = {
    "airplane": (7712788, "0afd5c4bf9ae06af762a77b180354fdd"),
    "automobile": (7712791, "8438dfeba3bc970c94962d995b1b9bdd"),
    "bird": (7712794, "a9c207c91c55b9dc2002dc21c684d785"),
    "cat": (7712812, "52c63c677c2b15fa5146a8daf4d56687"),
    "deer": (7712815, "b6bf21f6c04d21ba4e23fc3e36c8a4a3"),
    "dog": (7712818, "f379ebdf6703d16e0a690782e62639c3"),
    "frog": (7712842, "cad6ed91214b1c7388a5f6ee56d08803"),
    "horse": (7712851, "e7cbbf77bec584ffbf913f00e682782a"),
    "ship": (7712836, "41c7bd7d6b251be82557c6cce9a7d5c9"),
    "truck": (7712839, "89f3922fd147d9aeff89e76a2b0b70a7"),
}
SENSOR = 128
EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)])


# ----------------------------------------------------------------------------- AEDAT 2.0
def read_aedat(path: str | Path) -> np.ndarray:
    """Events of a jAER AEDAT 2.0 DVS128 recording as a structured array (t, x, y, p)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from e
    if not raw.startswith(b"#!AER-DAT"):
        raise DataError(f"{path}: not an AEDAT file (no '#!AER-DAT' header line)")
    version = raw[9:12]
    if version != b"2.0":
        raise DataError(
            f"{path}: AEDAT version {version.decode(errors='replace')} is not supported (CIFAR10-DVS "
            f"uses 2.0); convert the file with jAER or dv-processing"
        )
    pos = 0
    while pos < len(raw) and raw[pos : pos + 1] == b"#":
        nl = raw.find(b"\n", pos)
        if nl < 0:
            raise DataError(f"{path}: header never ends (truncated file)")
        pos = nl + 1
    body = raw[pos:]
    if len(body) % 8:
        raise DataError(
            f"{path}: {len(body)} bytes of events is not a multiple of 8 (truncated or corrupt file)"
        )
    words = np.frombuffer(body, dtype=">u4").reshape(-1, 2)
    addr, ts = words[:, 0].astype(np.int64), words[:, 1].astype(np.int64)
    ev = np.empty(len(addr), dtype=EVENT_DTYPE)
    ev["t"] = ts
    ev["x"] = SENSOR - 1 - ((addr >> 8) & 0x7F)
    ev["y"] = SENSOR - 1 - ((addr >> 1) & 0x7F)
    ev["p"] = 1 - (addr & 1)
    if len(ev) > 1 and np.any(np.diff(ev["t"]) < 0):
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return ev


def write_aedat(path: str | Path, events: np.ndarray) -> None:
    """Write events (structured t, x, y, p; 0 <= x, y < 128) as a jAER AEDAT 2.0 DVS128 file."""
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    if x.size and (x.min() < 0 or y.min() < 0 or x.max() >= SENSOR or y.max() >= SENSOR):
        raise InputError("write_aedat: x and y must be in [0, 128) for a DVS128 recording")
    addr = ((SENSOR - 1 - x) << 8) | ((SENSOR - 1 - y) << 1) | (1 - events["p"].astype(np.int64))
    words = np.stack([addr, events["t"].astype(np.int64)], 1).astype(">u4")
    header = b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n# written by rmpsnn\r\n"
    write_bytes(path, header + words.tobytes())


def resolve_timesteps(timesteps: int, T: int | None) -> int:
    """``T=`` is the old name of ``timesteps=`` (still accepted, with a warning)."""
    if T is None:
        return timesteps
    warnings.warn("T= is deprecated; use timesteps=", DeprecationWarning, stacklevel=3)
    return T


# ----------------------------------------------------------------------------- frames
def events_to_frames(
    events: np.ndarray, timesteps: int, size: tuple[int, int] = (SENSOR, SENSOR), split_by: str = "number"
) -> np.ndarray:
    """Integrate events into ``T = timesteps`` frames ``[T, 2, H, W]`` of event counts (channel =
    polarity).

    ``split_by="number"``: each frame gets an equal share of the events (SpikingJelly's
    convention, used by most CIFAR10-DVS results); ``"time"``: equal time windows.
    """
    if timesteps < 1:
        raise InputError(f"timesteps must be >= 1, got {timesteps}")
    T = timesteps
    H, W = size
    n = len(events)
    frames = np.zeros(T * 2 * H * W, dtype=np.float32)
    if n == 0:
        return frames.reshape(T, 2, H, W)
    if split_by == "number":
        slot = (np.arange(n) * T) // n
    elif split_by == "time":
        t = events["t"].astype(np.float64)
        span = max(t[-1] - t[0], 1.0)
        slot = np.minimum(((t - t[0]) / span * T).astype(np.int64), T - 1)
    else:
        raise InputError(f"split_by must be 'number' or 'time', got {split_by!r}")
    idx = ((slot * 2 + events["p"].astype(np.int64)) * H + events["y"]) * W + events["x"]
    frames += np.bincount(idx, minlength=frames.size).astype(np.float32)
    return frames.reshape(T, 2, H, W)


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """[T, 2, H, W] -> [T, 2, size, size] by area averaging (event counts are densities)."""
    if frames.shape[-1] == size and frames.shape[-2] == size:
        return frames
    return F.interpolate(frames, size=(size, size), mode="area")


def augment_event_frames(
    frames: torch.Tensor, generator: torch.Generator | None = None, *, flip_p: float = 0.5, max_roll: int = 5
) -> torch.Tensor:
    """Training augmentation of CIFAR10-DVS frames ``[T, 2, H, W]``: random horizontal flip and a
    random roll of up to ``max_roll`` pixels along each spatial axis (same for all T)."""
    if float(torch.rand((), generator=generator)) < flip_p:
        frames = frames.flip(-1)
    if max_roll > 0:
        dy, dx = (int(v) for v in torch.randint(-max_roll, max_roll + 1, (2,), generator=generator))
        frames = torch.roll(frames, shifts=(dy, dx), dims=(-2, -1))
    return frames


def _natural_key(p: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


class CIFAR10DVS(torch.utils.data.Dataset):
    """CIFAR10-DVS from the original recordings: ``root/<class>/*.aedat`` (10 class folders).

    Each recording is integrated into ``T`` frames (10 in RMP-Loss), resized to ``size`` x
    ``size`` (48), and split 9:1 per class: the first 90 % of each class's files (in natural
    order of their index) are ``"train"``, the rest ``"test"``.  Training samples get
    :func:`augment_event_frames` (flip, roll +-5 px) unless ``augment=False``; test samples are
    only resized.  Frames of the whole split are cached (``.npy``, memory-mapped) under
    :func:`rmpsnn.data.cache_dir`, keyed by the files' names, sizes and modification times and the parameters.
    Items: ``(frames float32 [T, 2, size, size], label)``; batch them with
    :func:`rmpsnn.data.collate_time_major` to get ``[T, B, 2, size, size]``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        timesteps: int = 10,
        size: int = 48,
        split_by: str = "number",
        augment: bool | None = None,
        seed: int = 0,
        cache: bool = True,
        cache_root: str | Path | None = None,
        train_fraction: float = 0.9,
        download: bool = False,
        T: int | None = None,
    ):
        timesteps = resolve_timesteps(timesteps, T)
        if split not in ("train", "test"):
            raise InputError(f"split must be 'train' or 'test', got {split!r}")
        if download:
            self.download(root)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(
                f"CIFAR10-DVS not found at {self.root}: expected {self.root}/<class>/*.aedat for the classes "
                f"{', '.join(CIFAR10DVS_CLASSES)} (download the 10 class zips of the original release, "
                f"e.g. from figshare, and extract them there; or download=True in Python, "
                f"data.download=true with `rmpsnn train`)"
            )
        # downloads/ holds the class zips of download(); hidden folders are never classes
        folders = {d.name for d in self.root.iterdir() if d.is_dir() and d.name != "downloads"}
        folders = {f for f in folders if not f.startswith(".")}
        if not folders:
            raise DataError(f"{self.root} has no class folders (expected {', '.join(CIFAR10DVS_CLASSES)})")
        unexpected = sorted(folders - set(CIFAR10DVS_CLASSES))
        if unexpected:
            raise DataError(
                f"{self.root}: unexpected folder(s) {', '.join(unexpected)}; CIFAR10-DVS has the class "
                f"folders {', '.join(CIFAR10DVS_CLASSES)} (move other folders out of the data root)"
            )
        # labels are positions in the fixed class list, so a missing class cannot shift the others
        self.classes = list(CIFAR10DVS_CLASSES)
        files, labels = [], []
        for c, name in enumerate(self.classes):
            if name not in folders:
                continue
            fs = sorted((self.root / name).glob("*.aedat"), key=_natural_key)
            if len(fs) < 2:
                raise DataError(
                    f"{self.root / name} holds {len(fs)} .aedat file(s); each class needs at least 2 so "
                    f"that both the train and the test split get one (the original has 1000 per class)"
                )
            k = min(len(fs) - 1, max(1, round(len(fs) * train_fraction)))
            chosen = fs[:k] if split == "train" else fs[k:]
            files += chosen
            labels += [c] * len(chosen)
        self.files, self.labels = files, np.asarray(labels, dtype=np.int64)
        self.timesteps, self.size, self.split_by, self.seed = timesteps, size, split_by, seed
        self.augment = (split == "train") if augment is None else augment
        self.epoch = 0
        self.frames = self._load_frames(cache, cache_root)

    @staticmethod
    def download(root: str | Path) -> Path:
        """Fetch the 10 class zips of the original release (md5-verified) and extract them into
        ``root/<class>/``.  Without internet this fails at once, saying where to put the files."""
        root = Path(root)
        for name, (fid, md5) in _CIFAR10DVS_FILES.items():
            if (root / name).is_dir() and any((root / name).glob("*.aedat")):
                continue
            archive = download_url(
                _CIFAR10DVS_URL.format(fid),
                root / "downloads" / f"{name}.zip",
                md5=md5,
                what=f"CIFAR10-DVS class {name!r}",
                manual_hint=f"Extract the original release's class zips so that {root}/{name}/*.aedat exist.",
            )
            extract_archive(archive, root)
        return root

    def _integrate(self, f: Path) -> np.ndarray:
        frames = events_to_frames(read_aedat(f), self.timesteps, split_by=self.split_by)
        return resize_frames(torch.from_numpy(frames), self.size).numpy().astype(np.float16)

    def _load_frames(self, cache: bool, cache_root) -> np.ndarray:
        if not cache:
            return np.stack([self._integrate(f) for f in self.files]) if self.files else np.zeros(0)
        h = hashlib.sha256(f"{self.timesteps}|{self.size}|{self.split_by}".encode())
        for f in self.files:
            st = f.stat()  # the modification time too: an edit that keeps the size must not hit the cache
            h.update(f"{f.relative_to(self.root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        path = cache_dir(cache_root) / f"cifar10dvs-{h.hexdigest()[:24]}.npy"
        if path.exists():
            try:
                arr = np.load(path, mmap_mode="r")
                if arr.shape[0] == len(self.files):
                    return arr
            except (OSError, ValueError):
                pass
            path.unlink(missing_ok=True)
        arr = np.stack([self._integrate(f) for f in self.files])

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:  # an open file: np.save appends no .npy to the name
                np.save(f, arr)

        atomic_write(path, write)
        return np.load(path, mmap_mode="r")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        frames = torch.from_numpy(np.array(self.frames[i], dtype=np.float32))
        if self.augment:
            frames = augment_event_frames(
                frames, torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, i))
            )
        return frames, int(self.labels[i])


# ----------------------------------------------------------------------------- registered sets
@dataclasses.dataclass
class EventOptions:
    """The event sets' own keys (``data.options.size=...``)."""

    size: int = option(48, help="side of the event frames in pixels", check=at_least(8))


@register_dataset("cifar10-dvs", input="events", options=EventOptions)
def _cifar10_dvs(cfg, ctx):
    """CIFAR10-DVS recordings (root: the AEDAT folder; data.download fetches them)"""
    from .registry import dataset_bundle

    size = dataset_options(cfg).size
    kw = {"timesteps": ctx.timesteps, "size": size, "seed": ctx.seed}
    train = CIFAR10DVS(cfg.root, "train", download=cfg.download, **kw)
    test = CIFAR10DVS(cfg.root, "test", **kw)
    shape = (2, size, size)
    return dataset_bundle(cfg, ctx, train, test, num_classes=len(train.classes), input_shape=shape)
