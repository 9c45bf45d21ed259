"""The imitated Salesforce org's schema: one field-definition table per sObject.

Both `GET /sobjects/{type}/describe` and write validation are served from these tables, so
what describe says is what a write is held to: type, length, required (`nillable: false`
without `defaultedOnCreate`), restricted picklists, unique external ids, references.

The describe shape follows a recorded v44 Lead describe (g8rswimmer/go-sfdc
`sobject/describe_test.go`: the 57 keys of a field and the top-level keys) and Airbyte
source-salesforce's `Describe.json` (the top-level keys of newer versions); see
`tests/fixtures/real/SOURCES.md` for both.

An org differs from the standard tables through *overrides* (`SandboxConfig.sf_schema`):
`{sObject: {field: null | {describe key: value, ...}}}`, where `null` removes a field, an
object changes (or adds, as a custom field) one, `"name"` renames it, and
`"addPicklistValues"` / `"removePicklistValues"` edit a picklist without restating it.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import pycountry

__all__ = [
    "COUNTRY_LABEL",
    "LEAD_SOURCES",
    "LEAD_STATUSES",
    "ROUTING_RULES",
    "STANDARD_OBJECTS",
    "FieldDef",
    "ObjectDef",
    "PicklistValue",
    "apply_overrides",
    "check_overrides",
    "controlling_indexes",
    "countries",
    "country_by_code",
    "country_by_name",
    "learned_field",
    "picklist_fields",
    "state_options",
    "states",
]

FieldType = Literal[
    "id",
    "string",
    "textarea",
    "email",
    "phone",
    "url",
    "picklist",
    "boolean",
    "int",
    "double",
    "currency",
    "percent",
    "date",
    "datetime",
    "reference",
]
FIELD_TYPES: Final[tuple[str, ...]] = (
    "id", "string", "textarea", "email", "phone", "url", "picklist", "boolean", "int", "double",
    "currency", "percent", "date", "datetime", "reference",
)  # fmt: skip
_TEXT_TYPES = frozenset({"string", "textarea", "email", "phone", "url", "picklist"})
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
COUNTRY_LABEL: Final = "Country"


@dataclass(frozen=True)
class PicklistValue:
    """One entry of `picklistValues`; `valid_for` is the base64 bitmap of the controlling values."""

    value: str
    label: str
    active: bool = True
    default: bool = False
    valid_for: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "defaultValue": self.default,
            "label": self.label,
            "validFor": self.valid_for,
            "value": self.value,
        }


@dataclass(frozen=True)
class FieldDef:
    """One field as describe reports it (the properties a write is checked against, plus a few
    presentation ones); `describe()` renders the full 57-key object."""

    name: str
    type: FieldType
    label: str
    length: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted_on_create: bool = False
    picklist: tuple[PicklistValue, ...] = ()
    restricted: bool = False
    external_id: bool = False
    unique: bool = False
    id_lookup: bool = False
    custom: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    controller_name: str | None = None
    compound: str | None = None
    precision: int = 0
    scale: int = 0
    digits: int = 0

    @property
    def required(self) -> bool:
        """A create must give a value: not nillable, not defaulted, and ours to set."""
        return not self.nillable and not self.defaulted_on_create and self.createable

    @property
    def is_text(self) -> bool:
        return self.type in _TEXT_TYPES

    def active_values(self) -> tuple[str, ...]:
        return tuple(p.value for p in self.picklist if p.active)

    def default_value(self) -> str | None:
        return next((p.value for p in self.picklist if p.default and p.active), None)

    def describe(self) -> dict[str, Any]:
        """The field object of a describe answer (every key of a recorded v44+ describe)."""
        kind = self.type
        system = not self.createable and not self.updateable
        text = kind in _TEXT_TYPES or kind == "id" or kind == "reference"
        return {
            "aggregatable": kind not in ("boolean", "textarea"),
            "aiPredictionField": False,
            "autoNumber": False,
            "byteLength": 18 if kind in ("id", "reference") else (3 * self.length if text else 0),
            "calculated": False,
            "calculatedFormula": None,
            "cascadeDelete": False,
            "caseSensitive": False,
            "compoundFieldName": self.compound,
            "controllerName": self.controller_name,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": None,
            "defaultValueFormula": None,
            "defaultedOnCreate": self.defaulted_on_create,
            "dependentPicklist": self.controller_name is not None,
            "deprecatedAndHidden": False,
            "digits": self.digits,
            "displayLocationInDecimal": False,
            "encrypted": False,
            "externalId": self.external_id,
            "extraTypeInfo": None,
            "filterable": kind != "textarea",
            "filteredLookupInfo": None,
            "formulaTreatNullNumberAsZero": False,
            "groupable": kind not in ("datetime", "double", "percent", "textarea"),
            "highScaleNumber": False,
            "htmlFormatted": False,
            "idLookup": self.id_lookup,
            "inlineHelpText": None,
            "label": self.label,
            "length": self.length,
            "mask": None,
            "maskType": None,
            "name": self.name,
            "nameField": self.name == "Name",
            "namePointing": len(self.reference_to) > 1,
            "nillable": self.nillable,
            "permissionable": self.nillable and not system and self.compound != "Name",
            "picklistValues": [p.describe() for p in self.picklist],
            "polymorphicForeignKey": False,
            "precision": self.precision,
            "queryByDistance": False,
            "referenceTargetField": None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "relationshipOrder": None,
            "restrictedDelete": False,
            "restrictedPicklist": self.restricted,
            "scale": self.scale,
            "searchPrefilterable": False,
            "soapType": _SOAP_TYPES.get(kind, "xsd:string"),
            "sortable": kind != "textarea",
            "type": kind,
            "unique": self.unique,
            "updateable": self.updateable,
            "writeRequiresMasterRead": False,
        }


@dataclass(frozen=True)
class ObjectDef:
    """One sObject type: its identity and its standard fields (in describe order)."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[FieldDef, ...]
    custom: bool = False
    scopes: tuple[tuple[str, str], ...] = ()

    def describe(self, version: str, fields: Iterable[FieldDef], host: str) -> dict[str, Any]:
        """The whole `GET /sobjects/{name}/describe` answer (childRelationships left empty)."""
        base = f"/services/data/{version}/sobjects/{self.name}"
        ui = f"https://{host}"
        return {
            "actionOverrides": [],
            "activateable": False,
            "associateEntityType": None,
            "associateParentEntity": None,
            "childRelationships": [],
            "compactLayoutable": True,
            "createable": True,
            "custom": self.custom,
            "customSetting": False,
            "dataTranslationEnabled": False,
            "deepCloneable": False,
            "defaultImplementation": None,
            "deletable": True,
            "deprecatedAndHidden": False,
            "extendedBy": None,
            "extendsInterfaces": None,
            "feedEnabled": self.name in ("Lead", "Account", "Contact", "Opportunity", "User"),
            "fields": [f.describe() for f in fields],
            "hasSubtypes": False,
            "implementedBy": None,
            "implementsInterfaces": None,
            "isInterface": False,
            "isSubtype": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": True,
            "listviewable": None,
            "lookupLayoutable": None,
            "mergeable": self.name in ("Lead", "Account", "Contact"),
            "mruEnabled": True,
            "name": self.name,
            "namedLayoutInfos": [],
            "networkScopeFieldName": None,
            "queryable": True,
            "recordTypeInfos": [
                {
                    "active": True,
                    "available": True,
                    "defaultRecordTypeMapping": True,
                    "developerName": "Master",
                    "master": True,
                    "name": "Master",
                    "recordTypeId": "012000000000000AAA",
                    "urls": {"layout": f"{base}/describe/layouts/012000000000000AAA"},
                }
            ],
            "replicateable": True,
            "retrieveable": True,
            "searchLayoutable": True,
            "searchable": True,
            "supportedScopes": [{"label": label, "name": name} for name, label in self.scopes],
            "triggerable": True,
            "undeletable": True,
            "updateable": True,
            "urls": {
                "compactLayouts": f"{base}/describe/compactLayouts",
                "rowTemplate": f"{base}/{{ID}}",
                "approvalLayouts": f"{base}/describe/approvalLayouts",
                "uiDetailTemplate": f"{ui}/{{ID}}",
                "uiEditTemplate": f"{ui}/{{ID}}/e",
                "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
                "listviews": f"{base}/listviews",
                "describe": f"{base}/describe",
                "uiNewRecord": f"{ui}/{self.key_prefix}/e",
                "quickActions": f"{base}/quickActions",
                "layouts": f"{base}/describe/layouts",
                "sobject": base,
            },
        }


