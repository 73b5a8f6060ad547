"""A FHIR server as far as leukofhir's writes go, for property tests: conditional create
(``ifNoneExist`` on an identifier or a tag), conditional update (``PUT Type?identifier=``),
``urn:uuid:`` references resolved within their Bundle.  The real server
(``../shared/tools/fhir-server``) is exercised by ``tests/lifecycle/test_server.py``."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

Json = dict[str, Any]


class UnresolvedReferenceError(AssertionError):
    pass


class ServerModel:
    def __init__(self) -> None:
        self.resources: dict[tuple[str, str], Json] = {}
        self.created = 0  # resources created, ever

    def apply(self, bundle: Json) -> None:
        """One transaction: every entry, references rewritten to ``Type/key``."""
        names: dict[str, str] = {}
        for entry in bundle["entry"]:
            kind = entry["resource"]["resourceType"]
            names[entry["fullUrl"]] = f"{kind}/{self._key(entry)}"
        for entry in bundle["entry"]:
            resource = _resolve(entry["resource"], names)
            key = (resource["resourceType"], self._key(entry))
            if entry["request"]["method"] == "POST" and key in self.resources:
                continue  # conditional create that matched
            if key not in self.resources:
                self.created += 1
            self.resources[key] = resource

    def of(self, kind: str) -> dict[str, Json]:
        return {key: r for (k, key), r in self.resources.items() if k == kind}

    @staticmethod
    def _key(entry: Json) -> str:
        request = entry["request"]
        search = request.get("ifNoneExist") or request["url"].partition("?")[2]
        assert search, f"an unconditional write: {request}"
        return unquote(search)


def _resolve(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _resolve(v, names) for k, v in value.items()}
        reference = value.get("reference")
        if isinstance(reference, str):
            if reference not in names:
                raise UnresolvedReferenceError(f"{reference} is not in the Bundle")
            out["reference"] = names[reference]
        return out
    if isinstance(value, list):
        return [_resolve(v, names) for v in value]
    return value


def live_flags(model: ServerModel) -> dict[str, Json]:
    """Flags that stand (active or inactive), by identifier, without their subject."""
    return {
        key: {k: v for k, v in flag.items() if k != "subject"}
        for key, flag in model.of("Flag").items()
        if flag["status"] != "entered-in-error"
    }


def live_results(model: ServerModel) -> dict[str, Json]:
    """Observations not withdrawn, by identifier, without their subject."""
    return {
        key: {k: v for k, v in obs.items() if k != "subject"}
        for key, obs in model.of("Observation").items()
        if obs["status"] != "entered-in-error"
    }
