"""What every layer shares: the record model, the error tree, and parsing the services' raw
records into typed ones. Pure: no I/O, and nothing of crm-sync's other packages is imported here.

    core.model      typed records (Account, Lead, SfUser, Opportunity, SfAccount)
    core.errors     the one exception tree, grouped by what the caller should do
    core.records    raw service JSON → typed records; a malformed record is a RecordError
    core.countries  country names and codes → ISO 3166-1 alpha-2 (pycountry)
    core.settings   how a setting is declared: once, with its default, a one-line doc and limits
"""

from __future__ import annotations

from core.errors import (
    AuthError,
    ConfigError,
    ContractError,
    FatalError,
    QuotaExhaustedError,
    RateLimitedError,
    RecordError,
    RetriableError,
    StopRequested,
    SyncError,
    UnreachableError,
    WriteRejectedError,
)
from core.model import Account, Invoice, Lead, Opportunity, SfAccount, SfUser
from core.records import (
    DEFAULT_TRAIT_KEYS,
    parse_account,
    parse_lead,
    parse_opportunity,
    parse_sf_account,
    parse_timestamp,
    parse_user,
)

__all__ = [
    "DEFAULT_TRAIT_KEYS",
    "Account",
    "AuthError",
    "ConfigError",
    "ContractError",
    "FatalError",
    "Invoice",
    "Lead",
    "Opportunity",
    "QuotaExhaustedError",
    "RateLimitedError",
    "RecordError",
    "RetriableError",
    "SfAccount",
    "SfUser",
    "StopRequested",
    "SyncError",
    "UnreachableError",
    "WriteRejectedError",
    "parse_account",
    "parse_lead",
    "parse_opportunity",
    "parse_sf_account",
    "parse_timestamp",
    "parse_user",
]
