#!/usr/bin/env python3
"""WADO-RS with dicomweb-client (a client we did not write), checked against what pydicom
reads from the original files.

Usage:
  wado_dicomweb_client.py check BASE_URL FILE...
      For every file (stored on the node beforehand), retrieves the instance, its metadata,
      frames, rendered image, thumbnail and Pixel Data bulk data, and compares them with
      the original. Prints one JSON object:
        {"files": [{"file", "ts", "retrieve", "metadata", "metadata_compared", "frames",
                    "rendered", "thumbnail", "bulk", "explicit_le"}], "study": {..},
         "errors": {..}}
      where each check is "ok", "skip: why" or a description of the mismatch.
The node's bearer token is taken from $RENKEI_TOKEN.
"""
import io
import json
import os
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.pixels import pixel_array


# the node's bearer token (HTTP needs one on every route but /healthz)
AUTH = ({"Authorization": f"Bearer {os.environ['RENKEI_TOKEN']}"}
        if os.environ.get("RENKEI_TOKEN") else {})

# every plain request as the node's user
http = requests.Session()
http.headers.update(AUTH)

EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_LS = "1.2.840.10008.1.2.4.80"
NATIVE = {"1.2.840.10008.1.2", EXPLICIT_LE, "1.2.840.10008.1.2.1.99"}
LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
         "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203"}
