#!/usr/bin/env python3
"""Report of `scripts/bench failover`: raw rounds -> JSON + a table on stdout.

    failover_report.py --run-dir DIR --out FILE.json [--meta=KEY=VALUE ...]

DIR holds runs.tsv (one line per round, RUN_FIELDS below, written by
failover.sh) and, per round tag, the probers' JSON (TAG.http.json,
TAG.connect.json, from tclient probe), vipwatch.py's JSON (TAG.vip.json)
and the daemons' logs (TAG.tandem-lbN.log; keepalived's notify lines in
TAG.ka-states-lbN). Nothing here measures: it only reads and aggregates.

Per round:
  outage     the longest run of failed probes that starts after the fault
             (from the start of its first failed probe to the start of the
             first good one, tclient's definition); "open" when the probes
             had not recovered by the end of the window
  both       ms both nodes held the VIP (address on eth0 with carrier),
             vipwatch's samples; "open" when they still did at the end
  lb2_vip    ms from the fault until lb2 held the VIP
  events     the daemons' state transitions, ms relative to the fault
"""

import argparse
import datetime
import json
import math
import re
import statistics
import sys
from pathlib import Path

RUN_FIELDS = ["tag", "interval_ms", "fault", "impl", "round", "t_probe", "t_fault",
              "t_struck", "window_ms", "lead_ms", "lb2_state_after", "lb1_daemon_alive",
              "phase_planned_ms", "t_advert", "source"]
# A prober starts a few ms after t_probe: outages that start this much before
# the fault still count as the fault's.
ALIGN_SLACK_S = 0.2
CLEARLY_BELOW = 0.9
FAULT_ORDER = ["node-loss", "kill", "graceful"]
IMPL_ORDER = ["tandem", "keepalived"]
TD_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z\s+\S+\s+(.*)$")
TD_EVENT = re.compile(r"→|VIPs|stale|woke|lower master|signal|priority")


def load_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {"error": f"{path.name}: {e}"}


def probe_outage(rep, t_probe, t_fault, window_ms):
    """(ms, open, pre-fault outages, outages after the fault) from a probe report."""
    if "outage_list" not in rep:
        return None, False, 0, 0
    longest, is_open, pre, post = 0.0, False, 0, 0
    for o in rep["outage_list"]:
        start = t_probe + o["start_ms"] / 1000.0
        if start < t_fault - ALIGN_SLACK_S:
            pre += 1
            continue
        post += 1
        if o["ms"] > longest:
            longest, is_open = o["ms"], not o["recovered"]
    return longest, is_open, pre, post


def td_events(path, node, t_fault):
    out = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        m = TD_LINE.match(line)
        if not m or not TD_EVENT.search(m.group(2)):
            continue
        t = datetime.datetime.fromisoformat(m.group(1)).replace(
            tzinfo=datetime.timezone.utc).timestamp()
        out.append([node, round((t - t_fault) * 1000.0, 1), m.group(2)])
    return out


def ka_events(path, node, t_fault):
    out = []
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        w = line.split()
        if len(w) >= 4:
            out.append([node, round((float(w[0]) - t_fault) * 1000.0, 1),
                        f"{w[2]} {w[3]} (notify)"])
    return out


def vip_times(vip, t_fault):
    """ms after the fault until lb2 held the VIP, and until lb1 did no more."""
    lb2 = lb1_gone = None
    for t, st in vip.get("transitions", []):
        if t < t_fault:
            continue
        held = [a and c for a, c in st]
        if lb2 is None and held[1]:
            lb2 = round((t - t_fault) * 1000.0, 1)
        if lb1_gone is None and not held[0]:
            lb1_gone = round((t - t_fault) * 1000.0, 1)
    # Held before the fault and never since: lb2 had it all along.
    trs = [tr for tr in vip.get("transitions", []) if tr[0] < t_fault]
    if lb2 is None and trs and all(trs[-1][1][1]):
        lb2 = 0.0
    return lb2, lb1_gone


