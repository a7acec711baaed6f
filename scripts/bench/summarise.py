#!/usr/bin/env python3
"""Summarise wrk --latency runs into tables and a results file. Standard library only.

    summarise.py parse WRK_OUTPUT...          one JSON object per run (requests, RPS, latency percentiles in µs)
    summarise.py table --manifest M [--base direct]
                                              a plain table per target: RPS, p50, p99, medians, ratio to the base
    summarise.py peers --manifest M --json-out F --md-out F [options]
                                              the proxy-core report of scripts/bench-peers.sh

A manifest is a tab-separated file, one measured run per line:

    TARGET  CONNECTIONS  ROUND  WRK_OUTPUT_FILE  CPU

CPU is `-` or a comma-separated list of ROLE:PROCESS=TICKS, the utime+stime clock ticks that process spent during
the run (from /proc/PID/stat), for example `proxy:gateway=412,upstream:gwmock=388`.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import statistics
import sys
from dataclasses import dataclass, field

# --- wrk output ------------------------------------------------------------------------------------------------

_TIME_UNITS_US = {"us": 1.0, "ms": 1_000.0, "s": 1_000_000.0, "m": 60_000_000.0, "h": 3_600_000_000.0}


def time_to_us(text: str) -> float:
    """Converts a wrk duration such as `251.00us`, `1.08ms`, `2.00s` or `1.50m` to microseconds."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*(us|ms|s|m|h)\s*", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _TIME_UNITS_US[match.group(2)]


def parse_wrk(text: str) -> dict:
    """Parses the output of `wrk --latency`. Raises ValueError when it holds no result."""
    out: dict = {}
    match = re.search(r"Running (\S+) test @ (\S+)", text)
    if match:
        out["url"] = match.group(2)
    match = re.search(r"(\d+) threads and (\d+) connections", text)
    if match:
        out["threads"], out["connections"] = int(match.group(1)), int(match.group(2))
    match = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    if match:
        out["latency_mean_us"] = time_to_us(match.group(1))
        out["latency_stdev_us"] = time_to_us(match.group(2))
        out["latency_max_us"] = time_to_us(match.group(3))
    block = re.search(r"Latency Distribution\s*\n((?:\s+[0-9.]+%\s+\S+\s*\n)+)", text)
    if not block:
        raise ValueError("no 'Latency Distribution' block (was wrk run with --latency?)")
    for pct, value in re.findall(r"([0-9.]+)%\s+(\S+)", block.group(1)):
        key = "p" + (pct.rstrip("0").rstrip(".") if "." in pct else pct)
        out[f"{key}_us"] = time_to_us(value)
    match = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m|h),", text)
    if not match:
        raise ValueError("no 'N requests in T' line")
    out["requests"] = int(match.group(1))
    out["duration_s"] = time_to_us(match.group(2) + match.group(3)) / 1e6
    match = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    if not match:
        raise ValueError("no 'Requests/sec' line")
    out["rps"] = float(match.group(1))
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non_2xx"] = int(match.group(1)) if match else 0
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, match.groups())))
        if match
        else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    )
    return out


# --- manifest --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    target: str
    connections: int
    round: int
    source: str
    wrk: dict | None
    error: str | None
    cpu_ticks: dict = field(default_factory=dict)  # (role, process) -> ticks

    def metrics(self, clk_tck: int) -> dict:
        """The per-run figures of the results file."""
        out = {"round": self.round}
        if self.wrk is None:
            out["error"] = self.error
            return out
        for key in ("rps", "requests", "duration_s", "p50_us", "p75_us", "p90_us", "p99_us", "latency_mean_us",
                    "latency_max_us", "non_2xx", "socket_errors"):
            if key in self.wrk:
                out[key] = self.wrk[key]
        if self.cpu_ticks:
            cpu = {}
            for (role, process), ticks in self.cpu_ticks.items():
                seconds = ticks / clk_tck
                entry = {"process": process, "ticks": ticks, "cpu_s": seconds}
                if self.wrk["requests"] > 0:
                    entry["cpu_s_per_1k_req"] = seconds * 1000.0 / self.wrk["requests"]
                    entry["cpu_us_per_req"] = seconds * 1e6 / self.wrk["requests"]
                cpu[role] = entry
            out["cpu"] = cpu
        return out

    @property
    def ok(self) -> bool:
        return self.wrk is not None

    @property
    def clean(self) -> bool:
        return self.ok and self.wrk["non_2xx"] == 0 and not any(self.wrk["socket_errors"].values())


