//! WADO-RS (PS3.18 10.4) against Python dicomweb-client: instances, metadata, frames,
//! bulk data, rendered images and thumbnails compared with what pydicom reads from the
//! original files; transfer syntax negotiation; errors; memory while streaming a study.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::*;

fn script() -> PathBuf {
    std::env::current_dir()
        .unwrap()
        .join("tests/peers/wado_dicomweb_client.py")
}

/// The valid and charset corpus stored with pynetdicom; the file the node holds for each SOP Instance
/// UID (several corpus files share one: the last stored wins).
fn load_corpus(node: &Node) -> Vec<PathBuf> {
    // with names in ISO 2022 (Japanese, Korean...), which dicom-rs alone decodes wrongly
    let files = corpus_with_charsets();
    let stored = pynetdicom_store(node, &files);
    let mut held: BTreeMap<String, PathBuf> = BTreeMap::new();
    for r in &stored {
        if r.status == Some(0) {
            if let Some(sop) = &r.sop {
                held.insert(sop.clone(), PathBuf::from(&r.file));
            }
        }
    }
    assert!(held.len() > 25, "{stored:#?}");
    let mut files: Vec<PathBuf> = held.into_values().collect();
    files.sort();
    files
}

fn name(f: &Value) -> &str {
    f["file"]
        .as_str()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("?")
}

fn is_ok_or_skip(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s == "ok" || s.starts_with("skip"))
}

const LOSSLESS_COMPRESSED: &[&str] = &[
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.5",
];

#[test]
fn wado_answers_match_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"));
    let files = load_corpus(&node);
    let out = Command::new(peer_python())
        .env("RENKEI_TOKEN", node.admin_token())
        .arg(script())
        .arg("check")
        .arg(format!("http://127.0.0.1:{}/dicom-web", node.http_port))
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wado_dicomweb_client.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["files"].as_array().unwrap();
    assert_eq!(results.len(), files.len());

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for f in results {
        let n = name(f);
        // the instance as stored, attribute by attribute and Pixel Data byte for byte
        assert_eq!(f["retrieve"], "ok", "{n}: {f}");
        // metadata: every attribute pydicom reads, equal (bulk values by BulkDataURI)
        assert_eq!(f["metadata"], Value::Array(vec![]), "{n}: {f}");
        assert!(f["metadata_compared"].as_u64().unwrap() > 20, "{n}: {f}");
        for k in ["frames", "bulk", "explicit_le"] {
            assert!(is_ok_or_skip(&f[k]), "{n} {k}: {f}");
            if f[k] == "ok" {
                *counts.entry(k).or_default() += 1;
            }
        }
        // native data asked as JPEG-LS: encoded losslessly, or refused with 406 when the
        // encoder cannot keep every bit (e.g. overlays above Bits Stored)
        let j = &f["to_jpegls"];
        assert!(is_ok_or_skip(j) || j == "status 406", "{n} to_jpegls: {f}");
        if j == "ok" {
            *counts.entry("to_jpegls").or_default() += 1;
        }
        let ts = f["ts"].as_str().unwrap();
        if LOSSLESS_COMPRESSED.contains(&ts) {
            // lossless compressed: frames decoded as pydicom decodes them, and the instance
            // converted to explicit VR LE with the same pixels
            assert_eq!(f["frames"], "ok", "{n}: {f}");
            assert_eq!(f["explicit_le"], "ok", "{n}: {f}");
        }
        if f["rendered"].is_object() {
            let r = &f["rendered"];
            let (w, h) = (
                r["expected"][0].as_u64().unwrap(),
                r["expected"][1].as_u64().unwrap(),
            );
            assert_eq!(r["jpeg"], serde_json::json!(["JPEG", w, h]), "{n}: {f}");
            // viewport=64,64: fits inside, aspect kept
            let (pw, ph) = (r["png"][1].as_u64().unwrap(), r["png"][2].as_u64().unwrap());
            assert_eq!(r["png"][0], "PNG", "{n}: {f}");
            assert_eq!(pw.max(ph), 64, "{n}: {f}");
            assert!((pw * h).abs_diff(ph * w) <= w.max(h), "{n}: aspect {f}");
            let t = &f["thumbnail"];
            assert_eq!(t[0], "JPEG", "{n}: {f}");
            assert_eq!(
                t[1].as_u64().unwrap().max(t[2].as_u64().unwrap()),
                128,
                "{n}: {f}"
            );
            *counts.entry("rendered").or_default() += 1;
        } else {
            assert!(is_ok_or_skip(&f["rendered"]), "{n}: {f}");
        }
    }
    eprintln!("WADO-RS checks passed, per kind: {counts:?}");
    // the checks ran, rather than being skipped
    assert!(counts["frames"] >= 15, "{counts:?}");
    assert!(counts["bulk"] >= 10, "{counts:?}");
    assert!(counts["explicit_le"] >= 4, "{counts:?}");
    assert!(counts["to_jpegls"] >= 5, "{counts:?}");
    assert!(counts["rendered"] >= 25, "{counts:?}");

    let s = &v["study"];
    assert_eq!(s["expected"], s["got"], "retrieve_study");
    assert!(s["got"].as_array().unwrap().len() >= 2);
    assert_eq!(s["series_expected"], s["series_got"], "retrieve_series");
    assert_eq!(
        s["metadata"].as_u64().unwrap() as usize,
        s["expected"].as_array().unwrap().len()
    );

    let e = &v["errors"];
    for (k, status) in [
        ("unknown_study", 404),
        ("unknown_instance", 404),
        ("unknown_metadata", 404),
        ("wrong_series", 404),
        ("lossy_for_lossless", 406),
        ("frame_beyond", 404),
        ("unknown_media_type", 406),
        ("bad_frame_list", 400),
        ("repeated_frame", 400),
        ("rendered_gif", 406),
        ("bad_window", 400),
        ("not_modified", 304),
    ] {
        assert_eq!(e[k], status, "{k}: {e}");
    }
    assert_eq!(e["content_length_ok"], true, "{e}");
    assert!(e["etag"].as_str().is_some_and(|t| t.len() > 10), "{e}");
    let base = format!("http://127.0.0.1:{}/dicom-web/studies/", node.http_port);
    assert!(e["bulk_uri"].as_str().unwrap().starts_with(&base), "{e}");
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What streaming one WADO-RS response looked like from the client and the node.
struct Streamed {
    /// Response headers, lower case.
    head: String,
    body_bytes: u64,
    /// Multipart delimiters seen (one before each part, plus the closing one).
    delimiters: usize,
    rss_before: u64,
    rss_peak: u64,
}

