"""lablib — helpers for tandem's integration tests (python3 stdlib only).

A test file defines functions named test_*; a test that takes a parameter
named ``lab`` gets a fresh lab (scripts/lab up) that is removed after it, pass
or fail. The file ends with::

    if __name__ == "__main__":
        lablib.main(globals())

and running it prints one line per test (``ok NAME``, ``FAIL NAME: why``,
``skip NAME: why``) and exits 1 if any failed, 77 (skip) if not root.
``python3 test_x.py test_a test_b`` runs only those tests.

Build outputs come from $TANDEM_BUILD (default <repo>/build, i.e.
/work/main/build). Set TANDEM_LAB_KEEP=1 to leave a failed test's lab up for
debugging (remove it later with ``scripts/lab down PREFIX``).
"""

import atexit
import inspect
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]
LAB_SCRIPT = SRC / "scripts" / "lab"
LAB_RUN = Path("/run/tandem-lab")

NODES = ("sw", "client", "lb1", "lb2", "be1", "be2", "be3")
HOSTS = NODES[1:]
BACKENDS = ("be1", "be2", "be3")
ADDR = {
    "client": "198.18.0.10",
    "lb1": "198.18.0.2",
    "lb2": "198.18.0.3",
    "be1": "198.18.0.21",
    "be2": "198.18.0.22",
    "be3": "198.18.0.23",
}
DIRECT = {"lb1": "198.18.1.1", "lb2": "198.18.1.2"}
VIP = "198.18.0.100"
ECHO_PORT = 7000
HTTP_PORT = 8080

DEFAULT_TEST_TIMEOUT = 120


class TestFailure(AssertionError):
    """A check failed; the runner prints its message."""


class Skip(Exception):
    """Raise to skip a test (e.g. a missing build output)."""


class LabError(RuntimeError):
    """scripts/lab or a command run through it failed."""


def build_dir():
    """The meson build directory: $TANDEM_BUILD or <repo>/build."""
    return Path(os.environ.get("TANDEM_BUILD", str(SRC / "build")))


def build_path(*parts):
    """Path of a build output, e.g. build_path("daemon", "tandemd")."""
    return build_dir().joinpath(*parts)


def tool_path(name):
    """tests/tools/<name> in the build dir; Skip if it was not built."""
    p = build_path("tests", "tools", name)
    if not os.access(p, os.X_OK):
        raise Skip(f"{p} not built (set TANDEM_BUILD)")
    return p


# ------------------------------------------------------------------ cleanup

_active_labs = []
_handlers_installed = False


def _on_signal(signum, frame):
    # Unwind through every `with Lab()` (and finally:) so labs come down.
    raise SystemExit(128 + signum)


def _install_handlers():
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)
    atexit.register(_down_all)


def _down_all():
    for lab in list(_active_labs):
        try:
            lab.down()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            print(f"lablib: removing lab {lab.prefix}: {e}", file=sys.stderr)


# ------------------------------------------------------------------ the lab

class ToolRun:
    """A tclient running in the background (Lab.tool_spawn)."""

    def __init__(self, lab, proc, mode):
        self.lab = lab
        self.proc = proc
        self.mode = mode

    def wait(self, timeout=60):
        """Wait for the tool to finish; return its JSON report."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.lab.kill(self.proc)
            raise TestFailure(f"tclient {self.mode} still running after {timeout}s")
        return _parse_report(self.mode, self.proc.returncode, out, err)

    def stop(self, timeout=15):
        """SIGTERM the tool (a hold goes to its final check); return its report."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def ready(self, timeout=10):
        """hold: wait for its ready line on stderr; returns the parsed event."""
        deadline = time.monotonic() + timeout
        line = b""
        fd = self.proc.stderr.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            ch = os.read(fd, 1)
            if not ch:
                break
            if ch == b"\n":
                try:
                    ev = json.loads(line)
                    if ev.get("event") == "ready":
                        return ev
                except ValueError:
                    pass
                line = b""
            else:
                line += ch
        raise TestFailure(f"tclient {self.mode}: no ready event within {timeout}s")


def _parse_report(mode, rc, out, err):
    out = out.decode(errors="replace") if isinstance(out, bytes) else (out or "")
    err = err.decode(errors="replace") if isinstance(err, bytes) else (err or "")
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if rc != 0 or not lines:
        raise TestFailure(f"tclient {mode} exited {rc}: {err.strip()[-500:]}")
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise TestFailure(f"tclient {mode}: bad JSON {lines[-1][:200]!r}")


