"""Country names and codes to ISO 3166-1 alpha-2, through pycountry.

The alias table holds only what pycountry does not know (colloquial and native names).
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["normalise_country"]

# Names pycountry's lookup does not resolve but people type into CRMs.
_ALIASES = {
    "uk": "GB",
    "u.k.": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "great britain": "GB",
    "britain": "GB",
    "deutschland": "DE",
    "russia": "RU",
    "holland": "NL",
    "america": "US",
    "u.s.": "US",
    "u.s.a.": "US",
    "united states of america": "US",
    "españa": "ES",
    "espana": "ES",
    "brasil": "BR",
    "south korea": "KR",
    "korea": "KR",
    "schweiz": "CH",
    "suisse": "CH",
    "österreich": "AT",
    "osterreich": "AT",
    "nederland": "NL",
    "italia": "IT",
    "sverige": "SE",
    "norge": "NO",
    "danmark": "DK",
    "suomi": "FI",
    "polska": "PL",
    "türkiye": "TR",
    "turkey": "TR",
    "vietnam": "VN",
    "iran": "IR",
    "taiwan": "TW",
    "czech republic": "CZ",
}


@lru_cache(maxsize=4096)
def normalise_country(value: str) -> str | None:
    """Return the ISO alpha-2 code for a country name or code, or None when it is not a country.
    A leading article is not part of the name: "The Netherlands", "the UK" and "the Gambia" are
    the Netherlands, the United Kingdom and the Gambia (pycountry knows them without it)."""
    text = value.strip()
    if text[:4].casefold() == "the " and len(text) > 4:
        text = text[4:].strip()
    if not text:
        return None
    alias = _ALIASES.get(text.casefold())
    if alias:
        return alias
    import pycountry  # imported when first needed: 19 ms a start, and an idle cycle parses no country

    try:
        country = pycountry.countries.lookup(text)
    except LookupError:
        return None
    return str(country.alpha_2)
