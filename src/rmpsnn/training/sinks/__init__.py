"""Metric sinks of a training run, one file each (JSONL, CSV, TensorBoard, the progress bar);
importing this package registers them in :data:`SINKS`."""

from . import metrics_csv, metrics_jsonl, progress, tensorboard
from .base import SINKS, Sink

__all__ = ["SINKS", "Sink", "metrics_csv", "metrics_jsonl", "progress", "tensorboard"]
