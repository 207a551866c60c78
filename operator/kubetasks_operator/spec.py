"""The TaskQueue spec as a validated, frozen value (the CRD's schema is the contract; this
mirrors its defaults so that a spec read before defaulting means the same thing)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kubetasks.parsing import parse_duration
from kubetasks_operator.pod_template import PodTemplate

GROUP = "kubetasks.io"
VERSION = "v1alpha1"
PLURAL = "taskqueues"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubetasks"}
QUEUE_LABEL = "kubetasks.io/queue"
TASKQUEUE_LABEL = "kubetasks.io/taskqueue"


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class SecretRef(Model):
    name: str = Field(min_length=1)
    key: str = Field(default="url", min_length=1)


class Database(Model):
    secret_ref: SecretRef = Field(alias="secretRef")


class Worker(Model):
    image: str = Field(min_length=1, pattern=r"^\S+$")
    image_pull_policy: str | None = Field(default=None, alias="imagePullPolicy")
    args: tuple[str, ...] = ()
    concurrency: int = Field(default=4, ge=1, le=256)
    grace_period_seconds: int = Field(default=30, ge=1, le=3600, alias="gracePeriodSeconds")
    health_port: int = Field(default=8000, ge=1, le=65535, alias="healthPort")
    service_account_name: str | None = Field(default=None, alias="serviceAccountName")
    env: tuple[dict[str, Any], ...] = ()
    env_from: tuple[dict[str, Any], ...] = Field(default=(), alias="envFrom")
    resources: dict[str, Any] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: tuple[dict[str, Any], ...] = ()
    pod_labels: dict[str, str] = Field(default_factory=dict, alias="podLabels")
    pod_annotations: dict[str, str] = Field(default_factory=dict, alias="podAnnotations")
    pod_security_context: dict[str, Any] = Field(default_factory=dict, alias="podSecurityContext")
    security_context: dict[str, Any] = Field(default_factory=dict, alias="securityContext")
    automount_service_account_token: bool = Field(default=False,
                                                  alias="automountServiceAccountToken")


class Scaling(Model):
    min_replicas: int = Field(default=0, ge=0, le=1000, alias="minReplicas")
    max_replicas: int = Field(default=10, ge=1, le=1000, alias="maxReplicas")
    scale_down_delay_seconds: int = Field(default=60, ge=0, alias="scaleDownDelaySeconds")
    scale_to_zero_delay_seconds: int = Field(default=300, ge=0, alias="scaleToZeroDelaySeconds")
    pod_startup_seconds: int = Field(default=15, ge=0, alias="podStartupSeconds")
    poll_interval_seconds: float = Field(default=2.0, ge=0.2, le=300, alias="pollIntervalSeconds")
    backlog_drain_seconds: int = Field(default=60, ge=0, le=86400, alias="backlogDrainSeconds")

    @model_validator(mode="after")
    def bounds(self) -> Scaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"scaling.minReplicas ({self.min_replicas}) must not exceed "
                             f"scaling.maxReplicas ({self.max_replicas})")
        return self


class LostTasks(Model):
    max_lost: int = Field(default=3, ge=0, le=100, alias="maxLost")
    heartbeat_timeout_seconds: int = Field(default=120, ge=10, alias="heartbeatTimeoutSeconds")
    sweep_interval_seconds: int = Field(default=30, ge=1, alias="sweepIntervalSeconds")


class Retention(Model):
    successful: str = Field(default="7d", pattern=r"^[0-9]+(s|m|h|d)$")
    failed: str = Field(default="30d", pattern=r"^[0-9]+(s|m|h|d)$")


class Rate(Model):
    starts: int = Field(ge=1, le=1_000_000)
    period: str = Field(pattern=r"^0*[1-9][0-9]*(s|m|h|d)$")


class Limits(Model):
    max_running: int | None = Field(default=None, ge=1, le=1_000_000, alias="maxRunning")
    rate: Rate | None = None


class ScheduleSpec(Model):
    """One entry of ``spec.schedules``: a task enqueued on a cron expression or an interval."""

    name: str = Field(min_length=1, max_length=200)
    task: str = Field(min_length=1, max_length=500)
    cron: str | None = Field(default=None, min_length=1, max_length=200)
    every: str | None = Field(default=None, pattern=r"^[0-9]+(s|m|h|d)$")
    time_zone: str = Field(default="UTC", min_length=1, alias="timeZone")
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=-100, le=100)
    max_attempts: int = Field(default=1, ge=1, le=1000, alias="maxAttempts")
    missed: Literal["skip", "run_once"] = "skip"

    @model_validator(mode="after")
    def cron_or_every(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every is None):
            raise ValueError(f"schedule {self.name!r} needs either cron or every, not both and "
                             "not neither")
        return self


class TaskQueueSpec(Model):
    queue_name: str | None = Field(default=None, alias="queueName",
                                   pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
    database: Database
    worker: Worker
    pod_template: PodTemplate = Field(default_factory=PodTemplate, alias="podTemplate")
    scaling: Scaling = Field(default_factory=Scaling)
    lost_tasks: LostTasks = Field(default_factory=LostTasks, alias="lostTasks")
    retention: Retention = Field(default_factory=Retention)
    schedules: tuple[ScheduleSpec, ...] = ()
    paused: bool = False
    limits: Limits = Field(default_factory=Limits)


class InvalidSpec(ValueError):
    """A TaskQueue spec the operator cannot act on; the message says what to fix."""


def parse_spec(spec: Any) -> TaskQueueSpec:
    try:
        return TaskQueueSpec.model_validate(dict(spec))
    except ValidationError as error:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise InvalidSpec(problems) from None


def queue_name(spec: TaskQueueSpec, taskqueue_name: str) -> str:
    return spec.queue_name or taskqueue_name


def parse_retention(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError:
        raise InvalidSpec(f"retention {text!r} is invalid: use e.g. 90s, 15m, 12h or 7d") from None
