#!/usr/bin/env python3
"""C-FIND with pynetdicom (a peer we did not write); prints one JSON object:
  {"matches": [{keyword: str(value), ...}, ...], "final": status, "comment": str | null}
Usage: find_pynetdicom.py HOST PORT CALLED_AE MODEL LEVEL [--cancel-after N]
                          [--charset 'A\B'] KEY=VALUE...
--cancel-after N sends C-CANCEL once N matches have arrived; N = 0 sends it right behind
the request, before reading any response (PS3.7 9.3.2.3 allows it at any time), so the
cancel does not wait for this script to read and decode a response first.
MODEL is "study" or "patient"; text keys are encoded by pydicom in the given Specific
Character Set (default ISO_IR 192), ISO 2022 escape sequences included.
"""
import json
import sys

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)


def main():
    host, port, called, model, level = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    rest = sys.argv[6:]
    cancel_after = None
    charset = ["ISO_IR 192"]
    while rest[:1] in (["--cancel-after"], ["--charset"]):
        if rest[0] == "--cancel-after":
            cancel_after = int(rest[1])
        else:
            charset = rest[1].split("\\")
        rest = rest[2:]
    sop = StudyRootQueryRetrieveInformationModelFind if model == "study" else PatientRootQueryRetrieveInformationModelFind
    ds = Dataset()
    ds.SpecificCharacterSet = charset if len(charset) > 1 else charset[0]
    ds.QueryRetrieveLevel = level
    keywords = []
    for kv in rest:
        k, _, v = kv.partition("=")
        setattr(ds, k, v)
        keywords.append(k)
    ae = AE(ae_title="PYFIND")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(sop)
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        print(json.dumps({"error": "association rejected"}))
        return
    out = {"matches": [], "final": None, "comment": None}
    msg_id = 1
    responses = assoc.send_c_find(ds, sop, msg_id=msg_id)
    if cancel_after == 0:
        assoc.send_c_cancel(msg_id, None, sop)
    for status, ident in responses:
        if status is None:
            out["error"] = "no response"
            break
        code = int(status.Status)
        if code in (0xFF00, 0xFF01):
            out["matches"].append({k: str(getattr(ident, k, "")) for k in keywords})
            if cancel_after is not None and len(out["matches"]) == cancel_after:
                assoc.send_c_cancel(msg_id, None, sop)
        else:
            out["final"] = code
            out["comment"] = str(status.ErrorComment) if "ErrorComment" in status else None
    assoc.release()
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