def read_manifest(path: str) -> list[Run]:
    base = os.path.dirname(os.path.abspath(path))
    runs = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) < 4:
                raise SystemExit(f"{path}:{lineno}: expected TARGET CONNECTIONS ROUND FILE [CPU]")
            target, conns, rnd, source = cols[:4]
            cpu_ticks = {}
            if len(cols) > 4 and cols[4].strip() not in ("", "-"):
                for item in cols[4].split(","):
                    name, _, ticks = item.partition("=")
                    role, _, process = name.partition(":")
                    cpu_ticks[(role, process or role)] = int(ticks)
            if not os.path.isabs(source):
                source = os.path.join(base, source)
            wrk, error = None, None
            try:
                with open(source, encoding="utf-8", errors="replace") as out:
                    wrk = parse_wrk(out.read())
            except (OSError, ValueError) as exc:
                error = str(exc)
                print(f"summarise.py: {target} c={conns} round {rnd}: {error}", file=sys.stderr)
            runs.append(Run(target, int(conns), int(rnd), source, wrk, error, cpu_ticks))
    return runs


# --- statistics ------------------------------------------------------------------------------------------------


def spread(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def ordered(items):
    """Unique items in first-seen order."""
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


class Results:
    def __init__(self, runs: list[Run], clk_tck: int):
        self.runs = runs
        self.clk_tck = clk_tck
        self.targets = ordered(r.target for r in runs)
        self.connections = ordered(r.connections for r in runs)

    def runs_of(self, target: str, conns: int) -> list[Run]:
        return sorted((r for r in self.runs if r.target == target and r.connections == conns), key=lambda r: r.round)

    def values(self, target: str, conns: int, key: str) -> list[float]:
        return [r.wrk[key] for r in self.runs_of(target, conns) if r.ok and key in r.wrk]

    def cpu_per_1k(self, target: str, conns: int, role: str) -> list[float]:
        out = []
        for run in self.runs_of(target, conns):
            if run.ok and run.wrk["requests"] > 0:
                for (r, _process), ticks in run.cpu_ticks.items():
                    if r == role:
                        out.append(ticks / self.clk_tck * 1000.0 / run.wrk["requests"])
        return out

    def process_name(self, target: str, role: str) -> str | None:
        for run in self.runs:
            if run.target == target:
                for (r, process) in run.cpu_ticks:
                    if r == role:
                        return process
        return None

    def roles(self) -> list[str]:
        """The CPU roles measured: `proxy` first, then `upstream`, then any other."""
        found = ordered(role for run in self.runs for (role, _p) in run.cpu_ticks)
        rank = {"proxy": 0, "upstream": 1}
        return sorted(found, key=lambda role: (rank.get(role, 2), found.index(role)))

    def ticks(self, target: str, conns: int, role: str) -> list[float]:
        return [t for run in self.runs_of(target, conns) for (r, _p), t in run.cpu_ticks.items() if r == role]

    def paired(self, a: str, b: str, conns: int, fn) -> list[float]:
        """fn(run_a, run_b) over the rounds where both targets have a result."""
        by_round_b = {r.round: r for r in self.runs_of(b, conns) if r.ok}
        out = []
        for run_a in self.runs_of(a, conns):
            run_b = by_round_b.get(run_a.round)
            if run_a.ok and run_b is not None:
                value = fn(run_a, run_b)
                if value is not None:
                    out.append(value)
        return out

    def ratio(self, a: str, b: str, conns: int, key: str = "rps") -> list[float]:
        return self.paired(a, b, conns, lambda x, y: x.wrk[key] / y.wrk[key] if y.wrk.get(key) else None)

    def delta(self, a: str, b: str, conns: int, key: str) -> list[float]:
        return self.paired(a, b, conns, lambda x, y: x.wrk[key] - y.wrk[key] if key in x.wrk and key in y.wrk
                           else None)

    def cpu_ratio(self, a: str, b: str, conns: int, role: str) -> list[float]:
        def fn(x: Run, y: Run):
            ta = sum(t for (r, _p), t in x.cpu_ticks.items() if r == role)
            tb = sum(t for (r, _p), t in y.cpu_ticks.items() if r == role)
            if not ta or not tb or not x.wrk["requests"] or not y.wrk["requests"]:
                return None
            return (ta / x.wrk["requests"]) / (tb / y.wrk["requests"])
        return self.paired(a, b, conns, fn)


# --- formatting ------------------------------------------------------------------------------------------------


def fmt_num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def fmt_us(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) >= 10_000:
        return f"{value / 1000:,.1f} ms"
    return f"{value:,.0f} µs"


def fmt_signed_us(value: float | None) -> str:
    if value is None:
        return "–"
    return ("+" if value >= 0 else "−") + fmt_us(abs(value))


def fmt_spread(stats: dict | None, fmt) -> str:
    if not stats:
        return "–"
    if stats["n"] == 1:
        return fmt(stats["median"])
    return f"{fmt(stats['median'])} ({fmt(stats['min'])} – {fmt(stats['max'])})"


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def plain_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt_row = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt_row(header), fmt_row(["-" * w for w in widths])] + [fmt_row(r) for r in rows])


