"""Training-step / inference speed and memory of a spiking layer vs. its ReLU floor and peers.

Reference network (T=4, batch 32, 3x32x32 input, direct encoding):
    conv3x3(3->64)-BN-LIF, conv3x3(64->128)-BN-LIF, avgpool2, conv3x3(128->256)-BN-LIF,
    avgpool2, flatten, linear(256*8*8->10), mean over T, cross-entropy.

Variants, timed in ONE process in alternating rounds (the machine is noisy, so only ratios
measured side by side mean anything):
  floor         the same network with ReLU instead of LIF, run at batch T*32 (same convolutions,
                no neuron dynamics)
  rmpsnn        rmpsnn.layers.TimeFolded + rmpsnn.neurons.LIF (fused kernel on CPU)
  rmpsnn-f32mem the same, keeping u_pre for backward as float32 instead of 16-bit codes
  rmpsnn-torch  the same with backend="torch" (plain PyTorch loop), for reference
  rmpsnn-plif   rmpsnn.neurons.PLIF (learnable leak tau = sigmoid(w), fused kernel with dL/dtau)
  rmpsnn-plif-ref  PLIF with backend="torch": autograd through the reference step (unfused)
  spikingjelly-plif  SpikingJelly's ParametricLIFNode, multi-step (torch), the same neuron
  spikingjelly  activation_based LIFNode, multi-step (torch) } only when installed
  snntorch      snn.Leaky looped over T (convs folded over T*B)  } pip install -r
  norse         LIFBoxCell looped over T (convs folded over T*B)  } benchmarks/requirements-peers.txt
Every variant uses leak 0.25, threshold 0.5 and hard reset; ``dynamics_match`` says whether the
peer's neuron produced exactly rmpsnn's spikes on a random input.

Also: an IF soft-reset (RMP) inference run at T=64, compared per image-timestep with the floor.
Peak memory of one training step is measured in a fresh subprocess per variant (Linux: peak RSS
reset through /proc/self/clear_refs; CUDA: max_memory_allocated).  The CPU probe runs with
MALLOC_MMAP_THRESHOLD_=65536 so that glibc maps every tensor of 64 KiB or more fresh and returns
it on free: RSS then follows live tensor memory instead of what malloc kept from the warm-up step
(without it, variants that allocate per-time-step slices look smaller than they are).

Prints a human-readable table on stderr and one JSON line on stdout.
    python benchmarks/step_speed.py [--rounds 7] [--device cpu] [--no-peers] [--only a,b,...]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

warnings.filterwarnings("ignore")

T_DEFAULT, B_DEFAULT = 4, 32
TAU, VTH = 0.25, 0.5
PEERS = ("spikingjelly", "snntorch", "norse")


# ----------------------------------------------------------------------------- networks
def _convs():
    """The convolution/BN stack shared by every variant (same initialisation by seed)."""
    torch.manual_seed(0)
    return [
        (nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)),
        (nn.Conv2d(64, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128)),
        (nn.Conv2d(128, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256)),
    ]


class FloorNet(nn.Module):
    """ReLU network over [T*B, ...]: the cost of the convolutions alone."""

    def __init__(self, T):
        super().__init__()
        (c1, b1), (c2, b2), (c3, b3) = _convs()
        self.T = T
        self.body = nn.Sequential(
            c1,
            b1,
            nn.ReLU(),
            c2,
            b2,
            nn.ReLU(),
            nn.AvgPool2d(2),
            c3,
            b3,
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(256 * 8 * 8, 10),
        )

    def forward(self, x):  # x: [T, B, 3, 32, 32]
        T, B = x.shape[:2]
        return self.body(x.flatten(0, 1)).view(T, B, -1).mean(0)


class FoldedSNN(nn.Module):
    """Convs folded over T*B; ``neuron(i)`` makes the spiking layer i (a [T, B, ...] module)."""

    def __init__(self, neuron):
        super().__init__()
        (c1, b1), (c2, b2), (c3, b3) = _convs()
        self.l1, self.l2, self.l3 = nn.Sequential(c1, b1), nn.Sequential(c2, b2), nn.Sequential(c3, b3)
        self.n1, self.n2, self.n3 = neuron(), neuron(), neuron()
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(256 * 8 * 8, 10)

    def forward(self, x):
        T, B = x.shape[:2]

        def f(mod, y):
            return mod(y.flatten(0, 1)).unflatten(0, (T, B))

        y = self.n1(f(self.l1, x))
        y = f(self.pool, self.n2(f(self.l2, y)))
        y = f(self.pool, self.n3(f(self.l3, y)))
        return f(self.fc, y.flatten(2)).mean(0)


def rmpsnn_net(backend="auto", neuron="lif", storage="auto"):
    from rmpsnn.neurons import IF, LIF, PLIF

    if neuron == "if":
        return FoldedSNN(lambda: IF(v_th=1.0, reset="soft", backend=backend))
    if neuron == "plif":
        return FoldedSNN(lambda: PLIF(tau=TAU, v_th=VTH, reset="hard", surrogate="inflor", backend=backend))
    return FoldedSNN(
        lambda: LIF(
            tau=TAU, v_th=VTH, reset="hard", surrogate="inflor", backend=backend, membrane_storage=storage
        )
    )


class LoopOverT(nn.Module):
    """Runs a single-step peer neuron (snnTorch/Norse) over [T, B, ...]."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        if kind == "snntorch":
            import snntorch as snn
            from snntorch import surrogate

            self.cell = snn.Leaky(
                beta=TAU, threshold=VTH, reset_mechanism="zero", spike_grad=surrogate.atan()
            )
        else:
            import norse.torch as nt

            # Norse: v' = v + dt*tau_mem_inv*(-v + i); dt*tau_mem_inv = 0.75 gives v' = 0.25 v + 0.75 i,
            # so the input is scaled by 4/3 to get u = 0.25 u + x.
            p = nt.LIFBoxParameters(
                tau_mem_inv=torch.tensor(750.0), v_th=torch.tensor(VTH), v_reset=torch.tensor(0.0)
            )
            self.cell = nt.LIFBoxCell(p, dt=0.001)

    def forward(self, x):
        out = []
        if self.kind == "snntorch":
            mem = self.cell.init_leaky()
            for t in range(x.shape[0]):
                spk, mem = self.cell(x[t], mem)
                out.append(spk)
        else:
            state = None
            for t in range(x.shape[0]):
                z, state = self.cell(x[t] * (1 / (1 - TAU)), state)
                out.append(z)
        return torch.stack(out)


