"""What a command loads: start-up is most of a short run (``leukofhir --version``, a replay
of one message), so each command imports only what it and its input need.  Pinned by
the modules present after the command, in a fresh interpreter (never by a time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import SAMPLES

# the FHIR models, the service, batch and delivery stacks, the terminal renderer
HEAVY = (
    "fhir",
    "fhir_core",
    "pydantic",
    "hl7apy",
    "structlog",
    "rich",
    "asyncio",
    "httpx",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "sqlite3",
    "leukofhir.ingest.fhir",
    "leukofhir.serve.service",
    "leukofhir.serve.journal",
    "leukofhir.batch",
    # the delivery package's parsers (options, command) are light; what delivers is not
    "leukofhir.delivery.client",
    "leukofhir.delivery.deliverer",
    "leukofhir.delivery.outbox",
    "leukofhir.delivery.background",
    "leukofhir.render",
    # the NATS client, its thread and the worker: only with --publish or worker
    "nats",
    "leukofhir.stream.jetstream",
    "leukofhir.stream.worker",
    # the packaged data is read as plain files (leukofhir.packaged_text)
    "importlib.resources",
    # and its TOML with rtoml (leukofhir.packaged_toml); tomllib reads users' files only
    "tomllib",
)


def modules_after(code: str) -> set[str]:
    """The modules loaded once ``code`` has run in a fresh interpreter (stdout is not a
    terminal there, so the logs are JSON and replay writes NDJSON)."""
    script = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def heavy(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if any(m == h or m.startswith(f"{h}.") for h in HEAVY))


def test_the_cli_module_loads_no_heavy_module() -> None:
    assert heavy(modules_after("import leukofhir.cli")) == []


def test_version_loads_neither_the_pipeline_nor_the_logs() -> None:
    code = "import contextlib\nfrom leukofhir.cli import main\n"
    code += "with contextlib.suppress(SystemExit):\n    main(['--version'])"
    loaded = modules_after(code)
    assert "leukofhir.cli" in loaded
    core = ("leukofhir.pipeline", "leukofhir.model", "leukofhir.rules", "leukofhir.logs")
    assert sorted(m for m in loaded if m.startswith(core)) == []
    assert heavy(loaded) == []


HL7 = SAMPLES / "01-normal-cbc-5-part-diff.hl7"


def replay(*arguments: object) -> str:
    """Code that runs ``leukofhir`` with ``arguments`` (paths as their text)."""
    return f"from leukofhir.cli import main\nmain({[str(a) for a in arguments]!r})"


def test_a_replay_of_hl7_v2_loads_no_heavy_module(tmp_path: Path) -> None:
    loaded = modules_after(replay("replay", HL7, "--out", tmp_path))
    assert "leukofhir.pipeline" in loaded  # it did run
    assert any(tmp_path.iterdir())
    assert heavy(loaded) == []
    # only the running command's sub-parser is built: the others' modules stay unloaded
    others = ("leukofhir.serve", "leukofhir.stream", "leukofhir.delivery.command")
    assert sorted(m for m in loaded if m.startswith(others)) == []


def test_fhir_input_loads_the_fhir_readers_and_models(tmp_path: Path) -> None:
    bundle = next(SAMPLES.glob("*.json"))
    loaded = modules_after(replay("replay", bundle, "--out", tmp_path))
    assert {"leukofhir.ingest.fhir", "fhir.resources"} <= loaded
    assert "structlog" not in loaded
