"""The run queue of navembed's instance: Dagster's ``QueuedRunCoordinator``, looked at twice a second.

Dagster's daemon launches queued runs from a loop that looks at the queue every
``dequeue_interval_seconds``, a whole number (at least 1 s; Dagster's default is 5 s), waiting in
half-second steps: a run queued just after a look waited up to 1.5 s for its launch, ~0.6 s on average.
This coordinator is Dagster's own (queue, limits, lanes, the daemon's dequeue code) with one more
setting, ``dequeue_poll_seconds``, a fraction of a second the daemon's loop uses instead (0.5 s: one
half-second step between looks). Looking at an empty queue is one small query of the run storage.
"""

from collections.abc import Mapping
from typing import Any

from dagster import Field
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._serdes import ConfigurableClassData

DEFAULT_POLL_S = 0.5


class QuickQueuedRunCoordinator(QueuedRunCoordinator):
    """``QueuedRunCoordinator`` whose queue the daemon looks at every ``dequeue_poll_seconds``."""

    def __init__(self, dequeue_poll_seconds: float = DEFAULT_POLL_S, inst_data: ConfigurableClassData | None = None,
                 **kwargs: Any) -> None:
        if not 0.1 <= dequeue_poll_seconds <= 60:
            raise ValueError(f"dequeue_poll_seconds must be between 0.1 and 60, not {dequeue_poll_seconds}")
        super().__init__(inst_data=inst_data, **kwargs)
        self._poll_s = float(dequeue_poll_seconds)

    @property
    def dequeue_interval_seconds(self) -> float:  # type: ignore[override]  # the daemon's loop takes any number
        """What the daemon's queue loop waits between looks (Dagster's is an int; its loop takes a float)."""
        return self._poll_s

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {**QueuedRunCoordinator.config_type(),
                "dequeue_poll_seconds": Field(float, is_required=False,
                                              description="Seconds between the daemon's looks at the queue.")}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value: Mapping[str, Any]) -> "QuickQueuedRunCoordinator":
        return cls(inst_data=inst_data, **config_value)
