"""``rmpsnn report``: a self-contained Markdown + HTML report of training and conversion runs.

Sources are run directories of ``rmpsnn train`` (config, metrics, checkpoints) and result files
of ``rmpsnn convert`` (JSON with accuracy against T).  For every training run the best
checkpoint is evaluated again on (a class-balanced subset of) its test set with the monitors
on, giving membrane-potential distributions, firing rates, quantisation error and the energy
table; several runs are compared side by side (tables) and overlaid (figures).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from functools import partial
from pathlib import Path

from .. import __version__
from ..analysis.energy import count_operations
from ..analysis.monitors import collect_layer_stats
from ..analysis.plots import (
    plot_accuracy_vs_timesteps,
    plot_firing_rates,
    plot_membrane_distribution,
    plot_training_curves,
)
from ..analysis.stats import wilson_interval
from ..conversion import first_within
from ..devices import resolve_device
from ..errors import InputError
from ..io import write_text
from ..training.rundir import read_metrics
from ..training.runs import load_run
from .claims import conversion_claims, direct_training_claim, machine_info

__all__ = ["write_report"]


class _Doc:
    """Blocks rendered to Markdown and to HTML (images embedded, so the .html stands alone)."""

    def __init__(self, out: Path):
        self.out, self.blocks = out, []

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]):
        self.blocks.append(("ul", list(items)))

    def table(self, header: list[str], rows: list[list]):
        self.blocks.append(("table", header, [[("" if c is None else str(c)) for c in r] for r in rows]))

    def img(self, files: list[Path], alt: str):
        self.blocks.append(("img", next(f for f in files if f.suffix == ".png"), alt))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "ul":
                out += [f"- {item}" for item in b[1]]
            elif b[0] == "table":
                out.append("| " + " | ".join(b[1]) + " |")
                out.append("|" + "---|" * len(b[1]))
                out += ["| " + " | ".join(r) + " |" for r in b[2]]
            else:
                out.append(f"![{b[2]}]({b[1].relative_to(self.out).as_posix()})")
            out.append("")
        return "\n".join(out)

    def html(self, title: str) -> str:
        css = (
            "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
            "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;"
            "padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
            "img{max-width:100%}code{background:#f3f3f3;padding:0 3px}"
        )
        parts = [
            f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{css}</style>"
        ]
        for b in self.blocks:
            if b[0] == "h":
                parts.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                text = html.escape(b[1])
                for _ in range(text.count("**") // 2):
                    text = text.replace("**", "<b>", 1).replace("**", "</b>", 1)
                for _ in range(text.count("`") // 2):
                    text = text.replace("`", "<code>", 1).replace("`", "</code>", 1)
                parts.append(f"<p>{text}</p>")
            elif b[0] == "ul":
                parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in b[1]) + "</ul>")
            elif b[0] == "table":
                head = "".join(f"<th>{html.escape(c)}</th>" for c in b[1])
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in b[2]
                )
                parts.append(f"<table><tr>{head}</tr>{body}</table>")
            else:
                data = base64.b64encode(b[1].read_bytes()).decode()
                parts.append(f"<p><img alt='{html.escape(b[2])}' src='data:image/png;base64,{data}'></p>")
        return "\n".join(parts)


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.2f} %"


def _training_run(run: Path, images: int, dev) -> dict:
    """Metrics, summary and a monitored evaluation of the run's best checkpoint."""
    metrics = read_metrics(run / "metrics.jsonl")
    loaded = load_run(run, device=dev, overrides=[f"data.test_limit={images}"])
    model, data = loaded.model, loaded.data
    prep = partial(data.prepare, device=dev)
    stats = collect_layer_stats(model, data.test(), v_th=loaded.v_th, prepare=prep)
    ops = count_operations(model, data.test(), prepare=prep)
    summary = _read_json(run / "summary.json") if (run / "summary.json").is_file() else {}
    stored = (
        loaded.info.get("config", {}).get("data", {}) if isinstance(loaded.info.get("config"), dict) else {}
    )
    return {
        "train_images": loaded.data.info.get("train_images"),
        "test_images": stored.get("test_limit"),  # the run's own evaluation (None: the whole split)
        "seed": loaded.cfg.run.seed,
        "cfg": loaded.cfg,
        "metrics": metrics,
        "stats": stats,
        "ops": ops,
        "summary": summary,
        "checkpoint": loaded.checkpoint,
    }


