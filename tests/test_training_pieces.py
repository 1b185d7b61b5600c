"""The trainer's pluggable pieces: loss terms (cross-entropy, RMP-Loss against the neurons' own
thresholds, TET), metric sinks, and the modules around the engine (optimizer, distributed
helpers, opening a run)."""

import json

import pytest
import torch
import torch.nn.functional as F

from rmpsnn.errors import ConfigError, InputError, RunLockedError
from rmpsnn.losses import quantization_error, rmp_loss
from rmpsnn.neurons import MembraneRecorder, SpikingNeuron
from rmpsnn.training import load_config, train
from rmpsnn.training.distributed import Dist
from rmpsnn.training.evaluate import evaluate_model
from rmpsnn.training.loss_terms.tet import tet_parts
from rmpsnn.training.objective import LOSS_TERMS, LossTerm
from rmpsnn.training.optim import build_optimizer, param_groups
from rmpsnn.training.rundir import RunLock
from rmpsnn.training.runs import load_run
from rmpsnn.training.sinks import SINKS, Sink
from rmpsnn.training.trainer import Trainer

TINY = [
    "data.dataset=synthetic",
    "data.train_limit=64",
    "data.test_limit=32",
    "model.kwargs.width=[4,8,8]",
    "optim.batch_size=32",
    "optim.epochs=1",
    "run.progress=off",
]


def _trainer(tmp_path, *extra) -> Trainer:
    return Trainer(load_config(None, [*TINY, f"run.out={tmp_path / 'run'}", *extra]), log=lambda _: None)


def _batch(t: Trainer):
    x, y = next(iter(t.data.train))
    return t.data.prepare(x, t.device), y


# ----------------------------------------------------------------------------- thresholds
def test_rmp_loss_targets_the_neurons_threshold_not_a_default(tmp_path):
    """model.kwargs.v_th=0.3: the RMP term is eq. 10 at 0.3; a threshold set on one layer later
    (per channel) is the target of that layer: the term reads the neurons, not the config."""
    t = _trainer(tmp_path, "model.kwargs.v_th=0.3", "rmp.k=0.5")
    x, y = _batch(t)
    with MembraneRecorder(t.model) as rec:
        t.model(x)
    _, values, _ = t._train_step(x, y, progress=0.5)
    membranes = [u.detach() for u in rec.membranes]  # train mode both times: batch statistics
    assert values["rmp"].item() == pytest.approx(rmp_loss(membranes, v_th=0.3).item(), rel=1e-5)
    assert values["rmp"].item() != pytest.approx(rmp_loss(membranes, v_th=0.5).item())

    layer = t.model.body[2]
    assert isinstance(layer, SpikingNeuron)
    per_channel = torch.linspace(0.2, 0.9, layer_channels := 8).view(layer_channels, 1, 1)
    layer.set_threshold(per_channel)
    with MembraneRecorder(t.model) as rec:
        t.model(x)
    ths = [0.3 if th.ndim == 0 else per_channel for th in rec.thresholds]
    assert sum(th is per_channel for th in ths) == 1
    _, values, _ = t._train_step(x, y, progress=0.5)
    want = rmp_loss([u.detach() for u in rec.membranes], v_th=ths)
    assert values["rmp"].item() == pytest.approx(want.item(), rel=1e-5)
    # the quantisation error of the evaluation uses the same per-layer thresholds
    ev = evaluate_model(t.model, [(x, y)], device="cpu")  # in eval mode: record there too
    with torch.no_grad(), MembraneRecorder(t.model) as rec:
        t.model(x)
    by_hand = quantization_error([u.detach() for u in rec.membranes], v_th=ths)
    assert ev["quantization_error"] == pytest.approx(by_hand["mean_abs"], rel=1e-5)


