#!/usr/bin/env python3
"""The L4 proxy in the lab: one tandemd on lb1 holding the VIP, three backends.

    sudo TANDEM_BUILD=/path/to/build python3 tests/integration/test_proxy.py [test...]

Each test asserts what a user of the gateway would notice: which server
answered, bytes delivered exactly, failures (none), limits held.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lablib  # noqa: E402
from lablib import (ADDR, VIP, check, check_all_ok, check_eq, check_ge,  # noqa: E402
                    check_le, wait_until)
from tandem import (ECHO_FE_PORT, HTTP_FE_PORT, Tandemd, render_backend,  # noqa: E402
                    render_frontend, validate, wait_state)

WEB = f"{VIP}:{HTTP_FE_PORT}"
ECHO = f"{VIP}:{ECHO_FE_PORT}"
FAST_CHECK = {"type": "http", "interval": "200ms", "timeout": "150ms", "rise": 2,
              "fall": 2, "path": "/health", "expect-status": 200}


def start(lab, web_algo="roundrobin", web_servers=None, web_check=None, web_extra="",
          echo_algo="roundrobin", echo_servers=None, echo_extra="", fe_extra=""):
    lab.vip_add("lb1")
    lab.start_backends()
    body = "\n\n".join([
        render_backend("web", web_algo, web_servers, check=web_check, extra=web_extra),
        render_backend("echo", echo_algo, echo_servers, extra=echo_extra),
        render_frontend("web", HTTP_FE_PORT, "web", fe_extra),
        render_frontend("echo", ECHO_FE_PORT, "echo", fe_extra),
    ])
    td = Tandemd(lab, "lb1", body).start()
    lab.wait_listening("client", VIP, HTTP_FE_PORT)
    return td


def spread(lab, n, *extra):
    r = lab.tool("http-spread", "--addr", WEB, "--requests", n, "--close", *extra)
    check_all_ok(r, n, "http-spread")
    return dict(r["by_backend"])


def test_roundrobin_spreads_evenly(lab):
    start(lab)
    counts = spread(lab, 300)
    # Each worker takes exact turns; two workers can be off by one each.
    for be in ("be1", "be2", "be3"):
        check_le(abs(counts.get(be, 0) - 100), 2, f"{be} share of 300 ({counts})")


def test_wrr_exact_shares(lab):
    start(lab, web_algo="wrr", web_servers=[("be1", 5, None), ("be2", 1, None),
                                            ("be3", 1, None)])
    counts = spread(lab, 700)
    check_le(abs(counts.get("be1", 0) - 500), 2, f"be1 share ({counts})")
    check_le(abs(counts.get("be2", 0) - 100), 2, f"be2 share ({counts})")
    check_le(abs(counts.get("be3", 0) - 100), 2, f"be3 share ({counts})")


def test_leastconn_balances_open_connections(lab):
    td = start(lab, echo_algo="leastconn")
    hold = lab.tool_spawn("hold", "--addr", ECHO, "--conns", 30, "--hold", 30)
    hold.ready(timeout=15)
    active = {be: td.server_metric("tandem_server_connections_active", "echo", be)
              for be in ("be1", "be2", "be3")}
    check_eq(sum(active.values()), 30.0, f"active connections ({active})")
    for be, n in active.items():
        check_le(abs(n - 10), 1, f"{be} open connections ({active})")
    check_all_ok(hold.stop(), 30, "held connections")


def test_source_hash_is_sticky(lab):
    start(lab, web_algo="source")
    # 24 client addresses; each must always land on the same server.
    addrs = [f"198.18.0.{i}" for i in range(40, 64)]
    for a in addrs:
        lab.exec("client", "ip", "addr", "add", f"{a}/24", "dev", "eth0")
    seen = {}
    for a in addrs:
        counts = spread(lab, 5, "--src", a)
        check_eq(len(counts), 1, f"client {a} went to several servers: {counts}")
        seen[a] = next(iter(counts))
    check_ge(len(set(seen.values())), 2, f"servers used by 24 clients ({seen})")
    # Asking again gives the same answers.
    for a in addrs[:6]:
        check_eq(next(iter(spread(lab, 3, "--src", a))), seen[a], f"client {a} again")


def test_lrt_prefers_the_fast_server(lab):
    start(lab, web_algo="lrt")
    lab.netem("be1", delay=40)
    spread(lab, 30)            # every server gets sampled
    counts = spread(lab, 200)
    check_le(counts.get("be1", 0), 10, f"requests to the slow be1 ({counts})")
    check_ge(counts.get("be2", 0) + counts.get("be3", 0), 190, f"fast servers ({counts})")


def test_p2c_skips_drained_and_down(lab):
    td = start(lab, web_algo="p2c")
    td.ctl("drain", "web/be1")
    lab.backend_kill("be3")
    td.ctl("maint", "web/be3")
    counts = spread(lab, 200)
    check_eq(counts, {"be2": 200}, "p2c with be1 drained and be3 in maintenance")


def test_backend_killed_then_restored_with_slow_start(lab):
    td = start(lab, web_algo="wrr", web_check=FAST_CHECK, web_extra="slow-start 3s",
               web_servers=[("be1", 10, None), ("be2", 10, None), ("be3", 10, None)])
    load = lab.tool_spawn("http-spread", "--addr", WEB, "--requests", 3000, "--close",
                          "--concurrency", 4, "--max-time", 60)
    time.sleep(0.5)
    lab.backend_kill("be2")
    took = wait_state(td, "web", "be2", "down", timeout=5)
    # fall x interval = 400 ms; allow a check in flight, jitter and polling.
    check_le(took, 0.4 + 0.2 + 0.6, "seconds until be2 is marked down")
    load.stop()
    # From now on nothing fails and be2 gets nothing.
    counts = spread(lab, 300)
    check_eq(counts.get("be2", 0), 0, f"requests to the dead be2 ({counts})")

    lab.backend_start("be2")
    took = wait_state(td, "web", "be2", "up", timeout=5)
    check_le(took, 0.4 + 0.2 + 0.6, "seconds until be2 is back up")
    w = td.server_metric("tandem_server_effective_weight", "web", "be2")
    check(w < 10, f"be2 effective weight right after recovery is {w}, not ramping")
    early = spread(lab, 150).get("be2", 0)
    wait_until(lambda: td.server_metric("tandem_server_effective_weight", "web", "be2") == 10,
               timeout=20, what="be2 weight back to 10")
    late = spread(lab, 150).get("be2", 0)
    check(early < late, f"slow start: be2 got {early} of 150 early, {late} of 150 later")
    check_le(abs(late - 50), 2, "be2 share at full weight")


def test_connect_failure_is_retried_elsewhere(lab):
    # No health check: only the passive check and the retry protect clients.
    td = start(lab, web_extra="passive-fails 3")
    lab.backend_kill("be1")
    counts = spread(lab, 60)
    check_eq(counts.get("be1", 0), 0, f"be1 is dead ({counts})")
    # The main loop sweeps passive failures every 100 ms.
    wait_state(td, "web", "be1", "down", timeout=3)


def test_ten_mib_each_way_byte_exact(lab):
    start(lab)
    r = lab.tool("bulk", "--addr", ECHO, "--bytes", 10 * 1024 * 1024, "--conns", 2,
                 "--deadline", 60)
    check_all_ok(r, 2, "10 MiB echo through the proxy")


def test_half_close_gets_the_whole_reply(lab):
    start(lab)
    r = lab.tool("half-close", "--addr", ECHO, "--bytes", 1024 * 1024, "--conns", 8)
    check_all_ok(r, 8, "half-close")


def test_connection_limit_holds(lab):
    td = start(lab, fe_extra="max-connections 20")
    hold = lab.tool_spawn("hold", "--addr", ECHO, "--conns", 30, "--hold", 4,
                          "--timeout", 8000)
    time.sleep(2)
    m = td.metrics()
    active = [v for (n, lab_), v in m.items()
              if n == "tandem_frontend_connections_active" and dict(lab_)["frontend"] == "echo"]
    check_eq(active, [20.0], "active connections at the limit of 20")
    pauses = [v for (n, lab_), v in m.items()
              if n == "tandem_frontend_limit_pauses_total" and dict(lab_)["frontend"] == "echo"]
    check_ge(pauses[0], 1, "listener paused at the limit")
    # The 10 waiting clients are served as the first ones leave: nobody is dropped.
    r = hold.wait(timeout=30)
    check_eq(r.get("refused", 0) + r.get("reset", 0), 0, f"dropped clients ({r})")


def test_drain_keeps_old_connections_and_takes_no_new(lab):
    td = start(lab)
    hold = lab.tool_spawn("hold", "--addr", ECHO, "--conns", 9, "--hold", 6)
    hold.ready(timeout=15)
    before = td.server_metric("tandem_server_connections_active", "echo", "be1")
    # Each worker takes its own turns, so be1 holds 2..4 of the 9.
    check_ge(before, 2.0, "connections to be1 before the drain")
    td.ctl("drain", "echo/be1")
    td.ctl("drain", "web/be1")
    counts = spread(lab, 90)
    check_eq(counts.get("be1", 0), 0, f"new requests to the draining be1 ({counts})")
    check_eq(td.server_metric("tandem_server_connections_active", "echo", "be1"), before,
             "be1 keeps its connections while draining")
    check_all_ok(hold.wait(timeout=30), 9, "held connections, be1's included")
    td.ctl("ready", "web/be1")
    check_ge(spread(lab, 30).get("be1", 0), 9, "be1 back after ready")


def test_bad_config_is_refused(lab):
    rc, out = validate(lab, "node {\n    name lb1\n}\nbackend web {\n"
                       "    server be1 198.18.0.21:8080 weight 0\n}\n"
                       "frontend www {\n    bind 198.18.0.100:80\n    backend nope\n}\n")
    check_eq(rc, 1, "tandemd -c exit status")
    check(":5: " in out and "weight" in out, f"weight error with its line: {out!r}")
    check('unknown backend "nope"' in out, f"unknown backend error: {out!r}")
    rc, out = validate(lab, "node {\n    name lb1\n}\n" + render_backend("echo") + "\n" +
                       render_frontend("echo", ECHO_FE_PORT, "echo"))
    check_eq((rc, out.strip()), (0, "configuration OK"), "a good config")


def test_ctl_errors_are_clear(lab):
    td = start(lab)
    r = td.ctl("drain", "web/be9", check=False)
    check_eq(r.returncode, 1, "tandemctl exit status for an unknown server")
    check("be9" in r.stdout + r.stderr, f"message names the server: {r.stdout}{r.stderr}")
    td.stop()
    r = td.ctl("status", check=False)
    check_eq(r.returncode, 2, "tandemctl exit status without a daemon")
    check("is it running" in r.stderr, f"message: {r.stderr}")


if __name__ == "__main__":
    lablib.main(globals())