def _read_json(path: Path) -> dict:
    """A JSON file as a dict, or one line saying what is wrong with it."""
    try:
        value = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({e}); give a result file of `rmpsnn convert`") from None
    except OSError as e:
        raise InputError(f"{path} cannot be read: {e.strerror or e}") from None
    if not isinstance(value, dict):
        raise InputError(f"{path} holds a JSON {type(value).__name__}, not a result of `rmpsnn convert`")
    return value


def _conversion_result(path: Path) -> dict:
    res = _read_json(path)
    if not isinstance(res.get("variants"), dict) or "timesteps" not in res or "ann_accuracy" not in res:
        raise InputError(
            f"{path} is not a result of `rmpsnn convert` (no 'variants', 'timesteps', 'ann_accuracy')"
        )
    return res


def write_report(
    sources: list[str | Path],
    out: str | Path,
    *,
    images: int = 1000,
    device: str = "auto",
    title: str | None = None,
) -> dict[str, Path]:
    """Write ``out/report.md`` and ``out/report.html`` (plus ``out/figures/``) for the given
    training run directories and conversion result files; returns the paths written."""
    dev = resolve_device(device)
    out = Path(out)
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise InputError(f"--out {out}: {parent} is a file, not a folder; give a folder for the report")
    training, conversions = {}, {}
    for src in map(Path, sources):
        if src.is_dir() and (src / "config.yaml").is_file() and (src / "metrics.jsonl").is_file():
            training[src.name] = _training_run(src, images, dev)
        elif src.is_file() and src.suffix == ".json":
            conversions[src.stem] = _conversion_result(src)
        elif src.is_dir() and list(src.glob("*.json")):
            for f in sorted(src.glob("*.json")):
                res = _read_json(f)
                if isinstance(res.get("variants"), dict):
                    conversions[f"{src.name}/{f.stem}"] = _conversion_result(f)
        elif src.is_dir() and (src / "config.yaml").is_file():
            raise InputError(
                f"{src}: a training run with no finished epoch yet (no metrics.jsonl): let it finish "
                f"one, or resume it with rmpsnn train --resume {src}"
            )
        else:
            raise InputError(
                f"{src}: not a training run directory (config.yaml + metrics.jsonl) or a conversion "
                f"result (.json)"
            )
    if not training and not conversions:
        raise InputError(
            "nothing to report: give run directories of `rmpsnn train` or results of `rmpsnn convert`"
        )
    figs = out / "figures"  # only once every input was read: a refusal leaves no folder behind
    figs.mkdir(parents=True, exist_ok=True)
    if not title:
        parts = [f"direct training ({', '.join(training)})"] if training else []
        models = sorted({str(r.get("model", "an ANN")) for r in conversions.values()})
        parts += [f"conversion of {', '.join(models)}"] if conversions else []
        title = "rmpsnn report: " + " and ".join(parts)
    doc = _Doc(out)
    doc.h(1, title)
    doc.p(f"Written by rmpsnn {__version__} on {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}.")
    _setup_section(doc, training, conversions, images)
    if training:
        _training_sections(doc, training, figs, images)
    if conversions:
        _conversion_sections(doc, conversions, figs)
    write_text(out / "report.md", doc.markdown())
    write_text(out / "report.html", doc.html(title))
    for label, r in training.items():
        r["stats"].save(figs / f"{label.replace('/', '_')}-layer-stats.json")
    return {"markdown": out / "report.md", "html": out / "report.html"}


def _setup_section(doc: _Doc, training: dict, conversions: dict, images: int) -> None:
    """Data sizes, seeds and the machine: what every figure below depends on."""
    doc.h(2, "What was run, on what")
    rows = []
    for label, r in training.items():
        c = r["cfg"]
        own = r["test_images"] if r["test_images"] else "all"
        rows.append(
            [
                label,
                c.data.dataset,
                r["train_images"],
                own,
                min(images, r["test_images"] or images),
                c.run.seed,
            ]
        )
    for label, res in conversions.items():
        rows.append(
            [
                label,
                res.get("dataset", "?"),
                res.get("train_images", "?"),
                res.get("test_images", "?"),
                "",
                res.get("seed", "?"),
            ]
        )
    doc.table(
        ["source", "data", "training images", "test images (accuracy)", "test images (monitored)", "seed"],
        rows,
    )
    m = machine_info()
    doc.p(
        f"Report written on: {m['cpu']}, {m['usable_cores']} usable cores, torch {m['torch']} with "
        f"{m['torch_threads']} threads, Python {m['python']} ({m['platform']}). Accuracies carry a 95 % "
        f"interval (Wilson, binomial) for their number of test images n."
    )


