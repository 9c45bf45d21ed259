"""The command line of cli.md: `crm-sync` and `python -m sync` are the same program.

Exit status: 0 done; 1 done but some writes wait to be retried; 2 usage or configuration error;
3 a service could not be reached or refused the credentials; 4 another instance holds the state;
5 the state file cannot be used (damaged, or not crm-sync's).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from core.errors import ConfigError, FatalError, QuotaExhaustedError, SyncError
from state import InstanceLockedError, StateDB, StateLock, StateUnusableError
from sync.config import Config, load_config, with_rules_from
from sync.cycle import run_cycle
from sync.output import Format, render_plan
from sync.progress import terminal_progress
from sync.safe import safe_stream
from sync.vocabulary import CycleReport

__all__ = ["main"]

EXAMPLES = """\
examples:
  python -m sync --dry-run                       audit: print every change and why, change nothing
  python -m sync --dry-run --format json         the same plan as JSON lines
  python -m sync run                             one real cycle
  python -m sync daemon                          cycle on the configured schedule until stopped
  python -m sync sandbox --generate 500          local Vitally + Salesforce on port 8765
  python -m sync demo                            sandbox + sample book + a few cycles + summary
"""

# Opt-in diagnostics: `CRM_SYNC_LOG_LEVEL=DEBUG` sends every library's log records to stderr.
LOG_LEVEL_ENV = "CRM_SYNC_LOG_LEVEL"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

RECOVERY = """\
The file was left as it is. To recover, stop every crm-sync that uses it, then either
  - restore the state file from a backup (copy it over {path}), or
  - move it aside (mv {path} {path}.unusable) and start again: crm-sync creates a new state file
    and reads both services in full (README, "Recovering the state file").
"""

_COMMANDS = ("run", "daemon", "explain", "report", "sandbox", "demo", "failed", "retry")


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _package_version() -> str:
    from sync.app import package_version  # imported here like the other wiring of sync.app

    return package_version()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crm-sync",
        description="Route and sync B2B accounts between Vitally and Salesforce, following the sales handbook.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="config file (default ./config.toml, else the packaged example)")
    parser.add_argument("--state", type=Path, help="SQLite state file (overrides [state] path)")
    parser.add_argument("--version", action="version", version=f"crm-sync {_package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str, example: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    run = command("run", "one sync cycle", "python -m sync run --dry-run --format json --now 2026-11-22T09:00:00Z")
    run.add_argument("--dry-run", action="store_true", help="print the plan and why; change nothing anywhere")
    run.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        help="plan format (default: table on a terminal, else json)",
    )
    run.add_argument("--now", type=_timestamp, help="fix the rules' clock (ISO 8601) for reproducible audits")
    run.add_argument(
        "--full",
        action="store_true",
        help="judge every account again, not only those whose inputs, facts or day changed",
    )
    run.add_argument(
        "--compare-rules",
        type=Path,
        metavar="OTHER.toml",
        help="with --dry-run: print, per record, the decisions that differ under OTHER.toml's [rules]",
    )

    command(
        "daemon",
        "cycle on the configured schedule until stopped (SIGTERM finishes the cycle)",
        "python -m sync daemon",
    )

    explain = command(
        "explain",
        "every rule's verdict for one account or lead, with its inputs",
        "python -m sync explain acc_123",
    )
    explain.add_argument("id", nargs="+", help="Vitally account id or Salesforce Lead Id (several allowed)")
    explain.add_argument("--now", type=_timestamp, help="fix the rules' clock (ISO 8601)")

    from sync.report import DESCRIPTION, FORMATS, SECTIONS

    report = command(
        "report",
        "run history; leads and conversion per routing rule; round-robin fairness per pool",
        "python -m sync report --format html --output report.html\n"
        "  python -m sync report --format csv --section rules > rules.csv",
    )
    report.description = DESCRIPTION
    report.add_argument("--format", choices=FORMATS, default="table", help="output format (default table; see above)")
    report.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    report.add_argument(
        "--section",
        action="append",
        choices=SECTIONS,
        help="only this section (repeat for several; default all three, in the order runs, rules, pools)",
    )
    report.add_argument("--output", type=Path, metavar="FILE", help="write to FILE instead of stdout (any format)")

    sandbox = command(
        "sandbox",
        "local imitation of the Vitally and Salesforce APIs",
        "python -m sync sandbox --generate 500 --port 8765",
    )
    source = sandbox.add_mutually_exclusive_group()
    source.add_argument("--seed", type=Path, help="seed file: {vitally: {...}, salesforce: {...}}")
    source.add_argument("--generate", type=int, metavar="N", help="generate a realistic book of N accounts")
    sandbox.add_argument("--random-seed", type=int, default=0, help="seed of the generator (default 0)")
    sandbox.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
    sandbox.add_argument(
        "--real-org", action="store_true", help="behave as a real org and workspace on every point (see README)"
    )

    demo = command("demo", "sandbox + sample book + a few cycles, then a summary", "python -m sync demo --accounts 300")
    demo.add_argument("--accounts", type=int, default=300, help="size of the generated book (default 300)")

    command("failed", "writes parked after permanent errors", "python -m sync failed")
    retry = command("retry", "send parked writes again (all, or one by its outbox id)", "python -m sync retry 42")
    retry.add_argument("id", nargs="?", type=int, help="outbox id from `failed` (default: all)")
    return parser


def _normalise_argv(argv: list[str]) -> list[str]:
    """`python -m sync --dry-run ...` is `python -m sync run --dry-run ...` (cli.md)."""
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in ("--config", "--state"):
            index += 2
            continue
        if arg.startswith(("--config=", "--state=")):
            index += 1
            continue
        if arg in _COMMANDS or arg in ("-h", "--help", "--version"):
            return argv
        if arg.startswith("--"):
            return [*argv[:index], "run", *argv[index:]]
        return argv
    return argv


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if args.state is not None:
        config = config.with_state(args.state)
    return config


def _configure_logging(err: TextIO) -> None:
    """Route the `logging` root to `err` at the level named by CRM_SYNC_LOG_LEVEL (unset: Python's
    default, warnings only). Connectors never log a secret, so DEBUG is safe to turn on."""
    name = os.environ.get(LOG_LEVEL_ENV, "").strip().upper()
    if not name:
        return
    if name not in _LOG_LEVELS:
        raise ConfigError([f"{LOG_LEVEL_ENV}: expected one of {', '.join(_LOG_LEVELS)}, got {name!r}"])
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(name)


def _now() -> datetime:
    return datetime.now(UTC)


_TRUNCATIONS_SHOWN = 5  # values cut to their Salesforce field's length shown one by one


def _print_truncations(report: CycleReport, err: TextIO) -> None:
    """Values cut to their Salesforce field's length: the first few, then a count per field."""
    for cut in report.truncations[:_TRUNCATIONS_SHOWN]:
        err.write(f"truncated: {cut}\n")
    if len(report.truncations) > _TRUNCATIONS_SHOWN:
        by_field = Counter(cut.field for cut in report.truncations[_TRUNCATIONS_SHOWN:])
        fields = ", ".join(f"{name} {n}" for name, n in sorted(by_field.items()))
        err.write(f"truncated: … and {sum(by_field.values())} more value(s): {fields}\n")


