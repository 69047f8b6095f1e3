#!/usr/bin/env python3
"""C-MOVE with pynetdicom (a peer we did not write), with the move destination in the same
process: a pynetdicom Storage SCP with its own AE title and port, which writes every
instance as received (no decoding) to OUT_DIR/<SOP Instance UID>. Prints one JSON
object on stdout:
  {"final": status | null, "comment": str | null, "remaining": n | null, "completed": n,
   "failed": n, "warning": n, "pending": [[remaining, completed, failed, warning], ...],
   "failed_uids": [uid, ...], "cancel_sent": bool,
   "received": [{"sop": uid, "ts": uid, "class": uid, "originator_ae": str | null,
                 "originator_id": n | null}, ...],
   "error": str | null}
Usage: move_pynetdicom.py HOST PORT CALLED_AE MODEL LEVEL --dest-aet AE --dest-port P
           --out DIR [--move-aet AE] [--aet AE] [--scp-ts UID]... [--cancel-after-first]
           [--store-status HEX] (-k KEY=VALUE)...
MODEL is "study" or "patient". --move-aet is the destination named in the C-MOVE (default
the SCP's own --dest-aet). The SCP accepts every storage SOP class; of the syntaxes the
node proposes it takes the first of --scp-ts it finds (pynetdicom's acceptor follows its
own order), default Explicit VR LE, Implicit VR LE, Explicit VR BE, then the rest pynetdicom
knows. --cancel-after-first sends C-CANCEL once the first pending response has arrived;
--store-status answers every C-STORE with that status instead of 0x0000 (writing nothing).
"""
import argparse
import json
import os
import threading

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, AE, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
)


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
    p.add_argument("--dest-aet", required=True)
    p.add_argument("--dest-port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--move-aet")
    p.add_argument("--aet", default="PYMOVESCU")
    p.add_argument("--scp-ts", action="append", default=[])
    p.add_argument("--cancel-after-first", action="store_true")
    p.add_argument("--store-status", type=lambda s: int(s, 0), default=0)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model = (
        StudyRootQueryRetrieveInformationModelMove
        if args.model == "study"
        else PatientRootQueryRetrieveInformationModelMove
    )

    # the move destination
    preferred = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
    scp_syntaxes = args.scp_ts or preferred + [t for t in ALL_TRANSFER_SYNTAXES if t not in preferred]
    scp_ae = AE(ae_title=args.dest_aet)
    scp_ae.acse_timeout = scp_ae.dimse_timeout = scp_ae.network_timeout = 60
    scp_ae.maximum_associations = 4
    for cx in AllStoragePresentationContexts:
        scp_ae.add_supported_context(cx.abstract_syntax, scp_syntaxes)
    received = []
    lock = threading.Lock()

    def on_store(event):
        rq = event.request
        sop = str(rq.AffectedSOPInstanceUID)
        origin_ae = getattr(rq, "MoveOriginatorApplicationEntityTitle", None)
        origin_id = getattr(rq, "MoveOriginatorMessageID", None)
        with lock:
            received.append(
                {
                    "sop": sop,
                    "ts": str(event.context.transfer_syntax),
                    "class": str(rq.AffectedSOPClassUID),
                    "originator_ae": str(origin_ae).strip() if origin_ae else None,
                    "originator_id": int(origin_id) if origin_id is not None else None,
                }
            )
        if args.store_status != 0:
            return args.store_status
        # a UID is digits and dots; anything else must not steer the path
        name = "".join(c if c in "0123456789." else "_" for c in sop)
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(event.encoded_dataset())
        return 0x0000

    server = scp_ae.start_server(
        ("127.0.0.1", args.dest_port),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )

    out = {
        "final": None,
        "comment": None,
        "remaining": None,
        "completed": None,
        "failed": None,
        "warning": None,
        "pending": [],
        "failed_uids": [],
        "cancel_sent": False,
        "received": received,
        "error": None,
    }
    try:
        ae = AE(ae_title=args.aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
        ae.add_requested_context(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        assoc = ae.associate(args.host, args.port, ae_title=args.called)
        if not assoc.is_established:
            out["error"] = "association rejected or aborted"
            return
        ds = Dataset()
        ds.QueryRetrieveLevel = args.level
        for kv in args.keys:
            k, _, v = kv.partition("=")
            setattr(ds, k, v)
        msg_id = 1
        try:
            for status, ident in assoc.send_c_move(ds, args.move_aet or args.dest_aet, model, msg_id=msg_id):
                if status is None or "Status" not in status:
                    out["error"] = "no response (association aborted or timed out)"
                    break
                code = int(status.Status)
                if code in (0xFF00, 0xFF01):
                    out["pending"].append(counts(status))
                    if args.cancel_after_first and not out["cancel_sent"]:
                        assoc.send_c_cancel(msg_id, None, model)
                        out["cancel_sent"] = True
                    continue
                out["final"] = code
                out["comment"] = str(status.ErrorComment) if "ErrorComment" in status else None
                out["remaining"], out["completed"], out["failed"], out["warning"] = counts(status)
                if ident is not None and "FailedSOPInstanceUIDList" in ident:
                    out["failed_uids"] = uid_list(ident.FailedSOPInstanceUIDList)
        except Exception as e:  # report, do not hide: the test shows it
            out["error"] = f"pynetdicom: {e!r}"
        finally:
            if assoc.is_established:
                assoc.release()
    finally:
        server.shutdown()
        with lock:
            print(json.dumps(out))


if __name__ == "__main__":
    main()
