#!/usr/bin/env python3
"""STOW-RS of metadata and bulk data (PS3.18 10.5.1.2.2, application/dicom+json), sent
with requests, the stored instances read back with dicomweb-client and pydicom.

Usage:
  stow_json_requests.py roundtrip SRC_URL DST_URL FILE...
      For every FILE (stored on the SRC node beforehand): its metadata from SRC (WADO-RS)
      and the bytes of each top-level BulkDataURI; Pixel Data of a single-frame compressed
      file is taken as its stored bit stream (frames/1 in the stored media type), other
      Pixel Data as native bytes (application/octet-stream). Everything goes to DST in one
      multipart/related; type="application/dicom+json" request: the metadata array first,
      then the bulk data parts in the same order, each with its BulkDataURI as
      Content-Location (a BulkDataURI that answers 404 is left out with its attribute: the
      node's metadata names Pixel Data for objects with image attributes but no pixels,
      which its index cannot tell apart). Then each instance is retrieved from DST (as
      stored) and compared with pydicom's reading of FILE. Prints one JSON object:
        {"status": HTTP status, "response": the answer's JSON,
         "files": [{"file", "ts", "pixels_as", "dropped", "stored_ts",
                    "check": "ok" or mismatches}]}
SRC's bearer token is taken from $RENKEI_TOKEN, DST's from $RENKEI_DST_TOKEN.
"""
import json
import os
import sys
import uuid

import numpy as np
import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames

from wado_dicomweb_client import AUTH, LOSSY, norm_ds

EXPLICIT_LE = "1.2.840.10008.1.2.1"
STORED_MEDIA = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
DST_AUTH = ({"Authorization": f"Bearer {os.environ['RENKEI_DST_TOKEN']}"}
            if os.environ.get("RENKEI_DST_TOKEN") else AUTH)

src_http = requests.Session()
src_http.headers.update(AUTH)


def multipart_parts(response):
    """(headers, body) of each part of a multipart/related answer."""
    ct = response.headers["Content-Type"]
    boundary = ct.split("boundary=")[1].split(";")[0].strip().strip('"').encode()
    out = []
    for chunk in response.content.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, body = chunk[2:].partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode().split("\r\n"):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        out.append((headers, body[:-2] if body.endswith(b"\r\n") else body))
    return out


def instance_url(base, ds):
    return (f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")


def gather(src, path):
    """The metadata of one instance, its bulk data parts [(uri, content type, bytes)], how
    Pixel Data is sent, and the attributes left out."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ts = str(ds.file_meta.TransferSyntaxUID)
    base = instance_url(src, ds)
    r = src_http.get(base + "/metadata")
    r.raise_for_status()
    meta = r.json()[0]
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    parts, pixels_as, dropped = [], None, []
    for key, attr in list(meta.items()):
        uri = attr.get("BulkDataURI")
        if uri is None:
            continue
        if key == "7FE00010" and ts in STORED_MEDIA and frames == 1:
            media = STORED_MEDIA[ts]
            r = src_http.get(base + "/frames/1",
                             headers={"Accept": f'multipart/related; type="{media}"'})
            r.raise_for_status()
            [(headers, body)] = multipart_parts(r)
            parts.append((uri, headers["content-type"], body))
            pixels_as = headers["content-type"]
            continue
        r = src_http.get(uri, headers={
            "Accept": 'multipart/related; type="application/octet-stream"'})
        if r.status_code == 404:
            del meta[key]
            dropped.append(key)
            continue
        r.raise_for_status()
        [(headers, body)] = multipart_parts(r)
        parts.append((uri, "application/octet-stream", body))
        if key == "7FE00010":
            pixels_as = "application/octet-stream"
    return meta, parts, pixels_as, dropped


def check(client, path, pixels_as, dropped):
    orig = pydicom.dcmread(path)
    ts = str(orig.file_meta.TransferSyntaxUID)
    res = {"file": path, "ts": ts, "pixels_as": pixels_as, "dropped": dropped}
    try:
        got = client.retrieve_instance(orig.StudyInstanceUID, orig.SeriesInstanceUID,
                                       orig.SOPInstanceUID)
    except Exception as e:
        res["check"] = f"retrieve: {e!r}"[:300]
        return res
    stored_ts = str(got.file_meta.TransferSyntaxUID)
    res["stored_ts"] = stored_ts
    a, b = norm_ds(orig), norm_ds(got)
    problems = []
    for key in sorted(set(a) | set(b)):
        # text is sent as UTF-8: the stored object may say ISO_IR 192 instead
        if key == "00080005":
            continue
        va, vb = a.get(key), b.get(key)
        # private attributes of implicit VR files travel as UN (no private dictionary)
        if int(key[:4], 16) % 2 == 1 and "UN" in ((va or ("",))[0], (vb or ("",))[0]):
            continue
        if va is None or vb is None:
            problems.append(f"{key} only in the {'original' if vb is None else 'stored'}")
        elif va[1] is not None and va[1] != vb[1]:
            problems.append(f"{key} {va[0]}: {va[1]!r} != {vb[1]!r}"[:200])
    if "PixelData" in orig:
        if "7FE00010" in dropped:
            problems.append("the Pixel Data bulk data was not found")
        elif pixels_as is None:
            problems.append("Pixel Data was not sent as bulk data")
        elif pixels_as != "application/octet-stream":
            # the stored bit stream, as the original holds it
            want = next(generate_frames(orig.PixelData, number_of_frames=1))
            have = next(generate_frames(got.PixelData, number_of_frames=1))
            if stored_ts != ts:
                problems.append(f"stored in {stored_ts}, sent as {pixels_as}")
            elif bytes(want) != bytes(have):
                problems.append("frame bit stream differs")
        elif stored_ts != EXPLICIT_LE:
            problems.append(f"native pixels stored in {stored_ts}")
        elif ts in (EXPLICIT_LE, "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99"):
            if bytes(got.PixelData) != bytes(orig.PixelData):
                problems.append("Pixel Data bytes differ")
        elif ts not in LOSSY and not np.array_equal(got.pixel_array, orig.pixel_array):
            problems.append("pixels differ from pydicom's decoding of the original")
    res["check"] = "ok" if not problems else problems[:10]
    return res


def roundtrip(src, dst, files):
    metas, bulk, pixels = [], [], []
    for f in files:
        meta, parts, pixels_as, dropped = gather(src, f)
        metas.append(meta)
        bulk.extend(parts)
        pixels.append((pixels_as, dropped))
    boundary = f"renkei-{uuid.uuid4().hex}"
    body = bytearray()
    body += (f"--{boundary}\r\nContent-Type: application/dicom+json\r\n\r\n").encode()
    body += json.dumps(metas).encode() + b"\r\n"
    for uri, ct, data in bulk:
        body += (f"--{boundary}\r\nContent-Type: {ct}\r\nContent-Location: {uri}\r\n\r\n"
                 ).encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    r = requests.post(
        f"{dst}/studies", data=bytes(body),
        headers={"Content-Type": f'multipart/related; type="application/dicom+json"; '
                                 f'boundary={boundary}',
                 "Accept": "application/dicom+json", **DST_AUTH})
    client = DICOMwebClient(url=dst, headers=DST_AUTH)
    out = {"status": r.status_code, "response": r.json(),
           "files": [check(client, f, p, d) for f, (p, d) in zip(files, pixels)]}
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "roundtrip":
        roundtrip(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)
