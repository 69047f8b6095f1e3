/*!
`renkei transcode`: rewrite a DICOM file in another transfer syntax.

The lossless targets go through `renkei_transcode::transcode::transcode_object`,
the function the node uses on retrieve: between uncompressed syntaxes only the
encoding of the data set changes; otherwise every frame is decoded and encoded
again. That function never produces lossy data, so baseline JPEG is done here
(decode, encode at `--quality`, mark the copy as a derived, lossy instance)
and only with `--allow-lossy` when the source is not lossy already.

Also home of the file helpers `render` shares: [`open_dicom`] and
[`write_output`].
*/

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use renkei_transcode::encode::{EncodeError, Target};
use renkei_transcode::transcode::{self as pixels, TranscodeError};

use crate::store::transfer_syntax_name;

/// Baseline JPEG quality when `--quality` is not given (libjpeg's scale).
const DEFAULT_JPEG_QUALITY: u8 = 90;

/// Rewrite a DICOM file in another transfer syntax.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Rewrite a DICOM file in another transfer syntax (uncompressed, RLE, \
JPEG-LS, JPEG 2000 or baseline JPEG), as a DICOM Part 10 file.\n\n\
--ts takes a name or a transfer syntax UID:\n  \
explicit   Explicit VR Little Endian      1.2.840.10008.1.2.1\n  \
implicit   Implicit VR Little Endian      1.2.840.10008.1.2\n  \
deflate    Deflated Explicit VR LE        1.2.840.10008.1.2.1.99\n  \
rle        RLE Lossless                   1.2.840.10008.1.2.5\n  \
jpeg-ls    JPEG-LS Lossless               1.2.840.10008.1.2.4.80\n  \
j2k        JPEG 2000 Lossless Only        1.2.840.10008.1.2.4.90\n  \
jpeg       JPEG Baseline (lossy, 8-bit)   1.2.840.10008.1.2.4.50\n\n\
Every transfer syntax Renkei decodes is accepted as input (uncompressed, RLE, JPEG \
baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K). The lossless targets keep every \
sample value, and the SOP Instance UID stays the same: the copy is the same image. \
Between uncompressed syntaxes the pixel data is not decoded. Files without pixel data \
(reports, plans) and 1-bit images (segmentations) can only be written uncompressed.\n\n\
jpeg loses detail and holds 8-bit samples only. Because that cannot be undone, a source \
that is not lossy already (by transfer syntax or Lossy Image Compression 01) is refused \
unless --allow-lossy is given. The lossy copy is a new, derived image: it gets a new SOP \
Instance UID, Image Type DERIVED, a Source Image Sequence pointing to the original, and \
the Lossy Image Compression attributes; it cannot replace the original in a PACS. For a \
picture to look at, `renkei render` is usually what is wanted.\n\n\
OUT is overwritten if it exists (OUT may be IN). On success one line gives both \
syntaxes and sizes; on error the message names the file and the exit status is 1.",
    after_help = "Examples:\n  renkei transcode CT.dcm CT-jls.dcm --ts jpeg-ls\n  \
renkei transcode CR-j2k.dcm CR.dcm --ts explicit\n  \
renkei transcode US.dcm US-preview.dcm --ts jpeg --quality 80 --allow-lossy"
)]
pub(crate) struct TranscodeArgs {
    /// DICOM file to read.
    #[arg(value_name = "IN")]
    input: PathBuf,

    /// DICOM file to write.
    #[arg(value_name = "OUT")]
    output: PathBuf,

    /// Target transfer syntax: explicit, implicit, deflate, rle, jpeg-ls, j2k,
    /// jpeg, or its UID.
    #[arg(long = "ts", value_name = "SYNTAX", value_parser = parse_syntax)]
    ts: Syntax,

    /// Baseline JPEG quality, 1 (smallest) to 100 (best); only with --ts jpeg.
    /// Default: 90.
    #[arg(long, value_name = "Q", value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: Option<u8>,

    /// Allow a lossy target (jpeg) for a source that is not lossy already.
    #[arg(long)]
    allow_lossy: bool,
}

/// A transfer syntax `--ts` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax {
    /// the name on the command line
    name: &'static str,
    /// other spellings accepted
    aliases: &'static [&'static str],
    uid: &'static str,
}

impl Syntax {
    fn is_lossy(self) -> bool {
        pixels::is_lossy(self.uid)
    }

    fn is_native(self) -> bool {
        pixels::is_native(self.uid)
    }
}

