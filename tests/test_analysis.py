from rmpsnn.analysis import plot_accuracy_vs_timesteps


def test_accuracy_plot_writes_png_and_svg(tmp_path):
    ts = [1, 2, 4, 8]
    files = plot_accuracy_vs_timesteps(
        {"soft": (ts, [0.1, 0.4, 0.7, 0.8]), "hard": (ts, [0.1, 0.2, 0.5, 0.7])},
        tmp_path / "curve.json",
        ann_accuracy={"soft": 0.82, "hard": 0.82},
    )
    assert [f.name for f in files] == ["curve.png", "curve.svg"]
    assert files[0].read_bytes()[:4] == b"\x89PNG"
    svg = files[1].read_text()
    assert "soft" in svg and "ANN of soft, hard: 82.0 %" in svg  # one line for the shared ANN, in the legend
