//! C-GET and C-MOVE driven by pynetdicom, a peer we did not write: instances come back
//! byte-identical in the syntax they are stored in, re-encoded (pixel data unchanged) for a
//! requester that offers only Implicit VR LE, over a new association to a pynetdicom
//! Storage SCP for C-MOVE (with the Move Originator), with the counts of every pending
//! response; refused and impossible sub-operations are counted as failed, an unknown
//! destination is 0xA801 and a C-CANCEL ends a retrieve with 0xFE00.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use dicom_dictionary_std::tags;

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";

/// A corpus file stored in the node, with the keys the tests retrieve it by.
#[derive(Debug)]
struct Original {
    path: PathBuf,
    sop: String,
    class: String,
    series: String,
    study: String,
    /// Empty when the file has none.
    patient: String,
    ts: String,
}

/// Store the valid uncompressed corpus (one file per SOP Instance UID), each file in its
/// own syntax and byte for byte (`renkei store`), and check the node counted every one.
fn store_corpus(node: &Node) -> Vec<Original> {
    let files = uncompressed_corpus();
    assert!(files.len() >= 20, "corpus too small: {files:?}");
    renkei_store(node, &files);
    assert_eq!(
        node.statistics()["instances"].as_u64(),
        Some(files.len() as u64),
        "every stored file is one instance"
    );
    files
        .into_iter()
        .map(|path| Original {
            sop: file_attr(&path, tags::SOP_INSTANCE_UID),
            class: file_attr(&path, tags::SOP_CLASS_UID),
            series: file_attr(&path, tags::SERIES_INSTANCE_UID),
            study: file_attr(&path, tags::STUDY_INSTANCE_UID),
            patient: file_attr_opt(&path, tags::PATIENT_ID).unwrap_or_default(),
            ts: file_transfer_syntax(&path),
            path,
        })
        .collect()
}

