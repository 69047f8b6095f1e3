//! STOW-RS (PS3.18 10.5): the valid corpus stored by Python dicomweb-client and found again
//! by C-FIND, every stored data set byte for byte what was sent; broken parts reported in
//! FailedSOPSequence while the others are stored (202); an instance of another study
//! refused under /studies/{study}; 409, 415 and 400 answers; `pacs-node check` clean.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dicom_dictionary_std::tags;
use serde_json::Value;

use common::*;

const REFERENCED: &str = "00081199";
const FAILED: &str = "00081198";
const SOP_CLASS: &str = "00081150";
const SOP_INSTANCE: &str = "00081155";
const RETRIEVE_URL: &str = "00081190";
const FAILURE_REASON: &str = "00081197";
const WARNING_REASON: &str = "00081196";

/// The answer of `stow_dicomweb_client.py`.
#[derive(Debug, serde::Deserialize)]
struct ClientAnswer {
    status: u16,
    content_type: Option<String>,
    response: Value,
    parsed_referenced: Option<usize>,
    parsed_failed: Option<usize>,
    sent: Vec<PathBuf>,
}

/// Send `files` in one STOW-RS request with dicomweb-client.
fn client_store(
    node: &Node,
    sent_dir: &Path,
    study: Option<&str>,
    files: &[PathBuf],
) -> ClientAnswer {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/stow_dicomweb_client.py");
    let mut cmd = Command::new(peer_python());
    cmd.arg(script)
        .arg(format!("http://127.0.0.1:{}/dicom-web", node.http_port))
        .arg(sent_dir);
    if let Some(study) = study {
        cmd.args(["--study", study]);
    }
    let out = cmd.args(files).output().unwrap();
    assert!(
        out.status.success(),
        "stow_dicomweb_client.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A raw HTTP/1.1 POST: (status, headers lower-cased, body).
fn post(
    node: &Node,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // the node may answer (and close) before reading a refused body whole
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

const BOUNDARY: &str = "renkei-test-boundary-7d1f";

/// A multipart/related body of `application/dicom` parts.
fn multipart(parts: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(p);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn dicom_multipart() -> String {
    format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}")
}

/// POST Part-10 files as one STOW-RS request: (status, answer, headers).
fn stow_raw(node: &Node, path: &str, parts: &[&[u8]]) -> (u16, Value, Vec<(String, String)>) {
    let ct = dicom_multipart();
    let (status, headers, body) = post(
        node,
        path,
        &[("Content-Type", &ct), ("Accept", "application/dicom+json")],
        &multipart(parts),
    );
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{status} {e}: {body}"));
    (status, v, headers)
}

fn items<'a>(answer: &'a Value, key: &str) -> Vec<&'a Value> {
    answer
        .get(key)
        .and_then(|s| s["Value"].as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn first_str(item: &Value, key: &str) -> String {
    item.get(key)
        .and_then(|a| a.get("Value"))
        .and_then(|v| v.get(0))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

fn first_u16(item: &Value, key: &str) -> Option<u16> {
    item.get(key)?
        .get("Value")?
        .get(0)?
        .as_u64()
        .map(|v| v as u16)
}

/// The SOP Instance UIDs found by C-FIND (pynetdicom) at IMAGE level in one series.
fn found_instances(node: &Node, study: &str, series: &str) -> BTreeSet<String> {
    let r = pynetdicom_find(
        node,
        "study",
        "IMAGE",
        &[
            &format!("StudyInstanceUID={study}"),
            &format!("SeriesInstanceUID={series}"),
            "SOPInstanceUID=",
        ],
    );
    assert_eq!(r.final_status, Some(0), "{r:?}");
    r.matches
        .iter()
        .map(|m| m["SOPInstanceUID"].clone())
        .collect()
}

/// The Media Storage SOP Instance UID of a file's meta group.
fn meta_instance(path: &Path) -> String {
    dicom_object::OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .unwrap()
        .meta()
        .media_storage_sop_instance_uid()
        .to_string()
}

/// After the node stopped: each file's data set is stored byte for byte under its SOP
/// Instance UID.
fn assert_stored_as_sent(node: &Node, files: &[&Path]) {
    let store = renkei_store::Store::open_read_only(&node.data_dir).unwrap();
    for f in files {
        let uid = file_attr(f, tags::SOP_INSTANCE_UID);
        let rec = store
            .instance(&uid)
            .unwrap()
            .unwrap_or_else(|| panic!("{} ({uid}) not stored", f.display()));
        assert_eq!(
            dataset_bytes(&store.blob_path(&rec.blob_hash)),
            dataset_bytes(f),
            "{} stored other bytes than were sent",
            f.display()
        );
    }
}

#[test]
fn dicomweb_client_stores_the_valid_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let sent_dir = tmp.path().join("sent");
    std::fs::create_dir(&sent_dir).unwrap();
    let mut node = Node::start(&tmp.path().join("data"));
    let files = corpus_files("valid");
    // more than axum's default 2 MB body limit: the body is streamed, not collected
    let total: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    assert!(total > 8 << 20, "{total}");

    let a = client_store(&node, &sent_dir, None, &files);
    assert_eq!(a.sent.len(), files.len());
    assert_eq!(a.content_type.as_deref(), Some("application/dicom+json"));
    let referenced = items(&a.response, REFERENCED);
    assert!(items(&a.response, FAILED).is_empty(), "{}", a.response);
    assert_eq!(referenced.len(), files.len(), "{}", a.response);
    assert_eq!(a.parsed_referenced, Some(files.len()));
    assert_eq!(a.parsed_failed, Some(0));
    // RTImageStorage, rtdose and rtplan have file meta groups naming other instances than
    // their data sets: stored under the data sets' UIDs with a warning (0xB000), so the
    // answer is 202 (PS3.18 10.5.3.1)
    let meta_differs: Vec<bool> = a
        .sent
        .iter()
        .map(|f| meta_instance(f) != file_attr(f, tags::SOP_INSTANCE_UID))
        .collect();
    assert_eq!(meta_differs.iter().filter(|&&d| d).count(), 3);
    for (item, differs) in referenced.iter().zip(&meta_differs) {
        let expected = differs.then_some(0xB000);
        assert_eq!(first_u16(item, WARNING_REASON), expected, "{item}");
    }
    assert_eq!(a.status, 202);

    // per part: the stored UIDs and a RetrieveURL naming study, series and instance
    let mut last_sent: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut series_of: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (item, sent) in referenced.iter().zip(&a.sent) {
        let sop = file_attr(sent, tags::SOP_INSTANCE_UID);
        let study = file_attr(sent, tags::STUDY_INSTANCE_UID);
        let series = file_attr(sent, tags::SERIES_INSTANCE_UID);
        assert_eq!(first_str(item, SOP_INSTANCE), sop);
        assert_eq!(
            first_str(item, SOP_CLASS),
            file_attr(sent, tags::SOP_CLASS_UID)
        );
        assert_eq!(
            first_str(item, RETRIEVE_URL),
            format!(
                "http://127.0.0.1:{}/dicom-web/studies/{study}/series/{series}/instances/{sop}",
                node.http_port
            )
        );
        last_sent.insert(sop.clone(), sent.clone());
        series_of.entry((study, series)).or_default().insert(sop);
    }
    // the corpus holds several studies: no study-level RetrieveURL
    assert!(a.response.get(RETRIEVE_URL).is_none(), "{}", a.response);

    // C-FIND finds every instance in its series
    for ((study, series), sops) in &series_of {
        assert_eq!(
            &found_instances(&node, study, series),
            sops,
            "{study}/{series}"
        );
    }
    assert_eq!(
        node.statistics()["instances"].as_u64(),
        Some(last_sent.len() as u64)
    );
    node.stop();
    let sent: Vec<&Path> = last_sent.values().map(PathBuf::as_path).collect();
    assert_stored_as_sent(&node, &sent);
    node.assert_check_clean();
}

#[test]
fn broken_parts_fail_and_the_others_are_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(&tmp.path().join("data"));
    let good = [corpus("valid/CT_small.dcm"), corpus("valid/MR_small.dcm")];
    let truncated = std::fs::read(corpus("edge/MR_truncated.dcm")).unwrap();
    let ct = std::fs::read(&good[0]).unwrap();
    let mr = std::fs::read(&good[1]).unwrap();
    let not_dicom = b"this is not a DICOM file, but long enough to have a preamble of 128 bytes \
        and then something else than DICM at offset 128..........................."
        .to_vec();
    let (status, answer, headers) = stow_raw(
        &node,
        "/dicom-web/studies",
        &[&ct, &truncated, &mr, &not_dicom],
    );
    assert_eq!(status, 202, "{answer}");
    let referenced = items(&answer, REFERENCED);
    let failed = items(&answer, FAILED);
    assert_eq!(referenced.len(), 2, "{answer}");
    assert_eq!(failed.len(), 2, "{answer}");
    // the truncated file's meta names it; the junk part has no UIDs to give
    assert_eq!(
        first_str(failed[0], SOP_INSTANCE),
        file_attr(&corpus("edge/MR_truncated.dcm"), tags::SOP_INSTANCE_UID)
    );
    assert_eq!(
        first_u16(failed[0], FAILURE_REASON),
        Some(0xC000),
        "{answer}"
    );
    assert_eq!(first_str(failed[1], SOP_INSTANCE), "");
    assert_eq!(
        first_u16(failed[1], FAILURE_REASON),
        Some(0xC000),
        "{answer}"
    );
    // the reasons in words, for people
    let warnings: Vec<&String> = headers
        .iter()
        .filter(|(k, _)| k == "warning")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(warnings.len(), 2, "{headers:?}");
    assert!(warnings[0].contains("part 2"), "{warnings:?}");
    assert!(warnings[1].contains("DICM"), "{warnings:?}");

    // only failures: 409
    let (status, answer, _) = stow_raw(&node, "/dicom-web/studies", &[&truncated]);
    assert_eq!(status, 409, "{answer}");
    assert!(items(&answer, REFERENCED).is_empty());
    assert_eq!(items(&answer, FAILED).len(), 1);

    // the same good files again: already stored, success
    let (status, answer, _) = stow_raw(&node, "/dicom-web/studies", &[&ct, &mr]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(node.statistics()["instances"].as_u64(), Some(2));
    node.stop();
    assert_stored_as_sent(&node, &[&good[0], &good[1]]);
    node.assert_check_clean();
}

#[test]
fn an_instance_of_another_study_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sent_dir = tmp.path().join("sent");
    std::fs::create_dir(&sent_dir).unwrap();
    let mut node = Node::start(&tmp.path().join("data"));
    let ct = corpus("valid/CT_small.dcm");
    let mr = corpus("valid/MR_small.dcm");
    let ct_study = file_attr(&ct, tags::STUDY_INSTANCE_UID);
    assert_ne!(ct_study, file_attr(&mr, tags::STUDY_INSTANCE_UID));

    // dicomweb-client to /studies/{CT's study}: the CT is stored, the MR refused
    let a = client_store(&node, &sent_dir, Some(&ct_study), &[ct.clone(), mr.clone()]);
    assert_eq!(a.status, 202, "{}", a.response);
    let referenced = items(&a.response, REFERENCED);
    let failed = items(&a.response, FAILED);
    assert_eq!(referenced.len(), 1, "{}", a.response);
    assert_eq!(
        first_str(referenced[0], SOP_INSTANCE),
        file_attr(&ct, tags::SOP_INSTANCE_UID)
    );
    assert_eq!(failed.len(), 1, "{}", a.response);
    assert_eq!(
        first_str(failed[0], SOP_INSTANCE),
        file_attr(&mr, tags::SOP_INSTANCE_UID)
    );
    assert_eq!(first_u16(failed[0], FAILURE_REASON), Some(0xA900));
    assert_eq!(
        first_str(&a.response, RETRIEVE_URL),
        first_str(referenced[0], RETRIEVE_URL)
            .split("/series/")
            .next()
            .unwrap(),
        "{}",
        a.response
    );
    // built from the Host header, which dicomweb-client sends without the port for
    // bodies small enough not to be chunked
    assert_eq!(
        first_str(&a.response, RETRIEVE_URL),
        format!("http://127.0.0.1/dicom-web/studies/{ct_study}")
    );

    // only the other study's instance: 409, and nothing of it was stored
    let mr_bytes = std::fs::read(&mr).unwrap();
    let (status, answer, _) = stow_raw(
        &node,
        &format!("/dicom-web/studies/{ct_study}"),
        &[&mr_bytes],
    );
    assert_eq!(status, 409, "{answer}");
    assert_eq!(node.statistics()["instances"].as_u64(), Some(1));
    let found = pynetdicom_find(&node, "study", "STUDY", &["StudyInstanceUID="]);
    assert_eq!(found.matches.len(), 1, "{found:?}");
    assert_eq!(found.matches[0]["StudyInstanceUID"], ct_study);
    node.stop();
    node.assert_check_clean();
}

#[test]
fn bad_requests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"));
    let ct = std::fs::read(corpus("valid/CT_small.dcm")).unwrap();
    let body = multipart(&[&ct]);
    let problem = |(status, _, body): (u16, Vec<(String, String)>, String)| {
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{status} {e}: {body}"));
        (status, v["detail"].as_str().unwrap_or_default().to_string())
    };

    // 415: not multipart/related, or parts that are not application/dicom
    for ct_header in [
        "application/dicom".to_string(),
        format!("multipart/related; type=\"application/dicom+json\"; boundary={BOUNDARY}"),
        format!("multipart/form-data; boundary={BOUNDARY}"),
    ] {
        let (status, detail) = problem(post(
            &node,
            "/dicom-web/studies",
            &[("Content-Type", &ct_header)],
            &body,
        ));
        assert_eq!(status, 415, "{ct_header}: {detail}");
        assert!(detail.contains("application/dicom"), "{detail}");
    }
    let (status, detail) = problem(post(
        &node,
        "/dicom-web/studies",
        &[("Content-Type", "application/dicom+json")],
        b"[{}]",
    ));
    assert_eq!(status, 415, "{detail}");
    assert!(detail.contains("not supported"), "{detail}");

    // 400: no boundary, a body that is not multipart, an empty multipart, a bad study UID
    let (status, _) = problem(post(
        &node,
        "/dicom-web/studies",
        &[(
            "Content-Type",
            "multipart/related; type=\"application/dicom\"",
        )],
        &body,
    ));
    assert_eq!(status, 400);
    let dm = dicom_multipart();
    let (status, detail) = problem(post(
        &node,
        "/dicom-web/studies",
        &[("Content-Type", &dm)],
        b"garbage without any boundary",
    ));
    assert_eq!(status, 400, "{detail}");
    let (status, detail) = problem(post(
        &node,
        "/dicom-web/studies",
        &[("Content-Type", &dm)],
        format!("--{BOUNDARY}--\r\n").as_bytes(),
    ));
    assert_eq!(status, 400, "{detail}");
    // a body cut in the middle of a part (no closing boundary)
    let cut = &body[..body.len() / 2];
    let (status, detail) = problem(post(
        &node,
        "/dicom-web/studies",
        &[("Content-Type", &dm)],
        cut,
    ));
    assert_eq!(status, 400, "{detail}");
    let (status, _) = problem(post(
        &node,
        "/dicom-web/studies/not-a-uid",
        &[("Content-Type", &dm)],
        &body,
    ));
    assert_eq!(status, 400);

    // 406: an answer the node cannot give
    let (status, _) = problem(post(
        &node,
        "/dicom-web/studies",
        &[("Content-Type", &dm), ("Accept", "application/dicom+xml")],
        &body,
    ));
    assert_eq!(status, 406);
    // application/json is accepted
    let (status, headers, _) = post(
        &node,
        "/dicom-web/studies",
        &[("Content-Type", &dm), ("Accept", "application/json")],
        &body,
    );
    assert_eq!(status, 200);
    assert!(
        headers.contains(&("content-type".into(), "application/json".into())),
        "{headers:?}"
    );
    assert_eq!(node.statistics()["instances"].as_u64(), Some(1));
}

/// Peak resident memory of a process (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_large_body_is_streamed() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"));
    let pid = node.child.as_ref().unwrap().id();
    let before = peak_rss_kib(pid);
    // 40 parts of 6 MiB (the same instance: stored once, then "already stored")
    let big = std::fs::read(corpus("valid/RG3_UNCR.dcm")).unwrap();
    let parts: Vec<&[u8]> = (0..40).map(|_| big.as_slice()).collect();
    let (status, answer, _) = stow_raw(&node, "/dicom-web/studies", &parts);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(items(&answer, REFERENCED).len(), 40);
    let grown = peak_rss_kib(pid).saturating_sub(before);
    // a body of 240 MiB: the node holds at most a part's head (1 MiB) and a few buffers
    assert!(grown < 64 * 1024, "peak RSS grew by {grown} KiB");
    assert_eq!(node.statistics()["instances"].as_u64(), Some(1));
}
