"""What a real node changes on this machine, captured before and put back after.

A kubelet and containerd leave marks on the host: sysctls the kubelet rewrites, iptables
chains, mounts (its root directory, containers' root filesystems, pods' volumes), network
links and namespaces, cgroups, and shim processes that outlive containerd. ``HostState``
captures the part of the host they touch; ``restore`` undoes every difference that belongs
to the node (its work directory, its links, the ``kubepods`` cgroups), so a test run leaves
the machine as it found it, also when it failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The kubelet sets these when protectKernelDefaults is off (its default).
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_DEPTH = 3
NETNS_DIR = Path("/var/run/netns")
NODE_PROCESSES = ("kubelet", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc")


@dataclass(frozen=True)
class HostState:
    sysctls: dict[str, str] = field(default_factory=dict)
    iptables: dict[str, list[str]] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)

    @classmethod
    def capture(cls) -> HostState:
        return cls(
            sysctls={name: _read_sysctl(name) for name in SYSCTLS},
            iptables={f"{tool} {table}": _iptables_rules(tool, table)
                      for tool in IPTABLES for table in TABLES},
            links=sorted(os.listdir("/sys/class/net")),
            netns=sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else [],
            mounts=sorted({mount for mount, _ in _mounts()}),
            # The node's cgroups are the kubelet's kubepods tree (cgroupfs driver); others that
            # the machine's own processes create and remove meanwhile are not the node's doing.
            cgroups=sorted(c for c in _cgroup_dirs()
                           if any(part.startswith("kubepods") for part in Path(c).parts)),
            processes=sorted(f"{pid} {comm}" for pid, comm, _ in _node_processes()),
        )

    def differences(self, other: HostState) -> dict[str, dict[str, object]]:
        """What changed from ``self`` to ``other``, field by field (empty when the same)."""
        changed: dict[str, dict[str, object]] = {}
        for name, before in asdict(self).items():
            after = asdict(other)[name]
            if before == after:
                continue
            if isinstance(before, dict):
                changed[name] = {
                    key: {"before": before.get(key), "after": after.get(key)}
                    for key in sorted(set(before) | set(after))
                    if before.get(key) != after.get(key)
                }
            else:
                changed[name] = {"added": sorted(set(after) - set(before)),
                                 "removed": sorted(set(before) - set(after))}
        return changed

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> HostState:
        return cls(**json.loads(path.read_text()))


def restore(before: HostState, *, workdir: Path, links: Iterable[str]) -> list[str]:
    """Undo what a node in ``workdir`` changed since ``before``; returns what was done."""
    done: list[str] = []
    done += _stop_processes(workdir)
    done += _remove_netns(before)
    done += _unmount_under(workdir)
    done += _delete_links(links)
    done += _restore_sysctls(before)
    done += _restore_iptables(before)
    done += _remove_cgroups(before)
    return done


# -- reading the host ---------------------------------------------------------------


def _read_sysctl(name: str) -> str:
    return Path("/proc/sys", *name.split(".")).read_text().strip()


def _iptables_rules(tool: str, table: str) -> list[str]:
    try:
        result = subprocess.run([tool, "-w", "-t", table, "-S"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return []
    return result.stdout.splitlines() if result.returncode == 0 else []


def _mounts() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of this mount namespace, in mount order."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        found.append((fields[4].encode().decode("unicode_escape"), fields[separator + 1]))
    return found


def _cgroup_dirs() -> set[str]:
    found: set[str] = set()
    if not CGROUP_ROOT.is_dir():
        return found
    for hierarchy in CGROUP_ROOT.iterdir():
        if not hierarchy.is_dir() or hierarchy.is_symlink():
            continue
        for root, dirs, _ in os.walk(hierarchy):
            depth = len(Path(root).relative_to(hierarchy).parts)
            if depth >= CGROUP_DEPTH:
                dirs.clear()
            found.update(str(Path(root, name).relative_to(CGROUP_ROOT)) for name in dirs)
    return found


def _node_processes() -> list[tuple[int, str, str]]:
    """(pid, command name, command line) of the kubelet, containerd and shims on the host."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm not in NODE_PROCESSES:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append((int(entry.name), comm, cmdline))
    return found