# ------------------------------------------------------------------ field builders


def _system(name: str, label: str, kind: FieldType, **extra: Any) -> FieldDef:
    return FieldDef(name, kind, label, nillable=False, createable=False, updateable=False,
                    defaulted_on_create=True, **extra)  # fmt: skip


def _text(name: str, label: str, length: int, **extra: Any) -> FieldDef:
    return FieldDef(name, "string", label, length=length, **extra)


def _custom_text(name: str, label: str, length: int, **extra: Any) -> FieldDef:
    return FieldDef(name, "string", label, length=length, custom=True, **extra)


def _picklist(name: str, label: str, values: Iterable[str], *, default: str | None = None, **extra: Any) -> FieldDef:
    entries = tuple(PicklistValue(v, v, default=v == default) for v in values)
    return FieldDef(name, "picklist", label, length=255, picklist=entries, **extra)


def _ref(name: str, label: str, to: tuple[str, ...], relationship: str, **extra: Any) -> FieldDef:
    return FieldDef(name, "reference", label, length=18, reference_to=to, relationship_name=relationship, **extra)


def _owner() -> FieldDef:
    # OwnerId is never empty: describe says nillable false, defaultedOnCreate true (SF-owner).
    return _ref("OwnerId", "Owner ID", ("Group", "User"), "Owner", nillable=False, defaulted_on_create=True)


