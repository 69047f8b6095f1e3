/*!
`renkei render`: one frame of a DICOM image as a PNG or JPEG, as a viewer
shows it.

A thin front over `renkei_transcode::render`: the modality LUT (rescale),
the window (from the command line, else the file), MONOCHROME1 inversion,
palette and YBR colour, and an area-averaged thumbnail. The output format
comes from the output file's extension.
*/

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use dicom_dictionary_std::tags;
use renkei_transcode::decode;
use renkei_transcode::render::{self, OutputFormat, RenderOptions, VoiFunction};

use crate::transcode::{open_dicom, write_output};

/// JPEG quality when `--quality` is not given (libjpeg's scale).
const DEFAULT_JPEG_QUALITY: u8 = 90;

/// Render a frame of a DICOM image to PNG or JPEG.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Render one frame of a DICOM image to a PNG or JPEG file, as a viewer \
shows it.\n\n\
Greyscale images go through the rescale (Modality LUT), the window (VOI LUT) and, for \
MONOCHROME1, inversion; colour images (RGB, YBR, PALETTE COLOR) are converted to RGB. The \
window is --window if given, else the first Window Center/Width of the file (per frame for \
enhanced multi-frame objects), else its VOI LUT Sequence, else the frame's minimum to \
maximum. Every transfer syntax Renkei decodes is accepted (uncompressed, RLE, JPEG, \
JPEG-LS, JPEG 2000).\n\n\
The format follows OUT's extension: .png (lossless) or .jpg/.jpeg (quality --quality). \
The output is overwritten if it exists. On success one line says what was written; on \
error the message names the file and the exit status is 1.",
    after_help = "Examples:\n  renkei render CT.dcm ct.png --window 40,400\n  \
renkei render CT.dcm lung.png --window=-600,1500 --voi linear-exact\n  \
renkei render US.dcm us-frame12.jpg --frame 12 --size 256x256 --quality 85"
)]
pub(crate) struct RenderArgs {
    /// DICOM file to render.
    #[arg(value_name = "IN")]
    input: PathBuf,

    /// Image to write: .png, .jpg or .jpeg.
    #[arg(value_name = "OUT")]
    output: PathBuf,

    /// Frame to render, counted from 1 (as dcmj2pnm and DICOMweb count).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    frame: u32,

    /// Window center and width in rescaled units (HU for CT), e.g. 40,400 for
    /// soft tissue or -600,1500 for lung. Default: the file's window.
    #[arg(long, value_name = "C,W", allow_hyphen_values = true, value_parser = parse_window)]
    window: Option<Window>,

    /// VOI LUT function (PS3.3 C.11.2.1). Default: the file's (0028,1056),
    /// else linear.
    #[arg(long, value_enum, value_name = "FUNCTION")]
    voi: Option<Voi>,

    /// Scale the image to fit inside W x H pixels, keeping its aspect ratio
    /// (downscaling averages the area each pixel covers). Default: full size.
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    size: Option<Size>,

    /// JPEG quality, 1 (smallest) to 100 (best); only for .jpg/.jpeg output.
    /// Default: 90.
    #[arg(long, value_name = "Q", value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: Option<u8>,
}

/// `--window C,W`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    center: f64,
    width: f64,
}

/// `--size WxH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size {
    width: u32,
    height: u32,
}

/// `--voi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Voi {
    /// LINEAR (C.11.2.1.2.1)
    Linear,
    /// LINEAR_EXACT (C.11.2.1.3.2)
    LinearExact,
    /// SIGMOID (C.11.2.1.3.1)
    Sigmoid,
}

impl From<Voi> for VoiFunction {
    fn from(v: Voi) -> Self {
        match v {
            Voi::Linear => VoiFunction::Linear,
            Voi::LinearExact => VoiFunction::LinearExact,
            Voi::Sigmoid => VoiFunction::Sigmoid,
        }
    }
}

fn parse_window(s: &str) -> Result<Window, String> {
    let (c, w) = s
        .split_once(',')
        .ok_or_else(|| format!("expected CENTER,WIDTH (e.g. 40,400), got {s:?}"))?;
    let number = |t: &str, what: &str| {
        t.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("window {what} {t:?} is not a number"))
    };
    let (center, width) = (number(c, "center")?, number(w, "width")?);
    // LINEAR needs a width of at least 1, LINEAR_EXACT and SIGMOID above 0 (PS3.3
    // C.11.2.1.2): ask for what every function accepts
    if width < 1.0 {
        return Err(format!("window width {width} must be at least 1"));
    }
    Ok(Window { center, width })
}

