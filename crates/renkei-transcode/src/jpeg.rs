//! JPEG (ITU-T T.81) helpers: a header scan that tells the decoder which process a frame
//! uses, and a decoder for 12-bit sequential DCT (process 4, JPEG Extended .4.51).
//!
//! jpeg-decoder 0.3 decodes baseline, 8-bit extended and lossless, but refuses 12-bit DCT
//! precision, and neither zune-jpeg nor image-rs do 12-bit. The DICOM files that use
//! .4.51 are nearly all 12-bit grey (NM, CT, XA of the 1990s–2000s), so the sequential
//! Huffman process at 12 bits is written here (T.81 Annex F); progressive and arithmetic
//! coding, retired in DICOM, are rejected with a specific error.

/// What the frame header of a JPEG stream says (T.81 B.2.2).
#[derive(Debug, Clone, Default)]
pub(crate) struct JpegHeader {
    /// SOFn marker low nibble: 0 baseline, 1 extended, 2 progressive, 3 lossless, 9+ arithmetic
    pub(crate) sof: u8,
    pub(crate) precision: u8,
    pub(crate) width: u16,
    pub(crate) height: u16,
    /// component identifiers in frame order
    pub(crate) component_ids: Vec<u8>,
    /// a JFIF APP0 segment is present (implies YCbCr for three components)
    pub(crate) jfif: bool,
    /// the Adobe APP14 transform flag, if that segment is present
    pub(crate) adobe_transform: Option<u8>,
}

impl JpegHeader {
    /// Whether jpeg-decoder will see YCbCr in a three-component DCT stream. Mirrors its own
    /// rule (component ids 'R','G','B' or Adobe transform 0 mean RGB; otherwise YCbCr).
    pub(crate) fn is_ycbcr(&self) -> bool {
        if self.component_ids.len() != 3 {
            return false;
        }
        if self.component_ids == [b'R', b'G', b'B'] {
            return false;
        }
        if self.jfif || self.component_ids == [1, 2, 3] {
            return true;
        }
        !matches!(self.adobe_transform, Some(0))
    }
}

/// Errors of the header scan and of the 12-bit decoder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum JpegError {
    /// The stream ended or a segment is malformed.
    #[error("malformed JPEG stream: {0}")]
    Malformed(String),
    /// A coding process this decoder does not implement.
    #[error("{0}")]
    Unsupported(String),
}

fn malformed(s: impl Into<String>) -> JpegError {
    JpegError::Malformed(s.into())
}

fn be16(d: &[u8], pos: usize) -> Result<usize, JpegError> {
    match d.get(pos..pos + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]]) as usize),
        None => Err(malformed("truncated segment length")),
    }
}

/// Reads markers up to the first SOS and returns what the frame header says.
pub(crate) fn scan_header(data: &[u8]) -> Result<JpegHeader, JpegError> {
    if data.get(..2) != Some(&[0xFF, 0xD8]) {
        return Err(malformed("does not start with SOI (FFD8)"));
    }
    let mut h = JpegHeader::default();
    let mut seen_sof = false;
    let mut pos = 2;
    loop {
        // skip fill bytes (T.81 B.1.1.2)
        while data.get(pos) == Some(&0xFF) && data.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (data.get(pos), data.get(pos + 1)) else {
            return Err(malformed(format!("expected a marker at byte {pos}")));
        };
        pos += 2;
        match marker {
            0xD8 | 0x01 | 0xD0..=0xD7 => continue,
            0xD9 => return Err(malformed("EOI before any scan")),
            _ => {}
        }
        let len = be16(data, pos)?;
        let seg = data
            .get(pos + 2..pos + len)
            .ok_or_else(|| malformed(format!("segment FF{marker:02X} runs past the end")))?;
        match marker {
            0xC0..=0xCF if marker != 0xC4 && marker != 0xC8 && marker != 0xCC => {
                if seg.len() < 6 {
                    return Err(malformed("short SOF segment"));
                }
                h.sof = marker - 0xC0;
                h.precision = seg[0];
                h.height = u16::from_be_bytes([seg[1], seg[2]]);
                h.width = u16::from_be_bytes([seg[3], seg[4]]);
                let n = seg[5] as usize;
                h.component_ids = seg
                    .get(6..6 + 3 * n)
                    .ok_or_else(|| malformed("short SOF component list"))?
                    .chunks_exact(3)
                    .map(|c| c[0])
                    .collect();
                seen_sof = true;
            }
            0xE0 if seg.starts_with(b"JFIF\0") => h.jfif = true,
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => {
                h.adobe_transform = Some(seg[11]);
            }
            0xDA => {
                if !seen_sof {
                    return Err(malformed("SOS before SOF"));
                }
                return Ok(h);
            }
            _ => {}
        }
        pos += len;
    }
}

