"""The local kubelet runs pods of the real API server as local processes, as a kubelet would."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException
from localcluster.controlplane import ControlPlane
from localcluster.polling import wait_until
from localcluster.process_kubelet import LocalKubelet
from localcluster.processes import alive

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("local_kubelet")]

RECORDER = [sys.executable, str(Path(__file__).with_name("recorder.py"))]
MERGE_PATCH = "application/merge-patch+json"


def recorder_container(
    out_dir: Path, *, env: list[dict[str, Any]] | None = None, **spec: Any
) -> dict[str, Any]:
    """A container running recorder.py, with the downward-API variables it records."""
    downward = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "APP_LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "OUT_DIR", "value": str(out_dir)},
    ]
    return {"name": "main", "image": "recorder", "command": RECORDER, "env": downward + (env or []), **spec}


def create_pod(core: kubernetes.client.CoreV1Api, namespace: str, name: str, **spec: Any) -> None:
    core.create_namespaced_pod(
        namespace, {"metadata": {"name": name, "labels": {"app": name}}, "spec": spec}, _preload_content=False
    )


def read_pod(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> dict[str, Any]:
    return dict(json.loads(core.read_namespaced_pod(name, namespace, _preload_content=False).data))


def record_of(out_dir: Path, pod: str) -> dict[str, Any]:
    return dict(json.loads((out_dir / f"{pod}.json").read_text()))


def pod_gone(core: kubernetes.client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, namespace, _preload_content=False)
    except ApiException as error:
        return bool(error.status == 404)
    return False


def test_deployment_scales_local_processes_up_and_down(
    api_client: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    apps = kubernetes.client.AppsV1Api(api_client)
    core = kubernetes.client.CoreV1Api(api_client)
    labels = {"app": "recorders"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "recorders"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 5,
                        "containers": [recorder_container(tmp_path)],
                    },
                },
            },
        },
    )

    def scale(replicas: int) -> None:
        apps.patch_namespaced_deployment_scale(
            "recorders", namespace, {"spec": {"replicas": replicas}}, _content_type=MERGE_PATCH
        )

    def running_pods() -> list[kubernetes.client.V1Pod]:
        return [
            pod
            for pod in core.list_namespaced_pod(namespace, label_selector="app=recorders").items
            if pod.status.phase == "Running" and not pod.metadata.deletion_timestamp
        ]

    wait_until(
        lambda: (
            apps.read_namespaced_deployment(namespace=namespace, name="recorders").status.observed_generation
        ),
        what="the deployment controller to see the Deployment",
    )
    assert core.list_namespaced_pod(namespace).items == []

    scale(3)
    pods = wait_until(
        lambda: (
            found
            if len(found := running_pods()) == 3 and all(p.status.container_statuses[0].ready for p in found)
            else None
        ),
        timeout=60,
        what="3 ready recorder pods",
    )
    records = {
        name: wait_until(functools.partial(record_of, tmp_path, name), what=f"the record of {name}")
        for name in (pod.metadata.name for pod in pods)
    }

    for pod in pods:
        env, pid = records[pod.metadata.name]["env"], records[pod.metadata.name]["pid"]
        assert alive(pid)
        assert pod.status.container_statuses[0].container_id == f"local://{pid}"
        assert env["POD_NAME"] == pod.metadata.name
        assert env["POD_NAMESPACE"] == namespace
        assert env["POD_UID"] == pod.metadata.uid
        assert env["POD_IP"] == pod.status.pod_ip
        assert env["NODE_NAME"] == pod.spec.node_name == "kubetasks-local"
        assert env["APP_LABEL"] == "recorders"
        assert env["HOSTNAME"] == pod.metadata.name
        assert {c.type: c.status for c in pod.status.conditions} == {
            "PodReadyToStartContainers": "True",
            "Initialized": "True",
            "Ready": "True",
            "ContainersReady": "True",
            "PodScheduled": "True",
        }
    pod_ips = [pod.status.pod_ip for pod in pods]
    assert len(set(pod_ips)) == 3
    assert all(ip.startswith("127.0.") for ip in pod_ips)

    scale(1)
    wait_until(
        lambda: len(core.list_namespaced_pod(namespace).items) == 1, timeout=60, what="scale-in to 1 pod"
    )

    (survivor,) = core.list_namespaced_pod(namespace).items
    for name, record in records.items():
        if name == survivor.metadata.name:
            assert alive(record["pid"])
        else:
            assert not alive(record["pid"])
            # Scale-in is a graceful deletion: the process saw SIGTERM before it went.
            assert (tmp_path / f"{name}.term").exists()


def test_deleting_a_pod_sends_sigterm_and_removes_it(
    api_client: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    create_pod(
        core, namespace, "polite", terminationGracePeriodSeconds=30, containers=[recorder_container(tmp_path)]
    )
    pid = wait_until(lambda: record_of(tmp_path, "polite")["pid"], what="the recorder to start")

    started = time.monotonic()
    core.delete_namespaced_pod("polite", namespace)
    wait_until(lambda: pod_gone(core, namespace, "polite"), timeout=20, what="the pod object to disappear")

    # The process left on SIGTERM, so the pod went long before its 30 s grace period.
    assert time.monotonic() - started < 15
    assert not alive(pid)
    assert (tmp_path / "polite.term").read_text().split()[0] == str(pid)


def test_a_pod_ignoring_sigterm_is_killed_after_its_grace_period(
    api_client: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    container = recorder_container(tmp_path, env=[{"name": "ON_SIGTERM", "value": "ignore"}])
    create_pod(core, namespace, "stubborn", terminationGracePeriodSeconds=3, containers=[container])
    pid = wait_until(lambda: record_of(tmp_path, "stubborn")["pid"], what="the recorder to start")

    started = time.monotonic()
    core.delete_namespaced_pod("stubborn", namespace)
    wait_until((tmp_path / "stubborn.term").exists, timeout=10, what="SIGTERM to arrive")
    time.sleep(1)
    assert alive(pid), "the process was killed before its grace period ended"
    wait_until(lambda: not alive(pid), timeout=15, what="SIGKILL after the grace period")
    killed_after = time.monotonic() - started
    wait_until(lambda: pod_gone(core, namespace, "stubborn"), timeout=15, what="the pod object to disappear")

    assert 3 - 0.5 <= killed_after < 3 + 8


def test_a_crashing_container_is_restarted_with_a_growing_restart_count(
    control_plane: ControlPlane,
    api_client: kubernetes.client.ApiClient,
    local_kubelet: LocalKubelet,
    namespace: str,
    tmp_path: Path,
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    container = recorder_container(tmp_path, env=[{"name": "EXIT_CODE", "value": "3"}])
    create_pod(core, namespace, "crasher", restartPolicy="Always", containers=[container])

    def restarted_twice() -> dict[str, Any] | None:
        statuses = read_pod(core, namespace, "crasher")["status"].get("containerStatuses") or [{}]
        return statuses[0] if statuses[0].get("restartCount", 0) >= 2 else None

    status = wait_until(restarted_twice, timeout=30, what="two restarts")
    pod = read_pod(core, namespace, "crasher")

    assert pod["status"]["phase"] == "Running"
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["reason"] == "Error"
    # Every run appended to the same log file, which `kubectl logs` reads too.
    wait_until(
        lambda: local_kubelet.pod_log(namespace, "crasher").count("recorder crasher started") >= 3,
        what="three runs in the log",
    )
    logs = control_plane.kubectl("logs", "crasher", "-n", namespace, "--tail=1").stdout
    assert logs.startswith("recorder crasher started as pid ")


@pytest.mark.parametrize(("exit_code", "phase"), [(0, "Succeeded"), (4, "Failed")])
def test_a_pod_that_never_restarts_ends_with_its_exit_code(
    api_client: kubernetes.client.ApiClient, namespace: str, tmp_path: Path, exit_code: int, phase: str
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    container = recorder_container(tmp_path, env=[{"name": "EXIT_CODE", "value": str(exit_code)}])
    create_pod(core, namespace, "once", restartPolicy="Never", containers=[container])

    pod = wait_until(
        lambda: p if (p := read_pod(core, namespace, "once"))["status"].get("phase") == phase else None,
        timeout=30,
        what=f"phase {phase}",
    )

    (status,) = pod["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == exit_code
    assert status["restartCount"] == 0
    ready = {c["type"]: c for c in pod["status"]["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")


def test_env_comes_from_secrets_config_maps_and_other_variables(
    api_client: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "db"}, "stringData": {"url": "postgresql://db/app"}}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"QUEUE": "emails", "CONCURRENCY": "4"}}
    )
    env: list[dict[str, Any]] = [
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
        {"name": "QUEUE_NAME", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "QUEUE"}}},
        {"name": "MISSING", "valueFrom": {"secretKeyRef": {"name": "db", "key": "nope", "optional": True}}},
        {"name": "WORKER_ID", "value": "$(POD_NAME)-$(QUEUE_NAME)"},
        {"name": "LITERAL", "value": "$$(POD_NAME)"},
    ]
    container = recorder_container(
        tmp_path, env=env, envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}]
    )
    create_pod(core, namespace, "configured", containers=[container])

    recorded = wait_until(lambda: record_of(tmp_path, "configured")["env"], what="the recorder to start")

    assert recorded["DATABASE_URL"] == "postgresql://db/app"
    assert recorded["QUEUE_NAME"] == "emails"
    assert "MISSING" not in recorded
    assert recorded["WORKER_ID"] == "configured-emails"
    assert recorded["LITERAL"] == "$(POD_NAME)"
    assert (recorded["CFG_QUEUE"], recorded["CFG_CONCURRENCY"]) == ("emails", "4")


def test_a_missing_secret_holds_the_container_until_it_exists(
    api_client: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    env = [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "later", "key": "url"}}}]
    create_pod(core, namespace, "patient", containers=[recorder_container(tmp_path, env=env)])

    def waiting() -> dict[str, Any] | None:
        statuses = read_pod(core, namespace, "patient")["status"].get("containerStatuses") or [{}]
        state: dict[str, Any] | None = statuses[0].get("state", {}).get("waiting")
        return state

    state = wait_until(waiting, what="the container to wait for its secret")
    assert state["reason"] == "CreateContainerConfigError"
    assert "'later' not found" in state["message"]

    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "later"}, "stringData": {"url": "postgresql://x"}}
    )
    recorded = wait_until(lambda: record_of(tmp_path, "patient")["env"], what="the recorder to start")
    assert recorded["DATABASE_URL"] == "postgresql://x"


def test_an_image_runs_its_entrypoint_or_fails_with_a_clear_message(
    api_client: kubernetes.client.ApiClient, local_kubelet: LocalKubelet, namespace: str, tmp_path: Path
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    local_kubelet.add_entrypoint("example.org/tools/greeter", [sys.executable, "-c"])
    greeter = {
        "name": "main",
        "image": "example.org/tools/greeter:1.0",
        "args": ["print('hello from the entrypoint')"],
    }
    create_pod(core, namespace, "greeter", restartPolicy="Never", containers=[greeter])
    create_pod(
        core,
        namespace,
        "unknown",
        restartPolicy="Never",
        containers=[{"name": "main", "image": "ghcr.io/acme/unknown:2"}],
    )
    create_pod(
        core,
        namespace,
        "no-binary",
        restartPolicy="Never",
        containers=[{"name": "main", "image": "any", "command": ["/no/such/binary"]}],
    )

    def phase_of(name: str) -> str | None:
        phase: str | None = read_pod(core, namespace, name)["status"].get("phase")
        return phase

    wait_until(lambda: phase_of("greeter") == "Succeeded", what="the greeter to succeed")
    wait_until(lambda: phase_of("unknown") == "Failed", what="the unknown image to fail")
    wait_until(lambda: phase_of("no-binary") == "Failed", what="the missing binary to fail")

    assert "hello from the entrypoint" in local_kubelet.pod_log(namespace, "greeter", "main")
    unknown = read_pod(core, namespace, "unknown")
    assert unknown["status"]["reason"] == "ErrImageNeverPull"
    assert "no entrypoint for image 'ghcr.io/acme/unknown:2'" in unknown["status"]["message"]
    assert unknown["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    no_binary = read_pod(core, namespace, "no-binary")["status"]
    assert no_binary["reason"] == "RunContainerError"
    assert no_binary["message"].startswith("cannot run '/no/such/binary': [Errno 2] No such file")


SERVER = r"""
import http.server, os, pathlib
ready_file = pathlib.Path(os.environ["READY_FILE"])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ready":
            code = 200 if ready_file.exists() else 503
        else:
            code = 500 if os.environ.get("SICK") else 200
        self.send_response(code)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer((os.environ["POD_IP"], 8080), Handler).serve_forever()