/// `--sop-class` options for the classes of `want` (the C-GET requester takes the SCP role
/// for those).
fn class_options(want: &[&Original]) -> Vec<String> {
    let classes: BTreeSet<&str> = want.iter().map(|o| o.class.as_str()).collect();
    classes
        .into_iter()
        .flat_map(|c| ["--sop-class".to_string(), c.to_string()])
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The originals by the value of `key`.
fn group(all: &[Original], key: impl Fn(&Original) -> &str) -> BTreeMap<String, Vec<&Original>> {
    let mut m: BTreeMap<String, Vec<&Original>> = BTreeMap::new();
    for o in all {
        m.entry(key(o).to_string()).or_default().push(o);
    }
    m
}

/// A retrieve of `total` instances that all succeeded: final Success, the counts, and one
/// pending response after each sub-operation but the last, counting up.
fn assert_all_completed(r: &PyRetrieveResult, total: usize, what: &str) {
    let n = u16::try_from(total).expect("fewer than 65536 instances");
    assert_eq!(r.final_status, Some(0), "{what}: {r:?}");
    assert_eq!(
        (r.completed, r.failed, r.warning),
        (Some(n), Some(0), Some(0)),
        "{what}: final counts"
    );
    assert!(r.failed_uids.is_empty(), "{what}: {r:?}");
    let expected: Vec<[Option<u16>; 4]> = (1..n)
        .map(|done| [Some(n - done), Some(done), Some(0), Some(0)])
        .collect();
    assert_eq!(r.pending, expected, "{what}: pending responses' counts");
}

/// Every instance of `want` arrived exactly once (and nothing else), in the syntax it is
/// stored in, its data set byte for byte the original's (pixel data included).
fn assert_received_identical(r: &PyRetrieveResult, dir: &Path, want: &[&Original], what: &str) {
    let mut got: Vec<&str> = r.received.iter().map(|x| x.sop.as_str()).collect();
    let mut expected: Vec<&str> = want.iter().map(|o| o.sop.as_str()).collect();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(got, expected, "{what}: received instances");
    let files = files_in(dir);
    assert_eq!(files.len(), want.len(), "{what}: files written: {files:?}");
    for o in want {
        let back = counterpart(&files, &o.path);
        let rx = r
            .received
            .iter()
            .find(|x| x.sop == o.sop)
            .expect("received");
        assert_eq!(rx.class, o.class, "{what}: {}", o.path.display());
        assert_eq!(
            rx.ts,
            o.ts,
            "{what}: {} not sent as stored",
            o.path.display()
        );
        assert_eq!(file_transfer_syntax(back), o.ts);
        assert!(
            dataset_bytes(back) == dataset_bytes(&o.path),
            "{what}: data set of {} differs from the original",
            o.path.display()
        );
        assert!(
            pixel_data(back) == pixel_data(&o.path),
            "{what}: pixel data of {} differs",
            o.path.display()
        );
    }
}

/// The top-level tags of a file's data set, without group lengths (which a writer may drop).
fn tags_of(path: &Path) -> BTreeSet<dicom_core::Tag> {
    let obj = dicom_object::open_file(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    obj.iter()
        .map(|e| e.header().tag)
        .filter(|t| t.element() != 0x0000)
        .collect()
}

/// Every instance of `want` arrived once in `ts`: as stored (byte-identical) when that is
/// its syntax, else re-encoded with the same elements and the same pixel data.
fn assert_received_in(r: &PyRetrieveResult, dir: &Path, want: &[&Original], ts: &str, what: &str) {
    let files = files_in(dir);
    assert_eq!(files.len(), want.len(), "{what}: files written: {files:?}");
    assert_eq!(r.received.len(), want.len(), "{what}: {r:?}");
    for o in want {
        let back = counterpart(&files, &o.path);
        let rx = r
            .received
            .iter()
            .find(|x| x.sop == o.sop)
            .expect("received");
        assert_eq!(rx.ts, ts, "{what}: {}", o.path.display());
        assert_eq!(file_transfer_syntax(back), ts, "{}", o.path.display());
        if o.ts == ts {
            assert!(
                dataset_bytes(back) == dataset_bytes(&o.path),
                "{what}: data set of {} differs from the original",
                o.path.display()
            );
        }
        assert_eq!(
            tags_of(back),
            tags_of(&o.path),
            "{what}: elements of {} ({} -> {ts})",
            o.path.display(),
            o.ts
        );
        for tag in [
            tags::SOP_INSTANCE_UID,
            tags::STUDY_INSTANCE_UID,
            tags::SOP_CLASS_UID,
        ] {
            assert_eq!(file_attr(back, tag), file_attr(&o.path, tag));
        }
        assert!(
            pixel_data(back) == pixel_data(&o.path),
            "{what}: pixel data of {} differs after re-encoding {} -> {ts}",
            o.path.display(),
            o.ts
        );
    }
}

#[test]
fn c_get_study_and_patient_root_byte_identical() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&tmp.path().join("data"));
    let all = store_corpus(&node);

    // Study Root, STUDY level: every study of the corpus, one C-GET each
    let studies = group(&all, |o| &o.study);
    assert!(studies.len() >= 15, "{} studies", studies.len());
    for (i, (study, want)) in studies.iter().enumerate() {
        let dir = tmp.path().join(format!("study-{i}"));
        let opts = class_options(want);
        let r = pynetdicom_get(
            &node,
            "study",
            "STUDY",
            &dir,
            &strs(&opts),
            &[&format!("StudyInstanceUID={study}")],
        );
        let what = format!("study {study}");
        assert_all_completed(&r, want.len(), &what);
        assert_received_identical(&r, &dir, want, &what);
    }

    // Patient Root, PATIENT level: every patient with an ID
    let patients = group(&all, |o| &o.patient);
    let mut retrieved = 0;
    for (i, (pid, want)) in patients.iter().filter(|(p, _)| !p.is_empty()).enumerate() {
        let dir = tmp.path().join(format!("patient-{i}"));
        let opts = class_options(want);
        let r = pynetdicom_get(
            &node,
            "patient",
            "PATIENT",
            &dir,
            &strs(&opts),
            &[&format!("PatientID={pid}")],
        );
        let what = format!("patient {pid}");
        assert_all_completed(&r, want.len(), &what);
        assert_received_identical(&r, &dir, want, &what);
        retrieved += want.len();
    }
    assert!(
        retrieved >= 15,
        "only {retrieved} instances have a Patient ID"
    );

    // Patient Root at STUDY level, and Study Root at IMAGE level, for a study of several
    // instances
    let (study, want) = studies
        .iter()
        .find(|(_, w)| w.len() > 1 && !w[0].patient.is_empty())
        .expect("a study of several instances with a Patient ID");
    let dir = tmp.path().join("patient-root-study");
    let r = pynetdicom_get(
        &node,
        "patient",
        "STUDY",
        &dir,
        &strs(&class_options(want)),
        &[
            &format!("PatientID={}", want[0].patient),
            &format!("StudyInstanceUID={study}"),
        ],
    );
    assert_all_completed(&r, want.len(), "patient root, study level");
    assert_received_identical(&r, &dir, want, "patient root, study level");
    let one = want[1];
    let dir = tmp.path().join("image-level");
    let r = pynetdicom_get(
        &node,
        "study",
        "IMAGE",
        &dir,
        &strs(&class_options(&[one])),
        &[
            &format!("StudyInstanceUID={}", one.study),
            &format!("SeriesInstanceUID={}", one.series),
            &format!("SOPInstanceUID={}", one.sop),
        ],
    );
    assert_all_completed(&r, 1, "image level");
    assert_received_identical(&r, &dir, &[one], "image level");
    assert!(node.echo());
}

