#!/usr/bin/env python3
"""Send DICOM files to a node with pynetdicom (a peer we did not write) and report every
C-STORE status as one JSON line per file:
  {"file": PATH, "status": 0 | null, "comment": str | null, "sop": UID | null, "error": str | null}
Files with a file meta group are sent as stored (pynetdicom streams the encoded dataset in
its own transfer syntax); files without one are read with force=True and sent in the
syntax pydicom infers. Usage: store_pynetdicom.py HOST PORT CALLED_AE FILE...
"""
import json
import sys

from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian
from pynetdicom import AE


def describe(path):
    try:
        ds = dcmread(path, force=True, stop_before_pixels=True)
    except Exception as e:  # unreadable even for pydicom: a local failure, not the node's
        return None, None, None, f"pydicom cannot read: {e}"
    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    sop_class = getattr(ds, "SOPClassUID", None)
    if not sop_class and meta is not None:
        sop_class = getattr(meta, "MediaStorageSOPClassUID", None)
    sop = getattr(ds, "SOPInstanceUID", None)
    has_meta = ts is not None
    if ts is None:
        ts = ImplicitVRLittleEndian if ds.is_implicit_VR in (True, None) else (
            ExplicitVRLittleEndian if ds.is_little_endian in (True, None) else ExplicitVRBigEndian)
    return sop_class, ts, str(sop) if sop else None, None if sop_class else "no SOP Class UID", has_meta


def main():
    host, port, called = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    files = sys.argv[4:]
    out = sys.stdout
    for path in files:
        info = describe(path)
        if len(info) == 4:
            print(json.dumps({"file": path, "status": None, "comment": None, "sop": None, "error": info[3]}), file=out, flush=True)
            continue
        sop_class, ts, sop, err, has_meta = info
        if err:
            print(json.dumps({"file": path, "status": None, "comment": None, "sop": sop, "error": err}), file=out, flush=True)
            continue
        ae = AE(ae_title="PYNETDICOM")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        ae.add_requested_context(str(sop_class), [str(ts)])
        assoc = ae.associate(host, port, ae_title=called)
        if not assoc.is_established:
            print(json.dumps({"file": path, "status": None, "comment": None, "sop": sop, "error": "association rejected or aborted"}), file=out, flush=True)
            continue
        try:
            if has_meta:
                rsp = assoc.send_c_store(path)
            else:
                # no file meta: tell pynetdicom the syntax pydicom read it in
                ds = dcmread(path, force=True)
                ds.file_meta = FileMetaDataset()
                ds.file_meta.TransferSyntaxUID = ts
                rsp = assoc.send_c_store(ds)
            status = int(rsp.Status) if rsp is not None and "Status" in rsp else None
            comment = str(rsp.ErrorComment) if rsp is not None and "ErrorComment" in rsp else None
            err = None if status is not None else "no response (association aborted or timed out)"
            print(json.dumps({"file": path, "status": status, "comment": comment, "sop": sop, "error": err}), file=out, flush=True)
        except Exception as e:
            print(json.dumps({"file": path, "status": None, "comment": None, "sop": sop, "error": f"pynetdicom: {e}"}), file=out, flush=True)
        finally:
            if assoc.is_established:
                assoc.release()


if __name__ == "__main__":
    main()
