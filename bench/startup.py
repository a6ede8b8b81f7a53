"""How long mcpsec takes to start, as whole processes, next to `python -c "import typer"`.

    .venv/bin/python bench/startup.py              # 30 runs per command, a table
    .venv/bin/python bench/startup.py --runs 100 --json

Runs are interleaved round-robin (one of each command per round, the order rotated every
round) after warm-up rounds, so machine noise and cache effects hit every command alike.
The ratio that matters is `mcpsec pkce generate` against `import typer`: a CLI built on
Typer cannot start faster than Typer, and a quick command should not cost much more
(target <= 1.5x). A benchmark reports; it always exits 0.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/ is no installed package: make the repo root importable from any working directory.
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from bench.common import bench_parser, positive  # noqa: E402

TARGET_RATIO = 1.5
BASELINE = "python -c 'import typer'"
TARGET = "mcpsec pkce generate"
WARMUP_ROUNDS = 3
DEFAULT_RUNS = 30


@dataclass(frozen=True)
class Command:
    name: str
    argv: tuple[str, ...]


@dataclass
class Samples:
    command: Command
    seconds: list[float] = field(default_factory=list)
    failures: int = 0  # runs that exited non-zero; their times are still counted


@dataclass(frozen=True)
class Summary:
    name: str
    argv: tuple[str, ...]
    runs: int
    failures: int
    median_ms: float
    p90_ms: float
    min_ms: float
    ratio: float  # median / the baseline's median


def mcpsec_argv() -> tuple[str, ...]:
    """The console script next to this interpreter, else `python -m mcpsec`."""
    script = Path(sys.executable).with_name("mcpsec")
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (sys.executable, "-m", "mcpsec")


def commands() -> list[Command]:
    mcpsec = mcpsec_argv()
    return [
        Command("python -c pass", (sys.executable, "-c", "pass")),
        Command(BASELINE, (sys.executable, "-c", "import typer")),
        Command("mcpsec --version", (*mcpsec, "--version")),
        Command("mcpsec --help", (*mcpsec, "--help")),
        Command(TARGET, (*mcpsec, "pkce", "generate")),
    ]


def bench_env(home: Path) -> dict[str, str]:
    """No colour, a fixed width, and an empty home so no real config or store is read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCPSEC_", "XDG_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        NO_COLOR="1",
        COLUMNS="80",
    )
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def time_once(argv: Sequence[str], env: Mapping[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    code = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # not a terminal: the plain-output path, as in a script
        stderr=subprocess.DEVNULL,
        env=env,
        check=False,
    ).returncode
    return time.perf_counter() - start, code


def measure(
    cmds: Sequence[Command], runs: int, warmup: int, env: Mapping[str, str]
) -> list[Samples]:
    samples = [Samples(c) for c in cmds]
    for round_no in range(warmup + runs):
        shift = round_no % len(samples)
        for sample in samples[shift:] + samples[:shift]:
            seconds, code = time_once(sample.command.argv, env)
            if round_no < warmup:
                continue
            sample.seconds.append(seconds)
            sample.failures += code != 0
    return samples


def p90(values: Sequence[float]) -> float:
    if len(values) < 2:
        return max(values)
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def summarise(samples: Sequence[Samples]) -> list[Summary]:
    medians = {s.command.name: statistics.median(s.seconds) for s in samples}
    baseline = medians[BASELINE]
    return [
        Summary(
            name=s.command.name,
            argv=s.command.argv,
            runs=len(s.seconds),
            failures=s.failures,
            median_ms=medians[s.command.name] * 1000,
            p90_ms=p90(s.seconds) * 1000,
            min_ms=min(s.seconds) * 1000,
            ratio=medians[s.command.name] / baseline,
        )
        for s in samples
    ]


def verdict_line(summaries: Sequence[Summary]) -> str:
    target = next(s for s in summaries if s.name == TARGET)
    return f"pkce generate / import typer = {target.ratio:.2f}x (target <= {TARGET_RATIO:.1f}x)" + (
        "" if target.ratio <= TARGET_RATIO else "  ABOVE TARGET"
    )


def render_table(summaries: Sequence[Summary], runs: int, warmup: int) -> str:
    width = max(len(s.name) for s in summaries)
    head = f"{'command':<{width}}  {'median':>8}  {'p90':>8}  {'min':>8}  {'ratio':>6}  fails"
    lines = [
        f"Python {platform.python_version()} ({sys.executable}); "
        f"{runs} runs per command after {warmup} warm-up rounds; times in ms; "
        f"ratio = median / median of {BASELINE}",
        "",
        head,
        "-" * len(head),
    ]
    lines += [
        f"{s.name:<{width}}  {s.median_ms:8.1f}  {s.p90_ms:8.1f}  {s.min_ms:8.1f}  "
        f"{s.ratio:5.2f}x  {s.failures:>5}"
        for s in summaries
    ]
    return "\n".join([*lines, "", verdict_line(summaries)])


def render_json(summaries: Sequence[Summary], runs: int, warmup: int) -> str:
    target = next(s for s in summaries if s.name == TARGET)
    document: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "runs": runs,
        "warmup_rounds": warmup,
        "baseline": BASELINE,
        "commands": [
            {
                "name": s.name,
                "argv": list(s.argv),
                "runs": s.runs,
                "failures": s.failures,
                "median_ms": round(s.median_ms, 3),
                "p90_ms": round(s.p90_ms, 3),
                "min_ms": round(s.min_ms, 3),
                "ratio": round(s.ratio, 3),
            }
            for s in summaries
        ],
        "target": {
            "command": TARGET,
            "ratio": round(target.ratio, 3),
            "limit": TARGET_RATIO,
            "met": target.ratio <= TARGET_RATIO,
        },
    }
    return json.dumps(document, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--runs", type=positive, default=DEFAULT_RUNS, help="runs per command")
    parser.add_argument(
        "--warmup", type=int, default=WARMUP_ROUNDS, help="discarded rounds before timing"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mcpsec-bench-") as home:
        samples = measure(commands(), args.runs, max(args.warmup, 0), bench_env(Path(home)))
    summaries = summarise(samples)
    render = render_json if args.json else render_table
    print(render(summaries, args.runs, max(args.warmup, 0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