const SYNTAXES: &[Syntax] = &[
    Syntax {
        name: "explicit",
        aliases: &["explicit-le"],
        uid: pixels::EXPLICIT_LE,
    },
    Syntax {
        name: "implicit",
        aliases: &["implicit-le"],
        uid: pixels::IMPLICIT_LE,
    },
    Syntax {
        name: "deflate",
        aliases: &["deflated"],
        uid: pixels::DEFLATED_LE,
    },
    Syntax {
        name: "rle",
        aliases: &[],
        uid: "1.2.840.10008.1.2.5",
    },
    Syntax {
        name: "jpeg-ls",
        aliases: &["jpegls", "jls"],
        uid: "1.2.840.10008.1.2.4.80",
    },
    Syntax {
        name: "j2k",
        aliases: &["jpeg2000", "jpeg-2000"],
        uid: "1.2.840.10008.1.2.4.90",
    },
    Syntax {
        name: "jpeg",
        aliases: &["jpeg-baseline"],
        uid: "1.2.840.10008.1.2.4.50",
    },
];

fn parse_syntax(s: &str) -> Result<Syntax, String> {
    let key = s.trim().to_ascii_lowercase();
    let key = key.trim_end_matches('\0');
    SYNTAXES
        .iter()
        .find(|t| t.name == key || t.aliases.contains(&key) || t.uid == key)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = SYNTAXES.iter().map(|t| t.name).collect();
            format!(
                "unknown transfer syntax {s:?}: use one of {} or its UID",
                names.join(", ")
            )
        })
}

/// Reads a whole DICOM Part 10 file (preamble optional).
pub(crate) fn open_dicom(path: &Path) -> anyhow::Result<FileDicomObject<InMemDicomObject>> {
    OpenFileOptions::new()
        .open_file(path)
        .with_context(|| format!("{}: cannot read", path.display()))
}

/// Writes `bytes` to `path`, replacing it; a partly written file is removed.
pub(crate) fn write_output(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).map_err(|e| {
        let _ = std::fs::remove_file(path);
        anyhow!("{}: cannot write: {e}", path.display())
    })
}

pub(crate) fn run(args: &TranscodeArgs) -> anyhow::Result<ExitCode> {
    let target = args.ts;
    if args.quality.is_some() && !target.is_lossy() {
        bail!(
            "--quality applies to --ts jpeg only; {} is lossless",
            target.name
        );
    }
    let input = args.input.display();
    let input_len = std::fs::metadata(&args.input).map_or(0, |m| m.len());
    let mut obj = open_dicom(&args.input)?;
    let source_ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string();
    let has_pixels = obj.element(tags::PIXEL_DATA).is_ok();
    if !has_pixels && !target.is_native() {
        bail!(
            "{input}: no Pixel Data to compress; an object without pixels can only be \
             written explicit, implicit or deflate"
        );
    }

    // the encoders take whole bytes: 1-bit data would come out 8 bits a pixel, which
    // a BINARY Segmentation may not be (PS3.3 C.8.20.2)
    if has_pixels && !target.is_native() && bits_allocated(&obj) == Some(1) {
        bail!(
            "{input}: 1-bit pixel data would become 8-bit in {}; only explicit, \
             implicit or deflate keep it as it is",
            transfer_syntax_name(target.uid)
        );
    }

    let mut note = String::new();
    if source_ts == target.uid {
        note = if args.quality.is_some() {
            ", unchanged: already in this syntax, --quality not applied".into()
        } else {
            ", unchanged".into()
        };
    } else if target.is_lossy() {
        let quality = args.quality.unwrap_or(DEFAULT_JPEG_QUALITY);
        if !source_is_lossy(&obj, &source_ts) && !args.allow_lossy {
            bail!(
                "{input}: {} is lossy and this image is not; give --allow-lossy to accept \
                 the loss (the copy gets a new SOP Instance UID), or choose a lossless \
                 syntax (rle, jpeg-ls, j2k)",
                transfer_syntax_name(target.uid)
            );
        }
        let (lossy, new_uid) = to_jpeg_baseline(&mut obj, quality)
            .map_err(|e| anyhow!("{input}: {}", with_hint(e, target)))?;
        note = format!(", lossy {lossy}, new SOP Instance UID {new_uid}");
    } else {
        obj = pixels::transcode_object(obj, target.uid)
            .map_err(|e| anyhow!("{input}: {}", with_hint(e, target)))?;
    }
    pixels::drop_group_lengths(&mut obj);
    obj.update_meta(|meta| {
        meta.implementation_class_uid = dicom_object::IMPLEMENTATION_CLASS_UID.to_string();
        meta.implementation_version_name = Some(dicom_object::IMPLEMENTATION_VERSION_NAME.into());
    });

    let mut bytes = Vec::with_capacity(usize::try_from(input_len).unwrap_or(0));
    obj.write_all(&mut bytes).with_context(|| {
        format!(
            "{}: cannot encode the data set in {}",
            args.output.display(),
            transfer_syntax_name(target.uid)
        )
    })?;
    drop(obj);
    write_output(&args.output, &bytes)?;
    println!(
        "{input} ({}, {input_len} bytes) -> {} ({}, {} bytes{note})",
        transfer_syntax_name(&source_ts),
        args.output.display(),
        transfer_syntax_name(target.uid),
        bytes.len(),
    );
    Ok(ExitCode::SUCCESS)
}

