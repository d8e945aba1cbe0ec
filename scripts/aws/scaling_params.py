"""The autoscaling numbers `gen3d deploy` configures, in one place.

`gen3d cost` reads the same object, so the idle tail it bills for (the empty-backlog
alarm's minutes before a scale-in to zero) is exactly what the deploy scripts set up.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DEFAULT_IDLE_MINUTES = 3
IDLE_MINUTES_RANGE = (1, 60)


@dataclass(frozen=True)
class AsyncScaling:
    min_instances: int = 0
    # Target tracking on ApproximateBacklogSizePerInstance: scale out above this backlog.
    # Its own scale-in is disabled (DisableScaleIn): the empty-backlog alarm below is the
    # only path that removes instances, and it fires only when nothing is queued or being
    # processed (docs/deploy.md, "Scaling in, and the races").
    backlog_target_per_instance: float = 5.0
    target_tracking_disable_scale_in: bool = True
    scale_in_cooldown_s: int = 600
    scale_out_cooldown_s: int = 300
    # Application Auto Scaling's own scale-in alarm for target tracking fires after this
    # many consecutive one-minute datapoints below target (AWS fixes 15 x 60 s). Not used
    # by async endpoints any more; inference components still scale in this way, and the
    # cost report compares against it.
    target_tracking_scale_in_datapoints: int = 15
    target_tracking_period_s: int = 60
    # Step scaling from zero: alarm on HasBacklogWithoutCapacity >= 1.
    backlog_alarm_period_s: int = 60
    backlog_alarm_evaluation_periods: int = 1
    step_adjustment_instances: int = 1
    step_cooldown_s: int = 300
    # Scale-in to zero: alarm on Maximum ApproximateBacklogSize < 1 (nothing queued and
    # nothing in process) for `idle_minutes` consecutive one-minute periods.
    idle_minutes: int = DEFAULT_IDLE_MINUTES
    idle_alarm_period_s: int = 60
    scale_in_step_cooldown_s: int = 60

    def __post_init__(self) -> None:
        low, high = IDLE_MINUTES_RANGE
        if not low <= self.idle_minutes <= high:
            raise ValueError(f"idle minutes must be {low}-{high}, not {self.idle_minutes}")

    def with_idle_minutes(self, minutes: int) -> AsyncScaling:
        return replace(self, idle_minutes=minutes)

    @property
    def idle_tail_s(self) -> float:
        """Seconds an async instance stays billed after its last result before it is
        removed: the empty-backlog alarm's `idle_minutes` whole periods, plus on average
        half a period, because the period in which the last result is written still
        counts that request (its Maximum is >= 1) and is not empty. The time AWS then
        takes to evaluate the alarm and stop the instance is not modelled."""
        return float(self.idle_minutes * self.idle_alarm_period_s + self.idle_alarm_period_s / 2)

    @property
    def target_tracking_tail_s(self) -> float:
        """The tail of a scale-in left to target tracking (before this alarm existed, and
        still for inference components): its scale-in alarm's consecutive below-target
        datapoints. The scale-in cooldown does not add to it: it only spaces one
        scale-in from the next."""
        return float(self.target_tracking_scale_in_datapoints * self.target_tracking_period_s)

    @property
    def scale_out_trigger_s(self) -> float:
        """Seconds from the first queued request to the scale-out decision from zero."""
        return float(self.backlog_alarm_period_s * self.backlog_alarm_evaluation_periods)


ASYNC_SCALING = AsyncScaling()
