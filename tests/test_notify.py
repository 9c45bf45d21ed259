"""Alerts (issue #16): the notifier decides which alerts a finished cycle deserves, holds back
repeats, and sends the rest to a Slack incoming webhook and a JSON webhook without ever holding up
the cycle; here against the sandbox's webhook receiver (sandbox/webhooks.py), a real HTTP server
answering as Slack documents. The daemon end to end is at the bottom."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import ROOT, example_config_for

from sandbox import Sandbox, generate_book
from sandbox.webhooks import WebhookReceiver
from sync.config import load_config, parse_config
from sync.notify import Alert, AlertSettings, Notifier, json_body, slack_body

ACCOUNT_PUT = "/resources/accounts/"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, data: Any) -> None:
        self.events.append((event, dict(data)))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [d for e, d in self.events if e == name]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(slack_rate_limit=False) as receiver:
        yield receiver


def notifier(hooks: WebhookReceiver | None, clock: Clock, log: Recorder, **settings: Any) -> tuple[Notifier, list[str]]:
    urls = {} if hooks is None else {"slack_webhook_url": hooks.slack_url, "webhook_url": hooks.json_url}
    counted: list[str] = []
    made = Notifier(
        AlertSettings(**{"instance": "acme-prod", **urls, **settings}),
        log,
        clock=clock,
        counted=lambda what, label: counted.append(f"{what}:{label}"),
    )
    return made, counted


OUTBOX = {"pending": 0, "parked": 0}


# -- what is sent ---------------------------------------------------------------------------------------


def test_each_kind_of_trouble_sends_one_alert_to_both_sinks(hooks: WebhookReceiver) -> None:
    clock, log = Clock(), Recorder()
    notify, counted = notifier(hooks, clock, log, conflicts_above=10)
    notify.cycle_done(1, "failed", {}, error_kind="auth", outbox=OUTBOX)
    notify.observe("quota_exhausted", {"error": "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."})
    notify.cycle_done(
        2, "partial", {"parked": 3, "conflicts": 11}, error_kind="writes", outbox={"pending": 40, "parked": 5}
    )
    notify.close()
    kinds = [m["alert"] for m in hooks.messages("json")]
    assert kinds == ["cycle_failed", "recovered", "quota_stopped", "writes_parked", "conflicts"]
    assert len(hooks.messages("slack")) == 5
    failed = hooks.messages("json")[0]
    assert failed["instance"] == "acme-prod" and failed["severity"] == "critical" and failed["run_id"] == 1
    assert failed["details"] == {"error_kind": "auth", "failed_in_a_row": 1}
    assert "refused the credentials" in failed["summary"]
    parked = hooks.messages("json")[3]
    assert parked["details"] == {"parked_this_cycle": 3, "parked_in_all": 5}
    assert "`crm-sync failed`" in parked["summary"]
    assert hooks.messages("json")[2]["details"] == {"pending_writes": 40}
    assert hooks.messages("json")[4]["details"] == {"conflicts": 11, "threshold": 10}
    slack = hooks.messages("slack")[0]["text"]
    assert slack.startswith(":rotating_light: *crm-sync acme-prod*: cycle 1 failed")
    assert all(r["content_type"] == "application/json" for r in hooks.received)
    assert counted.count("delivery:slack:ok") == counted.count("delivery:webhook:ok") == 5
    assert [c for c in counted if c.startswith("alert:")] == [f"alert:{k}" for k in kinds]


def test_nothing_is_sent_for_a_quiet_cycle_or_conflicts_at_the_threshold(hooks: WebhookReceiver) -> None:
    clock, log = Clock(), Recorder()
    notify, _ = notifier(hooks, clock, log, conflicts_above=10)
    assert notify.cycle_done(1, "ok", {"applied": 50, "conflicts": 10}, error_kind=None, outbox=OUTBOX) == []
    assert notify.cycle_done(2, "stopped", {}, error_kind=None, outbox=OUTBOX) == []
    notify.close()
    assert hooks.received == [] and log.events == []


def test_a_flapping_failure_sends_one_alert_and_one_recovery_per_repeat_window(hooks: WebhookReceiver) -> None:
    clock, log = Clock(), Recorder()
    notify, _ = notifier(hooks, clock, log, repeat_seconds=3600)
    for run in range(1, 21):  # fails every other cycle, a cycle a minute, for 20 minutes
        clock.now += 60
        outcome, kind = ("failed", "unreachable") if run % 2 else ("ok", None)
        notify.cycle_done(run, outcome, {}, error_kind=kind, outbox=OUTBOX)
    clock.now += 3600
    notify.cycle_done(21, "failed", {}, error_kind="unreachable", outbox=OUTBOX)
    notify.close()
    sent = hooks.messages("json")
    assert [(m["alert"], m["run_id"], m["repeats"]) for m in sent] == [
        ("cycle_failed", 1, 0),
        ("recovered", 2, 0),
        ("cycle_failed", 21, 9),  # the nine failures held back since the first alert
    ]
    held = [e for e in log.named("alert") if e["held_back"]]
    assert len(held) == 9 and {e["alert"] for e in held} == {"cycle_failed"}


def test_the_failures_in_a_row_are_counted_and_another_kind_of_failure_is_a_new_alert(hooks: WebhookReceiver) -> None:
    clock, log = Clock(), Recorder()
    notify, _ = notifier(hooks, clock, log)
    notify.cycle_done(1, "failed", {}, error_kind="unreachable", outbox=OUTBOX)
    notify.cycle_done(2, "failed", {}, error_kind="unreachable", outbox=OUTBOX)
    notify.cycle_done(3, "failed", {}, error_kind="auth", outbox=OUTBOX)
    notify.close()
    assert [(m["details"]["error_kind"], m["details"]["failed_in_a_row"]) for m in hooks.messages("json")] == [
        ("unreachable", 1),
        ("auth", 3),
    ]


# -- never a secret, never blocking ------------------------------------------------------------------------


def test_alerts_hold_no_error_text_record_or_url(hooks: WebhookReceiver) -> None:
    clock, log = Clock(), Recorder()
    notify, _ = notifier(hooks, clock, log)
    secretish = "ada.lovelace@acme.io 00Q000000000001 sk_live_123"
    notify.observe("write_failed", {"error": f"acc_9: DUPLICATES_DETECTED: {secretish}"})
    notify.observe("quota_exhausted", {"error": secretish})
    notify.cycle_done(7, "partial", {"parked": 1}, error_kind="writes", outbox={"pending": 1, "parked": 1})
    notify.close()
    everything = json.dumps([r["body"] for r in hooks.received]) + json.dumps(log.events)
    for piece in ("ada.lovelace", "00Q000000000001", "sk_live_123", "acc_9", hooks.token, "DUPLICATES"):
        assert piece not in everything


def test_an_unreachable_webhook_is_logged_once_and_never_blocks_or_raises(hooks: WebhookReceiver) -> None:
    clock, log = Clock(), Recorder()
    notify, counted = notifier(hooks, clock, log, repeat_seconds=0, timeout_seconds=0.5)
    hooks.set_down(True)
    started = time.monotonic()
    for run in range(1, 6):
        notify.cycle_done(run, "failed", {}, error_kind="unreachable", outbox=OUTBOX)
    assert time.monotonic() - started < 0.2  # queued, not sent, by the cycle's thread
    wait_for(
        "five failed deliveries per sink",
        lambda: counted.count("delivery:slack:failed") == 5 and counted.count("delivery:webhook:failed") == 5,
    )
    undelivered = log.named("alert_undelivered")
    assert sorted(e["sink"] for e in undelivered) == ["slack", "webhook"]  # once per sink
    assert all(e["reason"] in ("RemoteDisconnected", "ConnectionResetError", "BadStatusLine") for e in undelivered)
    hooks.set_down(False)
    notify.cycle_done(6, "failed", {}, error_kind="unreachable", outbox=OUTBOX)
    notify.close()
    assert sorted(e["sink"] for e in log.named("alert_delivered")) == ["slack", "webhook"]
    assert [m["run_id"] for m in hooks.messages("json")] == [6]


def test_a_refusal_is_logged_with_slacks_own_code_and_no_url(hooks: WebhookReceiver) -> None:
    clock, log = Clock(), Recorder()
    wrong = hooks.slack_url.rsplit("/", 1)[0] + "/not-the-token"
    notify = Notifier(AlertSettings(slack_webhook_url=wrong), log, clock=clock)
    notify.cycle_done(1, "failed", {}, error_kind="auth", outbox=OUTBOX)
    notify.close()
    assert log.named("alert_undelivered") == [
        {"sink": "slack", "alert": "cycle_failed", "reason": "HTTP 404 no_service"}
    ]
    assert "not-the-token" not in json.dumps(log.events)


def test_without_sinks_alerts_are_only_logged() -> None:
    clock, log = Clock(), Recorder()
    notify, counted = notifier(None, clock, log)
    notify.cycle_done(1, "failed", {}, error_kind="auth", outbox=OUTBOX)
    notify.close()
    assert log.named("alert") == [
        {"alert": "cycle_failed", "severity": "critical", "sent": False, "held_back": False, "repeats": 0}
    ]
    assert counted == ["alert:cycle_failed"]


def test_the_slack_receiver_refuses_what_slack_refuses(hooks: WebhookReceiver) -> None:
    import urllib.error
    import urllib.request

    def post(url: str, data: bytes, kind: str = "application/json") -> tuple[int, str]:
        request = urllib.request.Request(url, data=data, headers={"Content-Type": kind}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    assert post(hooks.slack_url, b'{"text": "hi"}') == (200, "ok")
    assert post(hooks.slack_url, b"text=hi", "application/x-www-form-urlencoded") == (400, "invalid_payload")
    assert post(hooks.slack_url, b'{"username": "x"}') == (400, "no_text")
    assert post(hooks.slack_url + "x", b'{"text": "hi"}') == (404, "no_service")
    hooks.archived = True
    assert post(hooks.slack_url, b'{"text": "hi"}') == (410, "channel_is_archived")
    hooks.archived, hooks.slack_rate_limit = False, True
    time.sleep(1.0)  # a second after the last accepted message
    assert post(hooks.slack_url, b'{"text": "one"}')[0] == 200
    assert post(hooks.slack_url, b'{"text": "two"}') == (429, "rate_limited")  # Slack: one a second
    assert post(hooks.json_url, b"[1]")[0] == 400
    assert post(hooks.json_url, b'{"alert": "x"}') == (200, '{"ok": true}')


def test_message_shapes() -> None:
    alert = Alert("writes_parked", "warning", "3 writes were refused", 4, {"parked_this_cycle": 3}, repeats=2, at="t")
    assert slack_body(alert, "eu") == {
        "text": ":warning: *crm-sync eu*: 3 writes were refused (2 more since the last alert)\n_parked_this_cycle 3_"
    }
    assert json_body(alert, "eu") == {
        "source": "crm-sync",
        "instance": "eu",
        "alert": "writes_parked",
        "severity": "warning",
        "summary": "3 writes were refused",
        "run_id": 4,
        "at": "t",
        "repeats": 2,
        "details": {"parked_this_cycle": 3},
    }


# -- configuration ----------------------------------------------------------------------------------------


def test_webhook_urls_are_secrets_from_the_environment_or_an_owner_only_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url_file = tmp_path / "slack-url"
    url_file.write_text("https://hooks.example.test/services/T/B/abc\n")
    url_file.chmod(0o600)
    monkeypatch.setenv("HOOK_URL", "https://alerts.example.test/in?token=xyz")
    alerts = {"slack_webhook_url_file": str(url_file), "webhook_url_env": "HOOK_URL", "instance": "acme-prod"}
    config = parse_config({"alerts": alerts})
    assert config.alerts.slack_webhook_url == "https://hooks.example.test/services/T/B/abc"
    assert config.alerts.webhook_url == "https://alerts.example.test/in?token=xyz"
    assert "abc" not in repr(config.alerts) and "xyz" not in repr(config.alerts)
    assert load_config(ROOT / "config.example.toml").alerts.slack_webhook_url is None  # off by default


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"slack_webhook_url": "https://x"}, "alerts.slack_webhook_url: secrets are not read from the config file"),
        ({"webhook_url_env": "PLAIN_HTTP_HOOK"}, "alerts.webhook_url: expected an https:// URL"),
        ({"instance": "Ada Lovelace <ada@acme.io>"}, "alerts.instance:"),
        ({"conflicts_above": -1}, "alerts.conflicts_above: must be ≥ 0"),
    ],
)
def test_bad_alert_settings_are_configuration_errors_that_never_show_a_url(
    value: dict[str, Any], problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.errors import ConfigError

    monkeypatch.setenv("PLAIN_HTTP_HOOK", "http://alerts.example.test/in?token=xyz")
    with pytest.raises(ConfigError) as caught:
        parse_config({"alerts": value})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
    assert "xyz" not in str(caught.value)


# -- the daemon -------------------------------------------------------------------------------------------


def test_daemon_alerts_on_parked_writes_and_its_debug_log_never_shows_the_webhook(tmp_path: Path) -> None:
    with (
        Sandbox(generate_book(60, seed=5, now=datetime(2026, 11, 22, tzinfo=UTC))) as sandbox,
        WebhookReceiver() as hooks,
    ):
        sandbox.add_fault("status", method="PUT", path_prefix=ACCOUNT_PUT, status=400, count=2)  # parked for good
        config = example_config_for(
            sandbox.url,
            tmp_path / "config.toml",
            {
                "interval_seconds = 900": "interval_seconds = 3600",
                '# slack_webhook_url_env = "CRM_SYNC_SLACK_WEBHOOK_URL"': 'slack_webhook_url_env = "HOOK"',
                'instance = "crm-sync"': 'instance = "acme-test"',
            },
        )
        err = tmp_path / "daemon.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VITALLY_", "SALESFORCE_", "CRM_SYNC_"))}
        with err.open("w") as stream:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "sync", "--config", str(config), "--state", str(tmp_path / "s.db"), "daemon"],
                stdout=subprocess.DEVNULL,
                stderr=stream,
                cwd=ROOT,
                env={**env, "HOOK": hooks.slack_url, "CRM_SYNC_LOG_LEVEL": "DEBUG"},
            )
        try:
            message = wait_for("the Slack alert", lambda: hooks.messages("slack"), timeout=60)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=30) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
    # Two PUTs were refused; each carries every outbox row (write) of its account: the alert counts
    # the rows the state parked.
    with sqlite3.connect(tmp_path / "s.db") as db:
        parked = db.execute("SELECT count(*) FROM outbox WHERE status = 'parked'").fetchone()[0]
    assert parked >= 2
    expected = f":warning: *crm-sync acme-test*: {parked} writes were refused for good in cycle 1"
    assert message[0]["text"].startswith(expected)
    logged = err.read_text()
    assert "DEBUG" in logged  # the libraries' debug log is on…
    assert hooks.token not in logged
    assert "/services/T0SANDBOX" not in logged  # …and the webhook's path, its secret, is not in it
    alerts = [json.loads(line) for line in logged.splitlines() if line.startswith('{"at"') and '"alert"' in line]
    assert [(a["event"], a["alert"], a["run_id"]) for a in alerts if a["event"] == "alert"] == [
        ("alert", "writes_parked", 1)
    ]


def test_daemon_counts_a_quota_stop_and_sends_its_alert_with_the_writes_left_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal as signals
    from dataclasses import replace
    from io import StringIO

    from sandbox.store import SandboxConfig
    from sync.daemon import run_daemon

    saved = {signum: signals.getsignal(signum) for signum in (signals.SIGTERM, signals.SIGINT)}
    quota = 10_000
    settings = SandboxConfig().updated({"vitally_rate_limit": 10_000_000, "sf_daily_quota": quota})
    with (
        Sandbox(generate_book(200, seed=23, now=datetime(2026, 11, 22, tzinfo=UTC)), config=settings) as sandbox,
        WebhookReceiver() as hooks,
    ):
        sandbox.set_api_usage(quota - 10)  # the reads fit; crm-sync's share (80 %) is long spent
        monkeypatch.setenv("HOOK", hooks.json_url)
        config = load_config(
            example_config_for(
                sandbox.url,
                tmp_path / "config.toml",
                {'# webhook_url_env = "CRM_SYNC_ALERT_WEBHOOK_URL"': 'webhook_url_env = "HOOK"'},
            )
        )
        config = config.with_state(tmp_path / "state.db")
        err = StringIO()
        try:
            assert run_daemon(replace(config, daemon=replace(config.daemon, health_port=0)), err, max_cycles=1) == 0
        finally:
            for signum, handler in saved.items():
                signals.signal(signum, handler)
        sent = wait_for("the quota alert", lambda: hooks.messages("json"))
    logged = [json.loads(line) for line in err.getvalue().splitlines()]
    assert [e["event"] for e in logged].count("quota_exhausted") == 1
    (alert,) = [m for m in sent if m["alert"] == "quota_stopped"]
    assert alert["details"]["pending_writes"] > 0 and alert["run_id"] == 1