/// Lossy by its transfer syntax, or marked so (Lossy Image Compression "01",
/// PS3.3 C.7.6.1.1.5).
fn source_is_lossy(obj: &InMemDicomObject, ts: &str) -> bool {
    pixels::is_lossy(ts) || text(obj, tags::LOSSY_IMAGE_COMPRESSION) == "01"
}

/// Bits Allocated, when readable.
fn bits_allocated(obj: &InMemDicomObject) -> Option<u16> {
    obj.element_opt(tags::BITS_ALLOCATED)
        .ok()
        .flatten()
        .and_then(|e| e.to_int::<u16>().ok())
}

/// The error text, with what to do instead where there is a better way.
fn with_hint(e: TranscodeError, target: Syntax) -> String {
    let hint = match &e {
        TranscodeError::Encode(EncodeError::Unsupported { .. }) if target.is_lossy() => {
            "; for a JPEG picture of this image use `renkei render IN OUT.jpg`"
        }
        TranscodeError::Encode(EncodeError::Unsupported { .. })
        | TranscodeError::Encode(EncodeError::BitsAboveStored { .. }) => {
            "; explicit keeps any image exactly"
        }
        _ => "",
    };
    format!("{e}{hint}")
}

/// Decodes every frame and encodes it as baseline JPEG at `quality`, then marks
/// the object as a new, derived, lossy instance the way DCMTK's dcmcjpeg does
/// by default: new SOP Instance UID, Image Type DERIVED, the original in the
/// Source Image Sequence, a Derivation Description; the Lossy Image
/// Compression attributes come from the encoder. Returns the description of
/// the loss and the new UID.
fn to_jpeg_baseline(
    obj: &mut FileDicomObject<InMemDicomObject>,
    quality: u8,
) -> Result<(String, String), TranscodeError> {
    let lossy = pixels::reencode_pixels(obj, Target::JpegBaseline { quality })?;
    let ratio = lossy.as_ref().map_or(0.0, |l| l.ratio);
    let description = format!(
        "Lossy compression with JPEG baseline, quality {quality}, compression ratio {ratio:.2}"
    );
    let new_uid = crate::synth::new_uid(&mut rand::rng());
    derive_instance(obj, &new_uid, &description);
    Ok((format!("ratio {ratio:.1}:1"), new_uid))
}

/// A string attribute, trimmed; empty when absent.
fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .unwrap_or_default()
}

