"""Dump pydicom's decoded frames for the Rust decode tests (tests/decode_corpus.rs).

Usage: pydicom_frames.py OUT_DIR FILE...

For every FILE (index i in the argument list) writes OUT_DIR/i.json with what pydicom
decoded, and OUT_DIR/i.raw with every frame's samples, little-endian, frame after frame.
Frames are decoded with `raw=True`: pydicom does no YBR->RGB conversion of its own, so the
photometric interpretation reported is the one of the samples as the codec gave them (a
JPEG or JPEG 2000 codec may itself have converted YBR to RGB; pydicom says so in the
decoder's metadata, which is what we record). BitsAllocated 1 is unpacked to one uint8
per pixel (0/1). When the samples are YBR, OUT_DIR/i.rgb.raw holds pydicom's own
conversion to RGB as well, to compare with decoders that convert.
"""

import json
import sys
import traceback

import numpy as np
import pydicom
from pydicom.pixels import get_decoder


def write_le(arr, path):
    le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    with open(path, "wb") as f:
        f.write(np.ascontiguousarray(le).tobytes())


def dump(path, out_prefix):
    info = {"path": path}
    try:
        ds = pydicom.dcmread(path, force=True)
        if "PixelData" not in ds:
            info["status"] = "no_pixel_data"
            return info
        meta = getattr(ds, "file_meta", None)
        tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
        if tsyntax is None:
            # no meta: what the parser found (PS3.5 10: implicit VR LE is the default)
            implicit, little = ds.original_encoding
            tsyntax = pydicom.uid.UID(
                "1.2.840.10008.1.2" if implicit
                else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
            )
            ds.file_meta = pydicom.dataset.FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = tsyntax
            info["inferred_transfer_syntax"] = True
        decoder = get_decoder(tsyntax)
        nframes = int(ds.get("NumberOfFrames", 1) or 1)
        frames = []
        pi = None
        for i in range(nframes):
            arr, meta = decoder.as_array(ds, index=i, raw=True)
            frames.append(np.ascontiguousarray(arr))
            pi = meta.get("photometric_interpretation", pi)
        write_le(np.stack(frames), out_prefix + ".raw")
        stacked = np.stack(frames)
        if str(pi).startswith("YBR"):
            # also pydicom's own YBR->RGB (PS3.3 C.7.6.3.1.2), for decoders that convert
            rgb = [decoder.as_array(ds, index=i)[0] for i in range(nframes)]
            write_le(np.stack(rgb), out_prefix + ".rgb.raw")
            info["rgb"] = True
        info.update(
            status="ok",
            frames=nframes,
            shape=list(stacked.shape),
            dtype=stacked.dtype.str.lstrip("<>|="),
            photometric_interpretation=str(pi),
            transfer_syntax=str(tsyntax),
        )
    except Exception as e:  # recorded, the Rust test decides what it means
        info["status"] = "error"
        info["error"] = f"{type(e).__name__}: {e}"
        info["trace"] = traceback.format_exc(limit=3)
    return info


def main():
    out = sys.argv[1]
    for i, path in enumerate(sys.argv[2:]):
        info = dump(path, f"{out}/{i}")
        with open(f"{out}/{i}.json", "w") as f:
            json.dump(info, f)


if __name__ == "__main__":
    main()