# --- machine ---------------------------------------------------------------------------------------------------


def machine_info() -> dict:
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "os": platform.platform(),
        "mem_total_kb": mem_kb,
    }


# --- commands --------------------------------------------------------------------------------------------------


def cmd_parse(args) -> int:
    status = 0
    for path in args.files:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                result = parse_wrk(handle.read())
            print(json.dumps({"file": path, **result}))
        except (OSError, ValueError) as exc:
            print(f"summarise.py: {path}: {exc}", file=sys.stderr)
            status = 1
    return status


def cmd_table(args) -> int:
    results = Results(read_manifest(args.manifest), args.clk_tck)
    base = args.base
    blocks = []
    for conns in results.connections:
        rows = []
        for target in results.targets:
            runs = results.runs_of(target, conns)
            if not runs:
                continue
            rps = results.values(target, conns, "rps")
            row = [
                target,
                str(conns),
                " ".join(fmt_num(v) for v in rps) or "–",
                fmt_num(statistics.median(rps)) if rps else "–",
                fmt_us(spread(results.values(target, conns, "p50_us"))["median"]) if rps else "–",
                fmt_us(spread(results.values(target, conns, "p99_us"))["median"]) if rps else "–",
            ]
            if target != base and base in results.targets:
                ratio = spread(results.ratio(target, base, conns))
                d50 = spread(results.delta(target, base, conns, "p50_us"))
                d99 = spread(results.delta(target, base, conns, "p99_us"))
                row += [fmt_ratio(ratio and ratio["median"]), fmt_signed_us(d50 and d50["median"]),
                        fmt_signed_us(d99 and d99["median"])]
            else:
                row += ["", "", ""]
            bad = [r for r in runs if not r.clean]
            row.append(f"{len(bad)} run(s) with errors" if bad else "")
            rows.append(row)
        header = ["target", "conns", "RPS per round", "median RPS", "median p50", "median p99",
                  f"RPS ÷ {base}", f"Δp50 vs {base}", f"Δp99 vs {base}", "note"]
        blocks.append(plain_table(header, rows))
    print("\n\n".join(blocks))
    print(f"\n(medians over rounds; ratios and deltas are medians of per-round values against '{base}' in the "
          "same round)")
    return 0


def target_stats(results: Results, target: str, conns: int) -> dict:
    runs = results.runs_of(target, conns)
    out = {
        "rounds": [r.metrics(results.clk_tck) for r in runs],
        "rps": spread(results.values(target, conns, "rps")),
        "p50_us": spread(results.values(target, conns, "p50_us")),
        "p90_us": spread(results.values(target, conns, "p90_us")),
        "p99_us": spread(results.values(target, conns, "p99_us")),
        "errors": sum(0 if r.clean else 1 for r in runs),
    }
    cpu = {}
    for role in results.roles():
        stats = spread(results.cpu_per_1k(target, conns, role))
        if stats:
            cpu[role] = {"process": results.process_name(target, role), "cpu_s_per_1k_req": stats,
                         "ticks": spread(results.ticks(target, conns, role))}
    if cpu:
        out["cpu"] = cpu
    return out


def pair_stats(results: Results, a: str, b: str) -> dict:
    out = {}
    for conns in results.connections:
        if not results.runs_of(a, conns) or not results.runs_of(b, conns):
            continue
        entry = {
            "rps_ratio": spread(results.ratio(a, b, conns)),
            "delta_p50_us": spread(results.delta(a, b, conns, "p50_us")),
            "delta_p99_us": spread(results.delta(a, b, conns, "p99_us")),
        }
        for role in results.roles():
            stats = spread(results.cpu_ratio(a, b, conns, role))
            if stats:
                entry[f"cpu_ratio_{role}"] = stats
        out[str(conns)] = entry
    return out