# ----------------------------------------------------------------------------- TET
def test_tet_loss_equals_the_hand_computation():
    g = torch.Generator().manual_seed(0)
    steps, y = torch.randn(3, 5, 4, generator=g), torch.tensor([0, 1, 2, 3, 0])
    ce, mse = tet_parts(steps, y, phi=1.0)
    assert ce.item() == pytest.approx(
        sum(F.cross_entropy(steps[t], y).item() for t in range(3)) / 3, rel=1e-6
    )
    assert mse.item() == pytest.approx(sum(((steps[t] - 1.0) ** 2).mean().item() for t in range(3)) / 3)


def test_training_with_tet_uses_the_per_step_outputs(tmp_path):
    t = _trainer(tmp_path, "loss.kind=tet", "loss.kwargs.lam=0.2", "loss.kwargs.phi=0.5", "rmp.enabled=false")
    x, y = _batch(t)
    seen = []
    hook = t.model.readout.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    loss, values, _ = t._train_step(x, y, progress=0.0)
    hook.remove()
    (steps,) = seen
    assert steps.shape == (t.cfg.model.timesteps, len(y), t.data.num_classes)
    lt = sum(F.cross_entropy(steps[k], y) for k in range(len(steps))) / len(steps)
    lm = ((steps - 0.5) ** 2).mean()
    assert loss.item() == pytest.approx((0.8 * lt + 0.2 * lm).item(), rel=1e-5)
    assert values["ce"].item() == pytest.approx(lt.item(), rel=1e-5)
    s = t.run()
    assert s["epochs_done"] == 1 and 0 <= s["final"]["test_accuracy"] <= 1
    rec = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["tet_mse"] > 0 and rec["rmp"] == 0.0
    assert (
        (tmp_path / "run" / "metrics.csv")
        .read_text()
        .startswith("epoch,global_step,lr,lambda,ce,tet_mse,rmp,loss")
    )


def test_loss_config_errors_name_the_choices():
    with pytest.raises(ConfigError, match=r"loss.kind.*ce.*tet"):
        load_config(None, ["loss.kind=tett"])
    with pytest.raises(ConfigError, match=r"loss.kind.*ce"):
        load_config(None, ["loss.kind=rmp"])  # a regulariser, added by the rmp section
    with pytest.raises(ConfigError, match=r"loss.kwargs.lamb.*lam, phi"):
        Trainer(load_config(None, [*TINY, "loss.kind=tet", "loss.kwargs.lamb=0.1"]), log=lambda _: None)
    ann = load_config(None, [*TINY, "model.name=ann_cpu_net", "rmp.enabled=false", "loss.kind=tet"])
    with pytest.raises(ConfigError, match=r"per-step outputs.*OutputIntegrator"):
        Trainer(ann, log=lambda _: None)  # before the run starts


# ----------------------------------------------------------------------------- plug-ins
def test_a_new_loss_term_and_a_new_sink_plug_in(tmp_path):
    class Logits(LossTerm):
        """0.01 * mean squared logits of the read-out."""

        metrics = ("ce", "logit_l2")

        def __call__(self, fwd, progress):
            return {"ce": (F.cross_entropy(fwd.out, fwd.y), 1.0), "logit_l2": (fwd.out.pow(2).mean(), 0.01)}

    records = []

    class Collect(Sink):
        def epoch_end(self, record):
            records.append(record)

    LOSS_TERMS.register("logit_l2", lambda cfg: Logits())
    SINKS.register("collect", lambda trainer: Collect())
    try:
        s = train(None, [*TINY, f"run.out={tmp_path / 'run'}", "loss.kind=logit_l2"], log=lambda _: None)
    finally:
        LOSS_TERMS.unregister("logit_l2")
        SINKS.unregister("collect")
    (rec,) = records
    assert rec["logit_l2"] > 0 and rec["epoch"] == 1 and s["epochs_done"] == 1
    assert rec["loss"] == pytest.approx(rec["ce"] + 0.01 * rec["logit_l2"] + rec["lambda"] * rec["rmp"])