def peer_net(kind):
    if kind == "spikingjelly-plif":
        from spikingjelly.activation_based import neuron, surrogate

        # decay_input=False, v_reset=0: v = (1 - sigmoid(w)) v + x, i.e. rmpsnn's tau = 1 - 1/init_tau
        return FoldedSNN(
            lambda: neuron.ParametricLIFNode(
                init_tau=1 / (1 - TAU), decay_input=False, v_threshold=VTH, v_reset=0.0,
                surrogate_function=surrogate.ATan(), step_mode="m",
            )
        )  # fmt: skip
    if kind == "spikingjelly":
        from spikingjelly.activation_based import neuron, surrogate

        return FoldedSNN(
            lambda: neuron.LIFNode(
                tau=1 / (1 - TAU),
                decay_input=False,
                v_threshold=VTH,
                v_reset=0.0,
                surrogate_function=surrogate.ATan(),
                step_mode="m",
            )
        )
    return FoldedSNN(lambda: LoopOverT(kind))


def _reset_peer(model, kind):
    if kind.startswith("spikingjelly"):
        from spikingjelly.activation_based import functional

        functional.reset_net(model)


def build(name, T):
    if name == "floor":
        return FloorNet(T)
    if name == "rmpsnn":
        return rmpsnn_net("auto")
    if name == "rmpsnn-f32mem":
        return rmpsnn_net("auto", storage="float32")
    if name == "rmpsnn-torch":
        return rmpsnn_net("torch")
    if name in ("rmpsnn-plif", "rmpsnn-plif-ref"):
        return rmpsnn_net("torch" if name.endswith("ref") else "auto", neuron="plif")
    return peer_net(name)


def peer_status():
    """{peer: None if importable else reason}."""
    out = {}
    for kind in PEERS:
        mod = {
            "spikingjelly": "spikingjelly.activation_based.neuron",
            "snntorch": "snntorch",
            "norse": "norse.torch",
        }
        try:
            __import__(mod[kind])
            out[kind] = None
        except Exception as e:
            out[kind] = f"not importable ({type(e).__name__}: {str(e)[:80]})"
    return out


