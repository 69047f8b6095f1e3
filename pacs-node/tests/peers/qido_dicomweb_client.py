#!/usr/bin/env python3
"""QIDO-RS with dicomweb-client (a client we did not write), and the reference values
pydicom reads from the original files.

Usage:
  qido_dicomweb_client.py search BASE_URL < queries.json
      queries.json: a JSON list of {"level": "studies"|"series"|"instances",
      "study": uid?, "series": uid?, "filters": {..}?, "fields": [..]?, "fuzzy": bool?,
      "limit": n?, "offset": n?, "get_remaining": bool?}
      prints a JSON list, one entry per query: {"results": [DICOM JSON objects],
      "parsed": [{keyword: str(value)}]} (each result read back by pydicom's
      Dataset.from_json, which checks the VR encoding) or {"error": str, "status": int?}
  qido_dicomweb_client.py originals FILE...
      prints a JSON list, one entry per file: the UIDs, a few attributes and the three
      PatientName groups as pydicom decodes them (Specific Character Set, ISO 2022 too).
The node's bearer token is taken from $RENKEI_TOKEN.
"""
import json
import os
import sys

import pydicom
from pydicom.dataset import Dataset
from dicomweb_client.api import DICOMwebClient
import requests


# the node's bearer token (HTTP needs one on every route but /healthz)
AUTH = ({"Authorization": f"Bearer {os.environ['RENKEI_TOKEN']}"}
        if os.environ.get("RENKEI_TOKEN") else {})


def search(base_url):
    client = DICOMwebClient(url=base_url, headers=AUTH)
    out = []
    for q in json.load(sys.stdin):
        kwargs = {
            "fuzzymatching": q.get("fuzzy"),
            "limit": q.get("limit"),
            "offset": q.get("offset"),
            "fields": q.get("fields"),
            "search_filters": q.get("filters"),
            "get_remaining": q.get("get_remaining", False),
        }
        try:
            if q["level"] == "studies":
                results = client.search_for_studies(**kwargs)
            elif q["level"] == "series":
                results = client.search_for_series(study_instance_uid=q.get("study"), **kwargs)
            else:
                results = client.search_for_instances(
                    study_instance_uid=q.get("study"),
                    series_instance_uid=q.get("series"),
                    **kwargs,
                )
        except requests.exceptions.HTTPError as e:
            out.append({"error": str(e), "status": e.response.status_code})
            continue
        parsed = []
        for r in results:
            ds = Dataset.from_json(r)
            parsed.append({elem.keyword or str(elem.tag): str(elem.value) for elem in ds})
        out.append({"results": results, "parsed": parsed})
    print(json.dumps(out))


def group(s):
    return (s or "").rstrip("^ ")


def originals(files):
    out = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            pn = ds.get("PatientName")
            entry = {"file": f}
            for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID",
                      "StudyDate", "Modality"):
                entry[k] = str(ds.get(k, "")).strip()
            entry["PatientName"] = {
                "Alphabetic": group(pn.alphabetic) if pn is not None else "",
                "Ideographic": group(pn.ideographic) if pn is not None else "",
                "Phonetic": group(pn.phonetic) if pn is not None else "",
            }
            out.append(entry)
        except Exception as e:  # a corpus file pydicom cannot read is reported, not fatal
            out.append({"file": f, "error": str(e)})
    print(json.dumps(out))


def main():
    if sys.argv[1] == "search":
        search(sys.argv[2])
    else:
        originals(sys.argv[2:])


if __name__ == "__main__":
    main()