fn parse_size(s: &str) -> Result<Size, String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT (e.g. 256x256), got {s:?}"))?;
    let dim = |t: &str| {
        t.trim()
            .parse::<u32>()
            .ok()
            .filter(|v| (1..=65535).contains(v))
            .ok_or_else(|| format!("{t:?} is not a size in pixels (1 to 65535)"))
    };
    Ok(Size {
        width: dim(w)?,
        height: dim(h)?,
    })
}

/// The output format OUT's extension asks for.
fn output_format(output: &Path, quality: Option<u8>) -> anyhow::Result<OutputFormat> {
    let ext = output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => {
            if quality.is_some() {
                bail!(
                    "{}: --quality applies to JPEG output (.jpg, .jpeg); PNG is lossless",
                    output.display()
                );
            }
            Ok(OutputFormat::Png)
        }
        Some("jpg" | "jpeg") => Ok(OutputFormat::Jpeg(quality.unwrap_or(DEFAULT_JPEG_QUALITY))),
        _ => bail!(
            "{}: unknown image type; name the output .png, .jpg or .jpeg",
            output.display()
        ),
    }
}

pub(crate) fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    // check the cheap things before reading a possibly large input
    let format = output_format(&args.output, args.quality)?;
    let input = args.input.display();
    let obj = open_dicom(&args.input)?;
    if obj.element(tags::PIXEL_DATA).is_err() {
        bail!("{input}: no Pixel Data, not an image");
    }
    let info = decode::pixel_info(&obj).with_context(|| format!("{input}: cannot render"))?;
    if args.frame > info.frames {
        bail!(
            "{input}: frame {} requested, the image has {} frame{}",
            args.frame,
            info.frames,
            if info.frames == 1 { "" } else { "s" }
        );
    }
    let options = RenderOptions {
        window: args.window.map(|w| (w.center, w.width)),
        voi_function: args.voi.map(VoiFunction::from),
        size: args.size.map(|s| (s.width, s.height)),
        format,
    };
    let bytes = render::render_frame(&obj, args.frame - 1, &options)
        .with_context(|| format!("{input}: cannot render frame {}", args.frame))?;
    write_output(&args.output, &bytes)?;
    let (w, h) = match options.size {
        Some((mw, mh)) => render::fit_size(info.cols, info.rows, mw, mh),
        None => (info.cols, info.rows),
    };
    let kind = match format {
        OutputFormat::Png => "PNG".to_string(),
        OutputFormat::Jpeg(q) => format!("JPEG quality {q}"),
    };
    println!(
        "{}: frame {}/{} rendered to {} ({w}x{h} {kind}, {} bytes)",
        input,
        args.frame,
        info.frames,
        args.output.display(),
        bytes.len()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        assert_eq!(
            parse_window("40,400"),
            Ok(Window {
                center: 40.0,
                width: 400.0
            })
        );
        assert_eq!(
            parse_window("-600, 1500.5"),
            Ok(Window {
                center: -600.0,
                width: 1500.5
            })
        );
        assert!(parse_window("40").is_err());
        assert!(parse_window("40,0").is_err());
        assert!(parse_window("a,400").is_err());
        assert!(parse_window("40,inf").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(
            parse_size("256x128"),
            Ok(Size {
                width: 256,
                height: 128
            })
        );
        assert!(parse_size("256").is_err());
        assert!(parse_size("0x10").is_err());
        assert!(parse_size("10x-1").is_err());
    }

    #[test]
    fn formats_from_extension() {
        let f = |p: &str, q| output_format(Path::new(p), q).ok();
        assert_eq!(f("a.png", None), Some(OutputFormat::Png));
        assert_eq!(f("a.PNG", None), Some(OutputFormat::Png));
        assert_eq!(f("a.jpg", None), Some(OutputFormat::Jpeg(90)));
        assert_eq!(f("a.jpeg", Some(50)), Some(OutputFormat::Jpeg(50)));
        assert_eq!(f("a.png", Some(50)), None);
        assert_eq!(f("a.gif", None), None);
        assert_eq!(f("a", None), None);
    }
}
