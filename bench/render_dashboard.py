"""The chart's Grafana dashboard, rendered against real metrics into ``docs/dashboard.png``.

Grafana cannot be installed on this machine (neither Debian nor npm packages it), so this is
the nearest real thing: the real operator and real worker pods (``kubetasks worker`` processes
run by the local kubelet of the loopback control plane) serve a mixed load while a real
Prometheus (Debian's ``prometheus``, as ``localcluster/install-host-tools.sh`` installs it)
scrapes them the way the chart's ServiceMonitor and PodMonitor do. Then every panel's PromQL in
``charts/kubetasks/dashboards/kubetasks.json`` is evaluated through Prometheus' HTTP
``query_range`` and drawn with matplotlib, one plot per panel, in the dashboard's layout.
``$namespace`` and ``$taskqueue`` are "All"; ``$__rate_interval`` is ``--rate-interval``.

The load: TaskQueue ``emails`` (mail sends, and webhooks that fail 30 % of the time, with a
burst after a minute), ``reports`` (slow reports with deadlines, one slot: deadlines at risk,
then missed), ``imports`` (its worker image crash-loops: the queue is stuck) and ``legacy``
(its database Secret names a port nobody listens on: operator errors).

    python -m bench.render_dashboard [--minutes 6] [--output docs/dashboard.png]

Needs the control plane binaries (``bash localcluster/build-binaries.sh``), PostgreSQL,
``prometheus`` and matplotlib (``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench and localcluster, run as a script

import kubernetes  # noqa: E402
import yaml  # noqa: E402
from localcluster.controlplane import ControlPlane  # noqa: E402
from localcluster.operator import OperatorProcess, taskqueue  # noqa: E402
from localcluster.postgres import LocalPostgres, free_port  # noqa: E402
from localcluster.process_kubelet import IMAGE_ENTRYPOINTS, LocalKubelet  # noqa: E402

from bench import dashboard_tasks  # noqa: E402
from kubetasks.backends import PostgresBackend  # noqa: E402
from kubetasks.migrations import migrate  # noqa: E402
from kubetasks.store import Store  # noqa: E402

NAMESPACE = "demo"
DASHBOARD = REPO / "charts" / "kubetasks" / "dashboards" / "kubetasks.json"
TASKQUEUE_LABEL = "kubetasks.io/taskqueue"
WORKER_ARGS = ["--import", "bench.dashboard_tasks", "--poll-interval", "1"]


# -- the cluster, the operator and Prometheus --------------------------------------------------

def queues(dsn: str) -> list[dict[str, Any]]:
    """The four TaskQueues of the picture (see the module docstring)."""
    emails = taskqueue("emails", "emails", concurrency=4, max_replicas=3, scaleDownDelaySeconds=20,
                       scaleToZeroDelaySeconds=40, backlogDrainSeconds=20)
    reports = taskqueue("reports", "reports", concurrency=1, max_replicas=1, min_replicas=1)
    imports = taskqueue("imports", "imports", image="broken-app:1", min_replicas=1, max_replicas=1)
    legacy = taskqueue("legacy", "legacy", secret="legacy-db", max_replicas=1)
    for body in (emails, reports, imports, legacy):
        body["metadata"]["namespace"] = NAMESPACE
        body["spec"]["worker"]["args"] = WORKER_ARGS
    return [emails, reports, imports, legacy]


def set_up(cluster: ControlPlane, dsn: str) -> None:
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/taskqueues.kubetasks.io")
    cluster.kubectl("create", "namespace", NAMESPACE)
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    deadline = time.monotonic() + 60
    while not core.list_namespaced_service_account(NAMESPACE).items:  # pods need "default"
        if time.monotonic() > deadline:
            raise TimeoutError(f"no default ServiceAccount in {NAMESPACE}")
        time.sleep(0.2)
    cluster.kubectl("create", "secret", "generic", "db", "-n", NAMESPACE, f"--from-literal=url={dsn}")
    nowhere = f"postgresql://kubetasks@127.0.0.1:{free_port()}/legacy"
    cluster.kubectl("create", "secret", "generic", "legacy-db", "-n", NAMESPACE,
                    f"--from-literal=url={nowhere}")
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(queues(dsn)))


def prometheus_config(targets: Path, operator_port: int) -> dict[str, Any]:
    """What the chart's ServiceMonitor (operator) and PodMonitor (workers) make of it. Debian's
    Prometheus is built without Kubernetes discovery, so the worker pods come from a file that
    ``follow_pods`` keeps up to date, with the labels the PodMonitor's relabelling gives."""
    return {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "scrape_configs": [
            {"job_name": "kubetasks-operator-metrics", "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}]},
            {"job_name": "kubetasks-workers",
             "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "2s"}]},
        ],
    }


def pod_targets(core: kubernetes.client.CoreV1Api) -> list[dict[str, Any]]:
    """The worker pods' ``http`` ports, labelled with namespace, pod and taskqueue."""
    targets = []
    for pod in core.list_namespaced_pod(NAMESPACE, label_selector=TASKQUEUE_LABEL).items:
        if pod.status.phase != "Running" or not pod.status.pod_ip:
            continue
        ports = [p.container_port for c in pod.spec.containers for p in c.ports or [] if p.name == "http"]
        targets += [{"targets": [f"{pod.status.pod_ip}:{port}"],
                     "labels": {"namespace": NAMESPACE, "pod": pod.metadata.name,
                                "taskqueue": pod.metadata.labels[TASKQUEUE_LABEL]}}
                    for port in ports]
    return targets


def follow_pods(core: kubernetes.client.CoreV1Api, targets: Path, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        with contextlib.suppress(Exception):  # the API server busy: the next round will do
            written = targets.with_suffix(".tmp")
            written.write_text(json.dumps(pod_targets(core)))
            written.replace(targets)


@contextmanager
def prometheus_running(workdir: Path, config: dict[str, Any]) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("prometheus is missing: bash localcluster/install-host-tools.sh")
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--web.listen-address={address}",
             f"--storage.tsdb.path={workdir / 'tsdb'}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{address}"
    try:
        wait_http(f"{url}/-/ready", timeout=60)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def wait_http(url: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# -- the load -------------------------------------------------------------------------------------

def drive_load(dsn: str, seconds: float, core: kubernetes.client.CoreV1Api) -> None:
    """Mail sends and webhooks every second with a burst after a minute; four reports with
    deadlines every 10 s (12 s of work for one slot); imports that no worker will ever run; and
    two thirds in, one busy emails pod killed without a grace period (its tasks are put back)."""
    backend = PostgresBackend(Store(dsn))
    emails = dashboard_tasks.send_email.using(backend=backend)
    webhooks = dashboard_tasks.call_webhook.using(backend=backend)
    dashboard_tasks.import_rows.using(backend=backend).enqueue_many([(n,) for n in range(40)])
    started, second = time.monotonic(), 0
    while (elapsed := time.monotonic() - started) < seconds:
        emails.enqueue_many([(n,) for n in range(random.randint(8, 16))])
        webhooks.enqueue_many([(n,) for n in range(random.randint(1, 4))])
        if second == 60:
            emails.enqueue_many([(n,) for n in range(2500)])
        if second == int(seconds * 2 / 3):
            kill_a_pod(core, "emails")
        if second % 10 == 0 and elapsed < seconds - 60:
            due = timedelta(seconds=random.uniform(20, 40))
            reports = dashboard_tasks.build_report.using(backend=backend, expected_at=due)
            reports.enqueue_many([(n,) for n in range(4)])
        second += 1
        time.sleep(max(0.0, started + second - time.monotonic()))
    backend.close()


def kill_a_pod(core: kubernetes.client.CoreV1Api, taskqueue_name: str) -> None:
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"{TASKQUEUE_LABEL}={taskqueue_name}").items
    if pods:
        core.delete_namespaced_pod(pods[0].metadata.name, NAMESPACE, grace_period_seconds=0)


# -- the panels -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    legend: str
    times: list[float]
    values: list[float]


def query_range(url: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{query}", timeout=30) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {expr!r}: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def grafana_variables(expr: str, rate_interval: str) -> str:
    """The dashboard's variables as Grafana fills them with "All" selected."""
    return (expr.replace("$namespace", ".*").replace("$taskqueue", ".*")
            .replace("$__rate_interval", rate_interval))


def panel_lines(url: str, panel: dict[str, Any], window: tuple[float, float], step: float,
                rate_interval: str) -> list[Line]:
    lines = []
    for target in panel["targets"]:
        expr = grafana_variables(target["expr"], rate_interval)
        for series in query_range(url, expr, *window, step):
            legend = re.sub(r"\{\{\s*(\w+)\s*\}\}",
                            lambda m, labels=series["metric"]: labels.get(m.group(1), ""),
                            target.get("legendFormat", ""))
            points = [(float(t), float(v)) for t, v in series["values"] if math.isfinite(float(v))]
            lines.append(Line(legend, [t for t, _ in points], [v for _, v in points]))
    return lines


# -- drawing --------------------------------------------------------------------------------------

COLOURS = ["#73BF69", "#F2CC0C", "#5794F2", "#FF9830", "#F2495C", "#B877D9", "#8AB8FF", "#FADE2A",
           "#37872D", "#C4162A", "#1F60C4", "#8F3BB8"]  # Grafana's classic palette
UNITS = {"s": ("seconds", 1.0), "bytes": ("MiB", 1 / 2**20), "percentunit": ("% of a core", 100.0),
         "ops": ("per second", 1.0), "short": ("", 1.0)}


def draw(panels: list[tuple[dict[str, Any], list[Line]]], window: tuple[float, float], output: Path,
         caption: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    rows = max(p["gridPos"]["y"] // 8 for p, _ in panels) + 1
    figure, axes = plt.subplots(rows, 2, figsize=(16, 3.3 * rows + 0.8), facecolor="#111217")
    for ax in axes.flat:
        ax.set_visible(False)
    for panel, lines in panels:
        ax = axes[panel["gridPos"]["y"] // 8][panel["gridPos"]["x"] // 12]
        draw_panel(ax, panel, lines)
        ax.set_xlim(*(datetime.fromtimestamp(t, UTC) for t in window))
        ax.xaxis.set_major_locator(mdates.MinuteLocator(tz=UTC))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
    title = json.loads(DASHBOARD.read_text())["title"]
    figure.suptitle(f"{title} dashboard — {caption}", color="#ccccdc", fontsize=10, x=0.01,
                    ha="left", wrap=True)
    figure.tight_layout(rect=(0, 0, 1, 0.975))
    figure.savefig(output, dpi=80, facecolor=figure.get_facecolor())


def draw_panel(ax: Any, panel: dict[str, Any], lines: list[Line]) -> None:
    ax.set_visible(True)
    ax.set_facecolor("#181b1f")
    label, factor = UNITS.get(panel["fieldConfig"]["defaults"].get("unit", "short"), ("", 1.0))
    for index, line in enumerate(lines):
        times = [datetime.fromtimestamp(t, UTC) for t in line.times]
        ax.plot(times, [v * factor for v in line.values], color=COLOURS[index % len(COLOURS)],
                linewidth=1.4, label=line.legend)
    ax.set_title(panel["title"], color="#ccccdc", fontsize=10, loc="left")
    ax.set_ylabel(label, color="#8e8e8e", fontsize=8)
    ax.tick_params(colors="#8e8e8e", labelsize=7)
    ax.grid(color="#2c3235", linewidth=0.6)
    for spine in ax.spines.values():
        spine.set_color("#2c3235")
    if lines:
        ax.legend(loc="upper left", fontsize=6.5, facecolor="#181b1f", edgecolor="#2c3235",
                  labelcolor="#ccccdc", ncol=2 if len(lines) > 4 else 1)
    else:
        foreign = "kube_" in json.dumps(panel["targets"])
        ax.text(0.5, 0.5, "No data" + ("\n(kube-state-metrics is not run here)" if foreign else ""),
                color="#8e8e8e", ha="center", va="center", transform=ax.transAxes)


# -- the whole run ---------------------------------------------------------------------------------

Panels = list[tuple[dict[str, Any], list[Line]]]


def run(args: argparse.Namespace, workdir: Path) -> tuple[Panels, tuple[float, float], str]:
    with (LocalPostgres() as postgres, ControlPlane.start(workdir=workdir / "cluster") as cluster,
          LocalKubelet(cluster.api_client(), log_dir=workdir / "pods", namespaces=[NAMESPACE],
                       entrypoints=IMAGE_ENTRYPOINTS) as kubelet):
        kubelet.add_entrypoint("broken-app", ["sh", "-c", "echo 'cannot import app.tasks' >&2; exit 1"])
        migrate(postgres.dsn)
        set_up(cluster, postgres.dsn)
        operator = OperatorProcess(cluster, NAMESPACE, workdir)
        operator.start()
        targets, stop = workdir / "workers.json", threading.Event()
        targets.write_text("[]")
        core = kubernetes.client.CoreV1Api(cluster.api_client())
        follower = threading.Thread(target=follow_pods, args=(core, targets, stop), daemon=True)
        follower.start()
        try:
            config = prometheus_config(targets, int(operator.env["KUBETASKS_METRICS_PORT"]))
            with prometheus_running(workdir, config) as url:
                start = time.time()
                drive_load(postgres.dsn, args.minutes * 60, core)
                end = time.time()
                time.sleep(4)  # the last scrapes
                dashboard = json.loads(DASHBOARD.read_text())
                panels = [(p, panel_lines(url, p, (start, end), args.step, args.rate_interval))
                          for p in dashboard["panels"]]
        finally:
            stop.set()
            operator.stop()
    load = os.getloadavg()[0]
    caption = (f"each panel's PromQL evaluated by Prometheus (query_range) over {args.minutes:g} min of a "
               f"real operator and real worker pods, {datetime.fromtimestamp(start, UTC):%Y-%m-%d %H:%M} "
               f"UTC, {os.cpu_count()} cores, load {load:.1f};\ndrawn with matplotlib by "
               "bench/render_dashboard.py (not a Grafana screenshot: Grafana cannot be installed here)")
    return panels, (start, end), caption


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--step", type=float, default=5.0, help="query_range step, seconds")
    parser.add_argument("--rate-interval", default="30s", help="what $__rate_interval becomes")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "dashboard.png")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, TSDB)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kubetasks-dashboard-"))
    try:
        panels, window, caption = run(args, workdir)
        draw(panels, window, args.output, caption)
        for panel, lines in panels:
            print(f"{panel['title']}: {len(lines)} series")
        print(f"wrote {args.output}")
    finally:
        if args.keep:
            print(f"work directory: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
