"""``metrics.csv``: the scalar columns of each epoch's record (``trainer.columns``)."""

from __future__ import annotations

import csv
import io

from ...io import write_text
from .base import SINKS, Sink


class CsvSink(Sink):
    def __init__(self, path, columns: list[str]):
        self.path, self.columns = path, columns

    def _write(self, rows: list[dict], mode: str) -> None:
        if mode == "w":  # the whole table at once, atomically (a resume keeps the epochs done)
            table = io.StringIO(newline="")
            w = csv.DictWriter(table, fieldnames=self.columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
            write_text(self.path, table.getvalue())
            return
        new = not self.path.exists()
        with open(self.path, mode, newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerows(rows)

    def start(self, resume: bool, epochs_done: int) -> None:
        if resume:
            rows = []
            if self.path.exists():
                with open(self.path, newline="") as f:
                    rows = [r for r in csv.DictReader(f) if r.get("epoch") and int(r["epoch"]) <= epochs_done]
            self._write(rows, "w")

    def epoch_end(self, record: dict) -> None:
        self._write([record], "a")


@SINKS.register("csv", help="metrics.csv: the scalar columns of every epoch")
def csv_sink(trainer) -> CsvSink:
    return CsvSink(trainer.run_dir / "metrics.csv", trainer.columns)
