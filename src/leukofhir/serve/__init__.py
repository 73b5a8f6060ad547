"""``leukofhir serve``: the live service (MLLP and HTTP listeners over one engine)."""