def parse_pairs(items: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        a, sep, b = item.partition(":")
        if not sep:
            raise SystemExit(f"expected A:B, got {item!r}")
        pairs.append((a, b))
    return pairs


def parse_kv(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def cmd_peers(args) -> int:
    results = Results(read_manifest(args.manifest), args.clk_tck)
    labels = parse_kv(args.label)
    urls = parse_kv(args.url)
    arrangement = parse_kv(args.arrangement)
    via_direct = parse_pairs(args.via_direct)
    versus = parse_pairs(args.versus)
    label = lambda t: labels.get(t, t)  # noqa: E731
    now = _dt.datetime.now().astimezone()

    doc = {
        "name": args.name,
        "date": now.date().isoformat(),
        "generated_at": now.isoformat(timespec="seconds"),
        "tool": args.tool,
        "command": args.command,
        "options": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": results.connections,
            "wrk_threads": 1,
            "body": os.path.relpath(args.body, args.root) if args.body else None,
            "body_bytes": os.path.getsize(args.body) if args.body and os.path.exists(args.body) else None,
            "order": "interleaved: each round runs every target once, in the order listed under targets",
        },
        "machine": {**machine_info(), "clk_tck": args.clk_tck},
        "arrangement": arrangement,
        "targets": {},
        "via_vs_direct": {},
        "versus": {},
    }
    for target in results.targets:
        doc["targets"][target] = {
            "label": label(target),
            "url": urls.get(target),
            "by_connections": {str(c): target_stats(results, target, c) for c in results.connections
                               if results.runs_of(target, c)},
        }
    for a, b in via_direct:
        doc["via_vs_direct"][f"{a}:{b}"] = pair_stats(results, a, b)
    for a, b in versus:
        doc["versus"][f"{a}:{b}"] = pair_stats(results, a, b)

    os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
    with open(args.json_out, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=2, ensure_ascii=False)
        handle.write("\n")

    md = render_markdown(doc, results, label, via_direct, versus, args)
    with open(args.md_out, "w", encoding="utf-8") as handle:
        handle.write(md)
    print(md)
    return 0 if all(r.ok for r in results.runs) else 1


def render_markdown(doc, results: Results, label, via_direct, versus, args) -> str:
    m = doc["machine"]
    out = [f"# {args.title} — {doc['date']}", ""]
    out.append(
        f"wrk closed loop, {args.rounds} interleaved round(s) of {args.duration:g} s per target after a "
        f"{args.warmup:g} s warm-up, 1 wrk thread, keep-alive, a {doc['options']['body_bytes']}-byte chat request. "
        "Each cell: median over rounds (min – max). Ratios and differences are taken per round, between runs of the "
        "same round, then their median is shown."
    )
    out.append("")
    out.append(f"Machine: {m['nproc']} CPU(s), {m['cpu_model'] or 'unknown CPU'}, Linux {m['kernel']}.")
    if doc["arrangement"]:
        out.append("Arrangement: " + "; ".join(f"{k}: {v}" for k, v in doc["arrangement"].items()) + ".")
    out.append("")

    bad = [r for r in results.runs if not r.clean]
    if bad:
        out.append("**Some runs had errors; their figures are suspect:**")
        out.append("")
        for run in bad:
            if not run.ok:
                out.append(f"- {label(run.target)}, c={run.connections}, round {run.round}: no result ({run.error})")
            else:
                errs = ", ".join(f"{k} {v}" for k, v in run.wrk["socket_errors"].items() if v)
                out.append(f"- {label(run.target)}, c={run.connections}, round {run.round}: "
                           f"{run.wrk['non_2xx']} non-2xx responses" + (f", socket errors: {errs}" if errs else ""))
        out.append("")

    for conns in results.connections:
        out.append(f"## {conns} connection(s)")
        out.append("")
        rows = []
        for target in results.targets:
            stats = doc["targets"][target]["by_connections"].get(str(conns))
            if not stats:
                continue
            rows.append([
                label(target),
                fmt_spread(stats["rps"], fmt_num),
                fmt_spread(stats["p50_us"], fmt_us),
                fmt_spread(stats["p99_us"], fmt_us),
                " / ".join(fmt_num(r.get("rps")) for r in stats["rounds"]),
            ])
        out.append(md_table(["target", "requests/s", "p50", "p99", "RPS per round"], rows))
        out.append("")

    if via_direct:
        out.append("## Via ÷ direct")
        out.append("")
        out.append("Throughput ratio (RPS via ÷ RPS direct) and added latency (via − direct).")
        out.append("")
        rows = []
        for a, b in via_direct:
            for conns, entry in doc["via_vs_direct"][f"{a}:{b}"].items():
                rows.append([f"{label(a)} ÷ {label(b)}", conns, fmt_spread(entry["rps_ratio"], fmt_ratio),
                             fmt_spread(entry["delta_p50_us"], fmt_signed_us),
                             fmt_spread(entry["delta_p99_us"], fmt_signed_us)])
        out.append(md_table(["pair", "connections", "RPS ratio", "added p50", "added p99"], rows))
        out.append("")

    for a, b in versus:
        out.append(f"## {label(a)} vs {label(b)}")
        out.append("")
        rows = []
        pair = doc["versus"][f"{a}:{b}"]
        roles = [role for role in results.roles() if any(f"cpu_ratio_{role}" in e for e in pair.values())]
        for conns, entry in pair.items():
            row = [conns, fmt_spread(entry["rps_ratio"], fmt_ratio), fmt_spread(entry["delta_p50_us"], fmt_signed_us),
                   fmt_spread(entry["delta_p99_us"], fmt_signed_us)]
            for role in roles:
                row.append(fmt_spread(entry.get(f"cpu_ratio_{role}"), fmt_ratio))
            rows.append(row)
        header = ["connections", f"RPS ratio ({label(a)} ÷ {label(b)})", "p50 difference", "p99 difference"]
        header += [f"CPU/request ratio ({role})" for role in roles]
        out.append(md_table(header, rows))
        out.append("")

    roles = results.roles()
    if roles:
        out.append("## CPU per 1,000 requests")
        out.append("")
        out.append("CPU seconds (user + system, from /proc/PID/stat, all threads) spent by each process during the "
                   "measured run, per 1,000 requests wrk completed. Shown in milliseconds, which is also µs per "
                   f"request. Clock tick: 1/{args.clk_tck} s.")
        out.append("")
        rows = []
        for conns in results.connections:
            for target in results.targets:
                stats = doc["targets"][target]["by_connections"].get(str(conns))
                if not stats or "cpu" not in stats:
                    continue
                for role in roles:
                    entry = stats["cpu"].get(role)
                    if not entry:
                        continue
                    ms = {k: (v * 1000.0 if isinstance(v, float) else v) for k, v in entry["cpu_s_per_1k_req"].items()}
                    rows.append([label(target), str(conns), f"{role}: {entry['process']}",
                                 fmt_spread(ms, lambda v: fmt_num(v, 2)), fmt_num(entry["ticks"]["median"])])
        out.append(md_table(["target", "connections", "process", "CPU ms per 1k requests", "ticks per run (median)"],
                            rows))
        out.append("")
        out.append("Few ticks per run mean a coarse figure: one tick is the resolution.")
        out.append("")

    out.append("## Command")
    out.append("")
    out.append("```")
    out.append(args.command or "(not recorded)")
    out.append("```")
    out.append("")
    out.append(f"Raw figures: `{os.path.basename(args.json_out)}`.")
    out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("parse", help="parse wrk outputs to JSON lines")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("table", help="plain comparison table")
    p.add_argument("--manifest", required=True)
    p.add_argument("--base", default="direct")
    p.add_argument("--clk-tck", type=int, default=os.sysconf("SC_CLK_TCK"))
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("peers", help="proxy-core results (JSON + Markdown)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--json-out", required=True)
    p.add_argument("--md-out", required=True)
    p.add_argument("--name", default="proxy-core")
    p.add_argument("--title", default="Proxy core: gateway vs nginx vs direct")
    p.add_argument("--tool", default="wrk")
    p.add_argument("--command", default="")
    p.add_argument("--rounds", type=int, default=0)
    p.add_argument("--duration", type=float, default=0)
    p.add_argument("--warmup", type=float, default=0)
    p.add_argument("--body", default="")
    p.add_argument("--root", default=os.getcwd(), help="paths in the results are relative to this folder")
    p.add_argument("--clk-tck", type=int, default=os.sysconf("SC_CLK_TCK"))
    p.add_argument("--label", action="append", default=[], metavar="TARGET=TEXT")
    p.add_argument("--url", action="append", default=[], metavar="TARGET=URL")
    p.add_argument("--arrangement", action="append", default=[], metavar="KEY=TEXT")
    p.add_argument("--via-direct", action="append", default=[], metavar="VIA:DIRECT")
    p.add_argument("--versus", action="append", default=[], metavar="A:B")
    p.set_defaults(func=cmd_peers)

    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
