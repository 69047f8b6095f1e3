//! STOW-RS (PS3.18 10.5): the valid corpus stored by Python dicomweb-client and found again
//! by C-FIND, every stored data set byte for byte what was sent; broken parts reported in
//! FailedSOPSequence while the others are stored (202); an instance of another study
//! refused under /studies/{study}; 409, 415 and 400 answers; `pacs-node check` clean.
//! Metadata and bulk data (`application/dicom+json`): the corpus read back from one node's
//! WADO-RS and stored on another, equal to the files; failures per instance. Bodies past
//! `max_stow_bytes` get 413. Stored instances reach the metrics and storage compression.

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
    let script = std::env::current_dir()
        .unwrap()
        .join("tests/peers/stow_dicomweb_client.py");
    let mut cmd = Command::new(peer_python());
    cmd.env("RENKEI_TOKEN", node.admin_token())
        .arg(script)
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

/// A raw HTTP/1.1 POST as the node's administrator: (status, headers lower-cased, body).
fn post(
    node: &Node,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\
         Authorization: Bearer {}\r\n",
        body.len(),
        node.admin_token()
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
    stow_body(node, path, &dicom_multipart(), &multipart(parts))
}

/// POST a STOW-RS body of this Content-Type: (status, answer, headers).
fn stow_body(
    node: &Node,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Value, Vec<(String, String)>) {
    let (status, headers, body) = post(
        node,
        path,
        &[
            ("Content-Type", content_type),
            ("Accept", "application/dicom+json"),
        ],
        body,
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
    // every instance counted as C-STORE counts its own
    assert_eq!(node.metric("renkei_cstore_success_total"), 4.0);
    assert_eq!(node.metric("renkei_cstore_duplicate_total"), 2.0);
    assert_eq!(node.metric("renkei_cstore_failure_total"), 3.0);
    assert_eq!(node.metric("renkei_cstore_duration_seconds_count"), 4.0);
    assert!(
        node.metric("renkei_cstore_received_bytes_total") >= (2 * (ct.len() + mr.len())) as f64
    );
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

    // 415: not multipart/related, or parts that are neither application/dicom nor
    // application/dicom+json
    for ct_header in [
        "application/dicom".to_string(),
        format!("multipart/related; type=\"application/dicom+xml\"; boundary={BOUNDARY}"),
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

/// Store `files` with pynetdicom; the file the node holds for each SOP Instance UID
/// (several corpus files share one: the last stored wins).
fn store_distinct(node: &Node, files: &[PathBuf]) -> Vec<PathBuf> {
    let mut held: BTreeMap<String, PathBuf> = BTreeMap::new();
    for r in pynetdicom_store(node, files) {
        if let (Some(0), Some(sop)) = (r.status, r.sop) {
            held.insert(sop, PathBuf::from(r.file));
        }
    }
    held.into_values().collect()
}

/// `stow_json_requests.py roundtrip`: `files` (held by `src`) read back by WADO-RS and
/// sent to `dst` as metadata and bulk data, then compared with the files.
fn json_roundtrip(src: &Node, dst: &Node, files: &[PathBuf]) -> Value {
    let script = std::env::current_dir()
        .unwrap()
        .join("tests/peers/stow_json_requests.py");
    let out = Command::new(peer_python())
        .env("RENKEI_TOKEN", src.admin_token())
        .env("RENKEI_DST_TOKEN", dst.admin_token())
        .arg(script)
        .arg("roundtrip")
        .arg(format!("http://127.0.0.1:{}/dicom-web", src.http_port))
        .arg(format!("http://127.0.0.1:{}/dicom-web", dst.http_port))
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stow_json_requests.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn metadata_and_bulk_data_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Node::start(&tmp.path().join("src"));
    let mut dst = Node::start(&tmp.path().join("dst"));
    // uncompressed files, and names in every character set (sent as UTF-8)
    let mut files = uncompressed_corpus();
    files.extend(
        corpus_files("charset")
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "dcm")),
    );
    let files = store_distinct(&src, &files);
    assert!(files.len() > 30, "{}", files.len());
    let v = json_roundtrip(&src, &dst, &files);
    assert_eq!(v["status"], 200, "{}", v["response"]);
    assert_eq!(items(&v["response"], REFERENCED).len(), files.len());
    let mut native_pixels = 0;
    for f in v["files"].as_array().unwrap() {
        assert_eq!(f["check"], "ok", "{f}");
        if f["pixels_as"] == "application/octet-stream" {
            native_pixels += 1;
        }
    }
    assert!(native_pixels >= 15, "{native_pixels}");

    // compressed single frames go as their stored bit streams (image/jls, image/jp2,
    // image/jpeg, image/dicom-rle) and are stored in their syntax; a multi-frame one as
    // native bytes
    let compressed: Vec<PathBuf> = [
        "MR_small_jpeg_ls_lossless.dcm",
        "693_J2KR.dcm",
        "JPGLosslessP14SV1_1s_1f_8b.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_rle_32bit.dcm",
        "OBXXXX1A_rle_2frame.dcm",
    ]
    .iter()
    .map(|n| corpus(&format!("valid/{n}")))
    .collect();
    let compressed = store_distinct(&src, &compressed);
    assert_eq!(compressed.len(), 6);
    let v = json_roundtrip(&src, &dst, &compressed);
    assert_eq!(v["status"], 200, "{}", v["response"]);
    for f in v["files"].as_array().unwrap() {
        assert_eq!(f["check"], "ok", "{f}");
        let as_image = f["pixels_as"].as_str().unwrap().starts_with("image/");
        let multi_frame = f["file"].as_str().unwrap().contains("2frame");
        assert_eq!(as_image, !multi_frame, "{f}");
        let stored_ts = f["stored_ts"].as_str().unwrap();
        assert_eq!(stored_ts == f["ts"], as_image, "{f}");
    }
    let sops: BTreeSet<String> = files
        .iter()
        .chain(&compressed)
        .map(|f| file_attr(f, tags::SOP_INSTANCE_UID))
        .collect();
    assert_eq!(
        dst.statistics()["instances"].as_u64(),
        Some(sops.len() as u64)
    );
    dst.stop();
    dst.assert_check_clean();
}

const JSON_BOUNDARY: &str = "renkei-json-3a9c";
const JSON_STUDY: &str = "1.2.826.0.1.3680043.8.498.77";

/// A multipart/related body of `application/dicom+json` and bulk data parts:
/// (Content-Type, Content-Location, bytes).
fn json_multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (ct, location, data) in parts {
        let mut head = format!("--{JSON_BOUNDARY}\r\nContent-Type: {ct}\r\n");
        if let Some(l) = location {
            head.push_str(&format!("Content-Location: {l}\r\n"));
        }
        head.push_str("\r\n");
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{JSON_BOUNDARY}--\r\n").as_bytes());
    body
}

fn stow_json(
    node: &Node,
    path: &str,
    parts: &[(&str, Option<&str>, &[u8])],
) -> (u16, Value, Vec<(String, String)>) {
    let ct =
        format!("multipart/related; type=\"application/dicom+json\"; boundary={JSON_BOUNDARY}");
    stow_body(node, path, &ct, &json_multipart(parts))
}

/// A 4×4 8-bit Secondary Capture instance whose Pixel Data is bulk data at `bulk/{n}`.
fn sc_instance(n: u32) -> Value {
    serde_json::json!({
        "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.7"]},
        "00080018": {"vr": "UI", "Value": [sc_uid(n)]},
        "00080060": {"vr": "CS", "Value": ["OT"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}]},
        "00100020": {"vr": "LO", "Value": ["JSON-1"]},
        "0020000D": {"vr": "UI", "Value": [JSON_STUDY]},
        "0020000E": {"vr": "UI", "Value": [format!("{JSON_STUDY}.1")]},
        "00200013": {"vr": "IS", "Value": [n]},
        "00280002": {"vr": "US", "Value": [1]},
        "00280004": {"vr": "CS", "Value": ["MONOCHROME2"]},
        "00280010": {"vr": "US", "Value": [4]},
        "00280011": {"vr": "US", "Value": [4]},
        "00280100": {"vr": "US", "Value": [8]},
        "00280101": {"vr": "US", "Value": [8]},
        "00280102": {"vr": "US", "Value": [7]},
        "00280103": {"vr": "US", "Value": [0]},
        "7FE00010": {"vr": "OB", "BulkDataURI": bulk_uri(n)}
    })
}