/// Samples decoded from a sequential DCT stream: one plane per component, interleaved,
/// every component upsampled to the full frame size.
pub(crate) struct Decoded {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) components: usize,
    /// pixel-interleaved samples, 0..2^precision-1
    pub(crate) samples: Vec<u16>,
}

#[derive(Clone)]
struct Huffman {
    /// (code length, code) -> value, via per-length ranges (T.81 C, F.2.2.3)
    maxcode: [i32; 18],
    valptr: [i32; 17],
    mincode: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(bits: &[u8; 16], values: Vec<u8>) -> Self {
        let mut maxcode = [-1i32; 18];
        let mut valptr = [0i32; 17];
        let mut mincode = [0i32; 17];
        let mut code = 0i32;
        let mut k = 0i32;
        for l in 1..=16 {
            let n = bits[l - 1] as i32;
            if n > 0 {
                valptr[l] = k;
                mincode[l] = code;
                code += n;
                k += n;
                maxcode[l] = code - 1;
            }
            code <<= 1;
        }
        maxcode[17] = i32::MAX;
        Huffman {
            maxcode,
            valptr,
            mincode,
            values,
        }
    }
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// blocks per line / column, covering the component (T.81 A.2)
    bw: usize,
    bh: usize,
    /// decoded samples, bw*8 x bh*8
    plane: Vec<u16>,
    dc_pred: i32,
    td: usize,
    ta: usize,
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u32,
    nbits: u32,
    /// a marker was met: further reads return zero bits (T.81 F.2.2.5)
    hit_marker: bool,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader {
            data,
            pos,
            acc: 0,
            nbits: 0,
            hit_marker: false,
        }
    }

    fn fill(&mut self) {
        while self.nbits <= 24 {
            let mut byte = 0u32;
            if !self.hit_marker {
                match self.data.get(self.pos) {
                    Some(0xFF) => match self.data.get(self.pos + 1) {
                        Some(0x00) => {
                            byte = 0xFF;
                            self.pos += 2;
                        }
                        _ => self.hit_marker = true,
                    },
                    Some(&b) => {
                        byte = b as u32;
                        self.pos += 1;
                    }
                    None => self.hit_marker = true,
                }
            }
            self.acc |= byte << (24 - self.nbits);
            self.nbits += 8;
        }
    }

    fn bits(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        self.fill();
        let v = self.acc >> (32 - n);
        self.acc <<= n;
        self.nbits -= n;
        v
    }

    fn decode(&mut self, t: &Huffman) -> Result<u8, JpegError> {
        let mut code = self.bits(1) as i32;
        for l in 1..=16 {
            if code <= t.maxcode[l] {
                let idx = t.valptr[l] + code - t.mincode[l];
                return t
                    .values
                    .get(idx as usize)
                    .copied()
                    .ok_or_else(|| malformed("Huffman value index out of range"));
            }
            code = (code << 1) | self.bits(1) as i32;
        }
        Err(malformed("invalid Huffman code"))
    }

    /// T.81 F.2.2.1 EXTEND
    fn receive_extend(&mut self, s: u32) -> Result<i32, JpegError> {
        if s == 0 {
            return Ok(0);
        }
        if s > 16 {
            return Err(malformed("coefficient magnitude category above 16"));
        }
        let v = self.bits(s) as i32;
        Ok(if v < 1 << (s - 1) {
            v - (1 << s) + 1
        } else {
            v
        })
    }

    /// Skips to the byte after the next RSTn marker (T.81 F.2.2.5 / B.2.1).
    fn restart(&mut self) -> Result<(), JpegError> {
        self.acc = 0;
        self.nbits = 0;
        self.hit_marker = false;
        while self.pos + 1 < self.data.len() {
            if self.data[self.pos] == 0xFF && (0xD0..=0xD7).contains(&self.data[self.pos + 1]) {
                self.pos += 2;
                return Ok(());
            }
            self.pos += 1;
        }
        Err(malformed("missing restart marker"))
    }
}

