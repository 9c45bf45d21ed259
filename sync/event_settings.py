"""The event receiver's settings (`[events]`), apart from the receiver itself: the config reads them
on every start, and a one-off `run` needs none of the receiver's HTTP and metrics machinery."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import secret, setting

__all__ = ["EventSettings"]


@dataclass(frozen=True)
class EventSettings:
    """The event receiver ([events]): each endpoint exists once its secret is set."""

    vitally_secret: str | None = secret(
        "The shared secret of the Vitally Playbook webhook: in its URL (/events/vitally/<secret>) or its "
        "Authorization: Bearer header; at least 24 characters.",
        env="CRM_SYNC_VITALLY_WEBHOOK_SECRET",
        file="/etc/crm-sync/vitally-webhook-secret",
    )
    salesforce_secret: str | None = secret(
        "The shared secret in the Salesforce Outbound Message's endpoint URL (/events/salesforce/<secret>); "
        "at least 24 characters.",
        env="CRM_SYNC_SALESFORCE_OM_SECRET",
        file="/etc/crm-sync/salesforce-om-secret",
    )
    salesforce_org_id: str | None = setting(
        None,
        "The org whose Outbound Messages are accepted (15 or 18 characters); required with salesforce_secret.",
        pattern=r"00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?",
        hint="a Salesforce organization id (00D…)",
        example="00D000000000001EAA",
    )
    queue_wait_seconds: float = setting(
        20,
        "How long a webhook waits for the event inbox file (never for a cycle) before it is answered 503 "
        "(Salesforce gives up on an answer after 60 s).",
        minimum=0.1,
        maximum=55,
    )
    batch: int = setting(100, "Records one mini-cycle processes at most.", minimum=1, maximum=1000)
    max_attempts: int = setting(
        5,
        "Mini-cycles tried for a record whose read or write keeps failing before its events are given up "
        "(the scheduled cycle still routes it).",
        minimum=1,
        maximum=100,
    )

    @property
    def enabled(self) -> bool:
        return bool(self.vitally_secret or self.salesforce_secret)