/// GET `path` with `accept` on a raw socket, reading at a steady pace and sampling the
/// node's resident memory every 4 MiB of body.
fn stream(node: &Node, path: &str, accept: &str) -> Streamed {
    let pid = node.child.as_ref().unwrap().id();
    let mut s = TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAccept: {accept}\r\n\
         Authorization: Bearer {}\r\n\r\n",
        node.admin_token()
    )
    .unwrap();
    let rss_before = rss_kib(pid);
    let mut out = Streamed {
        head: String::new(),
        body_bytes: 0,
        delimiters: 0,
        rss_before,
        rss_peak: rss_before,
    };
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    let mut delimiter: Option<Vec<u8>> = None;
    let mut since_sample = 0u64;
    loop {
        let k = s.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        let chunk = &buf[..k];
        let Some(delim) = &delimiter else {
            head.extend_from_slice(chunk);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            out.head = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            assert!(out.head.starts_with("http/1.1 200"), "{}", out.head);
            let b = out
                .head
                .split("boundary=")
                .nth(1)
                .and_then(|r| r.split(['\r', ';']).next())
                .expect("boundary")
                .to_string();
            delimiter = Some(format!("\r\n--{b}").into_bytes());
            // the first delimiter has no CRLF before it
            tail = b"\r\n".to_vec();
            let rest = head[end + 4..].to_vec();
            out.body_bytes += rest.len() as u64;
            tail.extend_from_slice(&rest);
            continue;
        };
        out.body_bytes += chunk.len() as u64;
        tail.extend_from_slice(chunk);
        // count delimiters, keeping the bytes one may straddle
        let mut at = 0;
        while let Some(p) = tail[at..]
            .windows(delim.len())
            .position(|w| w == &delim[..])
        {
            out.delimiters += 1;
            at += p + delim.len();
        }
        let keep = tail.len().saturating_sub(delim.len()).max(at);
        tail.drain(..keep);
        since_sample += k as u64;
        if since_sample > 4 << 20 {
            since_sample = 0;
            out.rss_peak = out.rss_peak.max(rss_kib(pid));
            // read slower than the node can send, so that it has to hold back
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    out
}

#[test]
fn streaming_a_large_study_keeps_memory_flat() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"));
    let gen = tmp.path().join("gen");
    std::fs::create_dir_all(&gen).unwrap();
    // one study of 400 CT-like 512x512 16-bit instances: ~210 MB
    let n = 400;
    let files = synth(&gen, n, n, 512);
    renkei_store(&node, &files);
    let study = file_attr(&files[0], dicom_dictionary_std::tags::STUDY_INSTANCE_UID);
    let path = format!("/dicom-web/studies/{study}");
    let pixels = (n * 512 * 512 * 2) as u64;

    // as stored: files streamed, the length known in advance
    let r = stream(
        &node,
        &path,
        "multipart/related; type=\"application/dicom\"",
    );
    eprintln!(
        "WADO-RS study of {n} instances as stored: {} bytes; node RSS {} KiB before, \
         peak {} KiB while streaming",
        r.body_bytes, r.rss_before, r.rss_peak
    );
    let length: u64 = r
        .head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Content-Length on an as-stored study");
    assert_eq!(length, r.body_bytes);
    assert_eq!(r.delimiters, n + 1);
    assert!(
        r.body_bytes > pixels,
        "{} bytes for {pixels} of pixels",
        r.body_bytes
    );
    // 210 MB went through; the node held a few chunks of it
    assert!(
        r.rss_peak.saturating_sub(r.rss_before) < 48 * 1024,
        "RSS grew by {} KiB while streaming",
        r.rss_peak - r.rss_before
    );

    // converted to JPEG-LS on the pixel pool, one instance at a time
    let r = stream(
        &node,
        &path,
        "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.80",
    );
    eprintln!(
        "WADO-RS study of {n} instances as JPEG-LS: {} bytes; node RSS {} KiB before, \
         peak {} KiB while streaming",
        r.body_bytes, r.rss_before, r.rss_peak
    );
    assert!(!r.head.contains("content-length:"), "{}", r.head);
    assert_eq!(r.delimiters, n + 1);
    assert!(r.body_bytes < pixels, "JPEG-LS of synthetic CT is smaller");
    assert!(
        r.rss_peak.saturating_sub(r.rss_before) < 64 * 1024,
        "RSS grew by {} KiB while converting",
        r.rss_peak - r.rss_before
    );
}