"""


def server_pod(name: str, ready_file: Path, *, sick: bool = False) -> dict[str, Any]:
    env = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "READY_FILE", "value": str(ready_file)},
    ]
    if sick:
        env.append({"name": "SICK", "value": "1"})
    probe = {"periodSeconds": 1, "failureThreshold": 2}
    return {
        "containers": [
            {
                "name": "server",
                "image": "server",
                "command": [sys.executable, "-c", SERVER],
                "env": env,
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, **probe},
                "livenessProbe": {"httpGet": {"path": "/alive", "port": 8080}, **probe},
            }
        ],
        "terminationGracePeriodSeconds": 2,
    }


def test_readiness_probe_gates_the_ready_condition(
    api_client: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    ready_file = tmp_path / "ready"
    create_pod(core, namespace, "server", **server_pod("server", ready_file))

    def ready_condition() -> str | None:
        pod = read_pod(core, namespace, "server")
        if pod["status"].get("phase") != "Running":
            return None
        return str({c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"])

    wait_until(lambda: ready_condition() == "False", what="a running, unready server")
    time.sleep(2)
    assert ready_condition() == "False"

    ready_file.touch()
    wait_until(lambda: ready_condition() == "True", timeout=15, what="the server to become ready")
    (status,) = read_pod(core, namespace, "server")["status"]["containerStatuses"]
    assert status["restartCount"] == 0


def test_failing_liveness_probe_restarts_the_container(
    api_client: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    create_pod(core, namespace, "sick", **server_pod("sick", tmp_path / "ready", sick=True))

    def restarts() -> int:
        statuses = read_pod(core, namespace, "sick")["status"].get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0))

    assert wait_until(lambda: restarts() >= 1, timeout=30, what="a restart after liveness failures")
