#!/usr/bin/env python3
"""STOW-RS with dicomweb-client (a client we did not write).

Usage:
  stow_dicomweb_client.py BASE_URL SENT_DIR [--study UID] FILE...
      reads each FILE with pydicom and sends them all in one request with
      DICOMwebClient.store_instances (to /studies/UID with --study); writes the bytes the
      client sends for each part (it encodes with pydicom.dcmwrite) to SENT_DIR/NNNN.dcm,
      and prints one JSON object:
      {"status": HTTP status, "content_type": str, "response": the answer's JSON,
       "parsed_referenced": n, "parsed_failed": n (items of the answer as dicomweb-client
       parsed it, or null on an HTTP error), "sent": [SENT_DIR/NNNN.dcm, ...]}
The node's bearer token is taken from $RENKEI_TOKEN.
"""
import json
import os
import sys
from io import BytesIO

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient


# the node's bearer token (HTTP needs one on every route but /healthz)
AUTH = ({"Authorization": f"Bearer {os.environ['RENKEI_TOKEN']}"}
        if os.environ.get("RENKEI_TOKEN") else {})


def main():
    base_url, sent_dir = sys.argv[1], sys.argv[2]
    rest = sys.argv[3:]
    study = None
    if rest[:1] == ["--study"]:
        study, rest = rest[1], rest[2:]
    datasets = [pydicom.dcmread(f) for f in rest]
    sent = []
    for i, ds in enumerate(datasets):
        # what store_instances does with each data set
        with BytesIO() as b:
            pydicom.dcmwrite(b, ds)
            path = os.path.join(sent_dir, f"{i:04d}.dcm")
            with open(path, "wb") as f:
                f.write(b.getvalue())
        sent.append(path)

    client = DICOMwebClient(url=base_url, headers=AUTH)
    answers = []
    client._session.hooks["response"].append(lambda r, *a, **k: answers.append(r))
    parsed_referenced = parsed_failed = None
    try:
        ds = client.store_instances(datasets, study_instance_uid=study)
        parsed_referenced = len(ds.get("ReferencedSOPSequence", []))
        parsed_failed = len(ds.get("FailedSOPSequence", []))
    except requests.exceptions.HTTPError:
        pass
    r = answers[-1]
    print(
        json.dumps(
            {
                "status": r.status_code,
                "content_type": r.headers.get("Content-Type"),
                "response": r.json(),
                "parsed_referenced": parsed_referenced,
                "parsed_failed": parsed_failed,
                "sent": sent,
            }
        )
    )


if __name__ == "__main__":
    main()