#[test]
fn c_get_implicit_only_reencodes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&tmp.path().join("data"));
    let all = store_corpus(&node);
    let want: Vec<&Original> = all.iter().collect();
    // stored in all three uncompressed syntaxes, so every conversion to Implicit VR LE is
    // exercised (and Implicit VR LE itself goes as stored)
    let stored: BTreeSet<&str> = all.iter().map(|o| o.ts.as_str()).collect();
    assert_eq!(stored.len(), 3, "{stored:?}");

    // every study at once (a list of UIDs), the requester offering Implicit VR LE only
    let studies: BTreeSet<&str> = all.iter().map(|o| o.study.as_str()).collect();
    let list = studies.into_iter().collect::<Vec<_>>().join("\\");
    let mut opts = class_options(&want);
    opts.extend(["--ts".to_string(), IMPLICIT_LE.to_string()]);
    let dir = tmp.path().join("implicit");
    let r = pynetdicom_get(
        &node,
        "study",
        "STUDY",
        &dir,
        &strs(&opts),
        &[&format!("StudyInstanceUID={list}")],
    );
    assert_all_completed(&r, all.len(), "implicit only");
    assert_received_in(&r, &dir, &want, IMPLICIT_LE, "implicit only");
    assert!(node.echo());
}

#[test]
fn c_get_failed_sub_operations() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&tmp.path().join("data"));
    let all = store_corpus(&node);
    let studies = group(&all, |o| &o.study);
    let (study, want) = studies
        .iter()
        .filter(|(_, w)| w.iter().all(|o| o.class != CT_IMAGE_STORAGE))
        .max_by_key(|(_, w)| w.len())
        .expect("a study without CT");
    assert!(want.len() > 1, "{want:?}");
    let n = u16::try_from(want.len()).expect("small study");
    let sops: BTreeSet<&str> = want.iter().map(|o| o.sop.as_str()).collect();
    let key = format!("StudyInstanceUID={study}");

    // the requester refuses every instance (0xA700): all failed, listed, nothing completed
    let mut opts = class_options(want);
    opts.extend(["--store-status".to_string(), "0xA700".to_string()]);
    let dir = tmp.path().join("refused");
    let r = pynetdicom_get(&node, "study", "STUDY", &dir, &strs(&opts), &[&key]);
    assert_eq!(r.final_status, Some(0xA702), "{r:?}");
    assert_eq!(
        (r.completed, r.failed, r.warning),
        (Some(0), Some(n), Some(0))
    );
    assert_eq!(
        r.failed_uids
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        sops,
        "Failed SOP Instance UID List"
    );
    assert_eq!(r.received.len(), want.len(), "each was offered once: {r:?}");
    let pending_failed: Vec<Option<u16>> = r.pending.iter().map(|p| p[2]).collect();
    assert_eq!(pending_failed, (1..n).map(Some).collect::<Vec<_>>());

    // the requester takes the SCP role for CT only: nothing of this study can be sent
    let dir = tmp.path().join("no-context");
    let r = pynetdicom_get(
        &node,
        "study",
        "STUDY",
        &dir,
        &["--sop-class", CT_IMAGE_STORAGE],
        &[&key],
    );
    assert_eq!(r.final_status, Some(0xA702), "{r:?}");
    assert_eq!((r.completed, r.failed), (Some(0), Some(n)));
    assert!(r.received.is_empty(), "{r:?}");
    assert_eq!(
        r.failed_uids
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        sops
    );

    // a retrieve that does not name what it wants
    let dir = tmp.path().join("everything");
    let r = pynetdicom_get(
        &node,
        "study",
        "STUDY",
        &dir,
        &["--sop-class", CT_IMAGE_STORAGE],
        &["StudyInstanceUID="],
    );
    assert_eq!(r.final_status, Some(0xA900), "{r:?}");
    assert!(r.received.is_empty());

    // and the node still serves a normal C-GET of the study
    let dir = tmp.path().join("after");
    let r = pynetdicom_get(
        &node,
        "study",
        "STUDY",
        &dir,
        &strs(&class_options(want)),
        &[&key],
    );
    assert_all_completed(&r, want.len(), "after failures");
    assert_received_identical(&r, &dir, want, "after failures");
}