fn sc_uid(n: u32) -> String {
    format!("{JSON_STUDY}.1.{n}")
}

fn bulk_uri(n: u32) -> String {
    format!("http://client.invalid/bulk/{n}")
}

fn failed_reason(answer: &Value, sop: &str) -> Option<u16> {
    items(answer, FAILED)
        .into_iter()
        .find(|i| first_str(i, SOP_INSTANCE) == sop)
        .and_then(|i| first_u16(i, FAILURE_REASON))
}

#[test]
fn metadata_and_bulk_data_failures_are_per_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(&tmp.path().join("data"));
    let pixels: Vec<u8> = (0..16).collect();
    let octet = "application/octet-stream";

    let good = sc_instance(1);
    let mut no_sop = sc_instance(2);
    no_sop.as_object_mut().unwrap().remove("00080018");
    let mut bad_value = sc_instance(3);
    bad_value["00280010"] = serde_json::json!({"vr": "US", "Value": ["four"]});
    let no_part = sc_instance(4);
    let mut multi_frame = sc_instance(5);
    multi_frame["00280008"] = serde_json::json!({"vr": "IS", "Value": [2]});
    let metadata =
        serde_json::to_vec(&[&good, &no_sop, &bad_value, &no_part, &multi_frame]).unwrap();
    let (u1, u2, u3, u5) = (bulk_uri(1), bulk_uri(2), bulk_uri(3), bulk_uri(5));
    let (status, answer, headers) = stow_json(
        &node,
        "/dicom-web/studies",
        &[
            ("application/dicom+json", None, &metadata),
            (octet, Some(&u1), &pixels),
            (octet, Some(&u2), &pixels),
            (octet, Some(&u3), &pixels),
            (
                "image/jls; transfer-syntax=1.2.840.10008.1.2.4.80",
                Some(&u5),
                &pixels,
            ),
        ],
    );
    assert_eq!(status, 202, "{answer}");
    let referenced = items(&answer, REFERENCED);
    assert_eq!(referenced.len(), 1, "{answer}");
    assert_eq!(first_str(referenced[0], SOP_INSTANCE), sc_uid(1));
    assert_eq!(
        first_str(referenced[0], RETRIEVE_URL),
        format!(
            "http://127.0.0.1/dicom-web/studies/{JSON_STUDY}/series/{JSON_STUDY}.1/instances/{}",
            sc_uid(1)
        )
    );
    assert_eq!(items(&answer, FAILED).len(), 4, "{answer}");
    // no SOP Instance UID: 0xC000, the class still named
    let unnamed = items(&answer, FAILED)
        .into_iter()
        .find(|i| first_str(i, SOP_INSTANCE).is_empty())
        .expect("the instance without a UID");
    assert_eq!(first_u16(unnamed, FAILURE_REASON), Some(0xC000));
    assert_eq!(first_str(unnamed, SOP_CLASS), "1.2.840.10008.5.1.4.1.1.7");
    assert_eq!(failed_reason(&answer, &sc_uid(3)), Some(0xC000));
    assert_eq!(failed_reason(&answer, &sc_uid(4)), Some(0xC000));
    // compressed Pixel Data of two frames in one part: transfer syntax not supported
    assert_eq!(failed_reason(&answer, &sc_uid(5)), Some(0xC122));
    let warnings: String = headers
        .iter()
        .filter(|(k, _)| k == "warning")
        .map(|(_, v)| v.as_str())
        .collect();
    for expected in ["SOP Instance UID", "00280010", "Content-Location", "frames"] {
        assert!(warnings.contains(expected), "{expected}: {warnings}");
    }

    // a bulk data part before its metadata part is held until the metadata names it
    let later = serde_json::to_vec(&[sc_instance(6)]).unwrap();
    let u6 = bulk_uri(6);
    let (status, answer, _) = stow_json(
        &node,
        "/dicom-web/studies",
        &[
            (octet, Some(&u6), &pixels),
            ("application/dicom+json", None, &later),
        ],
    );
    assert_eq!(status, 200, "{answer}");

    // a metadata part that is not JSON: one failure, nothing stored
    let (status, answer, headers) = stow_json(
        &node,
        "/dicom-web/studies",
        &[("application/dicom+json", None, b"[{\"00080018\": ")],
    );
    assert_eq!(status, 409, "{answer}");
    assert_eq!(items(&answer, FAILED).len(), 1);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "warning" && v.contains("not JSON")),
        "{headers:?}"
    );
    // an instance of another study than the request's: 0xA900
    let u7 = bulk_uri(7);
    let seventh = serde_json::to_vec(&[sc_instance(7)]).unwrap();
    let (status, answer, _) = stow_json(
        &node,
        "/dicom-web/studies/1.2.3.4",
        &[
            ("application/dicom+json", None, &seventh),
            (octet, Some(&u7), &pixels),
        ],
    );
    assert_eq!(status, 409, "{answer}");
    assert_eq!(failed_reason(&answer, &sc_uid(7)), Some(0xA900));
    assert_eq!(node.statistics()["instances"].as_u64(), Some(2));

    // what was stored: Explicit VR LE, the pixels sent, the name in UTF-8
    node.stop();
    node.assert_check_clean();
    let store = renkei_store::Store::open_read_only(&node.data_dir).unwrap();
    let rec = store.instance(&sc_uid(1)).unwrap().expect("stored");
    assert_eq!(rec.transfer_syntax, "1.2.840.10008.1.2.1");
    let obj = dicom_object::open_file(store.blob_path(&rec.blob_hash)).unwrap();
    let text = |tag| obj.element(tag).unwrap().to_str().unwrap().to_string();
    assert_eq!(text(tags::PATIENT_NAME), "Yamada^Tarou=山田^太郎");
    assert_eq!(text(tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
    let stored_pixels = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    assert_eq!(stored_pixels.as_ref(), &pixels[..]);
    assert_eq!(obj.element(tags::ROWS).unwrap().to_int::<u16>().unwrap(), 4);
}

/// Read an HTTP response: (status, body).
fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[test]
fn bodies_past_max_stow_bytes_get_413() {
    let tmp = tempfile::tempdir().unwrap();
    let limit = 1 << 20;
    let mut node = Node::start_with_config(tmp.path(), &format!("max_stow_bytes = {limit}\n"));
    let ct = dicom_multipart();
    let token = node.admin_token();

    // a declared Content-Length past the limit: 413 before the body is read
    let mut s = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        2 * limit
    )
    .unwrap();
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 413, "{body}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 413);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&limit.to_string()),
        "{problem}"
    );

    // a chunked body (no length given) cut when it grows past the limit: the instances
    // received whole before stay stored, the rest is not
    let files: Vec<PathBuf> = [
        "examples_overlay.dcm",
        "waveform_ecg.dcm",
        "examples_palette.dcm",
        "vlut_04.dcm",
        "MR-SIEMENS-DICOM-WithOverlays.dcm",
    ]
    .iter()
    .map(|n| corpus(&format!("valid/{n}")))
    .collect();
    let contents: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let parts: Vec<&[u8]> = contents.iter().map(Vec::as_slice).collect();
    let body = multipart(&parts);
    assert!(body.len() > limit + limit / 2);
    let mut s = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: {ct}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // the node may answer and close before the end: write errors are expected
        for chunk in body.chunks(32 * 1024) {
            if write!(writer, "{:x}\r\n", chunk.len()).is_err()
                || writer.write_all(chunk).is_err()
                || writer.write_all(b"\r\n").is_err()
            {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let (status, body) = read_response(&mut s);
    sender.join().unwrap();
    assert_eq!(status, 413, "{body}");
    let detail = serde_json::from_str::<Value>(&body).unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    let stored = node.statistics()["instances"].as_u64().unwrap() as usize;
    assert!(
        detail.contains(&format!("{stored} instance(s) received whole")),
        "{stored}: {detail}"
    );
    // the first parts fit (1 MiB holds three of them), the fourth did not
    assert!((2..=3).contains(&stored), "{stored}: {detail}");

    // under the limit: stored as ever
    let small = std::fs::read(corpus("valid/CT_small.dcm")).unwrap();
    let (status, answer, _) = stow_raw(&node, "/dicom-web/studies", &[&small]);
    assert_eq!(status, 200, "{answer}");
    node.stop();
    let index = renkei_store::Store::open_read_only(&node.data_dir).unwrap();
    for (i, f) in files.iter().enumerate() {
        let held = index
            .instance(&file_attr(f, tags::SOP_INSTANCE_UID))
            .unwrap()
            .is_some();
        assert_eq!(held, i < stored, "{}", f.display());
    }
    drop(index);
    node.assert_check_clean();
}

#[test]
fn stow_feeds_storage_compression() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start_with_config(tmp.path(), "storage_compression = \"jpeg-ls\"\n");
    let ct = std::fs::read(corpus("valid/CT_small.dcm")).unwrap();
    let mr = std::fs::read(corpus("valid/MR_small.dcm")).unwrap();
    let (status, answer, _) = stow_raw(&node, "/dicom-web/studies", &[&ct, &mr]);
    assert_eq!(status, 200, "{answer}");
    // the storage-compression queue hears of both new instances (the startup sweep ran
    // before they came)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while node.statistics()["compressed_instances"].as_u64() != Some(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "not compressed: {}",
            node.statistics()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