const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Separable float IDCT (T.81 A.3.3); 12-bit coefficients need more headroom than the
/// 8-bit integer IDCTs of image codecs, and float is exact enough here (≤ 1 LSB).
struct Idct {
    cos: [[f32; 8]; 8],
}

impl Idct {
    fn new() -> Self {
        let mut cos = [[0f32; 8]; 8];
        for (x, row) in cos.iter_mut().enumerate() {
            for (u, c) in row.iter_mut().enumerate() {
                let cu = if u == 0 {
                    std::f64::consts::FRAC_1_SQRT_2
                } else {
                    1.0
                };
                *c = (cu * ((2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos()
                    / 2.0) as f32;
            }
        }
        Idct { cos }
    }

    fn run(&self, coef: &[f32; 64], out: &mut [f32; 64]) {
        let mut tmp = [0f32; 64];
        for v in 0..8 {
            for x in 0..8 {
                let mut s = 0f32;
                for u in 0..8 {
                    s += self.cos[x][u] * coef[v * 8 + u];
                }
                tmp[v * 8 + x] = s;
            }
        }
        for x in 0..8 {
            for y in 0..8 {
                let mut s = 0f32;
                for v in 0..8 {
                    s += self.cos[y][v] * tmp[v * 8 + x];
                }
                out[y * 8 + x] = s;
            }
        }
    }
}

/// Decodes a sequential DCT Huffman stream (SOF0/SOF1) of 8 or 12 bits.
pub(crate) fn decode_sequential(data: &[u8]) -> Result<Decoded, JpegError> {
    let mut qt: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc: [Option<Huffman>; 4] = [None, None, None, None];
    let mut ac: [Option<Huffman>; 4] = [None, None, None, None];
    let mut comps: Vec<Component> = Vec::new();
    let (mut width, mut height, mut precision) = (0usize, 0usize, 0u8);
    let (mut hmax, mut vmax) = (1usize, 1usize);
    let mut restart_interval = 0usize;
    let idct = Idct::new();
    let mut pos = 2;
    if data.get(..2) != Some(&[0xFF, 0xD8]) {
        return Err(malformed("does not start with SOI (FFD8)"));
    }
    loop {
        while data.get(pos) == Some(&0xFF) && data.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (data.get(pos), data.get(pos + 1)) else {
            // trailing bytes after the last scan: accept what was decoded
            if !comps.is_empty() {
                break;
            }
            return Err(malformed(format!("expected a marker at byte {pos}")));
        };
        pos += 2;
        match marker {
            0xD9 => break,
            0xD8 | 0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let len = be16(data, pos)?;
        let seg = data
            .get(pos + 2..pos + len)
            .ok_or_else(|| malformed(format!("segment FF{marker:02X} runs past the end")))?;
        let seg_end = pos + len;
        match marker {
            0xDB => {
                // DQT (T.81 B.2.4.1)
                let mut i = 0;
                while i < seg.len() {
                    let pq = seg[i] >> 4;
                    let tq = (seg[i] & 15) as usize;
                    i += 1;
                    let size = if pq == 0 { 64 } else { 128 };
                    let t = seg.get(i..i + size).ok_or_else(|| malformed("short DQT"))?;
                    let mut table = [0u16; 64];
                    for (k, q) in table.iter_mut().enumerate() {
                        *q = if pq == 0 {
                            t[k] as u16
                        } else {
                            u16::from_be_bytes([t[2 * k], t[2 * k + 1]])
                        };
                    }
                    *qt.get_mut(tq)
                        .ok_or_else(|| malformed("DQT table id above 3"))? = Some(table);
                    i += size;
                }
            }
            0xC4 => {
                // DHT (T.81 B.2.4.2)
                let mut i = 0;
                while i < seg.len() {
                    let tc = seg[i] >> 4;
                    let th = (seg[i] & 15) as usize;
                    let bits: [u8; 16] = seg
                        .get(i + 1..i + 17)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| malformed("short DHT"))?;
                    let n: usize = bits.iter().map(|&b| b as usize).sum();
                    let values = seg
                        .get(i + 17..i + 17 + n)
                        .ok_or_else(|| malformed("short DHT values"))?
                        .to_vec();
                    let table = Some(Huffman::new(&bits, values));
                    let slot = if tc == 0 { &mut dc } else { &mut ac };
                    *slot
                        .get_mut(th)
                        .ok_or_else(|| malformed("DHT table id above 3"))? = table;
                    i += 17 + n;
                }
            }
            0xDD => restart_interval = be16(seg, 0)?,
            0xC0 | 0xC1 => {
                if seg.len() < 6 {
                    return Err(malformed("short SOF segment"));
                }
                precision = seg[0];
                if precision != 8 && precision != 12 {
                    return Err(malformed(format!("DCT precision {precision}")));
                }
                height = u16::from_be_bytes([seg[1], seg[2]]) as usize;
                width = u16::from_be_bytes([seg[3], seg[4]]) as usize;
                if height == 0 {
                    return Err(JpegError::Unsupported(
                        "JPEG with height defined by a DNL marker is not supported".into(),
                    ));
                }
                let n = seg[5] as usize;
                for c in seg
                    .get(6..6 + 3 * n)
                    .ok_or_else(|| malformed("short SOF"))?
                    .chunks_exact(3)
                {
                    let (h, v) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
                    if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
                        return Err(malformed("sampling factor outside 1..4"));
                    }
                    comps.push(Component {
                        id: c[0],
                        h,
                        v,
                        tq: (c[2] & 3) as usize,
                        bw: 0,
                        bh: 0,
                        plane: Vec::new(),
                        dc_pred: 0,
                        td: 0,
                        ta: 0,
                    });
                }
                hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
                vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
                let mcux = width.div_ceil(8 * hmax);
                let mcuy = height.div_ceil(8 * vmax);
                for c in &mut comps {
                    // allocate whole MCUs so interleaved scans never index out of range
                    c.bw = mcux * c.h;
                    c.bh = mcuy * c.v;
                    c.plane = vec![0; c.bw * 8 * c.bh * 8];
                }
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(JpegError::Unsupported(format!(
                    "JPEG process SOF{} is not supported by renkei's 12-bit decoder \
                     (sequential Huffman only)",
                    marker - 0xC0
                )));
            }
            0xDA => {
                if comps.is_empty() {
                    return Err(malformed("SOS before SOF"));
                }
                let ns = *seg.first().ok_or_else(|| malformed("empty SOS"))? as usize;
                let mut scan = Vec::with_capacity(ns);
                for k in 0..ns {
                    let cs = *seg.get(1 + 2 * k).ok_or_else(|| malformed("short SOS"))?;
                    let t = *seg.get(2 + 2 * k).ok_or_else(|| malformed("short SOS"))?;
                    let ci = comps
                        .iter()
                        .position(|c| c.id == cs)
                        .ok_or_else(|| malformed(format!("SOS names unknown component {cs}")))?;
                    comps[ci].td = (t >> 4) as usize & 3;
                    comps[ci].ta = (t & 15) as usize & 3;
                    comps[ci].dc_pred = 0;
                    scan.push(ci);
                }
                let mut reader = BitReader::new(data, seg_end);
                decode_scan(
                    &mut reader,
                    &mut comps,
                    &scan,
                    ScanTables {
                        qt: &qt,
                        dc: &dc,
                        ac: &ac,
                        idct: &idct,
                    },
                    Geometry {
                        width,
                        height,
                        hmax,
                        vmax,
                        precision,
                        restart_interval,
                    },
                )?;
                // continue after the entropy-coded data, at the next marker
                pos = reader.pos;
                while pos + 1 < data.len()
                    && !(data[pos] == 0xFF && data[pos + 1] != 0 && data[pos + 1] < 0xD0
                        || data[pos] == 0xFF && data[pos + 1] >= 0xD8)
                {
                    pos += 1;
                }
                continue;
            }
            _ => {}
        }
        pos = seg_end;
    }
    if comps.is_empty() {
        return Err(malformed("no frame header"));
    }
    // upsample by replication and interleave (T.81 A.1.1: component i covers
    // ceil(X * Hi / Hmax) columns)
    let n = comps.len();
    let mut samples = vec![0u16; width * height * n];
    for (ci, c) in comps.iter().enumerate() {
        let stride = c.bw * 8;
        let (fx, fy) = (hmax / c.h, vmax / c.v);
        for y in 0..height {
            let row = &c.plane[(y / fy) * stride..];
            for x in 0..width {
                samples[(y * width + x) * n + ci] = row[x / fx];
            }
        }
    }
    Ok(Decoded {
        width,
        height,
        components: n,
        samples,
    })
}

struct ScanTables<'a> {
    qt: &'a [Option<[u16; 64]>; 4],
    dc: &'a [Option<Huffman>; 4],
    ac: &'a [Option<Huffman>; 4],
    idct: &'a Idct,
}

