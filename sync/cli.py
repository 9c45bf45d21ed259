"""The command line (docs/cli.md): `crm-sync` and `python -m sync` are the same program.

Exit status: 0 done; 1 done but some writes wait to be retried (or were parked); 2 usage or
configuration error, or an `apply` that refused stale writes; 3 a service could not be reached or
refused the credentials; 4 another instance holds the state; 5 the state file cannot be used
(damaged, or not crm-sync's). The global options (`--config`, `--state`) are accepted before or
after the command.
"""

from __future__ import annotations

import argparse
import gc
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
from sync import compiled
from sync.config import Config, load_config, with_rules_from
from sync.cycle import run_cycle
from sync.hints import RetryNotes, explain_failure
from sync.output import Format, Names, render_plan
from sync.planfile import read_plan
from sync.progress import terminal_progress
from sync.reviewed import Applied, apply_plan, check_plan
from sync.safe import safe_stream
from sync.scope import EVERYTHING, Scope, UsageError
from sync.vocabulary import CycleReport, Hooks, iso

__all__ = ["main"]

EXAMPLES = """\
examples:
  python -m sync init                            write a commented starter config.toml
  python -m sync --dry-run                       audit: print every change and why, change nothing
  python -m sync --dry-run --format json         the same plan as JSON lines
  python -m sync check                           is this org ready for this config? (run it first)
  python -m sync run --dry-run --out plan.json   the same, saved for review; then: apply plan.json
  python -m sync run --dry-run --rule lifecycle.stage --account acc_1 acc_2   a slice of the plan
  python -m sync run --max-writes 20             a canary: 20 writes, the rest stay pending
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
    and reads both services in full (docs/operations.md, "Recovering the state file").
"""

_COMMANDS = (
    "run",
    "check",
    "apply",
    "resync",
    "daemon",
    "explain",
    "report",
    "failed",
    "errors",
    "retry",
    "init",
    "sandbox",
    "demo",
)
_FORMATS = ("table", "json", "csv")


_MAX_WRITES_HELP = (
    "write at most N records (an account's changes go in one PUT; a task, a lead: one each); the rest stay pending"
)


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _package_version() -> str:
    from sync.app import package_version  # imported here like the other wiring of sync.app

    return package_version()


def _globals(parser: argparse.ArgumentParser, default: object) -> None:
    """`--config` and `--state`: on the program (default None) and on every command (default
    SUPPRESS, so one given before the command is kept unless repeated after it)."""
    parser.add_argument(
        "--config", type=Path, default=default, help="config file (default ./config.toml, else the packaged example)"
    )
    parser.add_argument("--state", type=Path, default=default, help="SQLite state file (overrides [state] path)")


def _scope_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--account",
        nargs="+",
        metavar="ID",
        help=f"only {what} these Vitally accounts (or Salesforce Lead Ids)",
    )
    parser.add_argument(
        "--rule", nargs="+", metavar="ID", help=f"only {what} these rules (ids, or patterns such as 'product_led.*')"
    )


def _format_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--format", choices=_FORMATS, help=f"{what} (default: table on a terminal, else json)")


