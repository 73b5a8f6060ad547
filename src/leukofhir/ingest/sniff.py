"""Which reader an input goes to, from its first bytes.  Imports nothing, so that the FHIR
readers (and the fhir.resources models behind them) load only for FHIR input."""

from __future__ import annotations

__all__ = ["looks_like_fhir"]

_BOM = b"\xef\xbb\xbf"
_BLANK = b" \t\r\n"


def looks_like_fhir(data: bytes) -> bool:
    """True when the first non-blank byte (after a UTF-8 BOM) is ``{`` or ``[``."""
    body = data[len(_BOM) :] if data.startswith(_BOM) else data
    return body.lstrip(_BLANK)[:1] in (b"{", b"[")