def dynamics_match(kind, device):
    """Does the peer neuron give exactly rmpsnn's LIF spikes on random input?"""
    from rmpsnn.functional import lif_multistep

    torch.manual_seed(1)
    x = torch.rand(8, 4, 16, device=device) * 0.8
    ref = lif_multistep(x, tau=TAU, v_th=VTH, reset="hard")
    m = peer_net(kind).n1.to(device)
    with torch.no_grad():
        got = m(x)
    _reset_peer(m, kind)
    return bool(torch.equal(ref, got)), float((ref != got).float().mean())


# ----------------------------------------------------------------------------- timing
class Runner:
    def __init__(self, name, T, B, device, lr=0.01, model=None):
        self.name, self.device = name, device
        self.model = (model if model is not None else build(name, T)).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(B, 3, 32, 32, generator=g).to(device).unsqueeze(0).repeat(T, 1, 1, 1, 1)
        self.y = torch.randint(0, 10, (B,), generator=g).to(device)

    def train_step(self):
        self.model.train()
        out = self.model(self.x)
        loss = F.cross_entropy(out, self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        _reset_peer(self.model, self.name)
        return loss

    @torch.no_grad()
    def infer(self):
        self.model.eval()
        out = self.model(self.x)
        _reset_peer(self.model, self.name)
        return out


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def memory_probe(name, T, B, device):
    """Peak extra memory (bytes) of one training step, after a warm-up step."""
    r = Runner(name, T, B, device)
    r.train_step()
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        r.train_step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base, "cuda max_memory_allocated"

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS watermark
    base = status("VmRSS:")
    r.train_step()
    return status("VmHWM:") - base, "peak RSS delta (Linux VmHWM)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--timesteps", type=int, default=T_DEFAULT)
    ap.add_argument("--batch", type=int, default=B_DEFAULT)
    ap.add_argument("--if-timesteps", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-peers", action="store_true", help="skip SpikingJelly/snnTorch/Norse")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--only", help="comma-separated variants to run (the floor is always run)")
    ap.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    T, B, dev = args.timesteps, args.batch, args.device

    if args.memory_probe:
        peak, how = memory_probe(args.memory_probe, T, B, dev)
        print(json.dumps({"peak_bytes": peak, "method": how}))
        return

    skipped = {}
    variants = ["floor", "rmpsnn", "rmpsnn-f32mem", "rmpsnn-torch", "rmpsnn-plif", "rmpsnn-plif-ref"]
    matches = {}
    if not args.no_peers:
        for kind, why in peer_status().items():
            if why is None:
                variants.append(kind)
                matches[kind] = dynamics_match(kind, dev)
                if kind == "spikingjelly":
                    variants.append("spikingjelly-plif")
            else:
                skipped[kind] = why
    else:
        skipped = {k: "--no-peers" for k in PEERS}
    if args.only:
        keep = {"floor", *args.only.split(",")}
        variants = [v for v in variants if v in keep]

    runners = {v: Runner(v, T, B, dev) for v in variants}
    for r in runners.values():
        for _ in range(args.warmup):
            r.train_step()
            r.infer()
    train = {v: [] for v in variants}
    infer = {v: [] for v in variants}
    for rnd in range(args.rounds):
        order = variants if rnd % 2 == 0 else variants[::-1]  # alternate to cancel drift
        for v in order:
            train[v].append(timed(runners[v].train_step, dev))
        for v in order:
            infer[v].append(timed(runners[v].infer, dev))
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    med_t = {v: statistics.median(s) for v, s in train.items()}
    med_i = {v: statistics.median(s) for v, s in infer.items()}
    del runners
    gc.collect()

    # IF (RMP, soft reset) inference at a long horizon, simulated in chunks of T steps whose
    # convolutions run over T*B images (the neurons carry their potential from chunk to chunk),
    # compared per image-timestep with the floor at batch T*B
    Tif = args.if_timesteps
    floor_inf = Runner("floor", T, B, dev)
    if_model = rmpsnn_net("auto", neuron="if").to(dev).eval()
    for m in if_model.modules():
        if hasattr(m, "carry_state"):
            m.carry_state = True

    @torch.no_grad()
    def if_inference():
        from rmpsnn.neurons import reset_states

        reset_states(if_model)
        out = 0
        for _ in range(0, Tif, T):
            out = out + if_model(floor_inf.x)
        return out

    if_inference()
    floor_inf.infer()
    if_t, fl_t = [], []
    for _ in range(max(3, args.rounds // 2)):
        if_t.append(timed(if_inference, dev))
        fl_t.append(timed(floor_inf.infer, dev))
    if_med, fl_med = statistics.median(if_t), statistics.median(fl_t)
    Tif = (Tif + T - 1) // T * T
    if_result = {
        "timesteps": Tif,
        "chunk": T,
        "batch": B,
        "seconds": if_med,
        "image_timesteps_per_s": Tif * B / if_med,
        "floor_images_per_s": T * B / fl_med,
        "ratio_vs_floor_per_image_timestep": if_med / (fl_med * Tif / T),
    }

    memory = {}
    if not args.no_memory:
        for v in variants:
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--memory-probe",
                v,
                "--timesteps",
                str(T),
                "--batch",
                str(B),
                "--device",
                dev,
            ]
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600, env=env)
                memory[v] = json.loads(out.stdout.strip().splitlines()[-1])
            except Exception as e:
                memory[v] = {"error": str(e)[:200]}

    def ratio(d, v):
        return d[v] / d["floor"]

    result = {
        "benchmark": "step_speed",
        "config": {
            "T": T,
            "batch": B,
            "device": dev,
            "threads": torch.get_num_threads(),
            "rounds": args.rounds,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "train_step_s": med_t,
        "inference_s": med_i,
        "train_ratio_vs_floor": {v: ratio(med_t, v) for v in variants},
        "inference_ratio_vs_floor": {v: ratio(med_i, v) for v in variants},
        "peers_skipped": skipped,
        "peer_dynamics_match": {k: {"exact": m, "mismatch_fraction": f} for k, (m, f) in matches.items()},
        "if_soft_reset_inference": if_result,
    }
    if memory:
        result["train_peak_memory_bytes"] = {v: m.get("peak_bytes") for v, m in memory.items()}
        fl = memory.get("floor", {}).get("peak_bytes")
        result["memory_ratio_vs_floor"] = {
            v: (m["peak_bytes"] / fl if fl and "peak_bytes" in m else None) for v, m in memory.items()
        }
        result["memory_method"] = next((m["method"] for m in memory.values() if "method" in m), None)
        result["memory_errors"] = {v: m["error"] for v, m in memory.items() if "error" in m}
    targets = {}
    if "rmpsnn" in variants:
        targets = {
            "train_ratio<=1.15": result["train_ratio_vs_floor"]["rmpsnn"] <= 1.15,
            "inference_ratio<=1.10": result["inference_ratio_vs_floor"]["rmpsnn"] <= 1.10,
            "faster_than_peers_train": all(med_t["rmpsnn"] < med_t[p] for p in variants if p in PEERS),
            "faster_than_peers_inference": all(med_i["rmpsnn"] < med_i[p] for p in variants if p in PEERS),
        }
    if "rmpsnn-plif" in variants:
        targets["plif_train_ratio<=1.25"] = result["train_ratio_vs_floor"]["rmpsnn-plif"] <= 1.25
        if "spikingjelly-plif" in variants:
            targets["plif_faster_than_spikingjelly_plif"] = med_t["rmpsnn-plif"] < med_t["spikingjelly-plif"]
    if memory and result["memory_ratio_vs_floor"].get("rmpsnn") is not None:
        targets["memory_ratio<=1.3"] = result["memory_ratio_vs_floor"]["rmpsnn"] <= 1.3
    result["targets_met"] = targets

    # human-readable table
    cols = ("train s", "x floor", "infer s", "x floor", "peak MB", "x floor")
    print(f"\n{'variant':<18}" + "".join(f"{c:>10}" for c in cols), file=sys.stderr)
    for v in variants:
        mb = result.get("train_peak_memory_bytes", {}).get(v)
        mr = result.get("memory_ratio_vs_floor", {}).get(v)
        print(
            f"{v:<18}{med_t[v]:>10.3f}{ratio(med_t, v):>10.2f}{med_i[v]:>10.3f}{ratio(med_i, v):>10.2f}"
            f"{(mb or 0) / 2**20:>10.0f}{(mr or float('nan')):>10.2f}",
            file=sys.stderr,
        )
    print(
        f"IF soft reset T={Tif}: {if_result['image_timesteps_per_s']:.0f} image-timesteps/s "
        f"({if_result['ratio_vs_floor_per_image_timestep']:.2f}x floor per image-timestep)",
        file=sys.stderr,
    )
    for k, why in skipped.items():
        print(f"skipped {k}: {why}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