_AUDIT = (
    _system("CreatedDate", "Created Date", "datetime"),
    _ref("CreatedById", "Created By ID", ("User",), "CreatedBy", nillable=False, createable=False,
         updateable=False, defaulted_on_create=True),
    _system("LastModifiedDate", "Last Modified Date", "datetime"),
    _ref("LastModifiedById", "Last Modified By ID", ("User",), "LastModifiedBy", nillable=False,
         createable=False, updateable=False, defaulted_on_create=True),
    _system("SystemModstamp", "System Modstamp", "datetime"),
    _system("IsDeleted", "Deleted", "boolean"),
)  # fmt: skip


def _id(label: str) -> FieldDef:
    return _system("Id", label, "id", length=18, id_lookup=True)


# Lead values a new org ships with, then the ones crm-sync and the handbook use.
LEAD_SOURCES: Final = (
    "Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other",
    "Demo request", "Sales email", "Trust center", "Campaign", "BDR", "Product-led",
    "Onboarding referral", "AE referral", "AM referral", "Expansion lead", "New business signal",
)  # fmt: skip
LEAD_STATUSES: Final = (
    "Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted",
    "Working", "Qualified", "Unqualified", "Disqualified", "Nurture",
)  # fmt: skip
# The handbook's rule ids (Routing_Rule__c): an unrestricted picklist by default, so that rules
# added in a deployment's config are accepted; an org may restrict it (see the overrides).
ROUTING_RULES: Final = (
    "product_led.mrr_band", "product_led.scale_high_icp", "product_led.startup_rolloff",
    "product_led.forecast_spike", "product_led.am_referral", "new_business.onboarding_referral",
    "new_business.big_fish", "new_business.startup_credits", "new_business.ae_referral",
    "new_business.demo_request", "new_business.sales_email", "new_business.trust_center",
    "new_business.campaign", "new_business.bdr_qualified", "bdr.closed_lost_unresponsive",
    "onboarding.direct_handover",
)  # fmt: skip
_INDUSTRIES = (
    "Agriculture", "Banking", "Education", "Energy", "Finance", "Healthcare", "Media", "Retail",
    "Technology", "Telecommunications", "Other",
)  # fmt: skip