class _Commands:
    """Adds the commands, each with its help, an example and the global options."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(self, name: str, summary: str, example: str) -> argparse.ArgumentParser:
        command = self.commands.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _globals(command, argparse.SUPPRESS)
        return command


def _run_commands(commands: _Commands) -> None:
    run = commands.add("run", "one sync cycle", "python -m sync run --dry-run --format json --now 2026-11-22T09:00:00Z")
    run.add_argument("--dry-run", action="store_true", help="print the plan and why; change nothing anywhere")
    _format_option(run, "plan format")
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
    run.add_argument("--out", type=Path, metavar="PLAN", help="with --dry-run: save the plan for `apply PLAN`")
    _scope_options(run, "with --dry-run: plan")
    run.add_argument("--max-writes", type=_positive, metavar="N", help=_MAX_WRITES_HELP)

    commands.add(
        "check",
        "preflight: config, both services reachable, the Salesforce schema, picklists and owners this config "
        "needs; one line per problem; exit 0 ready, 2 problems, 3 a service unreachable",
        "python -m sync check --config config.toml",
    )

    apply = commands.add(
        "apply",
        "apply a plan saved by `run --dry-run --out`: exactly its writes; stale ones refused (exit 2)",
        "python -m sync apply plan.json --rule lifecycle.stage --max-writes 50",
    )
    apply.add_argument("plan", type=Path, metavar="PLAN", help="the plan file")
    _scope_options(apply, "apply the plan's writes to")
    apply.add_argument("--max-writes", type=_positive, metavar="N", help=_MAX_WRITES_HELP)
    _format_option(apply, "format of the writes applied")

    resync = commands.add(
        "resync",
        "forget the mirror and its cursors, read both services in full, plan only real differences",
        "python -m sync resync --dry-run --format csv > resync.csv",
    )
    resync.add_argument("--dry-run", action="store_true", help="plan on a copy of the state; change nothing anywhere")
    _format_option(resync, "plan format")
    resync.add_argument("--now", type=_timestamp, help="fix the rules' clock (ISO 8601)")
    resync.add_argument("--out", type=Path, metavar="PLAN", help="with --dry-run: save the plan for `apply PLAN`")
    resync.add_argument("--max-writes", type=_positive, metavar="N", help=_MAX_WRITES_HELP)

    commands.add(
        "daemon",
        "cycle on the configured schedule until stopped (SIGTERM finishes the cycle)",
        "python -m sync daemon",
    )


def _other_commands(commands: _Commands) -> None:
    explain = commands.add(
        "explain", "every rule's verdict for one account or lead, with its inputs", "python -m sync explain acc_123"
    )
    explain.add_argument("id", nargs="+", help="Vitally account id or Salesforce Lead Id (several allowed)")
    explain.add_argument("--now", type=_timestamp, help="fix the rules' clock (ISO 8601)")

    from sync.report import DESCRIPTION, FORMATS, SECTIONS

    report = commands.add(
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

    failed = commands.add("failed", "writes parked after permanent errors", "python -m sync failed --format csv")
    _format_option(failed, "output format")
    errors = commands.add(
        "errors", "malformed records the cycles skipped, kept in the state", "python -m sync errors --format json"
    )
    _format_option(errors, "output format")
    retry = commands.add("retry", "send parked writes again (all, or one by its outbox id)", "python -m sync retry 42")
    retry.add_argument("id", nargs="?", type=int, help="outbox id from `failed` (default: all)")
    init = commands.add(
        "init", "write a commented starter config (never overwrites)", "python -m sync init /etc/crm-sync/config.toml"
    )
    init.add_argument("path", nargs="?", type=Path, default=Path("config.toml"), help="where (default ./config.toml)")


def _tool_commands(commands: _Commands) -> None:
    sandbox = commands.add(
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
        "--legacy-org",
        action="store_true",
        help="the sandbox's earlier, invented shape instead of a real org and workspace (see README)",
    )
    demo = commands.add(
        "demo", "sandbox + sample book + a few cycles, then a summary", "python -m sync demo --accounts 300"
    )
    demo.add_argument("--accounts", type=int, default=300, help="size of the generated book (default 300)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crm-sync",
        description="Route and sync B2B accounts between Vitally and Salesforce, following the sales handbook.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _globals(parser, None)
    parser.add_argument("--version", action="version", version=f"crm-sync {_package_version()}")
    commands = _Commands(parser)
    _run_commands(commands)
    _other_commands(commands)
    _tool_commands(commands)
    return parser


def _normalise_argv(argv: list[str]) -> list[str]:
    """`python -m sync --dry-run ...` is `python -m sync run --dry-run ...` (docs/cli.md)."""
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


# -- what every command shares -----------------------------------------------------------------------------


def _load(args: argparse.Namespace, err: TextIO) -> Config:
    """The config (`--config`, `--state`); kept on `args` so that an error can name its URLs and
    secrets, and the retry policy's warnings say which service is being retried."""
    config = load_config(args.config)
    if args.state is not None:
        config = config.with_state(args.state)
    args.loaded_config = config
    if not os.environ.get(LOG_LEVEL_ENV, "").strip():
        logging.getLogger("connectors.http").addHandler(RetryNotes(config, safe_stream(err)))
    return config


