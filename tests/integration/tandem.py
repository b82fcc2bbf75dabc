"""Run tandemd on a lab node and talk to it (config, tandemctl, metrics).

Shared by the integration tests; the lab itself is lablib's.
"""

import re
import subprocess
import time

import lablib
from lablib import ADDR, TestFailure, wait_until

ECHO_FE_PORT = 7000
HTTP_FE_PORT = 80


def render_backend(name, algorithm="roundrobin", servers=None, port=None,
                   check=None, extra=""):
    """A backend block. servers: list of (name, weight or None, state or None)."""
    servers = servers or [("be1", None, None), ("be2", None, None), ("be3", None, None)]
    port = port or (lablib.ECHO_PORT if name == "echo" else lablib.HTTP_PORT)
    lines = [f"backend {name} {{", f"    algorithm {algorithm}"]
    if check:
        lines.append("    health-check {")
        lines += [f"        {k} {v}" for k, v in check.items()]
        lines.append("    }")
    for line in extra.strip().splitlines():
        lines.append("    " + line.strip())
    for srv, weight, state in servers:
        s = f"    server {srv} {ADDR[srv]}:{port}"
        if weight is not None:
            s += f" weight {weight}"
        if state is not None:
            s += f" state {state}"
        lines.append(s)
    lines.append("}")
    return "\n".join(lines)


def render_frontend(name, port, backend, extra=""):
    lines = [f"frontend {name} {{", f"    bind {lablib.VIP}:{port}", "    mode tcp",
             f"    backend {backend}", "    source vip"]
    for line in extra.strip().splitlines():
        lines.append("    " + line.strip())
    lines.append("}")
    return "\n".join(lines)


class Tandemd:
    """One tandemd on a lab node, with its config written to the lab's state dir."""

    def __init__(self, lab, node, body, workers=2):
        self.lab = lab
        self.node = node
        self.sock = str(lab.state_dir / f"{node}.sock")
        self.conf = lab.state_dir / f"{node}.conf"
        self.metrics_addr = f"{ADDR[node]}:9100"
        self.conf.write_text(
            f"node {{\n    name {node}\n    workers {workers}\n"
            f"    control {self.sock}\n    metrics {self.metrics_addr}\n}}\n\n"
            + body + "\n")
        self.proc = None

    def start(self, wait=True):
        self.proc = self.lab.spawn(self.node, str(lablib.build_path("daemon", "tandemd")),
                                   "-f", str(self.conf),
                                   log=str(self.lab.log(f"tandemd-{self.node}.log")))
        if wait:
            wait_until(lambda: self._ctl_ok() or self.proc.poll() is not None,
                       timeout=10, what=f"tandemd on {self.node} to answer")
            if self.proc.poll() is not None:
                raise TestFailure(f"tandemd on {self.node} exited {self.proc.returncode}: "
                                  + self.log()[-2000:])
        return self

    def stop(self):
        if self.proc is not None:
            rc = self.lab.kill(self.proc)
            self.proc = None
            return rc
        return None

    def log(self):
        path = self.lab.log(f"tandemd-{self.node}.log")
        return path.read_text(errors="replace") if path.exists() else ""

    def ctl(self, *args, check=True):
        r = self.lab.exec(self.node, str(lablib.build_path("daemon", "ctl", "tandemctl")),
                          "-s", self.sock, *args, check=False)
        if check and r.returncode != 0:
            raise TestFailure(f"tandemctl {' '.join(args)}: rc {r.returncode}: "
                              f"{r.stdout}{r.stderr}")
        return r

    def _ctl_ok(self):
        return self.ctl("status", check=False).returncode == 0

    def metrics(self):
        """Samples as {(name, frozenset(labels.items())): value}."""
        r = self.lab.exec("client", "python3", "-c",
                          "import urllib.request,sys;"
                          f"sys.stdout.write(urllib.request.urlopen('http://{self.metrics_addr}"
                          "/metrics',timeout=3).read().decode())")
        out = {}
        for line in r.stdout.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
            if not m:
                raise TestFailure(f"bad metrics line {line!r}")
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
        return out

    def server_metric(self, name, backend, server):
        m = self.metrics()
        for (n, labels), v in m.items():
            d = dict(labels)
            if n == name and d.get("backend") == backend and d.get("server") == server:
                return v
        raise TestFailure(f"no metric {name} for {backend}/{server}")

    def server_state(self, backend, server):
        """The state word from tandemctl servers."""
        out = self.ctl("servers").stdout
        section = None
        for line in out.splitlines():
            m = re.match(r"^backend (\S+) ", line)
            if m:
                section = m.group(1)
                continue
            cols = line.split()
            if section == backend and cols and cols[0] == server:
                return cols[2]
        raise TestFailure(f"server {backend}/{server} not in tandemctl servers:\n{out}")


def wait_state(td, backend, server, state, timeout):
    """Wait for a server state; returns the seconds it took."""
    t0 = time.monotonic()
    wait_until(lambda: td.server_state(backend, server) == state, timeout=timeout,
               interval=0.02, what=f"{backend}/{server} {state}")
    return time.monotonic() - t0


def validate(lab, text, name="check.conf"):
    """tandemd -c on a config text; returns (rc, output)."""
    path = lab.state_dir / name
    path.write_text(text)
    r = subprocess.run([str(lablib.build_path("daemon", "tandemd")), "-c", str(path)],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr
