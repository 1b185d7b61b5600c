"""Monitors, operation counts / energy (hand-counted), figures and `rmpsnn report`."""

import json

import pytest
import torch
from torch import nn

from rmpsnn.analysis import (
    E_AC_PJ,
    E_MAC_PJ,
    LayerStats,
    collect_layer_stats,
    count_operations,
    plot_firing_rates,
    plot_membrane_distribution,
    plot_training_curves,
)
from rmpsnn.cli import main
from rmpsnn.layers import TimeFolded
from rmpsnn.neurons import LIF


class _Probe(nn.Module):
    """x -> conv1 (analog input: MACs) -> given spikes -> conv2 (SOPs) -> linear (SOPs)."""

    def __init__(self, spikes):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.fc = nn.Linear(2 * 4 * 4, 3)
        self.spikes = spikes

    def forward(self, x):
        self.conv1(x)
        y = self.conv2(self.spikes)
        return self.fc(y.flatten(1) * 0 + (self.spikes.repeat(1, 2, 1, 1).flatten(1)))


def test_operation_counts_match_a_hand_count():
    spikes = torch.zeros(1, 1, 4, 4)
    spikes[0, 0, 0, 0] = 1  # a corner: inside 4 of the 3x3 windows (padding 1) -> 4 outputs x 2 channels
    spikes[0, 0, 1, 1] = 1  # interior: inside 9 windows -> 9 x 2
    m = _Probe(spikes)
    ops = count_operations(m, [(torch.randn(1, 1, 4, 4), torch.zeros(1))])
    conv1, conv2, fc = ops.layers["conv1"], ops.layers["conv2"], ops.layers["fc"]
    # ANN twin: outputs x fan-in
    assert conv1["ann_macs"] == 16 * 9 and conv2["ann_macs"] == 32 * 9 and fc["ann_macs"] == 32 * 3
    assert conv1["snn_macs"] == 16 * 9 and conv1["snn_sops"] == 0  # analog first layer: MACs
    assert conv2["snn_sops"] == 4 * 2 + 9 * 2 and conv2["snn_macs"] == 0
    assert fc["snn_sops"] == 4 * 3  # 2 spikes x 2 channels feed the linear, each reaches 3 outputs
    assert conv2["input_event_rate"] == pytest.approx(2 / 16)
    t = ops.totals()
    assert t["snn_sops"] == 26 + 12
    assert t["ann_energy_uj"] == pytest.approx((144 + 288 + 96) * E_MAC_PJ * 1e-6)
    assert t["snn_energy_uj"] == pytest.approx((144 * E_MAC_PJ + 38 * E_AC_PJ) * 1e-6)
    assert "total" in ops.to_markdown() and ops.rows()[-1]["layer"] == "total"


def test_strided_conv_and_event_frames_are_counted_exactly():
    conv = nn.Conv2d(2, 4, 2, stride=2, bias=False)  # each input pixel reaches exactly one window
    net = TimeFolded(conv)
    x = torch.zeros(3, 1, 2, 4, 4)
    x[0, 0, 0, 0, 0] = 2.0  # two events at one pixel
    x[2, 0, 1, 3, 3] = 1.0
    ops = count_operations(net, [(x, torch.zeros(1))])
    # event-camera input: the first layer costs one accumulate per event and output channel
    assert ops.layers["0"]["snn_sops"] == (2 + 1) * 4 and ops.layers["0"]["snn_macs"] == 0