# -- putting it back ----------------------------------------------------------------


def _stop_processes(workdir: Path) -> list[str]:
    """SIGKILL what still runs from the node's work directory (shims outlive containerd), again
    until none is left: containerd may have started a shim (a container's cleanup) while the
    first ones were killed, and on a busy machine that one outlives a single sweep."""
    killed: dict[int, str] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mine = [(pid, comm) for pid, comm, cmdline in _node_processes() if str(workdir) in cmdline]
        if not mine:
            break
        for pid, comm in mine:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed[pid] = comm
        time.sleep(0.1)
    return [f"killed {comm} ({pid})" for pid, comm in killed.items()]


def _remove_netns(before: HostState) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    done = []
    for name in sorted(set(os.listdir(NETNS_DIR)) - set(before.netns)):
        # Only the network namespaces of the node's pods: the CRI names them cni-<uuid>.
        if name.startswith("cni-"):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
            done.append(f"deleted network namespace {name}")
    return done


def _unmount_under(workdir: Path) -> list[str]:
    prefix = str(workdir.resolve())
    mine = [mount for mount, _ in _mounts() if mount == prefix or mount.startswith(prefix + "/")]
    done = []
    # Deepest and newest first: a mount may sit inside another one.
    for mount in sorted(mine, key=lambda path: (path.count("/"), path), reverse=True):
        result = subprocess.run(["umount", mount], capture_output=True, text=True)
        if result.returncode != 0:
            subprocess.run(["umount", "-l", mount], capture_output=True)
        done.append(f"unmounted {mount}")
    return done


def _delete_links(links: Iterable[str]) -> list[str]:
    done = []
    present = set(os.listdir("/sys/class/net"))
    for link in links:
        if link in present:
            subprocess.run(["ip", "link", "delete", link], capture_output=True)
            done.append(f"deleted link {link}")
    return done


def _restore_sysctls(before: HostState) -> list[str]:
    done = []
    for name, value in before.sysctls.items():
        if _read_sysctl(name) != value:
            Path("/proc/sys", *name.split(".")).write_text(value)
            done.append(f"{name} = {value}")
    return done


def _restore_iptables(before: HostState) -> list[str]:
    """Delete the rules and chains added since ``before`` (the kubelet's KUBE-* chains)."""
    done = []
    for tool in IPTABLES:
        for table in TABLES:
            old = set(before.iptables.get(f"{tool} {table}", []))
            added = [rule for rule in _iptables_rules(tool, table) if rule not in old]
            for rule in reversed([rule for rule in added if rule.startswith("-A ")]):
                subprocess.run([tool, "-w", "-t", table, "-D", *shlex.split(rule)[1:]], capture_output=True)
                done.append(f"{tool} -t {table} -D {rule[3:]}")
            for rule in [rule for rule in added if rule.startswith("-N ")]:
                chain = rule.split()[1]
                subprocess.run([tool, "-w", "-t", table, "-F", chain], capture_output=True)
                subprocess.run([tool, "-w", "-t", table, "-X", chain], capture_output=True)
                done.append(f"{tool} -t {table} -X {chain}")
    return done


def _remove_cgroups(before: HostState) -> list[str]:
    """rmdir the kubelet's kubepods cgroups, deepest first, once their processes are gone."""
    old = set(before.cgroups)
    done = []
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else []:
        for top in ("kubepods", "kubepods.slice"):
            tree = hierarchy / top
            if not tree.is_dir() or str(tree.relative_to(CGROUP_ROOT)) in old:
                continue
            for root, _, _ in sorted(os.walk(tree), key=lambda walked: walked[0].count("/"), reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(root)
            done.append(f"removed cgroup {tree}")
    return done