_LEAD = ObjectDef(
    "Lead",
    "Lead",
    "Leads",
    "00Q",
    (
        _id("Lead ID"),
        _text("LastName", "Last Name", 80, nillable=False, compound="Name"),
        _text("FirstName", "First Name", 40, compound="Name"),
        FieldDef("Name", "string", "Full Name", length=121, nillable=False, createable=False, updateable=False,
                 defaulted_on_create=True),
        _text("Company", "Company", 255, nillable=False),
        _text("Title", "Title", 128),
        FieldDef("Email", "email", "Email", length=80, id_lookup=True),
        FieldDef("Phone", "phone", "Phone", length=40),
        FieldDef("Website", "url", "Website", length=255),
        _text("City", "City", 40, compound="Address"),
        _text("State", "State/Province", 80, compound="Address"),
        _text("Country", COUNTRY_LABEL, 80, compound="Address"),
        FieldDef("NumberOfEmployees", "int", "Employees", digits=8),
        FieldDef("AnnualRevenue", "currency", "Annual Revenue", precision=18),
        _picklist("Industry", "Industry", _INDUSTRIES),
        _picklist("LeadSource", "Lead Source", LEAD_SOURCES),
        _picklist("Status", "Status", LEAD_STATUSES, default="Open - Not Contacted", nillable=False,
                  defaulted_on_create=True),
        _picklist("Rating", "Rating", ("Hot", "Warm", "Cold")),
        FieldDef("Description", "textarea", "Description", length=32000),
        _owner(),
        # Createable but not updateable, as the recorded describe has it (GO-describe).
        FieldDef("IsConverted", "boolean", "Converted", nillable=False, updateable=False, defaulted_on_create=True),
        FieldDef("ConvertedDate", "date", "Converted Date", createable=False, updateable=False),
        _ref("ConvertedAccountId", "Converted Account ID", ("Account",), "ConvertedAccount", createable=False,
             updateable=False),
        _ref("ConvertedContactId", "Converted Contact ID", ("Contact",), "ConvertedContact", createable=False,
             updateable=False),
        _ref("ConvertedOpportunityId", "Converted Opportunity ID", ("Opportunity",), "ConvertedOpportunity",
             createable=False, updateable=False),
        # Set on a record merged away (deleted by a merge): the surviving record (merge(), SOAP API).
        _ref("MasterRecordId", "Master Record ID", ("Lead",), "MasterRecord", createable=False,
             updateable=False),
        *_AUDIT,
        _custom_text("Sync_Key__c", "Sync Key", 80, external_id=True, unique=True, id_lookup=True),
        _custom_text("Vitally_Account_Id__c", "Vitally Account Id", 64),
        _custom_text("Role__c", "Role", 255),
        _custom_text("Sub_Role__c", "Sub Role", 255),
        FieldDef("Form_Text__c", "textarea", "Form Text", length=32768, custom=True),
        FieldDef("Lead_Score__c", "double", "Lead Score", custom=True, precision=3),
        _picklist("Routing_Rule__c", "Routing Rule", ROUTING_RULES, custom=True),
        _custom_text("Routing_Reason__c", "Routing Reason", 255),
        _custom_text("Classification__c", "Classification", 255),
        _custom_text("Qualification__c", "Qualification", 255),
        _custom_text("Qualification_Reason__c", "Qualification Reason", 255),
    ),
    scopes=(("everything", "All leads"), ("mine", "My leads"), ("team", "My team's leads")),
)  # fmt: skip