BINARY = {"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "US or OW"}
NUMBERS = {"DS", "IS", "FL", "FD", "US", "SS", "UL", "SL", "UV", "SV", "US or SS"}


def status_of(fn):
    try:
        fn()
        return 200
    except requests.exceptions.HTTPError as e:
        return e.response.status_code


def norm_value(elem):
    """A comparable form of one element's value (None for bulk values)."""
    vr = elem.VR
    v = elem.value
    if vr == "SQ":
        return [norm_ds(item) for item in v]
    if vr in BINARY:
        return None
    if v is None or v == "" or v == []:
        return []
    vals = list(v) if isinstance(v, (list, pydicom.multival.MultiValue)) else [v]
    if vr in NUMBERS:
        out = []
        for x in vals:
            try:
                out.append(round(float(x), 6))
            except (TypeError, ValueError):
                out.append(str(x).strip())
        return out
    if vr == "AT":
        return [int(x) for x in vals]
    if vr == "PN":
        # trailing empty components and groups are not significant (PS3.5 6.2.1.1)
        out = []
        for x in vals:
            groups = [g.rstrip("^ ") for g in str(x).split("=")]
            while groups and not groups[-1]:
                groups.pop()
            out.append("=".join(groups))
        return [] if out == [""] else out
    return [str(x).rstrip(" \0") if x is not None else "" for x in vals]


def norm_ds(ds):
    out = {}
    for elem in ds:
        # file meta, retired group lengths (PS3.5 7.2, not in DICOM JSON) and pixel data
        if elem.tag.group == 0x0002 or elem.tag.element == 0 or elem.tag >= 0x7FE00010:
            continue
        out[f"{elem.tag:08X}"] = (elem.VR, norm_value(elem))
    return out


def compare_metadata(orig, meta_json):
    """Mismatches between pydicom's reading of the original and the node's metadata."""
    problems = []
    got = pydicom.Dataset.from_json(meta_json, bulk_data_uri_handler=lambda *a: b"")
    a, b = norm_ds(orig), norm_ds(got)
    for key, (vr, value) in a.items():
        if key not in b:
            problems.append(f"{key} missing")
            continue
        if value is None:
            continue
        # a private attribute of an implicit VR file: the node knows no private
        # dictionary, so its VR is UN (PS3.5 6.2.2) and its value InlineBinary
        if b[key][0] == "UN" and int(key[:4], 16) % 2 == 1:
            continue
        if b[key][1] != value:
            problems.append(f"{key} {vr}: {value!r} != {b[key][1]!r}"[:300])
    if "PixelData" in orig and "BulkDataURI" not in meta_json.get("7FE00010", {}):
        problems.append("7FE00010 without BulkDataURI")
    return problems, len(a)


def native_frame(ds, f):
    rows, cols = ds.Rows, ds.Columns
    spp = int(ds.get("SamplesPerPixel", 1))
    if ds.get("PhotometricInterpretation") == "YBR_FULL_422":
        spp = 2  # two samples a pixel, chroma halved (PS3.3 C.7.6.3.1.2)
    ba = ds.BitsAllocated
    n = rows * cols * spp * ba // 8
    return bytes(ds.PixelData[f * n:(f + 1) * n])


def decoded_frame(path, f):
    arr = pixel_array(path, index=f, raw=True)
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def check_file(client, path):
    orig = pydicom.dcmread(path)
    ts = str(orig.file_meta.TransferSyntaxUID)
    st, se, sop = orig.StudyInstanceUID, orig.SeriesInstanceUID, orig.SOPInstanceUID
    res = {"file": path, "ts": ts}
    started = time.time()
    has_pixels = "PixelData" in orig
    frames = int(orig.get("NumberOfFrames", 1) or 1) if has_pixels else 0

    # the instance, as stored
    try:
        got = client.retrieve_instance(st, se, sop)
        if str(got.file_meta.TransferSyntaxUID) != ts:
            res["retrieve"] = f"transfer syntax {got.file_meta.TransferSyntaxUID} != {ts}"
        elif norm_ds(got) != norm_ds(orig):
            diff = [k for k in set(norm_ds(orig)) | set(norm_ds(got))
                    if norm_ds(orig).get(k) != norm_ds(got).get(k)]
            res["retrieve"] = f"attributes differ: {sorted(diff)[:10]}"
        elif has_pixels and bytes(got.PixelData) != bytes(orig.PixelData):
            res["retrieve"] = "Pixel Data differs"
        else:
            res["retrieve"] = "ok"
    except Exception as e:
        res["retrieve"] = f"error: {e!r}"[:300]

    # metadata
    try:
        meta = client.retrieve_instance_metadata(st, se, sop)
        problems, n = compare_metadata(pydicom.dcmread(path, stop_before_pixels=True), meta)
        res["metadata"] = problems
        res["metadata_compared"] = n
        bulk = meta.get("7FE00010", {}).get("BulkDataURI")
    except Exception as e:
        res["metadata"] = [f"error: {e!r}"[:300]]
        res["metadata_compared"] = 0
        bulk = None

    if not has_pixels:
        for k in ("frames", "rendered", "thumbnail", "bulk", "explicit_le", "to_jpegls"):
            res[k] = "skip: no pixel data"
        return res

    # frames: native bytes, pixel-identical for lossless data
    try:
        wanted = sorted({1, frames, (frames + 1) // 2})
        if ts in LOSSY:
            res["frames"] = "skip: lossy"
        elif orig.BitsAllocated % 8:
            res["frames"] = "skip: 1-bit"
        elif ts == "1.2.840.10008.1.2.2":
            res["frames"] = "skip: big endian original"
        else:
            got = client.retrieve_instance_frames(st, se, sop, frame_numbers=wanted)
            if len(got) != len(wanted):
                res["frames"] = f"{len(got)} frames for {len(wanted)}"
            else:
                bad = []
                for f, data in zip(wanted, got):
                    exp = native_frame(orig, f - 1) if ts in NATIVE else decoded_frame(path, f - 1)
                    if bytes(data) != exp:
                        bad.append(f"frame {f}: {len(data)} bytes, expected {len(exp)}")
                res["frames"] = "ok" if not bad else "; ".join(bad)
    except Exception as e:
        res["frames"] = f"error: {e!r}"[:300]

    # rendered (JPEG by default, PNG asked) and thumbnail
    try:
        jpeg = client.retrieve_instance_rendered(st, se, sop)
        img = Image.open(io.BytesIO(jpeg))
        img.load()
        png = client.retrieve_instance_rendered(st, se, sop, media_types=("image/png",),
                                                params={"viewport": "64,64"})
        small = Image.open(io.BytesIO(png))
        small.load()
        res["rendered"] = {"jpeg": [img.format, img.width, img.height],
                           "png": [small.format, small.width, small.height],
                           "expected": [orig.Columns, orig.Rows]}
    except Exception as e:
        res["rendered"] = f"error: {e!r}"[:300]
    try:
        r = http.get(f"{client.base_url}/studies/{st}/series/{se}/instances/{sop}/thumbnail",
                         headers={"Accept": "image/jpeg"})
        r.raise_for_status()
        t = Image.open(io.BytesIO(r.content))
        t.load()
        res["thumbnail"] = [t.format, t.width, t.height]
    except Exception as e:
        res["thumbnail"] = f"error: {e!r}"[:300]

    # Pixel Data bulk data: the stored native bytes
    try:
        if bulk is None:
            res["bulk"] = "no BulkDataURI"
        elif ts not in NATIVE or orig.BitsAllocated % 8:
            res["bulk"] = "skip: not native"
        else:
            # dicomweb-client sends `Host` without the port (web.py `headers['Host'] =
            # self.host`), so the node's absolute URI lacks it too: put the port back
            fixed = urlunsplit(urlsplit(bulk)._replace(netloc=urlsplit(client.base_url).netloc))
            parts = client.retrieve_bulkdata(fixed)
            res["bulk"] = "ok" if b"".join(parts) == bytes(orig.PixelData) else "differs"
    except Exception as e:
        res["bulk"] = f"error: {e!r}"[:300]

    # transfer syntax negotiation: compressed lossless data asked as explicit VR LE
    if ts in NATIVE or ts in LOSSY:
        res["explicit_le"] = "skip"
    else:
        try:
            got = client.retrieve_instance(st, se, sop, media_types=(("application/dicom",
                                                                        EXPLICIT_LE),))
            if str(got.file_meta.TransferSyntaxUID) != EXPLICIT_LE:
                res["explicit_le"] = f"sent in {got.file_meta.TransferSyntaxUID}"
            elif not np.array_equal(got.pixel_array, orig.pixel_array):
                res["explicit_le"] = "pixels differ from pydicom's decoding"
            else:
                res["explicit_le"] = "ok"
        except requests.exceptions.HTTPError as e:
            res["explicit_le"] = f"status {e.response.status_code}"
        except Exception as e:
            res["explicit_le"] = f"error: {e!r}"[:300]
    # and the other way: uncompressed data asked as JPEG-LS lossless (encoded on the node)
    if ts not in NATIVE or orig.BitsAllocated not in (8, 16):
        res["to_jpegls"] = "skip"
    else:
        try:
            got = client.retrieve_instance(st, se, sop, media_types=(("application/dicom",
                                                                        JPEG_LS),))
            if str(got.file_meta.TransferSyntaxUID) != JPEG_LS:
                res["to_jpegls"] = f"sent in {got.file_meta.TransferSyntaxUID}"
            elif not np.array_equal(got.pixel_array, orig.pixel_array):
                res["to_jpegls"] = "pixels differ from the original's"
            else:
                res["to_jpegls"] = "ok"
        except requests.exceptions.HTTPError as e:
            res["to_jpegls"] = f"status {e.response.status_code}"
        except Exception as e:
            res["to_jpegls"] = f"error: {e!r}"[:300]
    res["seconds"] = round(time.time() - started, 2)
    return res


def check(base_url, files):
    client = DICOMwebClient(url=base_url, headers=AUTH)
    out = {"files": [check_file(client, f) for f in files]}
    # the study with the most instances: every one of them, as stored
    per_study = {}
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        per_study.setdefault(ds.StudyInstanceUID, []).append((ds.SeriesInstanceUID,
                                                              ds.SOPInstanceUID))
    big = max(per_study, key=lambda s: len(per_study[s]))
    got = client.retrieve_study(big)
    series = per_study[big][0][0]
    got_series = client.retrieve_series(big, series)
    out["study"] = {
        "expected": sorted(s for _, s in per_study[big]),
        "got": sorted(str(d.SOPInstanceUID) for d in got),
        "series_expected": sorted(s for se, s in per_study[big] if se == series),
        "series_got": sorted(str(d.SOPInstanceUID) for d in got_series),
        "metadata": len(client.retrieve_study_metadata(big)),
    }
    # errors: unknown UIDs, unsatisfiable Accept
    one = pydicom.dcmread(files[0], stop_before_pixels=True)
    st, se, sop = one.StudyInstanceUID, one.SeriesInstanceUID, one.SOPInstanceUID
    native = next(f for f in files
                  if str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                  == EXPLICIT_LE and "PixelData" in pydicom.dcmread(f))
    nd = pydicom.dcmread(native, stop_before_pixels=True)
    out["errors"] = {
        "unknown_study": status_of(lambda: client.retrieve_study("1.2.3.4.5.6")),
        "unknown_instance": status_of(lambda: client.retrieve_instance(st, se, "1.2.3.4.5.6")),
        "unknown_metadata": status_of(lambda: client.retrieve_study_metadata("1.2.3.4.5.6")),
        "wrong_series": status_of(lambda: client.retrieve_instance(st, "1.2.3", sop)),
        "lossy_for_lossless": status_of(lambda: client.retrieve_instance(
            nd.StudyInstanceUID, nd.SeriesInstanceUID, nd.SOPInstanceUID,
            media_types=(("application/dicom", "1.2.840.10008.1.2.4.50"),))),
        "frame_beyond": status_of(lambda: client.retrieve_instance_frames(
            nd.StudyInstanceUID, nd.SeriesInstanceUID, nd.SOPInstanceUID,
            frame_numbers=[int(nd.get("NumberOfFrames", 1) or 1) + 1])),
    }
    base = f"{base_url}/studies/{nd.StudyInstanceUID}/series/{nd.SeriesInstanceUID}" \
           f"/instances/{nd.SOPInstanceUID}"
    raw = {
        "unknown_media_type": http.get(base, headers={"Accept": "text/html"}).status_code,
        "bad_frame_list": http.get(base + "/frames/1,x").status_code,
        "repeated_frame": http.get(base + "/frames/1,1").status_code,
        "rendered_gif": http.get(base + "/rendered",
                                     headers={"Accept": "image/gif"}).status_code,
        "bad_window": http.get(base + "/rendered?window=40").status_code,
    }
    meta = http.get(base + "/metadata").json()
    raw["bulk_uri"] = meta[0].get("7FE00010", {}).get("BulkDataURI", "")
    r = http.get(base)
    raw["etag"] = r.headers.get("ETag")
    raw["content_length_ok"] = r.headers.get("Content-Length") == str(len(r.content))
    raw["not_modified"] = http.get(base, headers={"If-None-Match": r.headers.get("ETag", "")}
                                       ).status_code
    out["errors"].update(raw)
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
