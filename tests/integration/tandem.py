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


# ======================================================================
# Session sync: a pair with a sync block, `tandemctl sync`, and tsessions.
# (test_sync.py; anything that needs sessions that survive a failover.)
# ======================================================================

import json as _json  # noqa: E402
import os as _os  # noqa: E402
import select as _select  # noqa: E402
import signal as _signal  # noqa: E402

SYNC_PORT = 7400
PAIR_PEER = {"lb1": "lb2", "lb2": "lb1"}
PAIR_PRIO = {"lb1": 150, "lb2": 100}
PAIR_VRID = 51
PAIR_INTERVAL_MS = 200


def write_auth_key(lab, name="pair-auth.key"):
    """A fresh 0600 key file in the lab's state dir; returns its path."""
    path = lab.state_dir / name
    fd = _os.open(path, _os.O_WRONLY | _os.O_CREAT | _os.O_TRUNC, 0o600)
    with _os.fdopen(fd, "w") as f:
        f.write(_os.urandom(24).hex() + "\n")
    _os.chmod(path, 0o600)
    return path


def render_vrrp(node, key, priority=None, interval_ms=PAIR_INTERVAL_MS, preempt=True,
                vrid=PAIR_VRID, extra=""):
    """The "front" vrrp-group of node: the VIP on eth0, unicast adverts to
    the peer on both heartbeat paths (front and direct link)."""
    peer = PAIR_PEER[node]
    lines = ["vrrp-group front {", f"    id {vrid}", "    interface eth0",
             f"    vip {lablib.VIP}/32",
             f"    priority {priority if priority is not None else PAIR_PRIO[node]}",
             f"    advert-interval {interval_ms}ms",
             f"    preempt {'on' if preempt else 'off'}",
             f"    peer {ADDR[peer]}", f"    peer {lablib.DIRECT[peer]}",
             f"    auth-key {key}", "    garp-count 3", "    garp-interval 20ms"]
    lines += ["    " + ln.strip() for ln in extra.strip().splitlines() if ln.strip()]
    lines.append("}")
    return "\n".join(lines)


def render_sync(node, port=SYNC_PORT, handover=True, extra=""):
    """The sync block of node: listen on its direct-link address, the peer's
    direct-link address as the peer (the lab's dedicated link)."""
    peer = PAIR_PEER[node]
    lines = ["sync {", f"    listen {lablib.DIRECT[node]}:{port}",
             f"    peer {lablib.DIRECT[peer]}:{port}",
             f"    shutdown-handover {'on' if handover else 'off'}"]
    lines += ["    " + ln.strip() for ln in extra.strip().splitlines() if ln.strip()]
    lines.append("}")
    return "\n".join(lines)


# Long enough that no idle session is closed by the proxy during a test or
# a benchmark round.
SESSION_TIMEOUTS = "timeout-client 10m\ntimeout-server 10m\ntimeout-idle 10m"


class SyncNode(Tandemd):
    """tandemd in a pair: the front vrrp-group, a sync block, the echo
    backend and the echo frontend on the VIP (source vip). The boot epoch
    file lives in the lab's state dir. frontend_extra / backend_extra are
    added to the echo blocks (a config drift between the nodes, say)."""

    def __init__(self, lab, node, key, priority=None, preempt=True, vrrp_extra="",
                 sync_extra="", frontend_extra="", backend_extra="", handover=True,
                 workers=2, interval_ms=PAIR_INTERVAL_MS):
        body = "\n\n".join([
            render_vrrp(node, key, priority, interval_ms, preempt, extra=vrrp_extra),
            render_sync(node, handover=handover, extra=sync_extra),
            render_backend("echo", extra=backend_extra),
            render_frontend("echo", ECHO_FE_PORT, "echo",
                            extra=SESSION_TIMEOUTS + "\n" + frontend_extra),
        ])
        super().__init__(lab, node, body, workers=workers)
        text = self.conf.read_text().replace(
            "    control ", f"    boot-epoch-file {lab.state_dir}/{node}.epoch\n"
            "    control ", 1)
        self.conf.write_text(text)
        self.crashed_on_purpose = False

    def state(self, group="front"):
        """The group's STATE column from tandemctl status, or None."""
        r = self.ctl("status", check=False)
        if r.returncode != 0:
            return None
        lines = r.stdout.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("GROUP "):
                heads = line.split()
                for row in lines[i + 1:]:
                    if not row.strip():
                        break
                    cols = row.split()
                    if cols[0] == group:
                        return dict(zip(heads, cols)).get("STATE")
        return None

    def sync_raw(self):
        """tandemctl sync: (exit status, text)."""
        r = self.ctl("sync", check=False)
        return r.returncode, r.stdout + r.stderr

    def sync(self):
        """tandemctl sync parsed by parse_sync(); TestFailure if it fails."""
        rc, text = self.sync_raw()
        if rc != 0:
            raise TestFailure(f"tandemctl sync on {self.node}: rc {rc}: {text.strip()[-300:]}")
        return parse_sync(text)


