"""RMP-Loss on one GPU: the spiking ResNet-19 (tdBN, LIF τ=0.25, V_th=0.5, InfLoR, T=4) trained on
CIFAR-10 with and without RMP-Loss under the same seed and budget; test accuracy and quantisation
error (mean |Dis|, RMP-Loss Table 1) on the 10 000 test images, beside the paper's figures.

    python benchmarks/reproduce/rmploss_resnet19.py [--budget-min 3.5] [--epochs 8] [--smoke]

Each arm trains for --epochs epochs (its cosine schedule spans them) and stops early at the time
budget (run.time_budget_min); the JSON says how many epochs each arm finished.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PAPER, Log, environment, parse_args, write_json

from rmpsnn.training import train


def _options(ap):
    ap.add_argument("--epochs", type=int, default=8, help="epochs per arm (the schedule spans them)")
    ap.add_argument("--batch", type=int, default=128, help="global batch size")


def main(argv=None) -> dict:
    args = parse_args("rmploss_resnet19", __doc__, 3.5, argv, _options)
    log = Log(args.out)
    log(f"{args.name}: {environment(args.device)}; budget {args.budget_min:g} min per arm; out {args.out}")
    common = [
        "model.name=resnet19",
        f"model.timesteps={2 if args.smoke else 4}",
        "data.dataset=cifar10",
        "data.root=shared",
        f"optim.epochs={1 if args.smoke else args.epochs}",
        f"optim.batch_size={32 if args.smoke else args.batch}",
        "optim.lr=0.1",
        "optim.nesterov=true",
        "optim.weight_decay=5e-4",
        "optim.warmup_epochs=0" if args.smoke else "optim.warmup_epochs=1",
        "optim.amp=auto",
        f"run.seed={args.seed}",
        f"run.device={args.device}",
        f"run.time_budget_min={args.budget_min}",
        "run.overwrite=true",
        "run.progress=off",
    ]
    if args.smoke:
        common += ["data.train_limit=64", "data.test_limit=64"]
    arms = {}
    for arm, on in (("without-rmp-loss", "false"), ("with-rmp-loss", "true")):
        log(f"-- {arm}")
        s = train(None, [*common, f"rmp.enabled={on}", f"run.out={args.out / arm}"], log=log)
        f = s["final"]
        arms[arm] = {
            "epochs_done": s["epochs_done"],
            "test_accuracy": f.get("test_accuracy"),
            "quantization_error": f.get("quantization_error"),
            "seconds": s["seconds"],
        }
        log(f"{arm}: {arms[arm]}")
    summary = {
        "experiment": args.name,
        "environment": environment(args.device),
        "smoke": args.smoke,
        "budget_min_per_arm": args.budget_min,
        "arms": arms,
        "paper": {"resnet19_T4": PAPER["resnet19"], "resnet20_table1": PAPER["resnet20_rmp_loss_table1"]},
    }
    write_json(args.out / "summary.json", summary)
    table = "| arm | epochs | test accuracy | quantisation error (mean abs Dis) |\n|---|---|---|---|\n"
    for arm, r in arms.items():
        acc, q = 100 * r["test_accuracy"], r["quantization_error"]
        table += f"| {arm} | {r['epochs_done']} | {acc:.2f} % | {q:.4f} |\n"
    (args.out / "table.md").write_text(table)
    log("\n" + table)
    return summary


if __name__ == "__main__":
    main()