def _quiet_retries() -> None:
    http = logging.getLogger("connectors.http")
    for handler in [h for h in http.handlers if isinstance(h, RetryNotes)]:
        http.removeHandler(handler)


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


def _format(args: argparse.Namespace, out: TextIO) -> Format:
    chosen: Format | None = args.format
    return chosen or ("table" if out.isatty() else "json")


_TRUNCATIONS_SHOWN = 5  # values cut to their Salesforce field's length shown one by one


def _print_truncations(report: CycleReport, err: TextIO) -> None:
    """Values cut to their Salesforce field's length: the first few, then a count per field."""
    for cut in report.truncations[:_TRUNCATIONS_SHOWN]:
        err.write(f"truncated: {cut}\n")
    if len(report.truncations) > _TRUNCATIONS_SHOWN:
        by_field = Counter(cut.field for cut in report.truncations[_TRUNCATIONS_SHOWN:])
        fields = ", ".join(f"{name} {n}" for name, n in sorted(by_field.items()))
        err.write(f"truncated: … and {sum(by_field.values())} more value(s): {fields}\n")


def _print_findings(report: CycleReport, err: TextIO) -> None:
    """What the cycle found besides its plan: notices, malformed records, cuts, fallbacks, rule
    errors and conflicts."""
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


def _print_summary(report: CycleReport, stream: TextIO, scope: Scope = EVERYTHING) -> None:
    err = safe_stream(stream)  # record ids, names and messages are service data
    _print_findings(report, err)
    counts = report.counts
    rule_errors = counts.get("rule_errors", 0)
    what = "would change" if report.dry_run else "planned"
    err.write(
        f"{'dry run' if report.dry_run else 'run'} {report.run_id}: read {counts.get('accounts_read', 0)} account(s), "
        f"evaluated {counts.get('accounts_evaluated', 0)} ({counts.get('accounts_not_judged', 0)} unchanged, "
        f"not judged again); {what} {len(report.plan)} write(s); "
        f"applied {counts.get('applied', 0)}, failed {counts.get('failed', 0)}, parked {counts.get('parked', 0)}; "
        f"{len(report.conflicts)} conflict(s), {len(report.record_errors)} malformed record(s)"
        + (f", {rule_errors} rule error(s)" if rule_errors else "")
        + (f"; {counts['posts']} lead(s) announced" if counts.get("posts") else "")
        + (f"; {counts['tickets']} ticket(s) opened" if counts.get("tickets") else "")
        + (f"; only {scope.describe()}" if scope.limited else "")
        + "\n"
    )
    held = counts.get("conflicts_open", 0) - sum(not c.overwritten for c in report.conflicts)
    if held > 0:
        err.write(f"{held} conflict(s) reported by earlier cycles still left alone\n")
    if "held_back" in counts:
        err.write(
            f"--max-writes: stopped after {counts.get('records_written', 0)} record(s) "
            f"({counts.get('applied', 0)} write(s)); {counts['held_back']} write(s) stay pending "
            "for the next cycle (or `run` again)\n"
        )