#[derive(Clone, Copy)]
struct Geometry {
    width: usize,
    height: usize,
    hmax: usize,
    vmax: usize,
    precision: u8,
    restart_interval: usize,
}

fn decode_scan(
    r: &mut BitReader<'_>,
    comps: &mut [Component],
    scan: &[usize],
    t: ScanTables<'_>,
    g: Geometry,
) -> Result<(), JpegError> {
    let table = |set: &[Option<Huffman>; 4], i: usize, kind: &str| {
        set[i]
            .clone()
            .ok_or_else(|| malformed(format!("{kind} Huffman table {i} not defined")))
    };
    // per scan component: tables and quantisation
    let mut st = Vec::with_capacity(scan.len());
    for &ci in scan {
        let c = &comps[ci];
        let q = t.qt[c.tq]
            .ok_or_else(|| malformed(format!("quantisation table {} not defined", c.tq)))?;
        st.push((table(t.dc, c.td, "DC")?, table(t.ac, c.ta, "AC")?, q));
    }
    // T.81 A.2: a single-component scan is non-interleaved, its MCU is one block
    let (mcux, mcuy, single) = if scan.len() == 1 {
        let c = &comps[scan[0]];
        (
            (g.width * c.h).div_ceil(g.hmax).div_ceil(8),
            (g.height * c.v).div_ceil(g.vmax).div_ceil(8),
            true,
        )
    } else {
        (
            g.width.div_ceil(8 * g.hmax),
            g.height.div_ceil(8 * g.vmax),
            false,
        )
    };
    let level = 1i32 << (g.precision - 1);
    let maxval = (1i32 << g.precision) - 1;
    let mut coef = [0f32; 64];
    let mut out = [0f32; 64];
    let mut mcus_left = g.restart_interval;
    for my in 0..mcuy {
        for mx in 0..mcux {
            if g.restart_interval > 0 {
                if mcus_left == 0 {
                    r.restart()?;
                    for &ci in scan {
                        comps[ci].dc_pred = 0;
                    }
                    mcus_left = g.restart_interval;
                }
                mcus_left -= 1;
            }
            for (k, &ci) in scan.iter().enumerate() {
                let (hb, vb) = if single {
                    (1, 1)
                } else {
                    (comps[ci].h, comps[ci].v)
                };
                for by in 0..vb {
                    for bx in 0..hb {
                        let (dct, act, q) = &st[k];
                        // F.2.2.1: DC difference, then F.2.2.2: AC run/size pairs
                        let s = r.decode(dct)? as u32;
                        let diff = r.receive_extend(s)?;
                        let c = &mut comps[ci];
                        c.dc_pred += diff;
                        coef.fill(0.0);
                        coef[0] = (c.dc_pred * q[0] as i32) as f32;
                        let mut kk = 1;
                        while kk < 64 {
                            let rs = r.decode(act)?;
                            let (run, size) = ((rs >> 4) as usize, (rs & 15) as u32);
                            if size == 0 {
                                if run == 15 {
                                    kk += 16;
                                    continue;
                                }
                                break;
                            }
                            kk += run;
                            if kk > 63 {
                                return Err(malformed("AC coefficient index past 63"));
                            }
                            let v = r.receive_extend(size)?;
                            coef[ZIGZAG[kk]] = (v * q[kk] as i32) as f32;
                            kk += 1;
                        }
                        t.idct.run(&coef, &mut out);
                        let (bxa, bya) = if single {
                            (mx, my)
                        } else {
                            (mx * c.h + bx, my * c.v + by)
                        };
                        if bxa >= c.bw || bya >= c.bh {
                            continue;
                        }
                        let stride = c.bw * 8;
                        for y in 0..8 {
                            let row = (bya * 8 + y) * stride + bxa * 8;
                            for x in 0..8 {
                                let v = (out[y * 8 + x].round() as i32 + level).clamp(0, maxval);
                                c.plane[row + x] = v as u16;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
