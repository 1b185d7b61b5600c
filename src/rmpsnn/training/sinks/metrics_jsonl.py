"""``metrics.jsonl``: one JSON record per epoch, the per-layer quantisation errors included."""

from __future__ import annotations

import json

from ...io import write_text
from ..rundir import read_metrics
from .base import SINKS, Sink


class JsonlSink(Sink):
    def __init__(self, path):
        self.path = path

    def start(self, resume: bool, epochs_done: int) -> None:
        if resume:
            recs = [r for r in read_metrics(self.path) if r["epoch"] <= epochs_done]
            write_text(self.path, "".join(json.dumps(r) + "\n" for r in recs))

    def epoch_end(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


@SINKS.register("jsonl", help="metrics.jsonl: every epoch's full record")
def jsonl_sink(trainer) -> JsonlSink:
    return JsonlSink(trainer.run_dir / "metrics.jsonl")