def _cycle(
    config: Config,
    state: StateDB,
    args: argparse.Namespace,
    err: TextIO,
    *,
    dry_run: bool,
    scope: Scope = EVERYTHING,
) -> CycleReport:
    """One cycle against the configured services, with progress bars when stderr is a terminal."""
    from sync.app import make_salesforce, make_vitally

    with terminal_progress(err) as progress:
        vitally, salesforce = make_vitally(config), make_salesforce(config)
        return run_cycle(
            config,
            state,
            vitally,
            salesforce,
            clock=_now,
            now=args.now,
            dry_run=dry_run,
            progress=progress,
            scope=scope,
            full=getattr(args, "full", False),
            max_writes=getattr(args, "max_writes", None),
        )


# -- run, resync ---------------------------------------------------------------------------------------


def _scope(args: argparse.Namespace, config: Config) -> Scope:
    """`--account` and `--rule`, checked against the rule ids this config knows."""
    from rules import ALL_RULE_IDS

    known = [*ALL_RULE_IDS, *(trigger.id for trigger in config.custom_triggers)]
    return Scope.of(getattr(args, "account", None), getattr(args, "rule", None), known)


def _check_run(args: argparse.Namespace, scope: Scope) -> None:
    """Options that only make sense with others."""
    if not args.dry_run:
        for option, given in (("--out", args.out), ("--compare-rules", getattr(args, "compare_rules", None))):
            if given is not None:
                raise UsageError(f"{option}: only with --dry-run")
        if scope.limited:
            raise UsageError(
                "--account / --rule: only with --dry-run (save the plan with --out, then `apply PLAN --account …`)"
            )
    elif args.max_writes is not None:
        raise UsageError("--max-writes: a dry run writes nothing; use it with `run` or `apply`")
    if getattr(args, "compare_rules", None) is not None and args.out is not None:
        raise UsageError("--out: not with --compare-rules (a what-if is not a plan)")


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = _load(args, err)
    fmt = _format(args, out)
    scope = _scope(args, config)
    _check_run(args, scope)
    # A bad rules file is reported before anything is read.
    alternative = None if args.compare_rules is None else with_rules_from(config, args.compare_rules)
    if args.dry_run:
        state = StateDB.snapshot(config.state_path)
        try:
            report = _dry_run(config, state, args, err, scope)
            if alternative is not None:
                return _compare(state, config, alternative, args.compare_rules, report.now, fmt, out, err)
            render_plan(report.plan, fmt, out, Names(state))  # the plan is read back from the state's copy
        finally:
            state.close()
        _print_summary(report, err, scope)
        return report.exit_code
    return _real_run(config, args, fmt, out, err)


def _dry_run(config: Config, state: StateDB, args: argparse.Namespace, err: TextIO, scope: Scope) -> CycleReport:
    """A dry run on the state's copy; with `--out`, its plan saved for `apply`."""
    cursors = state.cursors()
    report = _cycle(config, state, args, err, dry_run=True, scope=scope)
    if args.out is not None:
        _save_plan(config, state, report, args.out, cursors, scope, err)
    return report


def _save_plan(
    config: Config,
    state: StateDB,
    report: CycleReport,
    path: Path,
    cursors: dict[str, str],
    scope: Scope,
    err: TextIO,
) -> None:
    from sync.app import package_version
    from sync.planfile import config_hash, write_plan

    header = {
        "crm_sync_version": package_version(),
        "created_at": iso(_now()),
        "now": iso(report.now),
        "run_id": report.run_id,
        "config": {"file": str(config.source), "sha256": config_hash(config)},
        "state": {"file": str(config.state_path), "cursors": cursors, "read_to": state.cursors()},
        "scope": {
            "accounts": None if scope.accounts is None else sorted(scope.accounts),
            "rules": None if scope.rules is None else list(scope.rules),
        },
    }
    try:
        count = write_plan(path, report.plan, state.assignments_of_run(report.run_id), header)
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write it ({exc.strerror or type(exc).__name__})") from None
    err.write(f"plan saved to {path}: {count} write(s); review it, then: crm-sync apply {path}\n")


