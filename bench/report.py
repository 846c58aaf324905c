"""The run's figures and the one markdown table they print as: absolute figures, then ratios against baselines.

Columns are body sizes. Every row of a section is one contender (or one ratio of two); a cell that could not be
measured is ``n/a``, and a throughput cell whose runs saw errors says how many.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from bench.load import Cell
from bench.probes import Latency
from bench.processes import PeakRss

NA = "n/a"


@dataclass
class Results:
    sizes: Sequence[int]
    #: Contender key -> its label, in the order the contenders ran.
    labels: dict[str, str] = field(default_factory=dict)
    #: Contender key -> body size -> hits per second.
    hits: dict[str, dict[int, Cell]] = field(default_factory=dict)
    #: Body size -> latency of the miss URLs fetched straight from the origin.
    direct: dict[int, Latency] = field(default_factory=dict)
    #: grenier contender key -> body size -> miss-to-ready latency of the same URLs through it.
    misses: dict[str, dict[int, Latency]] = field(default_factory=dict)
    #: Body size -> Redis MEMORY USAGE of grenier's entry, and of the naive baseline's raw value.
    entry_bytes: dict[int, int | None] = field(default_factory=dict)
    raw_bytes: dict[int, int | None] = field(default_factory=dict)
    #: Process name -> body size -> peak RSS of it (and its children) up to the end of that size's phase.
    rss: dict[str, dict[int, PeakRss]] = field(default_factory=dict)


def size_name(size: int) -> str:
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and not (math.isnan(a) or math.isnan(b)) else NA


def _rate(cell: Cell | None) -> str:
    if cell is None:
        return NA
    errors = f" ({cell.errors:,} errors)" if cell.errors else ""
    return f"{cell.rate:,.0f}{errors}"


def _per_cpu(cell: Cell | None) -> str:
    got = cell.per_cpu_second if cell else None
    return NA if got is None else f"{got:,.0f}"


def _busy(cell: Cell | None) -> str:
    shares = cell.busy if cell else None
    return NA if shares is None else f"{shares[0] * 100:.0f} / {shares[1] * 100:.0f}"


def _ms(value: float) -> str:
    return NA if math.isnan(value) else f"{value:.1f}"


def _latency(lat: Latency | None) -> str:
    if lat is None:
        return NA
    errors = f" ({lat.errors} not ready)" if lat.errors else ""
    return f"{_ms(lat.pct(50))} / {_ms(lat.pct(95))}{errors}"


@dataclass(frozen=True)
class Setup:
    """How the figures were taken, as the table's section titles say."""

    runs: int
    duration: float
    connections: int
    generator: str
    misses: int
    processes: int


#: Contender pairs whose hit rates the table divides, when both ran.
RATIOS = [
    ("embedded", "bare"),
    ("redis", "bare"),
    ("redis", "naive"),
    ("embedded", "nginx"),
    ("redis", "nginx"),
]


def ratio_pairs(ran: Collection[str], processes: int) -> list[tuple[str, str]]:
    """:data:`RATIOS`, and with ``--processes N``: N processes against one, and grenier against bare at N."""
    pairs = list(RATIOS)
    if processes > 1:
        n = f"-x{processes}"
        pairs += [(f"bare{n}", "bare"), (f"redis{n}", "redis"), (f"redis{n}", f"bare{n}")]
    return [(a, b) for a, b in pairs if a in ran and b in ran]


def _bytes(used: int | None) -> str:
    return NA if used is None else f"{used:,}"


def table(results: Results, setup: Setup) -> str:
    sizes = results.sizes
    lines = [
        "| | " + " | ".join(size_name(s) for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]

    def section(title: str) -> None:
        lines.append(f"| **{title}** |" + " |" * len(sizes))

    def row(label: str, cells: Iterable[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def rate(key: str, size: int) -> float:
        cell = results.hits.get(key, {}).get(size)
        return cell.rate if cell else math.nan

    def per_cpu(key: str, size: int) -> float:
        cell = results.hits.get(key, {}).get(size)
        got = cell.per_cpu_second if cell else None
        return math.nan if got is None else got

    generator = f"{setup.connections} connections, {setup.generator}"
    section(f"hits/s: median of {setup.runs} x {setup.duration:g} s, {generator}")
    for key, by_size in results.hits.items():
        row(results.labels[key], (_rate(by_size.get(s)) for s in sizes))

    if ratios := ratio_pairs(results.hits.keys(), setup.processes):
        section("ratios of hits/s")
        for a, b in ratios:
            row(f"{results.labels[a]} / {results.labels[b]}", (_ratio(rate(a, s), rate(b, s)) for s in sizes))

    if any(cell.per_cpu_second for by_size in results.hits.values() for cell in by_size.values()):
        section("hits per CPU-second of the server-side processes (the contender and the Redis it reads)")
        for key, by_size in results.hits.items():
            row(results.labels[key], (_per_cpu(by_size.get(s)) for s in sizes))
        if ratios:
            section("ratios of hits per CPU-second")
            for a, b in ratios:
                row(f"{results.labels[a]} / {results.labels[b]}", (_ratio(per_cpu(a, s), per_cpu(b, s)) for s in sizes))

    if any(cell.busy for by_size in results.hits.values() for cell in by_size.values()):
        section("CPU busy during the hit runs, %: server CPUs / load generator CPUs")
        for key, by_size in results.hits.items():
            row(results.labels[key], (_busy(by_size.get(s)) for s in sizes))

    if results.misses:
        section(f"miss-to-ready, ms: p50 / p95 over {setup.misses} distinct URLs, one at a time")
        row("straight from the origin", (_latency(results.direct.get(s)) for s in sizes))
        for key, latencies in results.misses.items():
            row(results.labels[key], (_latency(latencies.get(s)) for s in sizes))
        for key, latencies in results.misses.items():
            row(
                f"overhead: p50 of {results.labels[key]} minus p50 of the origin",
                (_overhead(latencies.get(s), results.direct.get(s)) for s in sizes),
            )

    if results.entry_bytes or results.rss:
        section("memory")
    if results.entry_bytes:
        row("Redis MEMORY USAGE of grenier's entry, bytes", (_bytes(results.entry_bytes.get(s)) for s in sizes))
        row("... divided by the body size", (_per(results.entry_bytes.get(s), s) for s in sizes))
    if results.raw_bytes:
        row(
            "Redis MEMORY USAGE of the body as a raw value (naive), bytes",
            (_bytes(results.raw_bytes.get(s)) for s in sizes),
        )
    for name, peaks in results.rss.items():
        most = max((p.processes for p in peaks.values()), default=1)
        several = f", sum of {most} processes" if most > 1 else ""
        row(f"peak RSS (VmHWM) of {name}, MiB{several}, up to this column", (_mib(peaks.get(s)) for s in sizes))
    return "\n".join(lines)


def _overhead(via: Latency | None, direct: Latency | None) -> str:
    return NA if via is None or direct is None else f"{via.pct(50) - direct.pct(50):+.1f}"


def _per(used: int | None, size: int) -> str:
    return NA if used is None else f"{used / size:.2f}"


def _mib(peak: PeakRss | None) -> str:
    return NA if peak is None else f"{peak.mib:,.0f}"
