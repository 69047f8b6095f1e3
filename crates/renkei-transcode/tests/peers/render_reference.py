"""Reference renderings for tests/render_corpus.rs, from pydicom's decoded pixels and numpy.

Usage: render_reference.py OUT_PREFIX FILE FRAME [--window C W] [--voi FUNCTION] [--fit W H]

Writes OUT_PREFIX.raw (uint8, rows x cols [x 3]) and OUT_PREFIX.json (shape). The
formulas are the ones src/render.rs documents, written independently:
  greyscale: Modality LUT (Rescale Slope/Intercept, per-frame then shared functional
  groups then top level; PS3.3 C.11.1), then the window given, else the first Window
  Center/Width, else the VOI LUT Sequence, else the frame's min..max with LINEAR_EXACT;
  VOI LUT functions of PS3.3 C.11.2.1.2 to 0..255 rounded half away from zero;
  MONOCHROME1 inverted.
  PALETTE COLOR: pydicom's apply_color_lut, 16-bit entries scaled to 8 bits.
  YBR: pydicom's own conversion to RGB (as_rgb), RGB as is.
--fit W H: the image fitted inside W x H (aspect kept) by exact area averaging.
"""

import argparse
import json

import numpy as np
import pydicom
from pydicom.pixels import apply_color_lut, pixel_array


def first(v):
    if v is None:
        return None
    if isinstance(v, pydicom.multival.MultiValue):
        return float(v[0]) if len(v) else None
    return float(v)


def frame_attr(ds, index, macro, get):
    for fg_name, item_index in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        fg = ds.get(fg_name)
        if fg is not None and len(fg) > item_index and macro in fg[item_index]:
            seq = fg[item_index][macro].value
            if len(seq):
                found = get(seq[0])
                if found is not None:
                    return found
    return get(ds)


def rescale(ds, index):
    def get(o):
        s, i = first(o.get("RescaleSlope")), first(o.get("RescaleIntercept"))
        if s is None and i is None:
            return None
        return (1.0 if s is None else s, 0.0 if i is None else i)

    s, i = frame_attr(ds, index, "PixelValueTransformationSequence", get) or (1.0, 0.0)
    return (1.0, i) if s == 0 else (s, i)


def window(ds, index):
    def get(o):
        c, w = first(o.get("WindowCenter")), first(o.get("WindowWidth"))
        if c is None or w is None:
            return None
        return (c, w, o.get("VOILUTFunction"))

    return frame_attr(ds, index, "FrameVOILUTSequence", get)


def round_half_up(y):
    return np.floor(y + 0.5)


def voi(x, c, w, fn):
    if fn == "LINEAR":
        w = max(w, 1.0)
        y = ((x - (c - 0.5)) / max(w - 1.0, 1e-300) + 0.5) * 255.0
        y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, np.where(x > c - 0.5 + (w - 1) / 2, 255.0, y))
    elif fn == "LINEAR_EXACT":
        y = ((x - c) / w + 0.5) * 255.0
        y = np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, 255.0, y))
    elif fn == "SIGMOID":
        y = 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    else:
        raise ValueError(fn)
    return np.clip(round_half_up(y), 0, 255).astype(np.uint8)


def render(ds, index, args):
    pi = ds.PhotometricInterpretation
    if pi in ("MONOCHROME1", "MONOCHROME2"):
        arr = pixel_array(ds, index=index).astype(np.float64)
        s, i = rescale(ds, index)
        x = arr * s + i
        win = window(ds, index)
        fn = args.voi or (win[2] if win and win[2] else None) or "LINEAR"
        if args.window:
            out = voi(x, args.window[0], args.window[1], fn)
        elif win:
            out = voi(x, win[0], win[1], fn)
        elif "VOILUTSequence" in ds:
            item = ds.VOILUTSequence[0]
            n, first_map, bits = item.LUTDescriptor
            n = n or 65536
            data = np.asarray(item.LUTData, dtype=np.float64)[:n]
            idx = np.clip(np.floor(x).astype(np.int64) - first_map, 0, n - 1)
            top = float(2**bits - 1)
            out = round_half_up(np.minimum(data[idx], top) * 255.0 / top).astype(np.uint8)
        else:
            lo, hi = x.min(), x.max()
            out = voi(x, (lo + hi) / 2, hi - lo, "LINEAR_EXACT") if hi > lo else np.zeros(x.shape, np.uint8)
        if pi == "MONOCHROME1":
            out = 255 - out
        return out
    if pi == "PALETTE COLOR":
        arr = pixel_array(ds, index=index)
        rgb = apply_color_lut(arr, ds)
        bits = ds.RedPaletteColorLookupTableDescriptor[2]
        if bits == 16:
            return ((rgb.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return np.minimum(rgb, 255).astype(np.uint8)
    # RGB and YBR_*: pydicom converts YBR to RGB itself (as_rgb=True)
    arr = pixel_array(ds, index=index)
    bits = ds.BitsStored
    if bits != 8:
        arr = round_half_up(arr.astype(np.float64) * 255.0 / (2**bits - 1))
    return arr.astype(np.uint8)


def area_matrix(n_in, n_out):
    """Row i: weights of the source pixels output pixel i covers (exact area average)."""
    m = np.zeros((n_out, n_in))
    scale = n_in / n_out
    for i in range(n_out):
        a, b = i * scale, (i + 1) * scale
        for j in range(int(np.floor(a)), min(int(np.ceil(b)), n_in)):
            m[i, j] = min(b, j + 1) - max(a, j)
        m[i] /= m[i].sum()
    return m


def fit(img, max_w, max_h):
    rows, cols = img.shape[:2]
    scale = min(max_w / cols, max_h / rows)
    w = int(min(max(np.floor(cols * scale + 0.5), 1), max_w))
    h = int(min(max(np.floor(rows * scale + 0.5), 1), max_h))
    ry, rx = area_matrix(rows, h), area_matrix(cols, w)
    f = img.astype(np.float64)
    if f.ndim == 2:
        out = ry @ f @ rx.T
    else:
        out = np.stack([ry @ f[..., c] @ rx.T for c in range(f.shape[2])], axis=-1)
    return np.clip(round_half_up(out), 0, 255).astype(np.uint8)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("file")
    p.add_argument("frame", type=int)
    p.add_argument("--window", type=float, nargs=2)
    p.add_argument("--voi")
    p.add_argument("--fit", type=int, nargs=2)
    args = p.parse_args()
    ds = pydicom.dcmread(args.file)
    img = render(ds, args.frame, args)
    if args.fit:
        img = fit(img, *args.fit)
    with open(args.out + ".raw", "wb") as f:
        f.write(np.ascontiguousarray(img).tobytes())
    with open(args.out + ".json", "w") as f:
        json.dump({"shape": list(img.shape)}, f)


if __name__ == "__main__":
    main()
