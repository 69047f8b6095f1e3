/*!
`renkei-bench-pixels`: the pixel pipeline measured in process, for `benches/pixels.sh`.

`decode` and `encode` read the file once, then time N repetitions of the codec alone
(`decode::decode_all`, or `encode::encode_frames` on frames decoded beforehand): no process
start, no file I/O, no DICOM parsing. That is the codec's share of a `renkei transcode`
command, which the script times whole next to DCMTK's and OpenJPEG's commands.

`codestream` and `raw` write what OpenJPEG's command-line tools read and write: the J2K
codestream of a single-frame object, and the decoded samples of frame 0 as little-endian
raw (`.rawl`) with the `-F` argument `opj_compress` needs for it.
*/

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use renkei_transcode::decode;
use renkei_transcode::encode::{encode_frames, FrameLayout, Target};

/// Time the pixel pipeline in process; write inputs for OpenJPEG's tools.
#[derive(Debug, Parser)]
#[command(name = "renkei-bench-pixels", version)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Decode every frame N times; prints `frames=F median_ms=M min_ms=m`.
    Decode {
        /// DICOM file
        file: PathBuf,
        /// repetitions (after one warm-up)
        #[arg(short, default_value_t = 5)]
        n: u32,
    },
    /// Decode once, then encode every frame N times to --ts; prints the same.
    Encode {
        /// DICOM file
        file: PathBuf,
        /// explicit, rle, jpeg-ls, j2k or jpeg (baseline, quality 90)
        #[arg(long = "ts")]
        ts: String,
        /// repetitions (after one warm-up)
        #[arg(short, default_value_t = 5)]
        n: u32,
    },
    /// Write the JPEG 2000 codestream of a single-frame object to OUT.
    Codestream {
        /// DICOM file (encapsulated, one frame)
        file: PathBuf,
        /// output (.j2k)
        out: PathBuf,
    },
    /// Write frame 0's samples as little-endian raw to OUT; prints opj_compress's -F value.
    Raw {
        /// DICOM file
        file: PathBuf,
        /// output (.rawl)
        out: PathBuf,
    },
}

fn open(path: &PathBuf) -> anyhow::Result<FileDicomObject<InMemDicomObject>> {
    OpenFileOptions::new()
        .open_file(path)
        .with_context(|| format!("{}: cannot read", path.display()))
}

fn target(name: &str) -> anyhow::Result<Target> {
    Ok(match name {
        "explicit" => Target::ExplicitVrLittleEndian,
        "rle" => Target::RleLossless,
        "jpeg-ls" => Target::JpegLsLossless,
        "j2k" => Target::Jpeg2000Lossless,
        "jpeg" => Target::JpegBaseline { quality: 90 },
        other => bail!("unknown target {other:?}"),
    })
}

/// Runs `job` once to warm up, then `n` times; prints frames and the median and minimum.
fn time(frames: usize, n: u32, mut job: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
    job()?;
    let mut ms = Vec::with_capacity(n as usize);
    for _ in 0..n.max(1) {
        let t = Instant::now();
        job()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "frames={frames} median_ms={:.3} min_ms={:.3}",
        ms[ms.len() / 2],
        ms[0]
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::Decode { file, n } => {
            let obj = open(&file)?;
            let frames = decode::pixel_info(&obj)?.frames as usize;
            time(frames, n, || {
                std::hint::black_box(decode::decode_all(&obj)?);
                Ok(())
            })
        }
        Cmd::Encode { file, ts, n } => {
            let target = target(&ts)?;
            let obj = open(&file)?;
            let frames = decode::decode_all(&obj)?;
            let first = frames.first().ok_or_else(|| anyhow!("no frames"))?;
            let layout = FrameLayout {
                rows: u16::try_from(first.rows)?,
                columns: u16::try_from(first.cols)?,
                samples_per_pixel: first.samples_per_pixel,
                bits_allocated: first.bits_allocated,
                bits_stored: first.bits_stored,
                pixel_representation: u16::from(first.signed),
                photometric: first.photometric.as_str().to_string(),
                planar_configuration: 0,
            };
            let bytes: Vec<Vec<u8>> = frames.iter().map(|f| f.samples.to_le_bytes()).collect();
            time(bytes.len(), n, || {
                std::hint::black_box(encode_frames(&layout, &bytes, target)?);
                Ok(())
            })
        }
        Cmd::Codestream { file, out } => {
            let obj = open(&file)?;
            let element = obj.element(tags::PIXEL_DATA)?;
            let Value::PixelSequence(seq) = element.value() else {
                bail!("{}: Pixel Data is not encapsulated", file.display());
            };
            if decode::pixel_info(&obj)?.frames != 1 {
                bail!("{}: one frame expected", file.display());
            }
            let stream: Vec<u8> = seq.fragments().concat();
            std::fs::write(&out, stream).with_context(|| format!("{}: cannot write", out.display()))
        }
        Cmd::Raw { file, out } => {
            let obj = open(&file)?;
            let frame = decode::decode_frame(&obj, 0)?;
            std::fs::write(&out, frame.samples.to_le_bytes())
                .with_context(|| format!("{}: cannot write", out.display()))?;
            println!(
                "{},{},{},{},{}",
                frame.cols,
                frame.rows,
                frame.samples_per_pixel,
                frame.bits_stored,
                if frame.signed { 's' } else { 'u' }
            );
            Ok(())
        }
    }
}