_USER = ObjectDef(
    "User",
    "User",
    "Users",
    "005",
    (
        _id("User ID"),
        _text("Username", "Username", 80, nillable=False, id_lookup=True, unique=True),
        _text("LastName", "Last Name", 80, nillable=False, compound="Name"),
        _text("FirstName", "First Name", 40, compound="Name"),
        FieldDef("Name", "string", "Full Name", length=121, nillable=False, createable=False, updateable=False,
                 defaulted_on_create=True),
        FieldDef("Email", "email", "Email", length=128, nillable=False),
        _text("Alias", "Alias", 8, nillable=False),
        FieldDef("IsActive", "boolean", "Active", nillable=False, defaulted_on_create=True),
        _text("Title", "Title", 80),
        _text("Department", "Department", 80),
        _ref("UserRoleId", "Role ID", ("UserRole",), "UserRole"),
        _ref("ProfileId", "Profile ID", ("Profile",), "Profile", nillable=False),
        _picklist("TimeZoneSidKey", "Time Zone", ("America/Los_Angeles", "America/New_York", "Europe/London",
                                                  "Europe/Berlin", "Asia/Singapore"), nillable=False,
                  restricted=True),
        _text("Country", COUNTRY_LABEL, 80, compound="Address"),
        _ref("ManagerId", "Manager ID", ("User",), "Manager"),
        *_AUDIT,
    ),
    scopes=(("everything", "All users"),),
)  # fmt: skip

_OPPORTUNITY = ObjectDef(
    "Opportunity",
    "Opportunity",
    "Opportunities",
    "006",
    (
        _id("Opportunity ID"),
        _text("Name", "Name", 120, nillable=False),
        _ref("AccountId", "Account ID", ("Account",), "Account"),
        _picklist("StageName", "Stage", ("Prospecting", "Qualification", "Discovery", "Needs Analysis",
                                         "Proposal/Price Quote", "Negotiation/Review", "Closed Won",
                                         "Closed Lost"), nillable=False),
        FieldDef("CloseDate", "date", "Close Date", nillable=False),
        FieldDef("Amount", "currency", "Amount", precision=18, scale=2),
        FieldDef("Probability", "percent", "Probability (%)", precision=3),
        _picklist("Type", "Opportunity Type", ("Existing Business", "New Business")),
        _picklist("LeadSource", "Lead Source", LEAD_SOURCES),
        FieldDef("IsClosed", "boolean", "Closed", nillable=False, createable=False, updateable=False,
                 defaulted_on_create=True),
        FieldDef("IsWon", "boolean", "Won", nillable=False, createable=False, updateable=False,
                 defaulted_on_create=True),
        FieldDef("Description", "textarea", "Description", length=32000),
        FieldDef("OwnerId", "reference", "Owner ID", length=18, nillable=False, defaulted_on_create=True,
                 reference_to=("User",), relationship_name="Owner"),
        *_AUDIT,
        _custom_text("Loss_Reason__c", "Loss Reason", 255),
    ),
)  # fmt: skip

_ACCOUNT = ObjectDef(
    "Account",
    "Account",
    "Accounts",
    "001",
    (
        _id("Account ID"),
        _text("Name", "Account Name", 255, nillable=False),
        FieldDef("Website", "url", "Website", length=255),
        _picklist("Industry", "Industry", _INDUSTRIES),
        _picklist("Type", "Account Type", ("Prospect", "Customer - Direct", "Customer - Channel", "Partner",
                                           "Other")),
        _text("BillingCountry", "Billing Country", 80, compound="BillingAddress"),
        FieldDef("NumberOfEmployees", "int", "Employees", digits=8),
        FieldDef("AnnualRevenue", "currency", "Annual Revenue", precision=18),
        FieldDef("Description", "textarea", "Account Description", length=32000),
        FieldDef("OwnerId", "reference", "Owner ID", length=18, nillable=False, defaulted_on_create=True,
                 reference_to=("User",), relationship_name="Owner"),
        # Set on a record merged away (deleted by a merge): the surviving record (merge(), SOAP API).
        _ref("MasterRecordId", "Master Record ID", ("Account",), "MasterRecord", createable=False,
             updateable=False),
        *_AUDIT,
        _custom_text("Vitally_Account_Id__c", "Vitally Account Id", 64),
    ),
)  # fmt: skip

