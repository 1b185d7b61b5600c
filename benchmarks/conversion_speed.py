"""How fast is evaluating a converted SNN over time, next to its ANN?

For ``ann_cpu_net`` at the given widths (weights at their initialisation, BN statistics from a
few batches: the cost of dense convolutions does not depend on the trained values), measures in
one process: the ANN's images/s, and the converted SNN's image-timesteps/s when
``evaluate_over_time`` simulates --timesteps steps (chunks of steps folded into the batch).
Prints one JSON line.

    python benchmarks/conversion_speed.py [--timesteps 64] [--images 500] [--repeats 2] [--ann-repeats 5]

Rates are medians (the ANN's one-second pass is noisy on a shared CPU).  The ``rmpsnn`` command
tunes glibc's allocator (:func:`rmpsnn.devices.tune_cpu_allocator`); this script does the same so
the ANN, whose batch-100 activations exceed glibc's default mmap threshold, is not timed
page-faulting (``RMPSNN_MALLOC_TUNING=0`` measures the default allocator).
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch


def main(argv=None):
    from rmpsnn.conversion import convert, evaluate_ann, evaluate_over_time
    from rmpsnn.models import create

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timesteps", type=int, default=64)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument(
        "--repeats", type=int, default=2, help="SNN passes (each followed by --ann-repeats ANN passes)"
    )
    ap.add_argument("--ann-repeats", type=int, default=5)
    args = ap.parse_args(argv)
    from rmpsnn.devices import tune_cpu_allocator

    tuned = tune_cpu_allocator()
    torch.manual_seed(0)
    out = {
        "benchmark": "conversion_speed",
        "threads": torch.get_num_threads(),
        "timesteps": args.timesteps,
        "allocator_tuned": tuned,
    }
    for width in ((64, 128, 256), (32, 64, 128)):
        ann = create("ann_cpu_net", width=width)
        ann.train()
        with torch.no_grad():
            for _ in range(3):
                ann(torch.randn(64, 3, 32, 32))
        ann.eval()
        x = torch.randn(args.images, 3, 32, 32)
        y = torch.randint(0, 10, (args.images,))
        batches = list(zip(x.split(args.batch), y.split(args.batch), strict=True))
        snn = convert(ann, x[:256], balance="act-max")
        evaluate_ann(ann, batches[:1])
        # the ANN's pass over the images takes about a second: its rate is the median of
        # --ann-repeats passes, interleaved with the SNN's (one pass of T steps each)
        ann_rates, snn_rates = [], []
        for _ in range(args.repeats):
            ann_rates += [evaluate_ann(ann, batches)["images_per_s"] for _ in range(args.ann_repeats)]
            snn_rates.append(
                evaluate_over_time(snn, batches, timesteps=[args.timesteps])["image_timesteps_per_s"]
            )
        a, s = statistics.median(ann_rates), statistics.median(snn_rates)
        out[f"width_{'-'.join(map(str, width))}"] = {
            "ann_images_per_s": a,
            "snn_image_timesteps_per_s": s,
            "snn_cost_per_timestep_vs_ann_image": a / s,
            "ann_images_per_s_all": ann_rates,
            "snn_image_timesteps_per_s_all": snn_rates,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
