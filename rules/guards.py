"""Guards: an account that is already owned or being worked is not routed (lead-routing-and-scoring.md,
plg-lead-qualification.md step 4, sales-handover.md)."""

from __future__ import annotations

from datetime import datetime, timedelta

from rules.model import Account
from rules.policy import Policy

__all__ = ["routing_guard"]


def routing_guard(account: Account, policy: Policy, now: datetime) -> str | None:
    """The reason an account must not be routed, or None when nothing stands in the way."""
    guards = policy.guards
    owners = [role for role in policy.owner_roles if role in account.key_roles]
    if owners:
        return f"already owned ({', '.join(owners)} key role)"
    for segment in guards.owned_segments:
        if segment in account.segments:
            return f"already owned (segment {segment})"
    for segment in guards.active_sales_segments:
        if segment in account.segments:
            return f"in active sales segment {segment}"
    if account.slack_channel:
        return f"existing engagement (Slack channel {account.slack_channel})"
    if account.lead_disqualified_at is not None:
        since = now.date() - account.lead_disqualified_at
        if since < timedelta(days=guards.cool_off_days):
            return f"lead disqualified {since.days} days ago (cool-off {guards.cool_off_days} days)"
    return None