def _acc_cell(value, n) -> str:
    if value is None:
        return ""
    if not n:
        return _pct(value)
    ci = wilson_interval(round(value * n), n)
    return f"{100 * value:.1f} % [{100 * ci.low:.1f}, {100 * ci.high:.1f}]"


def _rmp_loss_verdict(runs: dict) -> str | None:
    """With and without RMP-Loss, when the report holds exactly such a pair (same model, data, T
    and test set size): the difference of final accuracies with its 95 % interval, and a
    conclusion only where the interval excludes 0 (as the quickstart prints it)."""
    if len(runs) != 2:
        return None
    (a, ra), (b, rb) = runs.items()
    ca, cb = ra["cfg"], rb["cfg"]
    setup = lambda c: (c.model.name, c.data.dataset, c.model.timesteps)  # noqa: E731
    same = setup(ca) == setup(cb)
    n = ra["test_images"]
    if not same or ca.rmp.enabled == cb.rmp.enabled or not n or n != rb["test_images"]:
        return None
    if not (ra["metrics"] and rb["metrics"]):
        return None
    (w, rw), (o, ro) = ((a, ra), (b, rb)) if ca.rmp.enabled else ((b, rb), (a, ra))
    arms = {"with-rmp-loss": {"final": rw["metrics"][-1]}, "without-rmp-loss": {"final": ro["metrics"][-1]}}
    claim = direct_training_claim(arms, n)
    return f"With ({w}) and without ({o}) RMP-Loss: {claim['text']}."


def _training_sections(doc: _Doc, runs: dict, figs: Path, images: int) -> None:
    doc.h(2, "Direct training")
    rows = []
    for label, r in runs.items():
        c, last = r["cfg"], r["metrics"][-1] if r["metrics"] else {}
        t = r["ops"].totals()
        rows.append(
            [
                label,
                c.model.name,
                c.data.dataset,
                c.model.timesteps,
                f"on (k={c.rmp.k:g})" if c.rmp.enabled else "off",
                f"{len(r['metrics'])}/{c.optim.epochs}",
                r["test_images"] or "all",
                _acc_cell(r["summary"].get("best_test_accuracy"), r["test_images"]),
                _acc_cell(last.get("test_accuracy"), r["test_images"]),
                f"{last.get('quantization_error', float('nan')):.4f}",
                f"{t['energy_ratio_snn_to_ann']:.3f}",
            ]
        )
    doc.table(
        [
            "run",
            "model",
            "data",
            "T",
            "RMP-Loss",
            "epochs",
            "test images n",
            "best test acc. [95 %]",
            "final test acc. [95 %]",
            "quantization error",
            "SNN/ANN energy",
        ],
        rows,
    )
    doc.p(
        "Accuracy and quantization error (mean |Dis|, RMP-Loss eq. 8) are the run's own evaluation on its "
        "test set after the last epoch; the energy ratio comes from the monitored evaluation below."
    )
    verdict = _rmp_loss_verdict(runs)
    if verdict:
        doc.p(verdict)
    doc.img(
        plot_training_curves({k: r["metrics"] for k, r in runs.items()}, figs / "training_curves"),
        "training curves",
    )
    _membrane_section(doc, runs, figs, images)
    _energy_section(doc, runs)


def _membrane_section(doc: _Doc, runs: dict, figs: Path, images: int) -> None:
    """Membrane-potential distributions, firing rates and per-layer quantization errors of the
    monitored evaluation, side by side for every run."""
    stats = {k: r["stats"] for k, r in runs.items()}
    doc.h(3, f"Membrane potentials, firing rates (best checkpoint, {images} test images at most)")
    common = [n for n in next(iter(stats.values())).layers if all(n in s.layers for s in stats.values())]
    if common:
        picks = common if len(common) <= 4 else [common[round(i * (len(common) - 1) / 3)] for i in range(4)]
        doc.img(
            plot_membrane_distribution(stats, figs / "membrane_distribution", layers=picks),
            "membrane potentials",
        )
        doc.img(plot_firing_rates(stats, figs / "firing_rates"), "firing rates")
    header = ["layer"]
    for k in stats:
        header += [f"{k}: firing rate", f"{k}: quantization error"]
    table = []
    for n in common:
        row = [n]
        for s in stats.values():
            row += [f"{s.layers[n]['firing_rate']:.4f}", f"{s.layers[n]['quantization_error']:.4f}"]
        table.append(row)
    doc.table(header, table)
    doc.p(
        "Monitored accuracy: "
        + ", ".join(f"{k} {_acc_cell(s.accuracy, s.images)} on {s.images} images" for k, s in stats.items())
        + ". Firing rate = spikes per neuron per timestep."
    )