_CONTACT = ObjectDef(
    "Contact",
    "Contact",
    "Contacts",
    "003",
    (
        _id("Contact ID"),
        _text("LastName", "Last Name", 80, nillable=False, compound="Name"),
        _text("FirstName", "First Name", 40, compound="Name"),
        FieldDef("Name", "string", "Full Name", length=121, nillable=False, createable=False, updateable=False,
                 defaulted_on_create=True),
        FieldDef("Email", "email", "Email", length=80, id_lookup=True),
        _text("Title", "Title", 128),
        _ref("AccountId", "Account ID", ("Account",), "Account"),
        FieldDef("OwnerId", "reference", "Owner ID", length=18, nillable=False, defaulted_on_create=True,
                 reference_to=("User",), relationship_name="Owner"),
        # Set on a record merged away (deleted by a merge): the surviving record (merge(), SOAP API).
        _ref("MasterRecordId", "Master Record ID", ("Contact",), "MasterRecord", createable=False,
             updateable=False),
        *_AUDIT,
    ),
)  # fmt: skip

# Queues are Group rows with Type = 'Queue' (a lead's OwnerId may name one: 00G…).
_GROUP = ObjectDef(
    "Group",
    "Group",
    "Groups",
    "00G",
    (
        _id("Group ID"),
        _text("Name", "Name", 40, nillable=False),
        _text("DeveloperName", "Developer Name", 80, nillable=False),
        _picklist("Type", "Type", ("Regular", "Role", "Queue", "Organization"), nillable=False, restricted=True),
        FieldDef("Email", "email", "Email", length=255),
        FieldDef("DoesSendEmailToMembers", "boolean", "Send Email to Members", nillable=False,
                 defaulted_on_create=True),
        _ref("OwnerId", "Owner ID", ("User",), "Owner", nillable=False, defaulted_on_create=True),
        *_AUDIT,
    ),
)  # fmt: skip

STANDARD_OBJECTS: Final[Mapping[str, ObjectDef]] = {
    o.name: o for o in (_LEAD, _USER, _OPPORTUNITY, _ACCOUNT, _CONTACT, _GROUP)
}


# ----------------------------------------------------------- state and country picklists

# Countries whose states are a picklist in a new org (Salesforce ships states for these and a
# few more); every other country takes no state value.
_STATE_COUNTRIES = ("US", "CA", "AU", "BR", "IN", "MX")


@functools.cache
def countries() -> tuple[tuple[str, str], ...]:
    """(ISO code, integration value) of every country, sorted by code: the CountryCode picklist.

    Integration values default to the ISO 3166 short names (SF-picklists), e.g. "United States",
    "Korea, Republic of"."""
    return tuple(sorted((c.alpha_2, c.name) for c in pycountry.countries))


@functools.cache
def states() -> tuple[tuple[str, str, str], ...]:
    """(country code, state code, integration value) of every state picklist entry."""
    out = []
    for country in _STATE_COUNTRIES:
        for sub in pycountry.subdivisions.get(country_code=country) or ():  # type: ignore[no-untyped-call]
            if sub.parent_code is None:
                out.append((country, sub.code.split("-", 1)[1], sub.name))
    return tuple(sorted(out))


@functools.cache
def _country_names() -> dict[str, tuple[str, str]]:
    return {name.lower(): (code, name) for code, name in countries()}


def country_by_name(text: str) -> tuple[str, str] | None:
    """(code, integration value) for an integration value, case-insensitively; an ISO code is
    not an integration value."""
    return _country_names().get(text.strip().lower())


