#!/usr/bin/env python3
"""Self-test of the lab (scripts/lab) and the test tools, without tandemd.

    sudo TANDEM_BUILD=/path/to/build python3 tests/integration/test_lab.py [test_name...]
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lablib  # noqa: E402
from lablib import (ADDR, BACKENDS, DIRECT, ECHO_PORT, HTTP_PORT, LAB_RUN,  # noqa: E402
                    LAB_SCRIPT, NODES, VIP, Lab, check, check_all_ok, check_eq,
                    check_ge, check_le, lab_namespaces, wait_until)


def echo(be):
    return f"{ADDR[be]}:{ECHO_PORT}"


def http(be):
    return f"{ADDR[be]}:{HTTP_PORT}"


def test_namespaces_and_addresses(lab):
    check_eq(sorted(lab_namespaces(lab.prefix)), sorted(lab.ns(n) for n in NODES),
             "lab namespaces")
    check(lab.state_dir.is_dir(), f"state dir {lab.state_dir} missing")
    listed = subprocess.run([str(LAB_SCRIPT), "list"], capture_output=True, text=True)
    check(lab.prefix in listed.stdout.split(), "scripts/lab list does not show the lab")
    for node, ip in ADDR.items():
        out = lab.exec(node, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
        check(f" {ip}/24 " in out, f"{node}: eth0 lacks {ip}/24: {out!r}")
        lo = lab.exec(node, "ip", "-o", "link", "show", "dev", "lo").stdout
        check("UP" in lo, f"{node}: lo is down")
    for node, ip in DIRECT.items():
        out = lab.exec(node, "ip", "-4", "-o", "addr", "show", "dev", "eth1").stdout
        check(f" {ip}/30 " in out, f"{node}: eth1 lacks {ip}/30")
    # The root namespace got nothing: no lab device names, no 198.18 address.
    root = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    check("198.18." not in root, "a 198.18 address leaked into the root namespace")


def test_front_reachability(lab):
    for node in ("lb1", "lb2", "be1", "be2", "be3"):
        check_eq(lab.ping("client", ADDR[node]), 3, f"client -> {node} ping replies")
    check_eq(lab.ping("be3", ADDR["be1"]), 3, "be3 -> be1 ping replies")


def test_direct_link_and_cut(lab):
    check_eq(lab.ping("lb1", DIRECT["lb2"]), 3, "lb1 -> lb2 over eth1")
    check_eq(lab.ping("lb2", DIRECT["lb1"]), 3, "lb2 -> lb1 over eth1")
    # Only lb1 and lb2 are on the direct link.
    check_eq(lab.ping("client", DIRECT["lb1"], count=1), 0, "client -> 198.18.1.1")
    lab.link_cut("lb1")
    check_eq(lab.ping("lb2", DIRECT["lb1"], count=2), 0, "lb2 -> lb1 with the link cut")
    check_eq(lab.ping("lb2", ADDR["lb1"]), 3, "lb2 -> lb1 over the front while cut")
    lab.link_restore()
    wait_until(lambda: lab.ping("lb2", DIRECT["lb1"], count=1) == 1, timeout=5,
               what="direct link back")


def test_echo_byte_exact(lab):
    lab.start_backends()
    r = lab.tool("echo-check", "--addr", echo("be1"), "--conns", 50, "--msgs", 20,
                 "--size", 3000)
    check_all_ok(r, 50)
    check_eq(r["bytes_received"], 50 * 20 * 3000, "echoed bytes")
    r = lab.tool("bulk", "--addr", echo("be2"), "--bytes", 10 << 20, "--deadline", 30)
    check_all_ok(r, 1)
    check_eq(r["bytes_received"], 10 << 20, "bulk bytes")
    r = lab.tool("half-close", "--addr", echo("be3"), "--bytes", 3 << 20, "--conns", 4)
    check_all_ok(r, 4)
    r = lab.tool("echo-check", "--addr", echo("be1"), "--conns", 5, "--msgs", 4,
                 "--interval", 50, "--fin")
    check_all_ok(r, 5)
    check_ge(r["elapsed_ms"], 150, "echo-check with --interval 50 ms")
    # The checker is real: the HTTP port does not echo, so nothing may pass.
    r = lab.tool("echo-check", "--addr", http("be1"), "--conns", 5, "--msgs", 2,
                 "--deadline", 3)
    check_eq(r["ok"], 0, "echo-check against an HTTP port: ok")
    check_eq(r["fail"], 5, "echo-check against an HTTP port: failures")


def test_echo_backpressure(lab):
    """A client that sends without reading must stall, not grow tbackend."""
    lab.start_backends()
    code = (
        "import socket,time\n"
        f"s=socket.create_connection(('{ADDR['be2']}',{ECHO_PORT}))\n"
        "s.setblocking(False)\nsent=0\nbuf=b'x'*65536\nt=time.time()+3\n"
        "while time.time()<t:\n"
        "    try: sent+=s.send(buf)\n"
        "    except BlockingIOError: time.sleep(0.01)\n"
        "print(sent)\n"
    )
    sent = int(lab.exec("client", "python3", "-c", code, timeout=20).stdout)
    # Socket buffers on both sides plus one 64 KiB pending buffer, not more.
    check_le(sent, 64 << 20, "bytes accepted from a client that never reads")
    pid = int(lab.log("be2.pid").read_text())
    rss_kb = int([ln.split()[1] for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ln.startswith("VmRSS:")][0])
    check_le(rss_kb, 32 * 1024, "tbackend RSS (KiB) after a non-reading client")


def test_http_names_and_health(lab):
    lab.start_backends()
    for be in BACKENDS:
        r = lab.tool("http-spread", "--addr", http(be), "--requests", 200,
                     "--concurrency", 4)
        check_all_ok(r, 200)
        check_eq(r["by_backend"], {be: 200}, f"{be} answers with its name")
    r = lab.tool("http-spread", "--addr", http("be1"), "--requests", 20, "--close")
    check_all_ok(r, 20, "http-spread --close")
    r = lab.tool("http-spread", "--addr", http("be2"), "--requests", 3,
                 "--path", f"/size/{16 << 20}", "--deadline", 30)
    check_all_ok(r, 3, "16 MiB body, pattern checked")
    r = lab.tool("http-spread", "--addr", http("be2"), "--requests", 3, "--path", "/nope")
    check_eq(r["status"], {"404": 3}, "unknown path")
    r = lab.tool("http-spread", "--addr", http("be3"), "--requests", 3, "--path", "/health")
    check_eq(r["status"], {"200": 3}, "health while fine")
    lab.health_fail("be3")
    r = lab.tool("http-spread", "--addr", http("be3"), "--requests", 3, "--path", "/health")
    check_eq(r["status"], {"503": 3}, "health while failing")
    check_eq(r["bad_status"], 3, "non-2xx counted as bad_status")
    lab.health_ok("be3")
    r = lab.tool("http-spread", "--addr", http("be3"), "--requests", 3, "--path", "/health")
    check_eq(r["status"], {"200": 3}, "health after recovery")
    # Raw exchange: body, X-Backend, /peer, HEAD, HTTP/1.0, pipelining.
    code = (
        "import socket\n"
        f"s=socket.create_connection(('{ADDR['be1']}',{HTTP_PORT}))\n"
        "s.sendall(b'GET / HTTP/1.1\\r\\nHost: l\\r\\n\\r\\n'\n"
        "          b'HEAD /size/10 HTTP/1.1\\r\\n\\r\\n'\n"
        "          b'POST /peer HTTP/1.1\\r\\nContent-Length: 3\\r\\n\\r\\nabc'\n"
        "          b'GET /health HTTP/1.0\\r\\n\\r\\n')\n"
        "d=b''\n"
        "while True:\n"
        "    b=s.recv(65536)\n"
        "    if not b: break\n"
        "    d+=b\n"
        "print(d.hex())\n"
    )
    out = bytes.fromhex(lab.exec("client", "python3", "-c", code, timeout=10).stdout
                        .strip()).decode()
    parts = out.split("HTTP/1.1 ")
    check_eq(len(parts), 5, f"four pipelined responses in {out!r}")
    check(parts[1].endswith("\r\n\r\nbe1\n") and "X-Backend: be1\r\n" in parts[1],
          f"GET / response: {parts[1]!r}")
    check(parts[2].endswith("Content-Length: 10\r\nX-Backend: be1\r\n"
                            "Connection: keep-alive\r\n\r\n"), f"HEAD: {parts[2]!r}")
    check(f"\r\n\r\n{ADDR['client']}:" in parts[3], f"/peer body: {parts[3]!r}")
    check("Connection: close" in parts[4] and parts[4].endswith("ok\n"),
          f"HTTP/1.0 /health closes: {parts[4]!r}")


def test_backend_kill_and_start(lab):
    lab.start_backends()
    check(lab.connect_ok("client", ADDR["be2"], ECHO_PORT), "be2 up before kill")
    probe = lab.tool_spawn("probe", "--addr", echo("be2"), "--kind", "echo",
                           "--duration", 2.5, "--interval", 10)
    time.sleep(0.5)
    lab.backend_kill("be2")
    r = lab.tool("echo-check", "--addr", echo("be2"), "--conns", 5, "--msgs", 1)
    check_eq(r["refused"], 5, "connects to a killed backend are refused")
    time.sleep(0.3)
    lab.backend_start("be2")
    p = probe.wait(timeout=20)
    check_ge(p["outages"], 1, "probe saw the outage")
    check(p["recovered"], f"probe saw the backend come back: {p}")
    check_ge(p["longest_outage_ms"], 250, "outage length")
    check_le(p["longest_outage_ms"], 2000, "outage length")
    r = lab.tool("echo-check", "--addr", echo("be2"), "--conns", 5, "--msgs", 3)
    check_all_ok(r, 5, "echo after backend-start")
    # Killing what is not running is an error, starting twice too.
    lab.backend_kill("be3")
    check(lab.lab("backend-kill", "be3", check=False).returncode != 0,
          "backend-kill of a dead backend must fail")
    check(lab.lab("backend-start", "be1", check=False).returncode != 0,
          "backend-start of a running backend must fail")


def test_hold_connections(lab):
    lab.start_backends()
    run = lab.tool_spawn("hold", "--addr", echo("be1"), "--conns", 300, "--hold", 30)
    ev = run.ready(timeout=10)
    check_eq(ev["served"], 300, "held connections served before the hold")
    r = run.stop()
    check_eq(r["established"], 300, "established")
    check_eq(r["alive_at_end"], 300, "alive at the end")
    check_all_ok(r, 300, "hold")
    # Held connections die with the backend, and the tool says so.
    run = lab.tool_spawn("hold", "--addr", echo("be1"), "--conns", 20, "--hold", 30)
    run.ready(timeout=10)
    lab.backend_kill("be1")
    r = run.stop()
    check_eq(r["lost_during_hold"], 20, "connections lost with the backend")
    check_eq(r["alive_at_end"], 0, "alive after the backend died")


def test_node_loss(lab):
    lab.start_backends()
    helper = lab.spawn("be3", "sleep", "60")
    lab.node_loss("be3")
    check_eq(lab.pids("be3"), [], "processes left in be3 after node-loss")
    check(helper.wait(5) is not None, "spawned process survived node-loss")
    check_eq(lab.ping("client", ADDR["be3"], count=2), 0, "ping to a lost node")
    r = lab.tool("echo-check", "--addr", echo("be3"), "--conns", 2, "--msgs", 1,
                 "--deadline", 1)
    check_eq(r["timeout"], 2, "connects to a lost node hang (no RST comes back)")
    check_eq(lab.ping("client", ADDR["be2"]), 3, "other nodes unaffected")
    lab.node_restore("be3")
    wait_until(lambda: lab.ping("client", ADDR["be3"], count=1) == 1, timeout=5,
               what="be3 reachable after restore")
    r = lab.tool("echo-check", "--addr", echo("be3"), "--conns", 2, "--msgs", 1)
    check_eq(r["refused"], 2, "restored node has no backend until started")
    lab.backend_start("be3")
    check_all_ok(lab.tool("echo-check", "--addr", echo("be3"), "--conns", 2), 2)


def test_netem(lab):
    lab.start_backends()
    base = lab.tool("ping", "--addr", ADDR["be1"], "--count", 3)
    check_le(base["rtt_avg_ms"], 20, "rtt before netem")
    lab.netem("be1", delay=40)
    r = lab.tool("ping", "--addr", ADDR["be1"], "--count", 3)
    check_eq(r["received"], 3, "replies with delay")
    check_ge(r["rtt_avg_ms"], 75, "rtt with 40 ms each way")
    check_all_ok(lab.tool("bulk", "--addr", echo("be1"), "--bytes", 2 << 20), 1,
                 "bulk through netem delay")
    lab.netem("be1", loss=100, direction="out")
    check_eq(lab.ping("client", ADDR["be1"], count=2), 0, "100% loss out of be1")
    lab.netem("be1", loss=10)
    check_all_ok(lab.tool("bulk", "--addr", echo("be1"), "--bytes", 200000,
                          "--deadline", 60), 1, "bulk through 10% loss")
    lab.netem_clear("be1")
    r = lab.tool("ping", "--addr", ADDR["be1"], "--count", 3)
    check_eq(r["received"], 3, "replies after netem-clear")
    check_le(r["rtt_avg_ms"], 20, "rtt after netem-clear")
    # The node's port is back on the bridge, the relay gone.
    links = lab.exec("sw", "ip", "-o", "link").stdout
    check("qbe1" not in links and "master br0" in
          [ln for ln in links.splitlines() if " be1@" in ln][0], "be1 port restored")
    check_eq(lab.pids("sw"), [], "relay left running in sw")


def test_vip_helpers(lab):
    check_eq(lab.ping("client", VIP, count=1), 0, "VIP answers before vip-add")
    lab.vip_add("lb1")
    # The failed lookup above left an incomplete neighbour entry; the lab
    # sends no gratuitous ARP (that is the agent's job), so start afresh.
    lab.exec("client", "ip", "neigh", "flush", "dev", "eth0")
    check_eq(lab.ping("client", VIP), 3, "VIP on lb1")
    lab.vip_del("lb1")
    lab.exec("client", "ip", "neigh", "flush", "dev", "eth0")
    check_eq(lab.ping("client", VIP, count=1), 0, "VIP after vip-del")
    check(lab.lab("vip-add", "be1", check=False).returncode != 0, "vip-add on be1 refused")


def test_exec_refusals(lab):
    r = lab.lab("exec", "nosuchnode", "true", check=False)
    check(r.returncode != 0 and "unknown node" in r.stderr, f"unknown node: {r.stderr!r}")
    r = lab.lab("exec", "client", check=False)
    check(r.returncode != 0, "exec without a command")
    inside = lab.lab("exec", "client", "readlink", "/proc/self/ns/net").stdout.strip()
    root = os.readlink("/proc/self/ns/net")
    check(inside != root, "exec ran in the root namespace")
    r = subprocess.run([str(LAB_SCRIPT), "exec", "-p", "no-such-lab-", "client", "true"],
                       capture_output=True, text=True)
    check(r.returncode != 0, "exec in a lab that does not exist")
    r = subprocess.run([str(LAB_SCRIPT), "up", "bad/prefix"], capture_output=True, text=True)
    check(r.returncode != 0, "prefix with a slash accepted")
    r = subprocess.run([str(LAB_SCRIPT), "up", lab.prefix], capture_output=True, text=True)
    check(r.returncode != 0 and "exists" in r.stderr, "second up with the same prefix")
    check_eq(sorted(lab_namespaces(lab.prefix)), sorted(lab.ns(n) for n in NODES),
             "failed second up must not touch the first lab")


def test_down_leaves_nothing():
    lab = Lab().up()
    try:
        lab.start_backends()
        lab.netem("lb2", delay=5)
        stray = subprocess.Popen(["ip", "netns", "exec", lab.ns("lb1"), "sleep", "60"],
                                 start_new_session=True)
        pids = lab.pids("be1") + lab.pids("lb1") + lab.pids("sw")
        check_ge(len(pids), 3, "processes in the lab before down")
    finally:
        lab.down()
    check_eq(lab_namespaces(lab.prefix), [], "namespaces after down")
    check(not (LAB_RUN / lab.prefix).exists(), "state dir after down")
    check(stray.wait(5) is not None, "a process started by hand survived down")
    for pid in pids:
        check(not Path(f"/proc/{pid}").exists() or
              Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z",
              f"pid {pid} survived down")
    r = subprocess.run([str(LAB_SCRIPT), "down", lab.prefix], capture_output=True, text=True)
    check_eq(r.returncode, 0, "second down (idempotent)")


def test_two_labs_at_once():
    with Lab() as a, Lab() as b:
        check(a.prefix != b.prefix, "two labs got the same prefix")
        a.start_backends()
        b.start_backends()
        a.backend_kill("be1")
        # Same addresses, separate worlds: b's be1 still answers.
        check_all_ok(b.tool("echo-check", "--addr", echo("be1"), "--conns", 3), 3,
                     "lab b be1")
        r = a.tool("echo-check", "--addr", echo("be1"), "--conns", 3)
        check_eq(r["refused"], 3, "lab a be1 killed")
        a.node_loss("be2")
        check_eq(b.ping("client", ADDR["be2"]), 3, "lab b be2 after lab a lost its be2")
        prefixes = [a.prefix, b.prefix]
    for p in prefixes:
        check_eq(lab_namespaces(p), [], f"namespaces of {p} after exit")


def test_sigterm_removes_lab():
    """A test process killed with SIGTERM still takes its lab down."""
    code = (
        "import sys,time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "import lablib\n"
        "with lablib.Lab() as lab:\n"
        "    lab.spawn('lb1', 'sleep', '60')\n"
        "    print(lab.prefix, flush=True)\n"
        "    time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        prefix = p.stdout.readline().strip()
        check(prefix != "", "child printed no prefix")
        check_eq(len(lab_namespaces(prefix)), len(NODES), "child's lab is up")
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    check_eq(lab_namespaces(prefix), [], "namespaces after SIGTERM")
    check(not (LAB_RUN / prefix).exists(), "state dir after SIGTERM")


def test_killed_run_then_down_prefix():
    """SIGKILL leaves the lab behind; `scripts/lab down PREFIX` removes it."""
    code = (
        "import sys,time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "import lablib\n"
        "lab = lablib.Lab().up()\n"
        "lab.start_backends()\n"
        "print(lab.prefix, flush=True)\n"
        "time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    prefix = ""
    try:
        prefix = p.stdout.readline().strip()
        check(prefix != "", "child printed no prefix")
        p.kill()
        p.wait(10)
        check_eq(len(lab_namespaces(prefix)), len(NODES), "lab left by a killed run")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if prefix:
            r = subprocess.run([str(LAB_SCRIPT), "down", prefix], capture_output=True,
                               text=True, timeout=60)
    check_eq(r.returncode, 0, "down PREFIX")
    check_eq(lab_namespaces(prefix), [], "namespaces after down PREFIX")
    check(not (LAB_RUN / prefix).exists(), "state dir after down PREFIX")


def test_up_is_fast():
    t0 = time.monotonic()
    with Lab():
        up = time.monotonic() - t0
    # Typically ~1 s; the bound is generous for a loaded CI machine.
    check_le(up, 5.0, "seconds for scripts/lab up")


if __name__ == "__main__":
    lablib.main(globals())
