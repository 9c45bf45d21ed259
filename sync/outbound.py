"""Salesforce Outbound Messages: the SOAP `notifications` call a Flow or workflow rule sends, and
the `Ack` that tells Salesforce it was received.

A message (namespace `http://soap.sforce.com/2005/09/outbound`, WSDL "Understanding
Notifications" of the SOAP API guide) holds the org's `OrganizationId` (18 characters), the
action's `ActionId`, a `SessionId` (nil unless "Send Session ID" is on), two endpoint URLs, and 1
to 100 `Notification`s, each with its own `Id` (04l…) and an `sObject` whose `xsi:type` names the
object (`sf:Lead`) and whose fields are the ones the admin chose, `Id` among them. Salesforce
retries a message until the answer is a 200 carrying `notificationsResponse/Ack` = true (exactly
`ACK`), for up to 24 hours, with gaps growing to two hours; messages may come more than once and
out of order, and each carries the record's latest data. "If the record is deleted before the
notification is delivered, the notification contains no data" (Salesforce Help, "Considerations
for Outbound Messages"): such a notification, or any other that names no record, is returned in
`OutboundMessage.unreadable` (with its own Id when it has one) instead of failing the message, so
that the up to 99 other notifications batched with it are still received; no retry of the same
message could make it readable.

The body is parsed with expat, refusing any document type declaration (SOAP forbids one, and
it is where entity expansion attacks live): no entity is ever expanded, no external resource
read. Only the few elements above are read; anything else in the body is ignored.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

from core.sfid import SF_ID, case_safe_id

__all__ = [
    "ACK",
    "EVENT_OBJECTS",
    "MAX_NOTIFICATIONS",
    "Notification",
    "OutboundMessage",
    "SoapError",
    "case_safe_id",
    "parse",
    "same_org",
]

SOAP_ENVELOPE = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100  # Salesforce sends at most this many in one message
# The one answer Salesforce takes as received (tests/fixtures/real/salesforce_outbound_message_ack.xml).
ACK = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">\n'
    b" <soapenv:Body>\n"
    b'  <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">\n'
    b"   <Ack>true</Ack>\n"
    b"  </notificationsResponse>\n"
    b" </soapenv:Body>\n"
    b"</soapenv:Envelope>\n"
)
_ID = SF_ID
# The objects whose notifications crm-sync acts on, with the key prefix that starts every Id of
# theirs in every org (Salesforce's standard objects: "the first three characters of the ID identify
# the object", Object Reference, "Entity Type Prefixes"): a message saying `sf:Opportunity` about
# a Lead's Id is unreadable, and a mini-cycle tells the records apart by prefix.
EVENT_OBJECTS = {"Lead": "00Q", "Opportunity": "006"}


class SoapError(ValueError):
    """The body is not an Outbound Message crm-sync can read; the message says what is wrong
    (never quoting the body)."""


@dataclass(frozen=True)
class Notification:
    """One notification: its own id (what a repeat delivery shares), the object and the record."""

    id: str
    sobject: str
    record_id: str


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    action_id: str | None
    notifications: tuple[Notification, ...]
    # What each notification that names no record lacks (its Id first, when it has one).
    unreadable: tuple[str, ...] = ()


def same_org(first: str, second: str) -> bool:
    """Whether two organization ids (15 or 18 characters) name the same org: compared in their
    18-character form, which does not depend on letter case."""
    if not (_ID.fullmatch(first) and _ID.fullmatch(second)):
        return False
    return case_safe_id(first).casefold() == case_safe_id(second).casefold()


def parse(body: bytes) -> OutboundMessage:
    """The message in a `notifications` SOAP request; raises `SoapError`."""
    root = _tree(body)
    if root.tag != f"{{{SOAP_ENVELOPE}}}Envelope":
        raise SoapError("not a SOAP envelope")
    call = root.find(f"{{{SOAP_ENVELOPE}}}Body/{{{OUTBOUND}}}notifications")
    if call is None:
        raise SoapError("no notifications element in the SOAP body")
    organization = _text(call, "OrganizationId")
    if organization is None or not _ID.fullmatch(organization):
        raise SoapError("OrganizationId is missing or not a Salesforce id")
    items = call.findall(f"{{{OUTBOUND}}}Notification")
    if not 1 <= len(items) <= MAX_NOTIFICATIONS:
        raise SoapError(f"expected 1 to {MAX_NOTIFICATIONS} notifications, got {len(items)}")
    read = [_notification(item) for item in items]
    return OutboundMessage(
        organization,
        _text(call, "ActionId"),
        tuple(n for n in read if isinstance(n, Notification)),
        tuple(n for n in read if isinstance(n, str)),
    )


def _notification(item: ET.Element) -> Notification | str:
    """The notification, or what it lacks (it names no record: a record deleted before delivery)."""
    notification_id = _text(item, "Id")
    if notification_id is None or not _ID.fullmatch(notification_id):
        return "a Notification's Id is missing or not a Salesforce id"
    record = item.find(f"{{{OUTBOUND}}}sObject")
    if record is None:
        return f"notification {notification_id} has no sObject"
    kind = record.get(f"{{{XSI}}}type") or ""
    sobject = kind.rpartition(":")[2]
    record_id = next((child.text for child in record if child.tag.rpartition("}")[2] == "Id"), None)
    if not sobject or record_id is None or not _ID.fullmatch(record_id.strip()):
        return f"notification {notification_id}: its sObject has no type or no valid Id (no data)"
    prefix = EVENT_OBJECTS.get(sobject)
    if prefix is not None and not record_id.strip().startswith(prefix):
        return f"notification {notification_id}: an {sobject} Id starts with {prefix}"
    # The record's id in its 18-character form, the one the REST API (and so the mirror) uses.
    return Notification(notification_id, sobject, case_safe_id(record_id.strip()))


def _text(parent: ET.Element, name: str) -> str | None:
    element = parent.find(f"{{{OUTBOUND}}}{name}")
    if element is None or element.text is None or not element.text.strip():
        return None
    return element.text.strip()


def _forbidden(*_: object) -> Any:
    raise SoapError("document type declarations and entities are not allowed")


def _name(expat_name: str) -> str:
    """expat's `uri}local` (namespace_separator "}") as ElementTree's `{uri}local`."""
    return "{" + expat_name if "}" in expat_name else expat_name


def _tree(body: bytes) -> ET.Element:
    """The document's root element, built by expat with every DTD and entity refused."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.StartDoctypeDeclHandler = _forbidden
    parser.EntityDeclHandler = _forbidden
    parser.ExternalEntityRefHandler = _forbidden
    parser.StartElementHandler = lambda tag, attrs: builder.start(
        _name(tag), {_name(key): value for key, value in attrs.items()}
    )
    parser.EndElementHandler = lambda tag: builder.end(_name(tag))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(body, True)
        return builder.close()
    except (expat.ExpatError, AssertionError, IndexError) as error:
        raise SoapError(f"not well-formed XML ({type(error).__name__})") from None
