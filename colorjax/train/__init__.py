"""Training: state, pure jitted steps, and the loop with checkpoints and metrics."""

from colorjax.train.loop import TrainResult, train, train_and_evaluate
from colorjax.train.state import TrainState, TrainTask, create_state, make_task

__all__ = [
    "TrainResult",
    "TrainState",
    "TrainTask",
    "create_state",
    "make_task",
    "train",
    "train_and_evaluate",
]