def one_run(d, f):
    r = dict(zip(RUN_FIELDS, f))
    for k in ("interval_ms", "round", "window_ms", "lead_ms", "lb1_daemon_alive",
              "phase_planned_ms"):
        r[k] = int(r[k])
    for k in ("t_probe", "t_fault", "t_struck"):
        r[k] = float(r[k])
    r["t_advert"] = None if r["t_advert"] == "-" else float(r["t_advert"])
    tag = r["tag"]
    r["http"] = load_json(d / f"{tag}.http.json")
    r["connect"] = load_json(d / f"{tag}.connect.json")
    r["vip"] = load_json(d / f"{tag}.vip.json")
    for kind in ("http", "connect"):
        ms, is_open, pre, post = probe_outage(r[kind], r["t_probe"], r["t_fault"],
                                              r["window_ms"])
        r[f"{kind}_outage_ms"] = ms
        r[f"{kind}_outage_open"] = is_open
        r[f"{kind}_prefault_outages"] = pre
        r[f"{kind}_outages"] = post
    r["both_ms"] = r["vip"].get("both_ms")
    r["both_open"] = bool(r["vip"].get("both_open"))
    r["watch_after_fault_ms"] = round((r["vip"].get("end", r["t_fault"]) - r["t_fault"]) * 1000.0, 1)
    r["lb2_vip_ms"], r["lb1_vip_gone_ms"] = vip_times(r["vip"], r["t_fault"])
    # From the decision to strike to its first effect (port down, signal sent).
    r["strike_ms"] = round((r["t_struck"] - r["t_fault"]) * 1000.0, 1)
    # The phase actually met, and the takeover counted from lb1's last advert
    # (what Master_Down_Interval bounds): free of the phase's spread.
    r["phase_ms"] = (None if r["t_advert"] is None else
                     round((r["t_fault"] - r["t_advert"]) * 1000.0, 1))
    r["advert_to_vip_ms"] = (None if r["phase_ms"] is None or r["lb2_vip_ms"] is None else
                             round(r["lb2_vip_ms"] + r["phase_ms"], 1))
    ev = []
    for node in ("lb1", "lb2"):
        if r["impl"] == "tandem":
            ev += td_events(d / f"{tag}.tandem-{node}.log", node, r["t_fault"])
        else:
            ev += ka_events(d / f"{tag}.ka-states-{node}", node, r["t_fault"])
    ev.sort(key=lambda e: e[1])
    r["events"] = ev
    master = [e[1] for e in ev if e[0] == "lb2" and e[1] >= -ALIGN_SLACK_S * 1000
              and ("→MASTER" in e[2] or "MASTER (notify)" in e[2])]
    r["lb2_master_ms"] = master[0] if master else None
    return r


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def median_open(pairs):
    """Median of (value, open) pairs; open if a value the median rests on is open."""
    pairs = sorted((v, o) for v, o in pairs if v is not None)
    if not pairs:
        return None, False
    n = len(pairs)
    if n % 2:
        v, o = pairs[n // 2]
        return v, o
    (a, oa), (b, ob) = pairs[n // 2 - 1], pairs[n // 2]
    return (a + b) / 2.0, oa or ob


def summarize(runs):
    groups = {}
    for r in runs:
        groups.setdefault((r["interval_ms"], r["fault"], r["impl"]), []).append(r)
    summary = []
    for (ms, fault, impl), rs in groups.items():
        out = [r["http_outage_ms"] for r in rs if r["http_outage_ms"] is not None]
        om, oo = median_open([(r["http_outage_ms"], r["http_outage_open"]) for r in rs])
        cm, co = median_open([(r["connect_outage_ms"], r["connect_outage_open"]) for r in rs])
        bm, bo = median_open([(r["both_ms"], r["both_open"]) for r in rs])
        summary.append({
            "interval_ms": ms, "fault": fault, "impl": impl, "rounds": len(rs),
            "outage_median_ms": om, "outage_median_open": oo,
            "outage_min_ms": min(out) if out else None,
            "outage_max_ms": max(out) if out else None,
            "outage_open_rounds": sum(r["http_outage_open"] for r in rs),
            "outage_zero_rounds": sum(1 for v in out if v == 0),
            "connect_outage_median_ms": cm, "connect_outage_median_open": co,
            "both_median_ms": bm, "both_median_open": bo,
            "both_open_rounds": sum(r["both_open"] for r in rs),
            "both_nonzero_rounds": sum(1 for r in rs if (r["both_ms"] or 0) > 0),
            "lb2_vip_median_ms": med([r["lb2_vip_ms"] for r in rs]),
            "advert_to_vip_median_ms": med([r["advert_to_vip_ms"] for r in rs]),
            "phase_median_ms": med([r["phase_ms"] for r in rs]),
            "phase_unknown_rounds": sum(1 for r in rs if r["phase_ms"] is None),
            "lb2_master_median_ms": med([r["lb2_master_ms"] for r in rs]),
            "lb2_master_rounds": sum(1 for r in rs if r["lb2_state_after"] == "MASTER"),
            "prefault_outage_rounds": sum(1 for r in rs if r["http_prefault_outages"]),
            "watch_after_fault_ms": med([r["watch_after_fault_ms"] for r in rs]),
        })

    def key(s):
        return (-s["interval_ms"], FAULT_ORDER.index(s["fault"]) if s["fault"] in FAULT_ORDER
                else 99, IMPL_ORDER.index(s["impl"]) if s["impl"] in IMPL_ORDER else 99)
    summary.sort(key=key)
    return summary


def ratio(td, ka):
    """tandem / keepalived of the median outages (None when either is missing)."""
    if td is None or ka is None:
        return None
    if ka == 0:
        return 1.0 if td == 0 else math.inf
    return td / ka


def interval_label(ms):
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def fmt(v, is_open=False):
    if v is None:
        return "-"
    return ("≥" if is_open else "") + f"{v:.0f}"


def fmt_ratio(x):
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.2f}"


def print_report(summary, ratios, meta, nruns):
    rounds = meta.get("rounds", "?")
    print(f"\nfailover: tandem pair vs keepalived + HAProxy — {nruns} measurements, "
          f"{rounds} round(s) each")
    print(f"outage = longest run of failed probes after the fault (a new HTTP request "
          f"through the VIP every {meta.get('probe_interval_ms', '?')} ms; 'connect' = "
          f"a second prober that only connects), ms")
    print("both = ms both nodes held the VIP at once (eth0 with carrier), median; "
          "lb2 VIP = ms until lb2 held it, median;")
    print("adv→VIP = ms from lb1's last advert (as lb2 got it) to the VIP on lb2, median "
          "(node-loss, kill: what Master_Down_Interval bounds)")
    print("each fault strikes at a set phase after an advert of lb1's, round r of R at "
          "(r - 1/2)/R of the interval, the same for both")
    print()
    hdr = (f"{'interval':<9}{'fault':<10}{'impl':<11}{'median':>8}{'min':>7}{'max':>7}"
           f"{'connect':>9}{'both':>9}{'lb2 VIP':>9}{'adv→VIP':>9}{'  ratio td/ka':>14}")
    print(hdr)
    print("-" * len(hdr))
    for s in summary:
        r = ratios.get((s["interval_ms"], s["fault"]))
        rtxt = fmt_ratio(r["ratio"]) if (r and s["impl"] == "tandem") else ""
        print(f"{interval_label(s['interval_ms']):<9}{s['fault']:<10}{s['impl']:<11}"
              f"{fmt(s['outage_median_ms'], s['outage_median_open']):>8}"
              f"{fmt(s['outage_min_ms']):>7}{fmt(s['outage_max_ms']):>7}"
              f"{fmt(s['connect_outage_median_ms'], s['connect_outage_median_open']):>9}"
              f"{fmt(s['both_median_ms'], s['both_median_open']):>9}"
              f"{fmt(s['lb2_vip_median_ms']):>9}"
              f"{fmt(s['advert_to_vip_median_ms'] if s['fault'] != 'graceful' else None):>9}"
              f"{rtxt:>14}")
    notes = []
    for s in summary:
        name = f"{interval_label(s['interval_ms'])} {s['fault']} {s['impl']}"
        n = s["rounds"]
        if s["both_open_rounds"]:
            notes.append(f"{name}: the VIP was still on both nodes at the end of the window "
                         f"(~{fmt(s['watch_after_fault_ms'])} ms after the fault) in "
                         f"{s['both_open_rounds']}/{n} rounds: '≥' marks a lower bound")
        if s["impl"] == "keepalived" and s["fault"] == "kill" and s["outage_zero_rounds"]:
            notes.append(f"{name}: no failed probe in {s['outage_zero_rounds']}/{n} rounds: "
                         "HAProxy on the old MASTER kept answering on the VIP it still held")
        if s["outage_open_rounds"]:
            notes.append(f"{name}: probes had not recovered at the end of the window in "
                         f"{s['outage_open_rounds']}/{n} rounds")
        if s["lb2_master_rounds"] < n:
            notes.append(f"{name}: lb2 was not MASTER after the window in "
                         f"{n - s['lb2_master_rounds']}/{n} rounds")
        if s["phase_unknown_rounds"]:
            notes.append(f"{name}: no advert of lb1's seen before the fault in "
                         f"{s['phase_unknown_rounds']}/{n} rounds: phase unknown")
        if s["prefault_outage_rounds"]:
            notes.append(f"{name}: failed probes before the fault in "
                         f"{s['prefault_outage_rounds']}/{n} rounds (not counted)")
    if notes:
        print("\nnotes:")
        for t in notes:
            print(f"  - {t}")
    above, same, unclear = [], [], []
    # An outage is measured between probe starts: each end is off by up to one
    # probe interval, so two medians closer than two intervals are not told apart.
    res = 2.0 * float(meta.get("probe_interval_ms", 10))
    for (ms, fault), r in sorted(ratios.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
        x = r["ratio"]
        if x is None:
            continue
        name = (f"{interval_label(ms)} {fault} ({fmt(r['tandem'])} vs "
                f"{fmt(r['keepalived'])} ms, ratio {fmt_ratio(x)})")
        if x > 1.0 and r["tandem"] - r["keepalived"] > res:
            above.append(name)
        elif x > 1.0:
            same.append(name)
        if fault in ("kill", "graceful") and x > CLEARLY_BELOW:
            unclear.append(name)
    print(f"\ntarget: ratio ≤ 1.0 everywhere, clearly below (≤ {CLEARLY_BELOW}) for kill "
          "and graceful")
    print(f"  above 1.0 by more than the resolution (2 probe intervals, {res:.0f} ms): "
          + ("; ".join(above) if above else "none"))
    print("  above 1.0 within the resolution: " + ("; ".join(same) if same else "none"))
    print(f"  kill/graceful not ≤ {CLEARLY_BELOW}: " + ("; ".join(unclear) if unclear else "none"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta", action="append", default=[])
    a = ap.parse_args()
    d = Path(a.run_dir)
    meta = dict(m.split("=", 1) for m in a.meta)
    runs = []
    for line in (d / "runs.tsv").read_text().splitlines():
        f = line.split("\t")
        if len(f) != len(RUN_FIELDS):
            sys.exit(f"failover_report: bad line in runs.tsv: {line!r}")
        runs.append(one_run(d, f))
    if not runs:
        sys.exit("failover_report: no rounds in runs.tsv")
    summary = summarize(runs)
    med_of = {(s["interval_ms"], s["fault"], s["impl"]): s["outage_median_ms"] for s in summary}
    ratios = {}
    for (ms, fault, impl), v in med_of.items():
        if impl != "tandem":
            continue
        ka = med_of.get((ms, fault, "keepalived"))
        ratios[(ms, fault)] = {"tandem": v, "keepalived": ka, "ratio": ratio(v, ka)}
    doc = {
        "meta": meta,
        "summary": summary,
        "ratios": [{"interval_ms": ms, "fault": fault, **r,
                    "ratio": (None if r["ratio"] is None else
                              ("inf" if math.isinf(r["ratio"]) else round(r["ratio"], 3)))}
                   for (ms, fault), r in ratios.items()],
        "runs": runs,
    }
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    print_report(summary, ratios, meta, len(runs))
    print(f"\nraw results: {a.out}\nlogs: {d}")


if __name__ == "__main__":
    main()