# ----------------------------------------------------------------------------- around the engine
def test_param_groups_and_schedule():
    model = torch.nn.Sequential(torch.nn.Linear(1024, 4), torch.nn.BatchNorm1d(4))
    groups = param_groups(model, lr=0.1, weight_decay=5e-4, scale_wide_linear=True)
    assert [g["lr"] for g in groups] == pytest.approx([0.05, 0.05, 0.1, 0.1])  # 512 / 1024
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0, 0.0, 0.0]  # no decay on biases/BN
    cfg = load_config(None, ["optim.epochs=2", "optim.warmup_epochs=1", "optim.name=adamw", "optim.lr=0.2"])
    opt, sched = build_optimizer(model, cfg.optim, steps_per_epoch=4)
    assert isinstance(opt, torch.optim.AdamW)
    lrs = []
    for _ in range(8):
        lrs.append(sched.get_last_lr()[2])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.05, 0.1, 0.15, 0.2])  # linear warm-up over one epoch
    assert lrs[4] > lrs[5] > lrs[6] > lrs[7] > 0  # then cosine decay


def test_single_process_dist_is_a_no_op():
    d = Dist()
    v = torch.tensor([1.0, 2.0])
    assert d.all_reduce(v) is v and d.is_main and not d.enabled
    assert d.in_sync(torch.nn.Linear(2, 2))
    d.barrier()
    d.close()


def test_load_run_reads_the_model_and_its_thresholds(tmp_path):
    out = tmp_path / "run"
    train(None, [*TINY, f"run.out={out}", "model.kwargs.v_th=0.4"], log=lambda _: None)
    run = load_run(out, timesteps=2)
    assert run.cfg.model.timesteps == 2 and run.model.timesteps == 2 and run.cfg.data.augment == "none"
    assert run.info["kwargs"]["timesteps"] == 2  # built with that T (what an export records)
    bad = r"load_run\(timesteps=\): the number of time steps must be a whole number >= 1, got 0"
    with pytest.raises(InputError, match=bad):
        load_run(out, timesteps=0)
    assert run.v_th == pytest.approx(0.4)  # from the neurons
    ev = evaluate_model(run.model, run.data.test(), data=run.data)
    assert ev["images"] == 32 and set(ev["per_layer"]) == {"stem_lif", "body.2", "body.6"}


def test_load_model_builds_with_other_arguments_only_those_the_model_was_built_with(tmp_path):
    from rmpsnn.checkpoint import load_model, save_model
    from rmpsnn.models import create

    kwargs = {"num_classes": 10, "width": [4, 8, 8]}
    save_model(tmp_path / "ann.safetensors", create("ann_cpu_net", **kwargs), model_name="ann_cpu_net",
               model_kwargs=kwargs)  # fmt: skip
    with pytest.raises(InputError, match=r"'ann_cpu_net' was not built with timesteps .* cannot be changed"):
        load_model(tmp_path / "ann.safetensors", kwargs={"timesteps": 8})


def test_a_locked_ann_run_names_train_ann(tmp_path):
    out = tmp_path / "ann"
    cfg = load_config(None, [*TINY, "model.name=ann_cpu_net", "rmp.enabled=false", f"run.out={out}"])
    with RunLock(out):  # another process holds the run directory
        t = Trainer(cfg, log=lambda _: None)
        with pytest.raises(RunLockedError, match="rmpsnn train-ann --resume"):
            t.run()


def test_the_built_in_pieces_are_registered_and_every_module_exports_what_it_names():
    import importlib
    import pkgutil

    import rmpsnn.training as training

    assert {"ce", "rmp", "tet"} <= set(LOSS_TERMS.names())
    assert {"jsonl", "csv", "tensorboard", "progress"} <= set(SINKS.names())
    names = [m.name for m in pkgutil.walk_packages(training.__path__, "rmpsnn.training.")]
    assert {"rmpsnn.training.checkpointing", "rmpsnn.training.setup", "rmpsnn.training.summary"} <= set(names)
    for name in names:
        module = importlib.import_module(name)
        missing = [n for n in getattr(module, "__all__", []) if not hasattr(module, n)]
        assert not missing, (name, missing)