/// Makes `obj` a new instance derived from what it was (PS3.3 C.7.6.1.1.5:
/// lossy compression creates a new image; C.7.6.1.1.3, C.7.6.1.1.2).
fn derive_instance(obj: &mut FileDicomObject<InMemDicomObject>, new_uid: &str, description: &str) {
    let old_uid = text(obj, tags::SOP_INSTANCE_UID);
    let sop_class = text(obj, tags::SOP_CLASS_UID);

    // Image Type value 1 becomes DERIVED; when absent (Type 3 in the General Image
    // module) the copy says DERIVED\SECONDARY, as values 1 and 2 go together
    let mut image_type: Vec<String> = obj
        .element_opt(tags::IMAGE_TYPE)
        .ok()
        .flatten()
        .and_then(|e| e.value().to_multi_str().ok().map(|v| v.to_vec()))
        .unwrap_or_default();
    match image_type.first_mut() {
        Some(first) => *first = "DERIVED".into(),
        None => image_type = vec!["DERIVED".into(), "SECONDARY".into()],
    }
    obj.put(DataElement::new(
        tags::IMAGE_TYPE,
        VR::CS,
        PrimitiveValue::Strs(image_type.into()),
    ));

    if !old_uid.is_empty() {
        let mut items: Vec<InMemDicomObject> = obj
            .element_opt(tags::SOURCE_IMAGE_SEQUENCE)
            .ok()
            .flatten()
            .and_then(|e| e.items().map(<[InMemDicomObject]>::to_vec))
            .unwrap_or_default();
        items.push(InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::REFERENCED_SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from(sop_class),
            ),
            DataElement::new(
                tags::REFERENCED_SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(old_uid),
            ),
        ]));
        obj.put(DataElement::new(
            tags::SOURCE_IMAGE_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(items),
        ));
    }

    // ST holds at most 1024 characters
    let previous = text(obj, tags::DERIVATION_DESCRIPTION);
    let mut derivation = if previous.is_empty() {
        description.to_string()
    } else {
        format!("{previous}; {description}")
    };
    if derivation.len() > 1024 {
        derivation = description.to_string();
    }
    obj.put(DataElement::new(
        tags::DERIVATION_DESCRIPTION,
        VR::ST,
        PrimitiveValue::from(derivation),
    ));

    obj.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(new_uid),
    ));
    obj.update_meta(|meta| meta.media_storage_sop_instance_uid = new_uid.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_and_uids() {
        let uid = |s: &str| parse_syntax(s).map(|t| t.uid);
        assert_eq!(uid("explicit"), Ok("1.2.840.10008.1.2.1"));
        assert_eq!(uid("Implicit"), Ok("1.2.840.10008.1.2"));
        assert_eq!(uid("jpegls"), Ok("1.2.840.10008.1.2.4.80"));
        assert_eq!(uid("jpeg2000"), Ok("1.2.840.10008.1.2.4.90"));
        assert_eq!(uid("1.2.840.10008.1.2.5"), Ok("1.2.840.10008.1.2.5"));
        assert_eq!(uid("jpeg"), Ok("1.2.840.10008.1.2.4.50"));
        assert!(uid("1.2.840.10008.1.2.4.70").is_err());
        assert!(uid("png").is_err());
    }

    #[test]
    fn only_jpeg_is_lossy() {
        for t in SYNTAXES {
            assert_eq!(t.is_lossy(), t.name == "jpeg", "{}", t.name);
            assert_eq!(
                t.is_native(),
                ["explicit", "implicit", "deflate"].contains(&t.name),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn derived_instance_points_to_the_original() {
        let mut obj = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.2"),
            ),
            DataElement::new(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from("1.2.3"),
            ),
            DataElement::new(
                tags::IMAGE_TYPE,
                VR::CS,
                PrimitiveValue::Strs(["ORIGINAL".to_string(), "PRIMARY".to_string()].into()),
            ),
        ])
        .with_meta(
            dicom_object::FileMetaTableBuilder::new()
                .transfer_syntax(pixels::EXPLICIT_LE)
                .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2"),
        )
        .expect("meta");
        derive_instance(&mut obj, "2.25.42", "lossy");
        assert_eq!(text(&obj, tags::SOP_INSTANCE_UID), "2.25.42");
        assert_eq!(obj.meta().media_storage_sop_instance_uid(), "2.25.42");
        assert_eq!(text(&obj, tags::IMAGE_TYPE), "DERIVED\\PRIMARY");
        let items = obj
            .element_opt(tags::SOURCE_IMAGE_SEQUENCE)
            .ok()
            .flatten()
            .and_then(|e| e.items().map(<[InMemDicomObject]>::to_vec))
            .unwrap_or_default();
        assert_eq!(items.len(), 1);
        assert_eq!(text(&items[0], tags::REFERENCED_SOP_INSTANCE_UID), "1.2.3");
        assert_eq!(text(&obj, tags::DERIVATION_DESCRIPTION), "lossy");

        // a second lossy step keeps the first source and adds the new one
        derive_instance(&mut obj, "2.25.43", "again");
        assert_eq!(text(&obj, tags::DERIVATION_DESCRIPTION), "lossy; again");
        let items = obj
            .element_opt(tags::SOURCE_IMAGE_SEQUENCE)
            .ok()
            .flatten()
            .and_then(|e| e.items().map(<[InMemDicomObject]>::to_vec))
            .unwrap_or_default();
        assert_eq!(items.len(), 2);
        assert_eq!(
            text(&items[1], tags::REFERENCED_SOP_INSTANCE_UID),
            "2.25.42"
        );
    }
}
