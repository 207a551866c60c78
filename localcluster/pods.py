"""One pod's containers run as local processes, and the status a kubelet reports for them.

``PodRun.sync`` is called again and again by the kubelet's loop: it starts what
should run, restarts what exited (as ``restartPolicy`` says, with back-off),
acts on probes, and on deletion stops the processes (SIGTERM, then SIGKILL after
the grace period). ``PodRun.status`` is the pod's ``status`` as the kubelet
would write it.
"""

from __future__ import annotations

import datetime
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .podenv import Container, ContainerConfigError, DataReader, Pod, container_argv, container_env
from .probes import Prober
from .processes import signal_group, spawn

# A config error for a pod that may restart is tried again after this long.
CONFIG_RETRY_SECONDS = 2.0


class RunContainerError(ContainerConfigError):
    """The command could not be executed (no such file, not executable)."""

    reason = "RunContainerError"


def rfc3339_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """What every pod run shares: how to find commands, values and a place for logs."""

    entrypoints: Mapping[str, Sequence[str]]
    inherited_env: Mapping[str, str]
    read: DataReader
    cwd: Path
    host_ip: str
    log_path: Callable[[str, str, str], Path]
    backoff: tuple[float, float]  # first restart delay, longest delay


class ContainerRun:
    """The successive processes of one container of a pod."""

    def __init__(self, spec: Container) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at: str | None = None
        self.terminated: dict[str, Any] | None = None  # how the latest process ended
        self.last_state: dict[str, Any] | None = None  # how the one before it ended
        self.waiting: tuple[str, str] | None = ("ContainerCreating", "")
        self.restart_count = 0
        self.start_at: float | None = 0.0  # monotonic time of the next start, None for never
        self.kill_at: float | None = None  # monotonic time to SIGKILL a process that was sent SIGTERM
        self.probers: dict[str, Prober] = {}
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None

    @property
    def ready(self) -> bool:
        readiness = self.probers.get("readiness")
        return self.running and self.kill_at is None and (readiness is None or readiness.healthy is True)

    @property
    def liveness_failed(self) -> bool:
        liveness = self.probers.get("liveness")
        return liveness is not None and liveness.healthy is False

    def start(
        self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path, probers: dict[str, Prober]
    ) -> None:
        if self.terminated is not None:
            self.last_state, self.terminated = self.terminated, None
            self.restart_count += 1
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("ab")
        try:
            self.process = spawn(argv, output=self._log, env=env, cwd=cwd)
        except OSError as error:
            self._log.close()
            raise RunContainerError(f"cannot run {argv[0]!r}: {error}") from error
        self.started_at = rfc3339_now()
        self.waiting = None
        self.start_at = self.kill_at = None
        self.probers = probers
        for prober in probers.values():
            prober.start()

    def reap(self) -> bool:
        """Notice that the process exited; True the first time it is seen gone."""
        if self.process is None or (code := self.process.poll()) is None:
            return False
        # The leader is gone; anything it left in its group goes with it.
        signal_group(self.process, signal.SIGKILL)
        terminated: dict[str, Any] = {
            "exitCode": code if code >= 0 else 128 - code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": self.started_at,
            "finishedAt": rfc3339_now(),
            "containerID": self.container_id,
        }
        if code < 0:
            terminated["signal"] = -code
        self.terminated = terminated
        self.process = None
        self.kill_at = None
        for prober in self.probers.values():
            prober.stop()
        self.probers = {}
        if self._log is not None:
            self._log.close()
            self._log = None
        return True

    def stop(self, *, grace: float, now: float) -> None:
        """SIGTERM now (once), SIGKILL once ``grace`` seconds have passed."""
        self.start_at = None
        if self.process is None:
            return
        if self.kill_at is None:
            signal_group(self.process, signal.SIGTERM)
            self.kill_at = now + grace
        elif now >= self.kill_at:
            signal_group(self.process, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL at once and wait for the process (the kubelet is going away)."""
        self.start_at = None
        if self.process is not None:
            signal_group(self.process, signal.SIGKILL)
            self.process.wait()
            self.reap()

    @property
    def container_id(self) -> str:
        return f"local://{self.process.pid}" if self.process else ""

    def status(self) -> dict[str, Any]:
        last_state = self.last_state
        if self.process is not None:
            state: dict[str, Any] = {"running": {"startedAt": self.started_at}}
        elif self.waiting is not None:
            reason, message = self.waiting
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
            # Waiting to restart: the run that just ended is the last state.
            last_state = self.terminated or last_state
        else:
            state = {"terminated": self.terminated}
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": self.container_id or (self.terminated or {}).get("containerID", ""),
            "ready": self.ready,
            "started": self.running,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": last_state} if last_state else {},
        }


class PodRun:
    """A pod bound to the local node: its containers, its IP, and the status to report."""

    def __init__(self, pod: Pod, *, pod_ip: str, runtime: Runtime) -> None:
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.namespace: str = pod["metadata"]["namespace"]
        self.name: str = pod["metadata"]["name"]
        self.pod_ip = pod_ip
        self.runtime = runtime
        self.containers = [ContainerRun(spec) for spec in pod["spec"]["containers"]]
        self.start_time = rfc3339_now()
        self.failure: tuple[str, str] | None = None  # reason, message of a pod that cannot run
        self._transitions: dict[str, tuple[str, str]] = {}
        if pod["spec"].get("initContainers"):
            self.failure = ("InitContainersUnsupported", "the local kubelet does not run init containers")

    @property
    def restart_policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy") or "Always")

    @property
    def deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    @property
    def stopped(self) -> bool:
        return not any(container.running for container in self.containers)

    def sync(self, now: float) -> None:
        """One step toward what the spec asks: start, restart, probe, or stop the processes."""
        for container in self.containers:
            exited = container.reap()
            if self.deleting:
                grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
                container.stop(grace=float(grace if grace is not None else self._grace), now=now)
                continue
            if exited and self._restarts(container):
                low, high = self.runtime.backoff
                delay = min(low * 2**container.restart_count, high)
                container.start_at = now + delay
                container.waiting = (
                    "CrashLoopBackOff",
                    f"back-off {delay:g}s restarting failed container={container.name} pod={self.name}",
                )
            if container.running and (container.liveness_failed or container.kill_at is not None):
                # Stopped for failing its liveness probe; restarted on exit as the policy says.
                container.stop(grace=self._grace, now=now)
            elif self.failure is None and container.start_at is not None and now >= container.start_at:
                self._start(container, now)

    def kill(self) -> None:
        for container in self.containers:
            container.kill()

    def _restarts(self, container: ContainerRun) -> bool:
        policy = self.restart_policy
        exit_code = (container.terminated or {}).get("exitCode", 0)
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    @property
    def _grace(self) -> float:
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def _start(self, container: ContainerRun, now: float) -> None:
        runtime = self.runtime
        try:
            env = container_env(
                self.pod, container.spec, pod_ip=self.pod_ip, host_ip=runtime.host_ip, read=runtime.read
            )
            argv = container_argv(container.spec, entrypoints=runtime.entrypoints, env=env)
            ports = {
                p["name"]: p["containerPort"] for p in container.spec.get("ports") or [] if p.get("name")
            }
            process_env = {**runtime.inherited_env, "HOSTNAME": self.name, **env}
            probers = {
                kind: Prober(kind, probe, pod_ip=self.pod_ip, ports=ports, env=process_env)
                for kind, probe in (
                    ("readiness", container.spec.get("readinessProbe")),
                    ("liveness", container.spec.get("livenessProbe")),
                )
                if probe
            }
            workdir = Path(container.spec["workingDir"]) if container.spec.get("workingDir") else runtime.cwd
            log = runtime.log_path(self.namespace, self.name, container.name)
            container.start(argv, env=process_env, cwd=workdir, log=log, probers=probers)
        except ContainerConfigError as error:
            container.waiting = (error.reason, str(error))
            if self.restart_policy == "Never":
                self.failure = (error.reason, str(error))
                container.start_at = None
            else:
                container.start_at = now + CONFIG_RETRY_SECONDS

    # -- status ------------------------------------------------------------------

    def phase(self) -> str:
        if self.failure is not None:
            return "Failed"
        if any(container.started_at is None for container in self.containers):
            return "Pending"
        if any(container.running or container.start_at is not None for container in self.containers):
            return "Running"
        codes = [(container.terminated or {}).get("exitCode", 0) for container in self.containers]
        return "Succeeded" if all(code == 0 for code in codes) else "Failed"

    def status(self) -> dict[str, Any]:
        """The pod's ``status``, written whole (a merge patch replaces its lists)."""
        phase = self.phase()
        terminal = phase in ("Succeeded", "Failed")
        ready = phase == "Running" and all(container.ready for container in self.containers)
        not_ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
        conditions = [
            self._condition("PodReadyToStartContainers", not terminal),
            self._condition("Initialized", True),
            self._condition("Ready", ready, None if ready else not_ready_reason),
            self._condition("ContainersReady", ready, None if ready else not_ready_reason),
            self._condition("PodScheduled", True),
        ]
        reason, message = self.failure or (None, None)
        return {
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.runtime.host_ip,
            "hostIPs": [{"ip": self.runtime.host_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "containerStatuses": [container.status() for container in self.containers],
            "reason": reason,
            "message": message,
        }

    def _condition(self, kind: str, true: bool, reason: str | None = None) -> dict[str, Any]:
        status = "True" if true else "False"
        previous = self._transitions.get(kind)
        if previous is None or previous[0] != status:
            self._transitions[kind] = (status, rfc3339_now())
        condition: dict[str, Any] = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self._transitions[kind][1],
        }
        if reason:
            condition["reason"] = reason
        return condition
