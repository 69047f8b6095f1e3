#!/usr/bin/env python3
"""Validate FHIR JSON resources against the FHIR R4 (4.0.1) models of fhir.resources.

Usage: fhir_validate.py FILE
FILE holds a JSON array of [label, resource] pairs. Prints one JSON line per pair:
{"label", "resourceType", "ok", "error"}; exits 0 (the Rust test decides), or 2 when no
R4 models are available.

The node serves R4. fhir.resources 6.1 is the last line whose models are R4 4.0.1 (later
ones are R4B, then R5 with R4B beside it), and it needs pydantic 1, so it lives in a venv of
its own that scripts/setup.sh makes: $RENKEI_PEERS/fhir-r4 (default /tmp/renkei-peers). This
script runs itself there whatever python started it. Every Bundle entry is validated with
its own resource class as part of the Bundle; unknown elements are errors.
"""
import json
import os
import sys

R4_VENV = os.path.join(os.environ.get("RENKEI_PEERS", "/tmp/renkei-peers"), "fhir-r4")
R4_PYTHON = os.path.join(R4_VENV, "bin", "python")

try:
    import fhir.resources as fhir_resources
    R4 = getattr(fhir_resources, "__fhir_version__", "") == "4.0.1"
except ImportError:
    R4 = False
if not R4:
    # venv pythons are symlinks to one interpreter: tell them apart by their prefix
    if os.path.exists(R4_PYTHON) and os.path.realpath(sys.prefix) != os.path.realpath(R4_VENV):
        os.execv(R4_PYTHON, [R4_PYTHON, *sys.argv])
    sys.exit(f"fhir_validate.py: no FHIR R4 (4.0.1) models: run scripts/setup.sh (it makes {R4_PYTHON})")

from fhir.resources import get_fhir_model_class  # noqa: E402


def validate(resource):
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if not rtype:
        return None, "not a resource (no resourceType)"
    try:
        cls = get_fhir_model_class(rtype)
    except Exception as e:  # unknown type
        return rtype, f"unknown resource type: {e}"
    try:
        cls.parse_obj(resource)
    except Exception as e:
        return rtype, str(e)
    return rtype, None


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        items = json.load(f)
    for label, resource in items:
        rtype, error = validate(resource)
        print(json.dumps({"label": label, "resourceType": rtype, "ok": error is None,
                          "error": error}, ensure_ascii=False))


if __name__ == "__main__":
    main()