/// A raw HTTP/1.1 request as the node's administrator: (status, headers in lower case,
/// body with any chunked transfer coding removed).
fn request(
    node: &Node,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let a = node.request(Some(&node.admin_token()), method, path, headers, body);
    (a.status, a.headers, a.body)
}

/// `gzip -dc`: the decompressed bytes (a stream the client could not read fails here).
fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "not a gzip stream");
    out.stdout
}

/// An answer asked with and without `Accept-Encoding: gzip`: (gzip answer's headers,
/// plain body, gzip body decompressed).
fn both_ways(
    node: &Node,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Vec<(String, String)>, Vec<u8>, Vec<u8>) {
    let (status, plain_headers, plain) = request(node, method, path, headers, body);
    assert!(header(&plain_headers, "content-encoding").is_none());
    let mut gz_headers = headers.to_vec();
    gz_headers.push(("Accept-Encoding", "gzip, deflate, br"));
    let (gz_status, h, gz) = request(node, method, path, &gz_headers, body);
    assert_eq!(status, gz_status, "{path}");
    assert_eq!(
        header(&h, "content-encoding"),
        Some("gzip"),
        "{path}: {h:?}"
    );
    assert!(
        header(&h, "vary").is_some_and(|v| v.contains("accept-encoding")),
        "{h:?}"
    );
    (h, plain, gunzip(&gz))
}

