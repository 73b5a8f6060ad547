"""The independent FHIR R4 validator (../shared/tools/fhir-validate, Medplum's validator on the
R4 StructureDefinitions) over the outputs of every sample message, and again with
``--notify-critical``.

Skipped where ../shared is absent; where it is present but the validator was never set up,
skipped locally and failed in CI (CI=true), which runs fhir-validate-setup first.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from leukofhir.context import Context
from tests.conftest import SAMPLES, SHARED, make_context
from tests.test_samples import SAMPLE_FILES, render

VALIDATOR = SHARED / "tools" / "fhir-validate"
INSTALLED = Path(os.environ.get("FHIRVAL_DIR", Path.home() / ".cache" / "fhirval"))


def test_every_sample_output_passes_the_independent_validator(
    tmp_path: Path, context: Context
) -> None:
    if not VALIDATOR.exists():
        pytest.skip("../shared/tools/fhir-validate is not here")
    if not (INSTALLED / "node_modules").exists():
        if os.environ.get("CI"):
            pytest.fail("fhir-validate is not set up: .ci/run must run fhir-validate-setup")
        pytest.skip("fhir-validate is not set up (run ../shared/tools/fhir-validate-setup)")
    outputs = tmp_path / "outputs.ndjson"
    # and with --notify-critical: the CommunicationRequests of the critical episodes too
    notify = make_context(notify_critical=True)
    outputs.write_bytes(
        b"".join(render(path, each) for each in (context, notify) for path in SAMPLE_FILES)
    )
    assert SAMPLES.exists()
    result = subprocess.run(
        [str(VALIDATOR), "-q", "--strict", str(outputs)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " 0 with errors" in result.stdout
