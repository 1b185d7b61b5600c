"""How fast is evaluating a converted SNN over time, next to its ANN?

For ``ann_cpu_net`` at the given widths (weights at their initialisation, BN statistics from a
few batches: the cost of dense convolutions does not depend on the trained values), measures in
one process: the ANN's images/s, and the converted SNN's image-timesteps/s when
``evaluate_over_time`` simulates --timesteps steps (chunks of steps folded into the batch).
Prints one JSON line.

    python benchmarks/conversion_speed.py [--timesteps 64] [--images 500]
"""

from __future__ import annotations

import argparse
import json

import torch


def main(argv=None):
    from rmpsnn.conversion import convert, evaluate_ann, evaluate_over_time
    from rmpsnn.models import create

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timesteps", type=int, default=64)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    out = {"benchmark": "conversion_speed", "threads": torch.get_num_threads(), "timesteps": args.timesteps}
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
        a = evaluate_ann(ann, batches)
        s = evaluate_over_time(snn, batches, timesteps=[args.timesteps])
        out[f"width_{'-'.join(map(str, width))}"] = {
            "ann_images_per_s": a["images_per_s"],
            "snn_image_timesteps_per_s": s["image_timesteps_per_s"],
            "snn_cost_per_timestep_vs_ann_image": a["images_per_s"] / s["image_timesteps_per_s"],
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
