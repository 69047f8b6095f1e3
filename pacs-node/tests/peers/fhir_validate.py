#!/usr/bin/env python3
"""Validate FHIR JSON resources with fhir.resources (pydantic models of the FHIR spec).

Usage: fhir_validate.py FILE
FILE holds a JSON array of [label, resource] pairs. Prints one JSON line per pair:
{"label", "resourceType", "ok", "error"}; exits 0 (the Rust test decides).

fhir.resources 8.x ships R5 (default), R4B and STU3 models; R4 itself is no longer
packaged. R4B (4.3) keeps R4's resource structures for every type the node serves
(R4B changed only medication-definition and evidence resources, not these), so R4B is the
closest validation of the node's R4 output this package offers. Every Bundle entry is
validated with its own resource class as part of the Bundle.
"""
import json
import sys

try:
    from fhir.resources.R4B import get_fhir_model_class
except ImportError:  # older fhir.resources: R4 is the default package
    from fhir.resources import get_fhir_model_class


def validate(resource):
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if not rtype:
        return None, "not a resource (no resourceType)"
    try:
        cls = get_fhir_model_class(rtype)
    except Exception as e:  # unknown type
        return rtype, f"unknown resource type: {e}"
    try:
        cls.model_validate(resource)
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