def test_layer_stats_stream_histograms_and_rates():
    torch.manual_seed(0)
    net = nn.Sequential(TimeFolded(nn.Linear(8, 16)), LIF(), TimeFolded(nn.Linear(16, 4)), LIF())
    batches = [(torch.randn(4, 5, 8), torch.zeros(5, dtype=torch.long)) for _ in range(3)]

    class Readout(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):
            return self.body(x).mean(0)

    model = Readout(net)
    st = collect_layer_stats(model, batches, bins=40, value_range=(-2, 2))
    assert set(st.layers) == {"body.1", "body.3"} and st.images == 15
    lay = st.layers["body.1"]
    assert sum(lay["hist"]) + lay["below"] + lay["above"] == 4 * 15 * 16  # every value binned once
    # firing rate and quantisation error equal a direct computation on the same batches
    from rmpsnn.neurons import MembraneRecorder

    us = []
    with MembraneRecorder(net, detach=True) as rec:
        for x, _ in batches:
            net(x)
            us.append(rec.membranes[0])
            rec.clear()
    u = torch.cat(us, 1)
    assert lay["firing_rate"] == pytest.approx(float((u >= 0.5).float().mean()), abs=1e-6)
    dis = torch.where(u >= 0.5, 1 - u, -u).abs().mean()
    assert lay["quantization_error"] == pytest.approx(float(dis), rel=1e-5)
    centres, dens = st.density("body.1")
    assert len(centres) == 40 and sum(dens) * 0.1 <= 1.0 + 1e-6
    back = LayerStats.from_dict(json.loads(json.dumps(st.to_dict())))
    assert back.layers["body.3"]["firing_rate"] == st.layers["body.3"]["firing_rate"]


def test_figures_are_written(tmp_path):
    st = LayerStats(edges=[-1.0, 0.0, 1.0, 2.0], v_th=0.5, images=1)
    st.layers = {
        "a": {
            "hist": [1, 5, 2],
            "below": 0,
            "above": 1,
            "firing_rate": 0.2,
            "quantization_error": 0.3,
            "quantization_mse": 0.1,
            "neurons": 4,
        },
    }
    files = plot_membrane_distribution({"with": st, "without": st}, tmp_path / "m")
    files += plot_firing_rates({"with": st}, tmp_path / "f")
    files += plot_training_curves({"run": [{"epoch": 1, "ce": 1.0, "test_accuracy": 0.5}]}, tmp_path / "t")
    assert len(files) == 6 and all(f.stat().st_size > 1000 for f in files)
    with pytest.raises(ValueError, match="not in every run"):
        plot_membrane_distribution({"x": st}, tmp_path / "bad", layers=["zz"])


def test_report_of_a_training_run_and_a_conversion(tmp_path, capsys):
    from rmpsnn.training import train

    run = tmp_path / "run"
    train(
        None,
        [
            "data.dataset=synthetic",
            "data.train_limit=128",
            "data.test_limit=32",
            "optim.epochs=2",
            "optim.batch_size=32",
            "model.kwargs.width=[4,8,8]",
            f"run.out={run}",
            "run.progress=off",
        ],
        log=lambda _: None,
    )
    conv = tmp_path / "conversion.json"
    conv.write_text(
        json.dumps(
            {
                "model": "ann_cpu_net",
                "ann_accuracy": 0.8,
                "test_images": 10,
                "timesteps": [1, 2, 4],
                "variants": {
                    "soft": {"accuracy": [0.1, 0.5, 0.79], "first_T_within_1pct": 4},
                    "hard": {"accuracy": [0.1, 0.3, 0.6], "first_T_within_1pct": None},
                },
            }
        )
    )
    out = tmp_path / "report"
    assert main(["report", str(run), str(conv), "--out", str(out), "--images", "32"]) == 0
    md = (out / "report.md").read_text()
    for text in (
        "## Direct training",
        "## ANN-to-SNN conversion",
        "SNN/ANN energy",
        "| 4 | 79.0 % [49.0, 94.3] | 60.0 % [31.3, 83.2] |",  # with 95 % intervals (n = 10 images)
        "figures/membrane_distribution.png",
        "stem_lif",
    ):
        assert text in md, text
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4  # curves, membranes, rates, conversion: self-contained
    assert main(["report", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "not a training run directory" in capsys.readouterr().err
