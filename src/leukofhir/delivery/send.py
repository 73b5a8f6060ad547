"""One attempt to deliver one document: whole when it fits the server, else part by part
(:mod:`.split`), each later part rewritten with the locations the server gave the earlier
ones.  Entries applied by an earlier attempt (``progress``) are not sent again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from leukofhir.delivery.answer import Answer
from leukofhir.delivery.policy import Verdict
from leukofhir.delivery.split import (
    ServerProfile,
    SplitError,
    named_by,
    part_body,
    placeholders,
    plan_parts,
    read_bundle,
    reference_from_location,
)

__all__ = ["Attempt", "Post", "send_document"]

Post = Callable[[bytes, int], Awaitable[Answer]]  # (transaction body, entries) -> answer
Progress = Mapping[int, str]  # entry index -> "Type/id" of entries already applied


@dataclass(frozen=True, slots=True)
class Attempt:
    answer: Answer  # the last answer: of the last part when delivered, else of the failing one
    progress: tuple[tuple[int, str], ...] = ()  # entries applied so far (split documents)
    requests: int = 0  # transactions sent in this attempt
    parts: int = 1  # parts the rest of the document needed


async def send_document(
    post: Post,
    data: bytes,
    profile: ServerProfile,
    progress: Progress | None = None,
    on_part: Callable[[Progress], None] | None = None,
) -> Attempt:
    """Send ``data`` (a transaction Bundle); ``on_part`` hears the progress after each part
    but the last, so that it can be kept before the next part is sent."""
    done = dict(progress or {})
    try:
        bundle = read_bundle(data)
        parts = plan_parts(bundle, profile, done)
    except SplitError as exc:
        return Attempt(Answer(Verdict.DEAD, None, str(exc)), _frozen(done), 0, 0)
    if not parts:
        return Attempt(Answer(Verdict.DELIVERED, None, "every part applied before"), (), 0, 0)
    entries = bundle["entry"]
    if len(parts) == 1 and not done:
        return Attempt(await post(data, len(entries)), (), 1, 1)
    exact = read_bundle(data, exact=True)
    known = placeholders(bundle)
    for number, part in enumerate(parts, 1):
        needed = set().union(*(named_by(entries[i], known) for i in part.entries))
        missing = sorted(needed - set(part.entries) - {i for i, ref in done.items() if ref})
        if missing:
            reason = f"entry {missing[0]} was applied without a location; later parts name it"
            dead = Answer(Verdict.DEAD, None, reason)
            return Attempt(dead, _frozen(done), number - 1, len(parts))
        resolved = {url: done[index] for url, index in known.items() if done.get(index)}
        answer = await post(part_body(exact, part, resolved), len(part.entries))
        if answer.verdict is not Verdict.DELIVERED:
            return Attempt(answer, _frozen(done), number, len(parts))
        for index, location in zip(part.entries, answer.locations, strict=True):
            done[index] = (reference_from_location(location) if location else None) or ""
        if on_part is not None and number < len(parts):
            on_part(done)
    return Attempt(answer, (), len(parts), len(parts))


def _frozen(progress: Progress) -> tuple[tuple[int, str], ...]:
    return tuple(sorted(progress.items()))