def _energy_section(doc: _Doc, runs: dict) -> None:
    """Operations and energy per image, layer by layer, for every run."""
    doc.h(3, "Operations and energy per image")
    doc.p(
        "ANN = the same network with ReLU, all MACs; SNN = MACs of the analog-input first layer plus one "
        "accumulate per spike and synapse (exact fan-out), at 4.6 pJ per MAC and 0.9 pJ per AC (45 nm). "
        "See `rmpsnn.analysis.energy` for the convention."
    )
    for label, r in runs.items():
        doc.h(4, label)
        rows = []
        for row in r["ops"].rows():
            rate = "" if row["input_event_rate"] is None else f"{row['input_event_rate']:.3f}"
            rows.append(
                [
                    row["layer"],
                    f"{row['ann_macs'] / 1e6:.3f} M",
                    f"{row['snn_macs'] / 1e6:.3f} M",
                    f"{row['snn_sops'] / 1e6:.3f} M",
                    rate,
                    f"{row['ann_energy_uj']:.3f}",
                    f"{row['snn_energy_uj']:.3f}",
                ]
            )
        doc.table(["layer", "ANN MACs", "SNN MACs", "SNN SOPs", "input event rate", "ANN µJ", "SNN µJ"], rows)


def _variant_label(name: str) -> str:
    """Variant keys of older result files are bare reset modes ("soft", "hard")."""
    return f"{name} reset" if name in ("soft", "hard") else name


def _conversion_title(res: dict, label: str, results: dict) -> str:
    """A section title that says what was converted (never a file name)."""
    variants = ", ".join(_variant_label(v) for v in res["variants"])
    title = f"Conversion of `{res.get('model', 'an ANN')}`: {variants}"
    same = [k for k, r in results.items() if r.get("model") == res.get("model")]
    return title if len(same) == 1 else f"{title} (result {same.index(label) + 1} of {len(same)})"


def _conversion_sections(doc: _Doc, results: dict, figs: Path) -> None:
    doc.h(2, "ANN-to-SNN conversion")
    curves, ann = {}, {}
    for label, res in results.items():
        steps, n = res["timesteps"], res.get("test_images")
        doc.h(3, _conversion_title(res, label, results))
        doc.p(
            f"Model `{res.get('model', '?')}`; ANN accuracy **{_acc_cell(res['ann_accuracy'], n)}** on "
            f"{n or '?'} test images; each cell is the SNN's accuracy with its 95 % interval "
            f"(n = {n or '?'})."
        )
        header = ["T", *[_variant_label(v) for v in res["variants"]]]
        rows = []
        for i, t in enumerate(steps):
            rows.append([t, *[_acc_cell(v["accuracy"][i], n) for v in res["variants"].values()]])
        within = [
            first_within({"timesteps": steps, "accuracy": v["accuracy"]}, res["ann_accuracy"], 0.01)
            for v in res["variants"].values()
        ]
        rows.append(["within 1 % of the ANN from T on", *[w or f"> {steps[-1]}" for w in within]])
        claims = conversion_claims(res) if "ann_correct" in res else None
        if claims:
            row = ["SNN − ANN at that T (paired, 95 %)"]
            for v, w in zip(claims["variants"].values(), within, strict=True):
                d = v["minus_ann"][steps.index(w) if w else -1]
                row.append(f"{100 * d['value']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]")
            rows.append(row)
        doc.table(header, rows)
        doc.p(
            "Within 1 % from T on: the first simulated T from which every longer simulated T is at most one "
            "point below the ANN (point estimates)."
        )
        if claims:
            doc.p("Claims, stated only where the 95 % intervals support them:")
            doc.bullets([c["text"] for c in claims["claims"].values()])
        for v, r in res["variants"].items():
            name = f"{label}: {_variant_label(v)}" if len(results) > 1 else _variant_label(v)
            curves[name] = (steps, r["accuracy"])
            ann[name] = res["ann_accuracy"]
    single = len({round(a, 6) for a in ann.values()}) == 1
    files = plot_accuracy_vs_timesteps(
        curves,
        figs / "conversion_accuracy",
        ann_accuracy=next(iter(ann.values())) if single else ann,
        title="Converted SNN: accuracy vs timesteps",
    )
    doc.img(files, "accuracy vs timesteps")