class Lab:
    """One lab (scripts/lab up ... down). Use as a context manager.

    lab.prefix       the namespace prefix; lab.ns("lb1") the namespace name
    lab.state_dir    /run/tandem-lab/<prefix> (logs, pid files)
    """

    def __init__(self, prefix=None, keep=None):
        self.prefix = prefix
        self.keep = keep if keep is not None else os.environ.get("TANDEM_LAB_KEEP") == "1"
        self.state_dir = None
        self._procs = []
        self._up = False
        self.failed = False

    # -- life cycle
    def up(self):
        _install_handlers()
        args = [str(LAB_SCRIPT), "up"] + ([self.prefix] if self.prefix else [])
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise LabError(f"scripts/lab up failed: {r.stderr.strip()}")
        self.prefix = r.stdout.strip().splitlines()[-1]
        self.state_dir = LAB_RUN / self.prefix
        self._up = True
        _active_labs.append(self)
        return self

    def down(self):
        """Kill what we spawned (by pid), then scripts/lab down. Idempotent."""
        if not self._up:
            return
        for p in self._procs:
            self.kill(p)
        self._procs.clear()
        r = subprocess.run([str(LAB_SCRIPT), "down", self.prefix],
                           capture_output=True, text=True, timeout=60)
        self._up = False
        if self in _active_labs:
            _active_labs.remove(self)
        if r.returncode != 0:
            raise LabError(f"scripts/lab down {self.prefix}: {r.stderr.strip()}")

    def __enter__(self):
        return self.up()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.keep and exc_type is not SystemExit:
            for p in self._procs:
                self.kill(p)
            print(f"lablib: keeping lab {self.prefix} (scripts/lab down {self.prefix})",
                  file=sys.stderr)
            if self in _active_labs:
                _active_labs.remove(self)
            return False
        self.down()
        return False

    # -- running things
    def ns(self, node):
        if node not in NODES:
            raise LabError(f"unknown node {node!r} (nodes: {' '.join(NODES)})")
        return f"{self.prefix}{node}"

    def lab(self, *args, check=True, timeout=30):
        """Run scripts/lab -p PREFIX ARGS...; returns CompletedProcess (text)."""
        r = subprocess.run([str(LAB_SCRIPT), "-p", self.prefix, *map(str, args)],
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise LabError(f"scripts/lab {' '.join(map(str, args))}: {r.stderr.strip()}")
        return r

    def exec(self, node, *cmd, check=True, timeout=30, input=None):
        """Run cmd in node's namespace and wait; CompletedProcess (text)."""
        r = subprocess.run(["ip", "netns", "exec", self.ns(node), *map(str, cmd)],
                           capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise LabError(f"{node}: {' '.join(map(str, cmd))} exited {r.returncode}: "
                           f"{(r.stderr or r.stdout).strip()[-500:]}")
        return r

    def spawn(self, node, *cmd, stdout=None, stderr=None, log=None):
        """Start cmd in node's namespace; returns the Popen.

        Output goes to stdout/stderr if given, else to the log file `log`
        (default <state_dir>/<node>-<name>-<n>.log, in proc.log_path). The
        process is SIGTERMed, then SIGKILLed, by pid when the lab goes down.
        """
        ns = self.ns(node)
        proc_log = None
        if stdout is None or stderr is None:
            name = Path(str(cmd[0])).name
            proc_log = Path(log) if log else \
                self.state_dir / f"{node}-{name}-{len(self._procs)}.log"
            fh = open(proc_log, "ab")
        try:
            p = subprocess.Popen(["ip", "netns", "exec", ns, *map(str, cmd)],
                                 stdin=subprocess.DEVNULL,
                                 stdout=stdout if stdout is not None else fh,
                                 stderr=stderr if stderr is not None else fh,
                                 start_new_session=True)
        finally:
            if proc_log is not None:
                fh.close()
        p.log_path = proc_log
        self._procs.append(p)
        return p

    def kill(self, proc, sig=signal.SIGTERM, timeout=5):
        """Stop one spawned process by pid; returns its exit status."""
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        try:
            return proc.wait(5)
        except subprocess.TimeoutExpired:
            return None

    # -- tclient
    def tool_args(self, mode, *args):
        return [str(tool_path("tclient")), mode, *map(str, args)]

    def tool(self, mode, *args, node="client", timeout=None):
        """Run tclient MODE ARGS in node (default client); its JSON as a dict."""
        cmd = ["ip", "netns", "exec", self.ns(node), *self.tool_args(mode, *args)]
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=timeout or 400)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"tclient {mode} did not finish in {timeout}s")
        return _parse_report(mode, r.returncode, r.stdout, r.stderr)

    def tool_spawn(self, mode, *args, node="client"):
        """Start tclient in the background; .wait()/.stop() give its JSON."""
        p = self.spawn(node, *self.tool_args(mode, *args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return ToolRun(self, p, mode)

    def ping(self, node, addr, count=3, timeout_ms=300):
        """ICMP echo from node; returns the number of replies."""
        return self.tool("ping", "--addr", addr, "--count", count,
                         "--timeout", timeout_ms, node=node)["received"]

    def connect_ok(self, node, addr, port, timeout_ms=500):
        """Does one TCP connect from node to addr:port succeed?"""
        r = self.tool("probe", "--addr", f"{addr}:{port}", "--duration", 0.01,
                      "--interval", 10, "--timeout", timeout_ms, node=node)
        return r["ok"] == r["probes"] and r["probes"] > 0

    def wait_listening(self, node, addr, port, timeout=5.0):
        """Wait until a TCP connect from node to addr:port succeeds."""
        wait_until(lambda: self.connect_ok(node, addr, port, timeout_ms=200),
                   timeout=timeout, interval=0.05, what=f"{addr}:{port} from {node}")

    # -- backends and faults (thin wrappers over scripts/lab)
    def start_backends(self):
        self.lab("backends-start")

    def backend_kill(self, be):
        self.lab("backend-kill", be)

    def backend_start(self, be):
        self.lab("backend-start", be)

    def health_fail(self, be):
        self.lab("health-fail", be)

    def health_ok(self, be):
        self.lab("health-ok", be)

    def node_loss(self, node):
        self.lab("node-loss", node)

    def node_restore(self, node):
        self.lab("node-restore", node)

    def link_cut(self, node):
        self.lab("link-cut", node)

    def link_restore(self):
        self.lab("link-restore")

    def netem(self, node, loss=None, delay=None, direction=None):
        """loss in percent, delay in ms, direction 'out'|'in'|'both'."""
        args = ["netem", node]
        if loss is not None:
            args += ["loss", f"{loss}%"]
        if delay is not None:
            args += ["delay", f"{int(delay)}ms"]
        if direction is not None:
            args += ["dir", direction]
        self.lab(*args)

    def netem_clear(self, node):
        self.lab("netem-clear", node)

    def vip_add(self, node):
        self.lab("vip-add", node)

    def vip_del(self, node):
        self.lab("vip-del", node)

    def pids(self, node):
        """Pids of the processes inside node's namespace."""
        r = subprocess.run(["ip", "netns", "pids", self.ns(node)],
                           capture_output=True, text=True, timeout=10)
        return [int(x) for x in r.stdout.split()]

    def log(self, name):
        """Path of a file in the lab's state dir, e.g. lab.log('be1.log')."""
        return self.state_dir / name


# ------------------------------------------------------------------ checks

def check(cond, msg="check failed"):
    if not cond:
        raise TestFailure(msg)


def check_eq(actual, expected, what="value"):
    if actual != expected:
        raise TestFailure(f"{what}: expected {expected!r}, got {actual!r}")


def check_ge(actual, minimum, what="value"):
    if not actual >= minimum:
        raise TestFailure(f"{what}: expected >= {minimum!r}, got {actual!r}")


def check_le(actual, maximum, what="value"):
    if not actual <= maximum:
        raise TestFailure(f"{what}: expected <= {maximum!r}, got {actual!r}")


def check_all_ok(report, expected, what=None):
    """A tclient report where exactly `expected` items ended ok, none failed."""
    what = what or report.get("mode", "tclient")
    if report.get("ok") != expected or report.get("fail", 0) != 0:
        counts = {k: v for k, v in report.items()
                  if isinstance(v, int) and v and k not in ("conns", "started")}
        raise TestFailure(f"{what}: expected {expected} ok and no failure, got "
                          f"{counts}; first failure: {report.get('first_failure')}")


def wait_until(pred, timeout=5.0, interval=0.05, what="condition"):
    """Poll pred() until it is true (returns its value) or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TestFailure(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def lab_namespaces(prefix):
    """Namespaces (ip netns list) that belong to the lab with this prefix."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    names = [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()]
    return [n for n in names if n.startswith(prefix) and n[len(prefix):] in NODES]


# ------------------------------------------------------------------ runner

class _Timeout(TestFailure):
    pass


def _alarm(signum, frame):
    raise _Timeout("test timed out")


def main(namespace, argv=None, timeout=None):
    """Run the test_* functions of `namespace` (pass globals()); exits."""
    argv = sys.argv[1:] if argv is None else argv
    if os.geteuid() != 0:
        print("skip all: the lab needs root")
        sys.exit(77)
    _install_handlers()
    timeout = timeout or int(os.environ.get("TANDEM_TEST_TIMEOUT", DEFAULT_TEST_TIMEOUT))
    tests = [(n, f) for n, f in namespace.items()
             if n.startswith("test_") and callable(f)]
    if argv:
        unknown = [a for a in argv if a not in dict(tests)]
        if unknown:
            print(f"unknown tests: {' '.join(unknown)}", file=sys.stderr)
            sys.exit(2)
        tests = [(n, f) for n, f in tests if n in argv]
    failed = 0
    signal.signal(signal.SIGALRM, _alarm)
    for name, fn in tests:
        t0 = time.monotonic()
        signal.alarm(timeout)
        try:
            if "lab" in inspect.signature(fn).parameters:
                with Lab() as lab:
                    fn(lab)
            else:
                fn()
        except Skip as e:
            print(f"skip {name}: {e}", flush=True)
        except TestFailure as e:
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(file=sys.stderr)
        else:
            print(f"ok {name} ({time.monotonic() - t0:.1f}s)", flush=True)
        finally:
            signal.alarm(0)
    sys.exit(1 if failed else 0)