#[test]
fn json_answers_are_gzipped_and_multipart_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"));
    let files = load_corpus(&node);
    // the study with the most instances: its metadata is streamed, one instance at a time
    let mut per_study: BTreeMap<String, Vec<&PathBuf>> = BTreeMap::new();
    for f in &files {
        per_study
            .entry(file_attr(f, dicom_dictionary_std::tags::STUDY_INSTANCE_UID))
            .or_default()
            .push(f);
    }
    let (study, members) = per_study
        .iter()
        .max_by_key(|(_, v)| v.len())
        .expect("a study");
    assert!(members.len() >= 2, "{per_study:?}");
    let study_path = format!("/dicom-web/studies/{study}");

    // QIDO-RS results
    let (_, plain, unzipped) =
        both_ways(&node, "GET", "/dicom-web/series?includefield=all", &[], b"");
    assert_eq!(unzipped, plain);
    let found = serde_json::from_slice::<Value>(&plain).unwrap();
    assert!(found.as_array().unwrap().len() > 10, "{found}");

    // streamed study metadata: compressed as a stream, the same JSON
    let meta = format!("{study_path}/metadata");
    let (h, plain, unzipped) = both_ways(&node, "GET", &meta, &[], b"");
    assert_eq!(unzipped, plain);
    let v: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(v.as_array().unwrap().len(), members.len());
    assert_eq!(header(&h, "transfer-encoding"), Some("chunked"), "{h:?}");
    // another representation: a weak ETag, which If-None-Match still matches
    let etag = header(&h, "etag").expect("ETag").to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    let (status, _, _) = request(
        &node,
        "GET",
        &meta,
        &[("Accept-Encoding", "gzip"), ("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(status, 304);
    let (_, plain_headers, _) = request(&node, "GET", &meta, &[], b"");
    assert_eq!(
        header(&plain_headers, "etag"),
        Some(etag.trim_start_matches("W/"))
    );

    // a problem body (404)
    let (_, plain, unzipped) = both_ways(
        &node,
        "GET",
        "/dicom-web/studies/1.2.3.4.5.6/metadata",
        &[],
        b"",
    );
    assert_eq!(unzipped, plain);
    let problem = serde_json::from_slice::<Value>(&plain).unwrap();
    assert_eq!(problem["status"], 404, "{problem}");

    // a STOW-RS answer
    let ct = std::fs::read(corpus("valid/CT_small.dcm")).unwrap();
    let mut body = b"--b0\r\nContent-Type: application/dicom\r\n\r\n".to_vec();
    body.extend_from_slice(&ct);
    body.extend_from_slice(b"\r\n--b0--\r\n");
    let stow_type = [(
        "Content-Type",
        "multipart/related; type=\"application/dicom\"; boundary=b0",
    )];
    let (_, plain, unzipped) = both_ways(&node, "POST", "/dicom-web/studies", &stow_type, &body);
    assert_eq!(unzipped, plain);
    assert!(serde_json::from_slice::<Value>(&plain).unwrap()["00081199"].is_object());

    // a client that does not take gzip gets none
    let (_, h, _) = request(
        &node,
        "GET",
        &meta,
        &[("Accept-Encoding", "identity, gzip;q=0")],
        b"",
    );
    assert!(header(&h, "content-encoding").is_none(), "{h:?}");

    // multipart and images: never compressed, the length still known
    for (path, accept) in [
        (
            study_path.clone(),
            "multipart/related; type=\"application/dicom\"",
        ),
        (format!("{study_path}/thumbnail"), "image/jpeg"),
    ] {
        let (status, h, body) = request(
            &node,
            "GET",
            &path,
            &[("Accept", accept), ("Accept-Encoding", "gzip")],
            b"",
        );
        assert_eq!(status, 200, "{path}");
        assert!(header(&h, "content-encoding").is_none(), "{path}: {h:?}");
        assert_eq!(
            header(&h, "content-length").map(|l| l.parse::<usize>().unwrap()),
            Some(body.len()),
            "{path}: {h:?}"
        );
    }
}