def _print_summary(report: CycleReport, stream: TextIO) -> None:
    err = safe_stream(stream)  # record ids, names and messages are service data
    for notice in report.notices:
        err.write(f"{notice}\n")
    for error in report.record_errors:
        err.write(f"record error: {error}\n")
    _print_truncations(report, err)
    if report.quota_exhausted:
        err.write(
            f"writes stopped: {report.failures[-1] if report.failures else 'API budget spent'}; "
            "the rest stay pending for the next cycle\n"
        )
    for fallback in report.fallbacks:
        err.write(f"fallback: {fallback}\n")
    for decision in report.rule_errors:
        err.write(f"rule error: {decision.rule} for account {decision.record}: {decision.reason} (skipped for it)\n")
    rule_errors = report.counts.get("rule_errors", 0)
    if rule_errors > len(report.rule_errors):
        err.write(f"rule error: {rule_errors - len(report.rule_errors)} more, not shown (`explain ID` shows one)\n")
    for conflict in report.conflicts:
        verb = "overwritten" if conflict.overwritten else "left alone"
        err.write(
            f"conflict: {conflict.system} {conflict.record} {conflict.field}: someone set "
            f"{json.dumps(conflict.theirs)}, rule {conflict.rule} wants {json.dumps(conflict.ours)} ({verb})\n"
        )
    counts = report.counts
    what = "would change" if report.dry_run else "planned"
    err.write(
        f"{'dry run' if report.dry_run else 'run'} {report.run_id}: read {counts.get('accounts_read', 0)} account(s), "
        f"evaluated {counts.get('accounts_evaluated', 0)} ({counts.get('accounts_unchanged', 0)} unchanged, "
        f"not judged again); {what} {len(report.plan)} write(s); "
        f"applied {counts.get('applied', 0)}, failed {counts.get('failed', 0)}, parked {counts.get('parked', 0)}; "
        f"{len(report.conflicts)} conflict(s), {len(report.record_errors)} malformed record(s)"
        + (f", {rule_errors} rule error(s)" if rule_errors else "")
        + "\n"
    )
    held = counts.get("conflicts_open", 0) - sum(not c.overwritten for c in report.conflicts)
    if held > 0:
        err.write(f"{held} conflict(s) reported by earlier cycles still left alone\n")