#[test]
fn c_move_to_pynetdicom_scp() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let scp_port = free_port();
    let remote = format!("PYSTORE@127.0.0.1:{scp_port}");
    let node = Node::start_with(&tmp.path().join("data"), &["--remote", &remote]);
    let all = store_corpus(&node);
    let want: Vec<&Original> = all.iter().collect();
    let dest = ("PYSTORE", scp_port);

    // every study in one C-MOVE; the SCP takes Explicit VR LE first, so instances stored in
    // it arrive byte-identical and the others re-encoded
    let studies: BTreeSet<&str> = all.iter().map(|o| o.study.as_str()).collect();
    let list = studies.into_iter().collect::<Vec<_>>().join("\\");
    let dir = tmp.path().join("all");
    let r = pynetdicom_move(
        &node,
        "study",
        "STUDY",
        dest,
        &dir,
        &[],
        &[&format!("StudyInstanceUID={list}")],
    );
    assert_all_completed(&r, all.len(), "move of every study");
    assert_received_in(&r, &dir, &want, EXPLICIT_LE, "move of every study");
    for rx in &r.received {
        // the C-STOREs name who asked for them (PS3.7 9.1.1.1)
        assert_eq!(rx.originator_ae.as_deref(), Some("PYMOVESCU"), "{rx:?}");
        assert_eq!(rx.originator_id, Some(1), "{rx:?}");
    }

    // Patient Root, PATIENT level, to an SCP that takes Implicit VR LE only: a patient whose
    // instances are stored in it gets them byte-identical
    let patients = group(&all, |o| &o.patient);
    let (pid, want) = patients
        .iter()
        .find(|(p, w)| !p.is_empty() && w.iter().all(|o| o.ts == IMPLICIT_LE))
        .expect("a patient stored in Implicit VR LE");
    let dir = tmp.path().join("patient");
    let r = pynetdicom_move(
        &node,
        "patient",
        "PATIENT",
        dest,
        &dir,
        &["--scp-ts", IMPLICIT_LE],
        &[&format!("PatientID={pid}")],
    );
    assert_all_completed(&r, want.len(), "patient move");
    assert_received_identical(&r, &dir, want, "patient move");

    // a destination the node does not know: 0xA801, nothing sent
    let study = &all[0].study;
    let dir = tmp.path().join("unknown");
    let r = pynetdicom_move(
        &node,
        "study",
        "STUDY",
        dest,
        &dir,
        &["--move-aet", "NOWHERE"],
        &[&format!("StudyInstanceUID={study}")],
    );
    assert_eq!(r.final_status, Some(0xA801), "{r:?}");
    assert!(r.received.is_empty(), "{r:?}");
    assert!(r.pending.is_empty(), "{r:?}");
    assert!(files_in(&dir).is_empty());

    // a known destination that does not answer: the move fails, the node carries on
    let dead_port = free_port();
    let body = format!(r#"{{"host":"127.0.0.1","port":{dead_port}}}"#);
    let (st, text) = node
        .http("PUT", "/api/remotes/DEAD", Some(&body))
        .expect("PUT /api/remotes/DEAD");
    assert_eq!(st, 201, "{text}");
    let dir = tmp.path().join("dead");
    let r = pynetdicom_move(
        &node,
        "study",
        "STUDY",
        dest,
        &dir,
        &["--move-aet", "DEAD"],
        &[&format!("StudyInstanceUID={study}")],
    );
    assert_eq!(r.final_status, Some(0xA702), "{r:?}");
    assert!(r.received.is_empty(), "{r:?}");
    assert!(node.echo());
}

