#!/usr/bin/env python3
"""Report of `scripts/bench proxy`: medians table, ratios, target, JSON file.

Input: --run-dir with runs.tsv (one line per measurement, written by proxy.sh)
and the wrk output file each line names. Output: the report on stdout and
every raw number (wrk's text included) in the --out JSON file.
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wrkparse  # noqa: E402

TSV_FIELDS = ("round", "size", "bytes", "proxy", "cpu_ticks", "clk_tck", "hwm_kb",
              "processes", "tasks", "wall_s", "backend_cpu_ticks", "wrk_cpu_ms",
              "host_busy_ticks", "host_total_ticks", "front_conns", "backend_conns",
              "ksoftirqd_ticks", "wrk_file")
PEERS = ("haproxy", "nginx")
PEER_NAME = {"tandem": "tandem", "haproxy": "HAProxy", "nginx": "nginx"}
# metric -> True when higher is better
RATIO_METRICS = {"rps": True, "req_per_cpu_s": True, "p50_ms": False, "p99_ms": False,
                 "cpu_s": False, "rss_mib": False}


def load_runs(run_dir):
    runs = []
    with open(os.path.join(run_dir, "runs.tsv"), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            cols = line.rstrip("\n").split("\t")
            if len(cols) != len(TSV_FIELDS):
                raise SystemExit(f"proxy_report: runs.tsv:{n}: {len(cols)} fields")
            row = dict(zip(TSV_FIELDS, cols))
            with open(os.path.join(run_dir, row["wrk_file"]), encoding="utf-8",
                      errors="replace") as wf:
                text = wf.read()
            try:
                wrk = wrkparse.parse(text)
            except wrkparse.WrkParseError as e:
                raise SystemExit(f"proxy_report: {row['wrk_file']}: {e}\n{text}")
            clk = int(row["clk_tck"])
            cpu_s = int(row["cpu_ticks"]) / clk
            p = wrk["percentiles_ms"]
            runs.append({
                "round": int(row["round"]), "size": row["size"], "bytes": int(row["bytes"]),
                "proxy": row["proxy"],
                "rps": wrk["rps"], "requests": wrk["requests"],
                "p50_ms": p.get("50"), "p99_ms": p.get("99"),
                "cpu_s": cpu_s,
                "req_per_cpu_s": wrk["requests"] / cpu_s if cpu_s > 0 else None,
                "rss_mib": int(row["hwm_kb"]) / 1024,
                "errors": wrk["errors"],
                "processes": int(row["processes"]), "tasks": int(row["tasks"]),
                "wall_s": float(row["wall_s"]),
                "backend_cpu_s": int(row["backend_cpu_ticks"]) / clk,
                "wrk_cpu_s": int(row["wrk_cpu_ms"]) / 1000,
                "front_conns": int(row["front_conns"]),
                "backend_conns": int(row["backend_conns"]),
                "host_busy": (int(row["host_busy_ticks"]) / int(row["host_total_ticks"])
                              if int(row["host_total_ticks"]) > 0 else None),
                "ksoftirqd_cpu_s": int(row["ksoftirqd_ticks"]) / clk,
                # Busy CPU time of the machine in none of proxy, backends, wrk and
                # softirq threads: whatever else runs on the host (noise).
                "other_cpu_s": (int(row["host_busy_ticks"]) - int(row["cpu_ticks"])
                                - int(row["backend_cpu_ticks"])
                                - int(row["ksoftirqd_ticks"])) / clk
                               - int(row["wrk_cpu_ms"]) / 1000,
                "wrk": wrk, "wrk_output": text,
            })
    if not runs:
        raise SystemExit("proxy_report: no runs")
    return runs


def median_of(runs, key):
    vals = [r[key] for r in runs if r[key] is not None]
    return statistics.median(vals) if vals else None


def summarize(runs):
    """{size: {proxy: medians}} in the order the runs came."""
    out = {}
    for r in runs:
        out.setdefault(r["size"], {}).setdefault(r["proxy"], [])
    for size, per in out.items():
        for proxy in per:
            rs = [r for r in runs if r["size"] == size and r["proxy"] == proxy]
            m = {k: median_of(rs, k) for k in ("rps", "p50_ms", "p99_ms", "cpu_s",
                                                  "req_per_cpu_s", "rss_mib",
                                                  "backend_cpu_s", "wrk_cpu_s",
                                                  "ksoftirqd_cpu_s", "other_cpu_s",
                                                  "host_busy")}
            rps = [r["rps"] for r in rs]
            m["rps_spread"] = (max(rps) - min(rps)) / m["rps"] if m["rps"] else None
            m["errors"] = sum(r["errors"] for r in rs)
            m["rounds"] = len(rs)
            m["tasks"] = max(r["tasks"] for r in rs)
            per[proxy] = m
    return out


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def paired(runs, size, peer, key):
    """Median over rounds of tandem/peer within each round: robust to drift."""
    by_round = {}
    for r in runs:
        if r["size"] == size and r["proxy"] in ("tandem", peer):
            by_round.setdefault(r["round"], {})[r["proxy"]] = r[key]
    vals = [ratio(v.get("tandem"), v.get(peer)) for v in by_round.values()]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def ratios(runs, med):
    """tandem/peer of the medians, and the paired (per-round) req/s ratio."""
    out = {}
    for size, per in med.items():
        if "tandem" not in per:
            continue
        for peer in PEERS:
            if peer in per:
                r = {k: ratio(per["tandem"][k], per[peer][k]) for k in RATIO_METRICS}
                r["rps_paired"] = paired(runs, size, peer, "rps")
                out.setdefault(size, {})[peer] = r
    return out


def noisy_runs(runs, cpus):
    """Runs where over 5 % of the machine went to neither proxy, backends nor wrk."""
    out = []
    for r in runs:
        if cpus > 0 and r["other_cpu_s"] > 0.05 * cpus * r["wall_s"]:
            out.append(f"r{r['round']}-{r['size']}-{r['proxy']} "
                       f"({r['other_cpu_s']:.2f} of {cpus * r['wall_s']:.0f} CPU s)")
    return out


def conn_mismatches(runs):
    """Runs where the proxy did not hold one backend connection per client one."""
    return [f"r{r['round']}-{r['size']}-{r['proxy']} ({r['front_conns']} client, "
            f"{r['backend_conns']} backend)" for r in runs
            if r["front_conns"] != r["backend_conns"] or r["front_conns"] < 0]


def targets(med):
    """tandem against the better peer: req/s, req/CPU-s >= 1.0x, p99 <= 1.0x."""
    out = {}
    for size, per in med.items():
        peers = [p for p in PEERS if p in per]
        if "tandem" not in per or not peers:
            continue
        t = per["tandem"]
        res = {}
        for key, higher in (("rps", True), ("req_per_cpu_s", True), ("p99_ms", False)):
            vals = [(per[p][key], p) for p in peers if per[p][key] is not None]
            if not vals or t[key] is None:
                continue
            best, who = (max if higher else min)(vals)
            r = ratio(t[key], best)
            res[key] = {"tandem": t[key], "best_peer": who, "best": best, "ratio": r,
                        "met": r is not None and (r >= 1.0 if higher else r <= 1.0)}
        out[size] = res
    return out


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_report(meta, med, rat, tgt, noisy, conns, out_path):
    print(f"proxy benchmark: median of {meta.get('rounds')} round(s) x {meta.get('duration_s')} s, "
          f"wrk -t{meta.get('wrk_threads')} -c{meta.get('conns')} keep-alive, "
          f"{meta.get('workers')} workers/threads per proxy")
    print(f"  {meta.get('cpus')} CPUs ({meta.get('cpu_model')}) shared by client, proxy and "
          f"3 backends; tandem {meta.get('tandem_rev')}")
    print(f"  {meta.get('haproxy_version')}; {meta.get('nginx_version')}")
    print()
    hdr = ("size", "proxy", "req/s", "±%", "p50 ms", "p99 ms", "CPU s", "req/CPU-s",
           "RSS MiB", "be/wrk/ksirq/other CPU s", "busy%", "errors")
    row = "{:<5} {:<8} {:>10} {:>5} {:>8} {:>8} {:>6} {:>10} {:>8} {:>24} {:>6} {:>6}"
    print(row.format(*hdr))
    for size, per in med.items():
        for proxy, m in per.items():
            print(row.format(size, proxy, fmt(m["rps"], ",.0f"),
                             fmt(None if m["rps_spread"] is None else 50 * m["rps_spread"], ".1f"),
                             fmt(m["p50_ms"], ".3f"), fmt(m["p99_ms"], ".3f"),
                             fmt(m["cpu_s"], ".2f"), fmt(m["req_per_cpu_s"], ",.0f"),
                             fmt(m["rss_mib"], ".1f"),
                             "/".join(fmt(m[k], ".2f") for k in ("backend_cpu_s", "wrk_cpu_s",
                                                                  "ksoftirqd_cpu_s",
                                                                  "other_cpu_s")),
                             fmt(None if m["host_busy"] is None else 100 * m["host_busy"], ".0f"),
                             m["errors"]))
    print("  ±%: half the req/s range over rounds; CPU s: the proxy's user+system time in the"
          " wrk window;")
    print("  RSS: peak (VmHWM), summed over the proxy's processes; be/wrk/ksirq/other: CPU s"
          " of the 3 backends,")
    print("  of wrk, of the kernel's ksoftirqd threads, of the rest of the machine (other jobs:"
          " noise); busy%: whole machine")
    if rat:
        print()
        print("ratios tandem/peer (req/s, req/CPU-s: higher is better; "
              "p50, p99, CPU s, RSS: lower is better)")
        row = "{:<5} {:<9} {:>7} {:>8} {:>10} {:>7} {:>7} {:>7} {:>7}"
        print(row.format("size", "peer", "req/s", "(paired)", "req/CPU-s", "p50", "p99", "CPU s",
                         "RSS"))
        for size, per in rat.items():
            for peer, r in per.items():
                print(row.format(size, "/" + PEER_NAME[peer], fmt(r["rps"], ".3f"),
                                 fmt(r["rps_paired"], ".3f"),
                                 fmt(r["req_per_cpu_s"], ".3f"), fmt(r["p50_ms"], ".3f"),
                                 fmt(r["p99_ms"], ".3f"), fmt(r["cpu_s"], ".3f"),
                                 fmt(r["rss_mib"], ".3f")))
        print("  (paired): median over rounds of the ratio within each round")
    if tgt:
        print()
        print("target: req/s and req/CPU-s >= 1.0x the better peer, p99 <= 1.0x the better peer")
        names = {"rps": "req/s", "req_per_cpu_s": "req/CPU-s", "p99_ms": "p99"}
        for size, res in tgt.items():
            parts = [f"{names[k]} {v['ratio']:.3f}x {PEER_NAME[v['best_peer']]} "
                     f"{'ok' if v['met'] else 'BELOW'}" for k, v in res.items()
                     if v["ratio"] is not None]
            print(f"  {size:<5} " + "; ".join(parts))
    errs = sum(m["errors"] for per in med.values() for m in per.values())
    if errs:
        print(f"\nWARNING: wrk reported {errs} socket errors / non-2xx responses (see JSON)")
    if conns:
        print("\nWARNING: client and backend connection counts differ (not 1:1): "
              + ", ".join(conns))
    if noisy:
        print(f"\nnote: {len(noisy)} run(s) shared the machine with other work (more rounds"
              " help): " + ", ".join(noisy))
    print(f"\nraw results: {out_path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta", action="append", default=[], help="KEY=VALUE")
    a = ap.parse_args()
    meta = {}
    for kv in a.meta:
        k, _, v = kv.partition("=")
        meta[k] = v
    runs = load_runs(a.run_dir)
    med = summarize(runs)
    rat = ratios(runs, med)
    tgt = targets(med)
    noisy = noisy_runs(runs, int(meta.get("cpus") or 0))
    conns = conn_mismatches(runs)
    doc = {"benchmark": "proxy", "meta": meta, "medians": med, "ratios": rat,
           "target": tgt, "noisy_runs": noisy, "conn_mismatches": conns, "runs": runs}
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, a.out)
    print_report(meta, med, rat, tgt, noisy, conns, a.out)


if __name__ == "__main__":
    main()