def _real_run(config: Config, args: argparse.Namespace, fmt: Format, out: TextIO, err: TextIO) -> int:
    with StateLock(config.state_path):
        state = StateDB.open(config.state_path)
        try:
            report = _cycle(config, state, args, err, dry_run=False)
            render_plan(report.plan, fmt, out, Names(state))
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


def cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.app import make_salesforce, make_vitally
    from sync.preflight import preflight

    config = _load(args, err)
    found = preflight(config, make_vitally(config), make_salesforce(config))
    out = safe_stream(out)  # field names and values come from the org
    for line in [*found.unreachable, *found.problems]:
        out.write(f"{line}\n")
    if found.exit_code == 0:
        err.write(f"ready: {'; '.join(found.checked)}\n")
    else:
        err.write(f"not ready: {len(found.unreachable)} service(s) unreachable, {len(found.problems)} problem(s)\n")
    return found.exit_code


def cmd_resync(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Forget the mirror and cursors (in the state, or its copy for a dry run), then one cycle."""
    config = _load(args, err)
    fmt = _format(args, out)
    args.compare_rules = None
    _check_run(args, EVERYTHING)
    if args.dry_run:
        state = StateDB.snapshot(config.state_path)
        try:
            with state.atomic():
                state.reset_mirror()
            report = _dry_run(config, state, args, err, EVERYTHING)
            render_plan(report.plan, fmt, out, Names(state))
        finally:
            state.close()
        _print_summary(report, err)
        return report.exit_code
    with StateLock(config.state_path):
        state = StateDB.open(config.state_path)
        with state.atomic():
            state.reset_mirror()
        state.close()
    err.write("resync: mirror and cursors forgotten; reading both services in full\n")
    return _real_run(config, args, fmt, out, err)


# -- apply ---------------------------------------------------------------------------------------------


def cmd_apply(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.app import make_salesforce, make_vitally

    config = _load(args, err)
    fmt = _format(args, out)
    plan = read_plan(args.plan)
    check_plan(plan, config)
    scope = _scope(args, config)
    with StateLock(config.state_path):
        state = StateDB.open(config.state_path)
        try:
            with terminal_progress(err) as progress:
                applied = apply_plan(
                    config,
                    state,
                    plan,
                    scope,
                    vitally=make_vitally(config),
                    salesforce=make_salesforce(config),
                    clock=_now,
                    max_writes=args.max_writes,
                    hooks=Hooks(progress=progress),
                )
            render_plan(applied.sent, fmt, out, Names(state))
        finally:
            state.close()
    _print_applied(applied, plan.path, safe_stream(err), scope)
    return applied.exit_code


def _print_applied(applied: Applied, path: Path, err: TextIO, scope: Scope) -> None:
    report = applied.cycle
    _print_findings(report, err)
    for refusal in applied.refused:
        write = refusal.write
        err.write(
            f"refused: write {refusal.number}: {write.system} {write.op} {write.record} ({write.rule}): {refusal.why}\n"
        )
    counts = report.counts
    err.write(
        f"apply {report.run_id} of {path}: {applied.selected} write(s) selected"
        + (f" ({scope.describe()})" if scope.limited else "")
        + f"; {len(applied.sent)} queued, applied {counts.get('applied', 0)}, refused {len(applied.refused)}, "
        f"already there {applied.already}, failed {counts.get('failed', 0)}, parked {counts.get('parked', 0)}; "
        f"{applied.owners} owner(s) recorded from the plan, none drawn\n"
    )
    if "held_back" in counts:
        err.write(
            f"--max-writes: stopped after {counts.get('records_written', 0)} record(s); {counts['held_back']} "
            "write(s) stay pending; `apply` the plan again to send them\n"
        )


# -- the other commands ------------------------------------------------------------------------------


def cmd_daemon(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.daemon import run_daemon

    return run_daemon(_load(args, err), err)


def cmd_explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.explain import explain

    config = _load(args, err)
    state = StateDB.snapshot(config.state_path)
    now = args.now or _now()
    out, err = safe_stream(out), safe_stream(err)  # names, reasons and inputs are service data
    try:
        statuses = [explain(config, state, record, now, out, err) for record in args.id]
    finally:
        state.close()
    return max(statuses)


def cmd_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.report import SECTIONS, build_report, render_report, save_report

    config = _load(args, err)
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
        seed = generate_book(args.generate, seed=args.random_seed, now=_now(), real_org=not args.legacy_org)
    serve(seed, args.port, SandboxConfig(real_org=not args.legacy_org))
    return 0


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.demo import run_demo

    return run_demo(args.accounts, out)


def cmd_failed(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.lists import parked_writes

    return parked_writes(_load(args, err), _format(args, out), out, err)


def cmd_errors(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.lists import malformed_records

    return malformed_records(_load(args, err), _format(args, out), out, err)


def cmd_retry(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.lists import retry_parked

    return retry_parked(_load(args, err), args.id, out, _now())


def cmd_init(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sync.lists import write_starter_config

    return write_starter_config(args.path, out)


_HANDLERS = {
    "run": cmd_run,
    "check": cmd_check,
    "apply": cmd_apply,
    "resync": cmd_resync,
    "daemon": cmd_daemon,
    "explain": cmd_explain,
    "report": cmd_report,
    "sandbox": cmd_sandbox,
    "demo": cmd_demo,
    "failed": cmd_failed,
    "errors": cmd_errors,
    "retry": cmd_retry,
    "init": cmd_init,
}


def _handled(error: SyncError, args: argparse.Namespace, err: TextIO) -> int:
    """The message and exit status of an error that ended a command (docs/cli.md)."""
    if isinstance(error, ConfigError):
        err.write("configuration error:\n" + "".join(f"  {problem}\n" for problem in error.problems))
        return 2
    if isinstance(error, UsageError):
        safe_stream(err).write(f"error: {error}\n")
        return 2
    if isinstance(error, InstanceLockedError):
        err.write(f"error: {error}\n")
        return 4
    if isinstance(error, StateUnusableError):
        safe_stream(err).write(f"error: {error}.\n{RECOVERY.format(path=error.path)}")
        return 5
    if isinstance(error, FatalError):
        safe_stream(err).write(explain_failure(error, getattr(args, "loaded_config", None)))
        return 3
    err.write(f"error: {error}\n")
    return 1 if isinstance(error, QuotaExhaustedError) else 3


# The cyclic garbage collector's threshold while a command runs. A cycle makes millions of short-lived
# containers (decoded records, decisions, planned writes) that reference counting frees, and holds a
# few hundred thousand long-lived ones (the modules, the Salesforce facts): at CPython's default
# (700 allocations) a cold dry run at 100,000 accounts ran ~4,300 collections, 35 of them over every
# long-lived object, 1.5-2.5 s of its ~23 s of CPU. At 10,000 it runs ~130 (0.3 s) and the peak
# memory does not grow (README "Issue 17's goals").
_COLLECTOR_THRESHOLD = (10_000, 10, 10)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _parser()
    args = parser.parse_args(_normalise_argv(list(sys.argv[1:] if argv is None else argv)))
    if args.command is None:
        parser.print_help(out)
        return 2
    stale = compiled.stale()
    if stale:  # an edited rule would not run: its compiled module would
        err.write("error: the compiled build does not match its sources:\n")
        err.writelines(f"  - {problem}\n" for problem in stale)
        err.write("  run `make compiled` to build it again, or `make pure` to run the sources\n")
        return 2
    collector = gc.get_threshold()
    try:
        _configure_logging(err)
        gc.set_threshold(*_COLLECTOR_THRESHOLD)
        return _HANDLERS[args.command](args, out, err)
    except SyncError as error:
        return _handled(error, args, err)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop writing, quietly; everything was already committed.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        gc.set_threshold(*collector)
        _quiet_retries()
