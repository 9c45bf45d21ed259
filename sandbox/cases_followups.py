"""The generated book's cases for issue #15's follow-ups: demo-form submissions that must become a
Zendesk ticket (support, in several of the guide's hard shapes), that must not (spam, and a support
request without an address to answer), and sales requests that are announced in `#sales-leads` with
their round-robin owner.

Each case is a standalone lead (`_LEAD_SPECS` of `sandbox.generator`, which appends these): an open,
unowned demo request whose form text the offline triage labels as the case says (the texts are
written for that, not taken from the classifier's corpus). Case names: `followups.<what>`, and
`near_miss.followups.<what>.<detail>` for one that just fails to qualify.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LEAD_SPECS"]

_OPEN: dict[str, Any] = {
    "Status": "Open - Not Contacted",
    "OwnerId": None,
    "IsConverted": False,
    "LeadSource": "Demo request",
}

LEAD_SPECS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    # Support requests: each must get exactly one ticket, with the submitter as its requester, and no owner.
    (("followups.support_ticket", "demo.classify_support"),
     {**_OPEN, "Title": "Developer", "Form_Text__c":
      "Since yesterday our session recordings stopped loading, the player shows a black screen. Can you check?"}),
    (("followups.support_ticket.billing", "demo.classify_support"),
     {**_OPEN, "Title": "Finance", "Form_Text__c":
      "We were charged twice on our last invoice, please refund the duplicate payment."}),
    (("followups.support_ticket.polite", "demo.classify_support"),
     {**_OPEN, "Title": "Product Manager", "Form_Text__c":
      "Hi team, lovely product! Quick question: how do I reset my password? I can't log in to my project."}),
    # A support request without an email: nobody to answer, so no ticket (it stays classified, unowned).
    (("near_miss.followups.support_ticket.no_email", "demo.classify_support"),
     {**_OPEN, "Email": None, "Title": "Developer", "Form_Text__c":
      "Events are not showing up after we installed posthog-js, please help."}),
    # Spam: dropped, neither a ticket nor an announcement.
    (("followups.spam_dropped", "demo.classify_spam"),
     {**_OPEN, "Company": "Link Boost Media", "Email": "growth.hacker88@gmail.com", "Title": None,
      "Form_Text__c": "We offer SEO services and cheap backlinks, rank first page of Google in 7 days."}),
    # Sales: routed by the round robin and announced once, tagged "Demo request".
    (("followups.announced_inbound", "demo.classify_sales"),
     {**_OPEN, "Title": "VP of Engineering", "NumberOfEmployees": 400, "AnnualRevenue": 40_000_000,
      "Form_Text__c": "We are evaluating product analytics and session replay for 60 engineers and want pricing."}),
)  # fmt: skip
