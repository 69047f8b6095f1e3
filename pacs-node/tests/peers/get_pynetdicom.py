#!/usr/bin/env python3
"""C-GET with pynetdicom (a peer we did not write). The requester takes the Storage SCP role
(SCP/SCU role selection, PS3.7 D.3.3.4) for the SOP classes it is told to ask for, with one
presentation context per (SOP class, transfer syntax), so the node can pick the syntax an
instance is stored in. Every received instance is written as received (no decoding) to
OUT_DIR/<SOP Instance UID>. Prints one JSON object on stdout:
  {"final": status | null, "comment": str | null, "completed": n, "failed": n, "warning": n,
   "pending": [[remaining, completed, failed, warning], ...],
   "failed_uids": [uid, ...], "cancel_sent": bool, "store_requests": n,
   "received": [{"sop": uid, "ts": uid, "class": uid}, ...], "error": str | null}
Usage: get_pynetdicom.py HOST PORT CALLED_AE MODEL LEVEL --out DIR
           [--sop-class UID]... [--ts UID]... [--aet AE] [--store-status HEX]
           [--cancel-after-first] [--no-roles] (-k KEY=VALUE)...
MODEL is "study" or "patient". Without --ts the three uncompressed syntaxes are offered
(each in its own context); --store-status makes the handler answer every C-STORE with that
status instead of 0x0000 (and write nothing); --cancel-after-first sends C-CANCEL once the
first pending response has arrived; --no-roles proposes the storage contexts without SCP/SCU
role selection (so the requester stays SCU only, PS3.7 D.3.3.4, and must not be sent
C-STOREs). "store_requests" counts the C-STORE-RQs that arrived, whether or not pynetdicom
let them through to the handler (it answers 0x0122 on a context where it is not the SCP).
"""
import argparse
import json
import os
import sys

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
)

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]


def counts(status):
    def get(keyword):
        value = getattr(status, keyword, None)
        return int(value) if value is not None and value != "" else None

    return [
        get("NumberOfRemainingSuboperations"),
        get("NumberOfCompletedSuboperations"),
        get("NumberOfFailedSuboperations"),
        get("NumberOfWarningSuboperations"),
    ]


def uid_list(value):
    """A UI value as a list: pydicom gives a str for one value, a MultiValue for several."""
    if isinstance(value, str):
        return [value] if value else []
    return [str(u) for u in value]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("called")
    p.add_argument("model", choices=["study", "patient"])
    p.add_argument("level")
    p.add_argument("-k", dest="keys", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True)
    p.add_argument("--sop-class", action="append", default=[])
    p.add_argument("--ts", action="append", default=[])
    p.add_argument("--aet", default="PYGETSCU")
    p.add_argument("--store-status", type=lambda s: int(s, 0), default=0)
    p.add_argument("--cancel-after-first", action="store_true")
    p.add_argument("--no-roles", action="store_true")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model = (
        StudyRootQueryRetrieveInformationModelGet
        if args.model == "study"
        else PatientRootQueryRetrieveInformationModelGet
    )
    syntaxes = args.ts or UNCOMPRESSED
    classes = list(dict.fromkeys(args.sop_class))
    if not classes:
        sys.exit("at least one --sop-class is needed (the classes to take the SCP role for)")
    if 1 + len(classes) * len(syntaxes) > 128:
        sys.exit("more than 128 presentation contexts")

    ae = AE(ae_title=args.aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    for cls in classes:
        for ts in syntaxes:
            ae.add_requested_context(cls, ts)
    roles = [] if args.no_roles else [build_role(cls, scp_role=True) for cls in classes]

    received = []
    store_requests = [0]

    def on_dimse_recv(event):
        if type(event.message).__name__ == "C_STORE_RQ":
            store_requests[0] += 1

    def on_store(event):
        # runs in pynetdicom's association thread
        rq = event.request
        sop = str(rq.AffectedSOPInstanceUID)
        received.append(
            {
                "sop": sop,
                "ts": str(event.context.transfer_syntax),
                "class": str(rq.AffectedSOPClassUID),
            }
        )
        if args.store_status != 0:
            return args.store_status
        # a UID is digits and dots; anything else must not steer the path
        name = "".join(c if c in "0123456789." else "_" for c in sop)
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(event.encoded_dataset())
        return 0x0000

    assoc = ae.associate(
        args.host,
        args.port,
        ae_title=args.called,
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_DIMSE_RECV, on_dimse_recv)],
    )
    out = {
        "final": None,
        "comment": None,
        "completed": None,
        "failed": None,
        "warning": None,
        "pending": [],
        "failed_uids": [],
        "cancel_sent": False,
        "store_requests": 0,
        "received": received,
        "error": None,
    }
    if not assoc.is_established:
        out["error"] = "association rejected or aborted"
        print(json.dumps(out))
        return

    ds = Dataset()
    ds.QueryRetrieveLevel = args.level
    for kv in args.keys:
        k, _, v = kv.partition("=")
        setattr(ds, k, v)
    try:
        for status, ident in assoc.send_c_get(ds, model, msg_id=1):
            if status is None or "Status" not in status:
                out["error"] = "no response (association aborted or timed out)"
                break
            code = int(status.Status)
            if code in (0xFF00, 0xFF01):
                out["pending"].append(counts(status))
                if args.cancel_after_first and not out["cancel_sent"]:
                    assoc.send_c_cancel(1, None, model)
                    out["cancel_sent"] = True
                continue
            out["final"] = code
            out["comment"] = str(status.ErrorComment) if "ErrorComment" in status else None
            _, out["completed"], out["failed"], out["warning"] = counts(status)
            if ident is not None and "FailedSOPInstanceUIDList" in ident:
                out["failed_uids"] = uid_list(ident.FailedSOPInstanceUIDList)
    except Exception as e:  # report, do not hide: the test shows it
        out["error"] = f"pynetdicom: {e!r}"
    finally:
        if assoc.is_established:
            assoc.release()
    out["store_requests"] = store_requests[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
