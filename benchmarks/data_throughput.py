"""Does the data pipeline keep up with training on this machine?

Measures, in one process:
  * loading CIFAR-10 (the JPEG zip in ../shared/data; decoded in parallel on first use, then
    read back from the cache) -- seconds for each;
  * images/s of the CIFAR training pipelines of rmpsnn.data:
      batched:      RandomCrop(32, 4) + flip + Normalize + Cutout(16) on whole batches
      autoaugment:  the same plus per-image AutoAugment (CIFAR-10 policy) in --workers processes
  * images/s of CIFAR10-DVS-shaped event frames emulated from the same images
    (EmulatedEvents: T=10, 48x48), to show the event pipeline's cost;
  * images/s of a training step of the reference spiking CNN (benchmarks/step_speed.py's network,
    LIF, T=4, batch 32) -- what the pipeline has to keep up with.

Prints one JSON line.  Without the shared zip it uses random uint8 images of the same shape and
says so.
    python benchmarks/data_throughput.py [--batches 60] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def images_per_s(loader, batches: int) -> float:
    it = iter(loader)
    next(it)  # start-up (worker processes) is not throughput
    n, t0 = 0, time.perf_counter()
    for k, (x, _) in enumerate(it):
        n += x.shape[0] if x.ndim == 4 else x.shape[1]
        if k + 1 >= batches:
            break
    return n / (time.perf_counter() - t0)


def main(argv=None):
    from rmpsnn.data import (
        CIFAR10_MEAN,
        CIFAR10_STD,
        ArrayLoader,
        EmulatedEvents,
        ImageArrays,
        collate_time_major,
        shared_cifar10_zip,
    )
    from rmpsnn.data import transforms as T
    from rmpsnn.data.images import load_image_folder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)

    result = {"benchmark": "data_throughput", "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}

    # what the pipeline must keep up with: a training step of the reference spiking CNN
    # (measured first, while no loader processes are around)
    from step_speed import Runner

    r = Runner("rmpsnn", 4, 32, "cpu")
    for _ in range(3):  # warm-up
        r.train_step()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        r.train_step()
        times.append(time.perf_counter() - t0)
    result["train_step_images_per_s"] = 32 / float(np.median(times))
    del r

    zip_path = shared_cifar10_zip(os.path.dirname(os.path.abspath(__file__)))
    if zip_path is not None:
        with tempfile.TemporaryDirectory() as cold:  # a cold cache: decode, then read back
            t0 = time.perf_counter()
            load_image_folder(zip_path, "train", cache_root=cold)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            data = load_image_folder(zip_path, "train", cache_root=cold)
            second = time.perf_counter() - t0
        result["data"] = str(zip_path)
        result["load_s"] = {"decode_and_cache": first, "from_cache": second, "images": len(data)}
    else:
        rng = np.random.default_rng(0)
        data = ImageArrays(
            rng.integers(0, 256, (50000, 3, 32, 32), dtype=np.uint8),
            np.arange(50000) % 10,
            [str(i) for i in range(10)],
        )
        result["data"] = "synthetic (../shared/data/cifar10-jpeg.zip not found)"

    batch_aug = T.Compose(
        [T.RandomCrop(32, 4), T.RandomHorizontalFlip(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD), T.Cutout(16)]
    )
    bs = args.batch_size
    pipelines = {
        "batched": ArrayLoader(data, bs, shuffle=True, seed=0, batch_transform=batch_aug),
        "autoaugment": ArrayLoader(
            data,
            bs,
            shuffle=True,
            seed=0,
            batch_transform=batch_aug,
            sample_transform=T.AutoAugment("cifar10"),
            num_workers=args.workers,
        ),
    }
    result["pipeline_images_per_s"] = {k: images_per_s(v, args.batches) for k, v in pipelines.items()}

    events = EmulatedEvents(data.subset(np.arange(2000)), timesteps=10, size=48, augment=True)
    ev_loader = torch.utils.data.DataLoader(
        events, batch_size=32, shuffle=True, num_workers=args.workers, collate_fn=collate_time_major
    )
    result["event_emulation_images_per_s"] = images_per_s(ev_loader, max(5, args.batches // 6))

    result["pipeline_over_training"] = {
        k: v / result["train_step_images_per_s"] for k, v in result["pipeline_images_per_s"].items()
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