def parse_sync(text):
    """`tandemctl sync` as {key: {"raw": str, "n": first number or None,
    "words": [...], name: number...}}: for "shadow: 201 entries max 100000
    evicted 0", d["shadow"]["n"] == 201 and d["shadow"]["max"] == 100000;
    for "takeovers: 1 restored 201 ...", d["takeovers"]["restored"] == 201."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z][a-z-]*):\s*(.*)$", line.strip())
        if not m:
            continue
        words = m.group(2).split()
        d = {"raw": m.group(2), "words": words, "n": None}
        for i, w in enumerate(words):
            num = _number(w)
            if num is None:
                continue
            if d["n"] is None:
                d["n"] = num
            if i > 0 and _number(words[i - 1]) is None:
                d.setdefault(words[i - 1], num)
        out[m.group(1)] = d
    return out


def _number(w):
    try:
        return int(w)
    except ValueError:
        try:
            return float(w)
        except ValueError:
            return None


def sync_value(info, key, field="n"):
    """A number from parse_sync()'s result; TestFailure when missing."""
    if key not in info:
        raise TestFailure(f"tandemctl sync has no '{key}:' line (has {sorted(info)})")
    v = info[key].get(field)
    if v is None:
        raise TestFailure(f"tandemctl sync '{key}: {info[key]['raw']}' has no {field}")
    return v


def has_vip(lab, node):
    r = lab.exec(node, "ip", "-4", "-o", "addr", "show", "dev", "eth0", check=False)
    return f" {lablib.VIP}/" in r.stdout


def has_carrier(lab, node):
    r = lab.exec(node, "ip", "-o", "link", "show", "dev", "eth0", check=False)
    return "LOWER_UP" in r.stdout


def vip_holders(lab):
    """Nodes with the VIP on an eth0 that has carrier: a node cut off by
    node-loss keeps the address, but nobody can reach it there."""
    return [n for n in ("lb1", "lb2") if has_vip(lab, n) and has_carrier(lab, n)]


def eth0_mac(lab, node):
    return lab.exec(node, "cat", "/sys/class/net/eth0/address").stdout.strip()


def client_vip_neigh(lab):
    """The client's neighbour entry for the VIP: lladdr or None."""
    r = lab.exec("client", "ip", "-4", "neigh", "show", lablib.VIP, check=False)
    m = re.search(r"lladdr ([0-9a-f:]+)", r.stdout)
    return m.group(1) if m else None


class Sessions:
    """tsessions in the client namespace, driven through a FIFO; each
    command returns its JSON report as a dict. Killed with the lab."""

    def __init__(self, lab, target, conns=200, streams=1, node="client", name="sessions",
                 **opts):
        self.lab = lab
        self.fifo = lab.state_dir / f"{name}.ctl"
        if self.fifo.exists():
            self.fifo.unlink()
        _os.mkfifo(self.fifo, 0o600)
        args = ["--target", target, "--conns", conns, "--stream", streams,
                "--control", self.fifo]
        for k, v in opts.items():
            args += [f"--{k.replace('_', '-')}", v]
        self.proc = lab.spawn(node, str(lablib.tool_path("tsessions")), *args,
                              stdout=subprocess.PIPE,
                              log=str(lab.state_dir / f"{name}.stderr"))
        self._buf = b""
        self._ctl = None
        self.reports = []

    def _read_report(self, what, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure(f"tsessions: no answer to '{what}' within {timeout}s")
            r, _, _ = _select.select([fd], [], [], left)
            if not r:
                continue
            chunk = _os.read(fd, 65536)
            if not chunk:
                rc = self.proc.poll()
                raise TestFailure(f"tsessions exited (rc {rc}) before answering '{what}'")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            rep = _json.loads(line)
        except ValueError:
            raise TestFailure(f"tsessions: bad JSON {line[:200]!r}")
        if rep.get("cmd") == "error":
            raise TestFailure(f"tsessions refused '{what}': {rep.get('error')}")
        self.reports.append(rep)
        return rep

    def opened(self, timeout=30):
        """The start-up report, once every connection is open (or failed)."""
        rep = self._read_report("open", timeout)
        # The tool holds the FIFO open read-write: opening it for writing
        # never blocks now.
        self._ctl = _os.open(self.fifo, _os.O_WRONLY | _os.O_NONBLOCK)
        return rep

    def cmd(self, line, timeout=30):
        if self._ctl is None:
            raise TestFailure("tsessions: command before the open report")
        _os.write(self._ctl, (line + "\n").encode())
        return self._read_report(line, timeout)

    def check(self, size=None, timeout=60):
        return self.cmd("check" if size is None else f"check {size}", timeout)

    def inflight(self, size):
        return self.cmd(f"inflight {size}")

    def stats(self):
        return self.cmd("stats")

    def quit(self, timeout=15):
        rep = self.cmd("quit", timeout)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.lab.kill(self.proc)
        self.close()
        return rep

    def close(self):
        if self._ctl is not None:
            _os.close(self._ctl)
            self._ctl = None
        if self.proc.poll() is None:
            self.lab.kill(self.proc, _signal.SIGTERM)


def sessions_summary(rep):
    """"ok 200 reset 0 ..." of a tsessions report, for messages."""
    keys = ("ok", "reset", "eof", "hung", "mismatch", "refused", "unreachable", "other")
    s = " ".join(f"{k} {rep.get(k)}" for k in keys if rep.get(k))
    st = rep.get("streams") or []
    if st:
        s += "; stream " + ", ".join(
            f"{x['state']} verified {x['verified']} max-stall {x['max_stall_ms']:.0f}ms"
            + (f" ({x['why']} at {x['at']}s)" if x["state"] != "ok" else "") for x in st)
    if rep.get("failures"):
        s += f"; first failures {rep['failures'][:3]}"
    return s
