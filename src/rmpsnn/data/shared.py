"""The CIFAR-10 JPEG copy in ``../shared/data`` beside the project (offline machines)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from .images import ImageArrays, load_image_folder

__all__ = ["shared_cifar10", "shared_cifar10_zip"]


def shared_cifar10_zip(start: str | Path | None = None) -> Path | None:
    """The CIFAR-10 JPEG zip in ``../shared/data/`` beside the project (or ``$RMPSNN_SHARED_DATA``),
    searched from ``start`` (default: the current directory) upwards and from the installed source
    tree upwards; ``None`` when absent."""
    env = os.environ.get("RMPSNN_SHARED_DATA")
    if env:
        p = Path(env) / "cifar10-jpeg.zip"
        return p if p.is_file() else None
    # from the working directory (or ``start``) upwards, then from this source tree (a checkout)
    for origin in (Path(start or Path.cwd()).resolve(), Path(__file__).resolve()):
        for d in (origin, *origin.parents):
            for p in (
                d / "shared" / "data" / "cifar10-jpeg.zip",
                d.parent / "shared" / "data" / "cifar10-jpeg.zip",
            ):
                if p.is_file():
                    return p
    return None


def shared_cifar10(split: str = "train", **kwargs) -> ImageArrays:
    """CIFAR-10 from the shared JPEG zip (decoded once, then cached); raises :class:`DataError`
    when the zip is not there."""
    path = shared_cifar10_zip()
    if path is None:
        searched = Path.cwd().resolve()
        raise DataError(
            f"cifar10-jpeg.zip not found in shared/data or ../shared/data above {searched} or the rmpsnn "
            f"source tree (set $RMPSNN_SHARED_DATA to its folder); or use a CIFAR-10 download instead: "
            f"data.root=DIR data.download=true (rmpsnn train), --data DIR (train-ann, convert)"
        )
    return load_image_folder(path, split, **kwargs)