def country_by_code(text: str) -> tuple[str, str] | None:
    """(code, integration value) for an ISO code, case-insensitively."""
    wanted = text.strip().upper()
    return next(((code, name) for code, name in countries() if code == wanted), None)


def state_options(country: str | None) -> dict[str, str]:
    """State code → integration value of `country`'s state picklist (empty: no states)."""
    return {code: name for owner, code, name in states() if owner == country}


@functools.cache
def controlling_indexes(valid_for: str | None) -> frozenset[int]:
    """The controlling values' positions a `validFor` bitmap names (the inverse of `_valid_for`).
    Kept per bitmap (an org has one for each set of countries a state belongs to, a few hundred):
    every Lead write with an address asks it for every state of the picklist."""
    if not valid_for:
        return frozenset()
    raw = base64.b64decode(valid_for)
    return frozenset(i * 8 + bit for i, byte in enumerate(raw) for bit in range(8) if byte & (0x80 >> bit))


def _valid_for(bits: Iterable[int], size: int) -> str:
    """Salesforce's `validFor`: base64 of a bitmap, bit i (most significant first) = controlling
    value i (SF-picklists; see boxfoot's decoding gist cited in SOURCES.md)."""
    raw = bytearray((size + 7) // 8 or 1)
    for bit in bits:
        raw[bit // 8] |= 0x80 >> (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


@functools.cache
def picklist_fields() -> tuple[FieldDef, FieldDef]:
    """The `CountryCode` and `StateCode` fields of a Lead in an org with the picklists on."""
    codes = countries()
    position = {code: i for i, (code, _) in enumerate(codes)}
    country = FieldDef(
        "CountryCode", "picklist", "Country Code", length=10, compound="Address", restricted=True,
        picklist=tuple(PicklistValue(code, name) for code, name in codes),
    )  # fmt: skip
    state = FieldDef(
        "StateCode", "picklist", "State/Province Code", length=10, compound="Address", restricted=True,
        controller_name="CountryCode",
        picklist=tuple(
            PicklistValue(code, name, valid_for=_valid_for([position[owner]], len(codes)))
            for owner, code, name in states()
        ),
    )  # fmt: skip
    return country, state


# ------------------------------------------------------------------------ overrides

_OVERRIDE_KEYS: Final[Mapping[str, str]] = {
    "name": "name",
    "type": "type",
    "label": "label",
    "length": "length",
    "nillable": "nillable",
    "createable": "createable",
    "updateable": "updateable",
    "defaultedOnCreate": "defaulted_on_create",
    "restrictedPicklist": "restricted",
    "externalId": "external_id",
    "unique": "unique",
    "idLookup": "id_lookup",
    "referenceTo": "reference_to",
    "controllerName": "controller_name",
    "precision": "precision",
    "scale": "scale",
    "picklistValues": "picklist",
}
_EDIT_KEYS = ("addPicklistValues", "removePicklistValues")
_BOOL_KEYS = {"nillable", "createable", "updateable", "defaultedOnCreate", "restrictedPicklist", "externalId",
              "unique", "idLookup"}  # fmt: skip
_INT_KEYS = {"length", "precision", "scale"}


def check_overrides(value: Any) -> list[str]:
    """Every problem of an `sf_schema` value, as `path: message` (empty when it is usable)."""
    if not isinstance(value, Mapping):
        return ["expected an object of sObject name → {field: null | {describe key: value}}"]
    problems: list[str] = []
    for obj, fields in value.items():
        if obj not in STANDARD_OBJECTS:
            problems.append(f"{obj}: unknown sObject (known: {', '.join(STANDARD_OBJECTS)})")
            continue
        if not isinstance(fields, Mapping):
            problems.append(f"{obj}: expected an object of field name → null or an object")
            continue
        for name, spec in fields.items():
            if spec is None:
                continue
            if not isinstance(spec, Mapping):
                problems.append(f"{obj}.{name}: expected null (remove) or an object of describe keys")
                continue
            for key, item in spec.items():
                problem = _check_override_key(key, item)
                if problem:
                    problems.append(f"{obj}.{name}.{key}: {problem}")
    return problems


def _check_override_key(key: str, item: Any) -> str | None:
    if key not in _OVERRIDE_KEYS and key not in _EDIT_KEYS:
        return f"unknown key (known: {', '.join([*_OVERRIDE_KEYS, *_EDIT_KEYS])})"
    if key in _BOOL_KEYS:
        return None if isinstance(item, bool) else "expected true or false"
    if key in _INT_KEYS:
        return None if isinstance(item, int) and not isinstance(item, bool) and item >= 0 else "expected an integer"
    if key == "type":
        return None if item in FIELD_TYPES else f"expected one of {', '.join(FIELD_TYPES)}"
    if key in ("name", "label"):
        return None if isinstance(item, str) and item else "expected a non-empty string"
    if key == "controllerName":
        return None if item is None or (isinstance(item, str) and item) else "expected a field name or null"
    if key == "referenceTo":
        ok = isinstance(item, list) and all(isinstance(s, str) and s for s in item)
        return None if ok else "expected a list of sObject names"
    ok = isinstance(item, list) and all(
        (isinstance(v, str) and v) or (isinstance(v, Mapping) and isinstance(v.get("value"), str)) for v in item
    )
    return None if ok else "expected a list of values (strings or {value, label, active, defaultValue})"


def _picklist_entries(items: Iterable[Any]) -> tuple[PicklistValue, ...]:
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(PicklistValue(item, item))
        else:
            value = str(item["value"])
            out.append(
                PicklistValue(
                    value,
                    str(item.get("label") or value),
                    active=bool(item.get("active", True)),
                    default=bool(item.get("defaultValue", False)),
                    valid_for=item.get("validFor"),
                )
            )
    return tuple(out)


def apply_overrides(obj: str, fields: Mapping[str, FieldDef], overrides: Mapping[str, Any]) -> dict[str, FieldDef]:
    """`fields` (name → definition, in describe order) changed by one object's overrides.

    Assumes `check_overrides` found nothing wrong. A field not in `fields` is added as a custom
    field (text of 255 unless the override says otherwise)."""
    out = dict(fields)
    for name, spec in (overrides.get(obj) or {}).items():
        if spec is None:
            out.pop(name, None)
            continue
        current = out.pop(name, None) or FieldDef(name, "string", name.removesuffix("__c").replace("_", " "),
                                                  length=255, custom=True)  # fmt: skip
        changes: dict[str, Any] = {}
        for key, item in spec.items():
            if key in _EDIT_KEYS:
                continue
            attr = _OVERRIDE_KEYS[key]
            if attr == "picklist":
                item = _picklist_entries(item)
            elif attr == "reference_to":
                item = tuple(item)
            changes[attr] = item
        updated = dataclasses.replace(current, **changes)
        if "addPicklistValues" in spec:
            known = {p.value for p in updated.picklist}
            extra = tuple(p for p in _picklist_entries(spec["addPicklistValues"]) if p.value not in known)
            updated = dataclasses.replace(updated, picklist=updated.picklist + extra)
        if "removePicklistValues" in spec:
            gone = {p.value for p in _picklist_entries(spec["removePicklistValues"])}
            updated = dataclasses.replace(updated, picklist=tuple(p for p in updated.picklist if p.value not in gone))
        if updated.name != name and updated.name.endswith("__c"):
            updated = dataclasses.replace(updated, custom=True)
        out[updated.name] = updated
    return out


def learned_field(name: str, value: Any) -> FieldDef:
    """The definition given to a field first seen in a seed record (seeds define their fields)."""
    custom = name.endswith("__c")
    if isinstance(value, bool):
        return FieldDef(name, "boolean", name, custom=custom)
    if isinstance(value, int | float):
        return FieldDef(name, "double", name, custom=custom, precision=18)
    return FieldDef(name, "string", name, length=255, custom=custom)
