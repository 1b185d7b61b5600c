"""``tensorboard/`` event files of the scalar columns (``run.tensorboard=true``)."""

from __future__ import annotations

from ...errors import ConfigError
from .base import SINKS, Sink


class TensorBoardSink(Sink):
    def __init__(self, log_dir, columns: list[str]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigError(
                "run.tensorboard=true needs the tensorboard package: pip install tensorboard"
            ) from e
        self.writer = SummaryWriter(str(log_dir))
        self.columns = [c for c in columns if c not in ("epoch", "global_step")]

    def epoch_end(self, record: dict) -> None:
        for k in self.columns:
            if record.get(k) is not None:
                self.writer.add_scalar(k, record[k], record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@SINKS.register("tensorboard", help="TensorBoard scalars (run.tensorboard=true)")
def tensorboard_sink(trainer) -> TensorBoardSink | None:
    return (
        TensorBoardSink(trainer.run_dir / "tensorboard", trainer.columns)
        if trainer.cfg.run.tensorboard
        else None
    )