#[test]
fn c_move_and_c_get_cancel() {
    // one patient with many small instances, so that a C-CANCEL sent on the first pending
    // response lands long before the node could have sent them all
    const N: usize = 300;
    let tmp = tempfile::tempdir().expect("temp dir");
    let files = synth(&tmp.path().join("synth"), N, N, 32);
    let scp_port = free_port();
    let remote = format!("PYSTORE@127.0.0.1:{scp_port}");
    let node = Node::start_with(&tmp.path().join("data"), &["--remote", &remote]);
    let out = storescu(&node, &files);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(node.statistics()["instances"].as_u64(), Some(N as u64));
    let pid = file_attr(&files[0], tags::PATIENT_ID);
    let key = format!("PatientID={pid}");
    let dest = ("PYSTORE", scp_port);
    let n = N as u16;

    let check_cancelled = |r: &PyRetrieveResult, dir: &Path, what: &str| {
        assert!(r.cancel_sent, "{what}: {r:?}");
        assert_eq!(r.final_status, Some(0xFE00), "{what}: {r:?}");
        let completed = r.completed.expect("completed count");
        assert!(
            (1..n).contains(&completed),
            "{what}: {completed} of {N} completed after the cancel"
        );
        assert_eq!((r.failed, r.warning), (Some(0), Some(0)), "{what}: {r:?}");
        // pending responses counted up until the cancel was seen, one per sub-operation
        assert!(!r.pending.is_empty(), "{what}: {r:?}");
        assert!(r.pending.len() <= usize::from(completed), "{what}: {r:?}");
        for (k, p) in (1..).zip(&r.pending) {
            assert_eq!(p, &[Some(n - k), Some(k), Some(0), Some(0)], "{what}");
        }
        // every sub-operation counted as completed reached the receiver, and no other
        assert_eq!(r.received.len(), usize::from(completed), "{what}");
        assert_eq!(files_in(dir).len(), usize::from(completed), "{what}");
        eprintln!("{what}: cancelled after {completed} of {N}");
    };

    let dir = tmp.path().join("move-cancel");
    let r = pynetdicom_move(
        &node,
        "patient",
        "PATIENT",
        dest,
        &dir,
        &["--cancel-after-first"],
        &[&key],
    );
    check_cancelled(&r, &dir, "C-MOVE");

    let dir = tmp.path().join("get-cancel");
    let class = file_attr(&files[0], tags::SOP_CLASS_UID);
    let r = pynetdicom_get(
        &node,
        "patient",
        "PATIENT",
        &dir,
        &[
            "--sop-class",
            &class,
            "--ts",
            EXPLICIT_LE,
            "--cancel-after-first",
        ],
        &[&key],
    );
    check_cancelled(&r, &dir, "C-GET");

    // the node carries on: the whole patient moves without a cancel
    let dir = tmp.path().join("move-all");
    let r = pynetdicom_move(&node, "patient", "PATIENT", dest, &dir, &[], &[&key]);
    assert_all_completed(&r, N, "move after cancel");
    let got = files_in(&dir);
    assert_eq!(got.len(), N);
    for f in files.iter().step_by(37) {
        let back = counterpart(&got, f);
        assert!(dataset_bytes(back) == dataset_bytes(f), "{}", f.display());
    }
    assert!(node.echo());
}

#[test]
fn c_get_without_role_selection_sends_nothing() {
    // a requester that proposes storage contexts without SCP/SCU role selection stays their
    // SCU (PS3.7 D.3.3.4): the node, as association acceptor, is then only their SCP and
    // must not send it C-STOREs; the sub-operations fail instead
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = Node::start(&tmp.path().join("data"));
    let all = store_corpus(&node);
    let want: Vec<&Original> = all.iter().filter(|o| o.study == all[0].study).collect();
    let n = u16::try_from(want.len()).expect("small study");
    let mut opts = class_options(&want);
    opts.push("--no-roles".to_string());
    let dir = tmp.path().join("no-roles");
    let r = pynetdicom_get(
        &node,
        "study",
        "STUDY",
        &dir,
        &strs(&opts),
        &[&format!("StudyInstanceUID={}", all[0].study)],
    );
    assert_eq!(r.final_status, Some(0xA702), "{r:?}");
    assert_eq!((r.completed, r.failed), (Some(0), Some(n)), "{r:?}");
    assert!(r.received.is_empty(), "{r:?}");
    assert_eq!(
        r.store_requests, 0,
        "C-STORE-RQs sent to a requester that is not SCP"
    );
}
