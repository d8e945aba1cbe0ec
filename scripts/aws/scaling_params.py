"""The autoscaling numbers `gen3d deploy` configures, in one place.

`gen3d cost` reads the same object, so the idle tail it bills for (alarm periods plus
cooldowns before a scale-in to zero) is exactly what the deploy scripts set up.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AsyncScaling:
    min_instances: int = 0
    # Target tracking on ApproximateBacklogSizePerInstance: scale out above this backlog.
    backlog_target_per_instance: float = 5.0
    scale_in_cooldown_s: int = 600
    scale_out_cooldown_s: int = 300
    # Application Auto Scaling's own scale-in alarm for target tracking: it fires after
    # this many consecutive one-minute datapoints below target (AWS fixes 15 x 60 s).
    target_tracking_scale_in_datapoints: int = 15
    target_tracking_period_s: int = 60
    # Step scaling from zero: alarm on HasBacklogWithoutCapacity >= 1.
    backlog_alarm_period_s: int = 60
    backlog_alarm_evaluation_periods: int = 1
    step_adjustment_instances: int = 1
    step_cooldown_s: int = 300

    @property
    def idle_tail_s(self) -> float:
        """Seconds an instance stays billed after its last result before it is removed:
        the target-tracking scale-in alarm's consecutive below-target datapoints. The
        scale-in cooldown does not add to it: it only spaces one scale-in from the next,
        and the last instance's removal is the first scale-in after a scale-out. (The
        alarm also counts datapoints taken while a short burst is processed, so for a
        one-request burst this over-bills by up to one processing time; the alarm's
        evaluation lag, not modelled, works the other way.)"""
        alarm = self.target_tracking_scale_in_datapoints * self.target_tracking_period_s
        return float(alarm)

    @property
    def scale_out_trigger_s(self) -> float:
        """Seconds from the first queued request to the scale-out decision from zero."""
        return float(self.backlog_alarm_period_s * self.backlog_alarm_evaluation_periods)


ASYNC_SCALING = AsyncScaling()