def _cycle(
    config: Config, state: StateDB, now: datetime | None, err: TextIO, *, dry_run: bool, full: bool
) -> CycleReport:
    """One cycle against the configured services, with progress bars when stderr is a terminal."""
    from sync.app import make_salesforce, make_vitally

    with terminal_progress(err) as progress:
        vitally, salesforce = make_vitally(config), make_salesforce(config)
        return run_cycle(
            config, state, vitally, salesforce, clock=_now, now=now, dry_run=dry_run, full=full, progress=progress
        )


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = _load(args)
    fmt: Format = args.format or ("table" if out.isatty() else "json")
    if args.compare_rules is not None and not args.dry_run:
        raise ConfigError(["--compare-rules: only with --dry-run (a what-if changes nothing)"])
    # A bad rules file is reported before anything is read.
    alternative = None if args.compare_rules is None else with_rules_from(config, args.compare_rules)
    if args.dry_run:
        state = StateDB.snapshot(config.state_path)
        try:
            report = _cycle(config, state, args.now, err, dry_run=True, full=args.full)
            if alternative is not None:
                return _compare(state, config, alternative, args.compare_rules, report.now, fmt, out, err)
            render_plan(report.plan, fmt, out)  # the plan is read back from the state's copy
        finally:
            state.close()
        _print_summary(report, err)
        return report.exit_code
    with StateLock(config.state_path):
        state = StateDB.open(config.state_path)
        try:
            report = _cycle(config, state, args.now, err, dry_run=False, full=args.full)
            render_plan(report.plan, fmt, out)
        finally:
            state.close()
    _print_summary(report, err)
    return report.exit_code


def _compare(
    state: StateDB, config: Config, alternative: Config, other: Path, now: datetime, fmt: str, out: TextIO, err: TextIO
) -> int:
    """What-if: the dry run's mirror judged at the same `now` under both rule sets."""
    from sync.whatif import compare, render_differences

    differences = compare(state, config, alternative, now)
    render_differences(differences, fmt, out)
    err.write(f"what-if: {len(differences)} decision(s) differ under {other}\n")
    return 0


def cmd_daemon(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.daemon import run_daemon

    return run_daemon(_load(args), err)


def cmd_explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.explain import explain

    config = _load(args)
    state = StateDB.snapshot(config.state_path)
    now = args.now or _now()
    out, err = safe_stream(out), safe_stream(err)  # names, reasons and inputs are service data
    statuses = [explain(config, state, record, now, out, err) for record in args.id]
    return max(statuses)


def cmd_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.report import SECTIONS, build_report, render_report, save_report

    config = _load(args)
    state = StateDB.snapshot(config.state_path)
    try:
        report = build_report(config, state, args.limit)
    finally:
        state.close()
    sections = [section for section in SECTIONS if section in (args.section or SECTIONS)]
    if args.output is None:
        render_report(report, args.format, out, sections)
    else:
        save_report(report, args.format, args.output, sections)
        err.write(f"report written to {args.output}\n")
    return 0


def cmd_sandbox(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sandbox.generator import generate_book
    from sandbox.server import SandboxConfig, serve

    seed = None
    if args.seed is not None:
        try:
            seed = json.loads(args.seed.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError([f"--seed {args.seed}: {exc}"]) from None
    elif args.generate is not None:
        seed = generate_book(args.generate, seed=args.random_seed, now=_now(), real_org=args.real_org)
    serve(seed, args.port, SandboxConfig(real_org=args.real_org))
    return 0


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.demo import run_demo

    return run_demo(args.accounts, out)


def cmd_failed(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    out = safe_stream(out)  # Salesforce's and Vitally's error messages are service data
    config = _load(args)
    state = StateDB.snapshot(config.state_path)
    rows = state.outbox("parked")
    if not rows:
        out.write("no parked writes\n")
    for row in rows:
        out.write(
            f"{row.id}\t{row.write.system}\t{row.write.op}\t{row.write.record}\t{row.write.rule}\t"
            f"attempts {row.attempts}\t{row.last_error}\n"
        )
    return 0


def cmd_retry(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = _load(args)
    with StateLock(config.state_path):
        state = StateDB.open(config.state_path)
        with state.atomic():
            count = state.unpark(args.id, _now().isoformat())
        state.close()
    out.write(f"{count} parked write(s) queued again; the next cycle sends them\n")
    return 0


_HANDLERS = {
    "run": cmd_run,
    "daemon": cmd_daemon,
    "explain": cmd_explain,
    "report": cmd_report,
    "sandbox": cmd_sandbox,
    "demo": cmd_demo,
    "failed": cmd_failed,
    "retry": cmd_retry,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _parser()
    args = parser.parse_args(_normalise_argv(list(sys.argv[1:] if argv is None else argv)))
    if args.command is None:
        parser.print_help(out)
        return 2
    try:
        _configure_logging(err)
        return _HANDLERS[args.command](args, out, err)
    except ConfigError as exc:
        err.write("configuration error:\n" + "".join(f"  {problem}\n" for problem in exc.problems))
        return 2
    except InstanceLockedError as exc:
        err.write(f"error: {exc}\n")
        return 4
    except StateUnusableError as exc:
        safe_stream(err).write(f"error: {exc}.\n{RECOVERY.format(path=exc.path)}")
        return 5
    except FatalError as exc:
        err.write(f"error: {exc}\n")
        return 3
    except QuotaExhaustedError as exc:
        err.write(f"error: {exc}\n")
        return 1
    except SyncError as exc:
        err.write(f"error: {exc}\n")
        return 3
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop writing, quietly; everything was already committed.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
