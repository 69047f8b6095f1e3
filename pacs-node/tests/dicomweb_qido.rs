//! QIDO-RS (PS3.18 10.6) against Python dicomweb-client: answers compared with what
//! pydicom reads from the original files and with C-FIND on the same node, Japanese
//! names in their three groups, bad requests, the access hook, CORS and the result cap.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use common::*;

fn script() -> PathBuf {
    std::env::current_dir()
        .unwrap()
        .join("tests/peers/qido_dicomweb_client.py")
}

/// Run queries through dicomweb-client; one answer per query.
fn qido(node: &Node, queries: Value) -> Vec<Value> {
    let mut child = Command::new(peer_python())
        .env("RENKEI_TOKEN", node.admin_token())
        .arg(script())
        .arg("search")
        .arg(format!("http://127.0.0.1:{}/dicom-web", node.http_port))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(queries.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "qido_dicomweb_client.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().clone()
}

/// One query's results (fails on an HTTP error).
fn results(answer: &Value) -> Vec<Value> {
    assert!(answer.get("error").is_none(), "{answer}");
    answer["results"].as_array().unwrap().clone()
}

/// What pydicom reads from the files.
fn originals(files: &[PathBuf]) -> Vec<Value> {
    let out = Command::new(peer_python())
        .arg(script())
        .arg("originals")
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().clone()
}

/// The first value of attribute `key` (8 hex digits) of a DICOM JSON object.
fn first(r: &Value, key: &str) -> Option<Value> {
    r.get(key)?.get("Value")?.get(0).cloned()
}

fn first_str(r: &Value, key: &str) -> String {
    first(r, key)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn set_of(rs: &[Value], key: &str) -> BTreeSet<String> {
    rs.iter().map(|r| first_str(r, key)).collect()
}

const STUDY_UID: &str = "0020000D";
const SERIES_UID: &str = "0020000E";
const SOP_UID: &str = "00080018";
const PATIENT_NAME: &str = "00100010";

/// The corpus files the node accepted (pynetdicom says success), with pydicom's reading.
fn load_corpus(node: &Node) -> Vec<Value> {
    let files = corpus_with_charsets();
    let stored = pynetdicom_store(node, &files);
    let ok: BTreeSet<String> = stored
        .iter()
        .filter(|r| r.status == Some(0) || r.status.is_some_and(|s| s & 0xF000 == 0xB000))
        .map(|r| r.file.clone())
        .collect();
    assert!(ok.len() > 20, "{stored:#?}");
    let held: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| ok.contains(f.to_str().unwrap()))
        .collect();
    let orig = originals(&held);
    assert!(orig.iter().all(|o| o.get("error").is_none()), "{orig:#?}");
    orig
}

fn orig_set(orig: &[Value], key: &str, keep: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    orig.iter()
        .filter(|o| keep(o))
        .map(|o| o[key].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn qido_answers_match_the_files_and_c_find() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"));
    let orig = load_corpus(&node);
    let all_studies = orig_set(&orig, "StudyInstanceUID", |_| true);
    let all_sops = orig_set(&orig, "SOPInstanceUID", |_| true);
    // the study with the most instances, for the hierarchical searches
    let mut per_study: BTreeMap<String, usize> = BTreeMap::new();
    for o in &orig {
        *per_study
            .entry(o["StudyInstanceUID"].as_str().unwrap().into())
            .or_default() += 1;
    }
    let (big, _) = per_study.iter().max_by_key(|(_, n)| **n).unwrap();
    let in_big = |o: &Value| o["StudyInstanceUID"] == json!(big);
    let big_series = orig_set(&orig, "SeriesInstanceUID", in_big);
    let one_series = big_series.iter().next().unwrap().clone();
    let in_dates = |o: &Value| {
        let d = o["StudyDate"].as_str().unwrap();
        !d.is_empty() && ("19900101"..="20051231").contains(&d)
    };
    let a_patient = orig
        .iter()
        .map(|o| o["PatientID"].as_str().unwrap())
        .find(|p| !p.is_empty())
        .unwrap()
        .to_string();

    let answers = qido(
        &node,
        json!([
            {"level": "studies", "fields": ["NumberOfStudyRelatedInstances"]},
            {"level": "studies", "filters": {"StudyDate": "19900101-20051231"}},
            {"level": "series", "filters": {"Modality": "CT"}},
            {"level": "instances", "study": big},
            {"level": "series", "study": big},
            {"level": "instances", "study": big, "series": one_series},
            {"level": "instances", "filters": {"Modality": "MR"}},
            {"level": "studies", "limit": 2, "get_remaining": true},
            {"level": "studies", "filters": {"00100020": a_patient}},
            {"level": "instances", "fields": ["all"], "limit": 1000},
        ]),
    );
    // every study, with NumberOfStudyRelatedInstances as JSON numbers adding up
    let studies = results(&answers[0]);
    assert_eq!(set_of(&studies, STUDY_UID), all_studies);
    let total: u64 = studies
        .iter()
        .map(|r| first(r, "00201208").and_then(|v| v.as_u64()).unwrap())
        .sum();
    assert_eq!(total, all_sops.len() as u64);
    // default study attributes (PS3.18 Table 10.6.3-3) present, empty ones with only "vr"
    for key in ["00080020", "00080061", "00081190", "00100010", "00201206"] {
        assert!(
            studies.iter().all(|r| r.get(key).is_some()),
            "{key} missing"
        );
    }
    assert!(studies
        .iter()
        .all(|r| first_str(r, "00081190").ends_with(&first_str(r, STUDY_UID))));

    let dated = orig_set(&orig, "StudyInstanceUID", in_dates);
    assert!(!dated.is_empty());
    assert_eq!(set_of(&results(&answers[1]), STUDY_UID), dated);

    let ct = orig_set(&orig, "SeriesInstanceUID", |o| o["Modality"] == "CT");
    assert!(!ct.is_empty());
    let ct_found = results(&answers[2]);
    assert_eq!(set_of(&ct_found, SERIES_UID), ct);
    // a relational series search brings the study attributes along
    assert!(ct_found.iter().all(|r| r.get("00100010").is_some()));

    assert_eq!(
        set_of(&results(&answers[3]), SOP_UID),
        orig_set(&orig, "SOPInstanceUID", in_big)
    );
    assert_eq!(set_of(&results(&answers[4]), SERIES_UID), big_series);
    assert_eq!(
        set_of(&results(&answers[5]), SOP_UID),
        orig_set(&orig, "SOPInstanceUID", |o| o["SeriesInstanceUID"]
            == json!(one_series))
    );
    let mr = orig_set(&orig, "SOPInstanceUID", |o| o["Modality"] == "MR");
    assert!(!mr.is_empty());
    assert_eq!(set_of(&results(&answers[6]), SOP_UID), mr);
    // pages of 2 (limit + offset) add up to every study once
    let paged = results(&answers[7]);
    assert_eq!(paged.len(), all_studies.len());
    assert_eq!(set_of(&paged, STUDY_UID), all_studies);
    assert_eq!(
        set_of(&results(&answers[8]), STUDY_UID),
        orig_set(&orig, "StudyInstanceUID", |o| o["PatientID"]
            == json!(a_patient))
    );
    // includefield=all at instance level: numbers are numbers, PN are objects
    let every = results(&answers[9]);
    assert_eq!(set_of(&every, SOP_UID), all_sops);
    for r in &every {
        for key in ["00280010", "00280011"] {
            if let Some(v) = first(r, key) {
                assert!(v.is_u64(), "{key} {v} in {r}");
            }
        }
        if let Some(pn) = first(r, PATIENT_NAME) {
            assert!(pn.is_object(), "{r}");
        }
    }

    // person names: every charset file's name in its three groups, as pydicom decodes it
    let study_names: BTreeMap<String, Value> = studies
        .iter()
        .map(|r| {
            (
                first_str(r, STUDY_UID),
                first(r, PATIENT_NAME).unwrap_or(Value::Null),
            )
        })
        .collect();
    let mut checked = 0;
    for o in orig
        .iter()
        .filter(|o| o["file"].as_str().unwrap().contains("charset"))
    {
        let uid = o["StudyInstanceUID"].as_str().unwrap();
        let same_study: Vec<&Value> = orig
            .iter()
            .filter(|x| x["StudyInstanceUID"] == json!(uid))
            .collect();
        if same_study
            .iter()
            .any(|x| x["PatientName"] != o["PatientName"])
        {
            continue; // the study's files disagree: the last stored wins, skip it
        }
        let mut want = serde_json::Map::new();
        for g in ["Alphabetic", "Ideographic", "Phonetic"] {
            let v = o["PatientName"][g].as_str().unwrap();
            if !v.is_empty() {
                want.insert(g.into(), json!(v));
            }
        }
        let want = if want.is_empty() {
            Value::Null
        } else {
            Value::Object(want)
        };
        assert_eq!(study_names[uid], want, "{}", o["file"]);
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} charset files compared");

    // Japanese: chrH31 found by each group, and by half-width kana with fuzzymatching
    let h31 = orig
        .iter()
        .find(|o| o["file"].as_str().unwrap().ends_with("chrH31.dcm"))
        .expect("chrH31.dcm stored");
    let jp = qido(
        &node,
        json!([
            {"level": "studies", "filters": {"PatientName": "Yamada*"}},
            {"level": "studies", "filters": {"PatientName": "山田*"}},
            {"level": "studies", "filters": {"PatientName": "やまだ*"}},
            {"level": "studies", "filters": {"PatientName": "ﾔﾏﾀﾞ*"}, "fuzzy": true},
        ]),
    );
    for a in &jp {
        let rs = results(a);
        let hit = rs
            .iter()
            .find(|r| first_str(r, STUDY_UID) == h31["StudyInstanceUID"])
            .unwrap_or_else(|| panic!("chrH31 not found: {a}"));
        let pn = first(hit, PATIENT_NAME).unwrap();
        assert_eq!(pn["Alphabetic"], h31["PatientName"]["Alphabetic"]);
        assert_eq!(pn["Ideographic"], h31["PatientName"]["Ideographic"]);
        assert_eq!(pn["Phonetic"], h31["PatientName"]["Phonetic"]);
        assert_eq!(pn["Ideographic"], json!("山田^太郎"));
    }

    // the same queries through C-FIND (pynetdicom) and QIDO-RS find the same entities
    let cases: Vec<(&str, Vec<String>, Value, &str)> = vec![
        (
            "STUDY",
            vec!["PatientName=Yamada*".into()],
            json!({"level": "studies", "filters": {"PatientName": "Yamada*"}}),
            "StudyInstanceUID",
        ),
        (
            "STUDY",
            vec!["PatientName=山田*".into()],
            json!({"level": "studies", "filters": {"PatientName": "山田*"}}),
            "StudyInstanceUID",
        ),
        (
            "STUDY",
            vec!["PatientName=ﾔﾏﾀﾞ*".into()],
            json!({"level": "studies", "filters": {"PatientName": "ﾔﾏﾀﾞ*"}, "fuzzy": true}),
            "StudyInstanceUID",
        ),
        (
            "STUDY",
            vec!["StudyDate=19900101-20051231".into()],
            json!({"level": "studies", "filters": {"StudyDate": "19900101-20051231"}}),
            "StudyInstanceUID",
        ),
        (
            "STUDY",
            vec!["ModalitiesInStudy=CT".into()],
            json!({"level": "studies", "filters": {"ModalitiesInStudy": "CT"}}),
            "StudyInstanceUID",
        ),
        (
            "STUDY",
            vec!["PatientName=*a*".into(), "PatientSex=M".into()],
            json!({"level": "studies", "filters": {"PatientName": "*a*", "PatientSex": "M"}}),
            "StudyInstanceUID",
        ),
        (
            "SERIES",
            vec![format!("StudyInstanceUID={big}")],
            json!({"level": "series", "study": big}),
            "SeriesInstanceUID",
        ),
        (
            "IMAGE",
            vec![
                format!("StudyInstanceUID={big}"),
                format!("SeriesInstanceUID={one_series}"),
            ],
            json!({"level": "instances", "study": big, "series": one_series}),
            "SOPInstanceUID",
        ),
    ];
    let qido_answers = qido(
        &node,
        Value::Array(cases.iter().map(|c| c.2.clone()).collect()),
    );
    for ((level, keys, query, unique), answer) in cases.iter().zip(&qido_answers) {
        let mut args: Vec<&str> = keys.iter().map(String::as_str).collect();
        let ret = format!("{unique}=");
        args.push(&ret);
        let found = pynetdicom_find(&node, "study", level, &args);
        assert_eq!(found.final_status, Some(0), "{query}: {found:?}");
        let by_find: BTreeSet<String> = found
            .matches
            .iter()
            .map(|m| m[*unique].trim_end_matches(['\0', ' ']).to_string())
            .collect();
        let key = match *unique {
            "StudyInstanceUID" => STUDY_UID,
            "SeriesInstanceUID" => SERIES_UID,
            _ => SOP_UID,
        };
        let by_qido = set_of(&results(answer), key);
        assert!(!by_qido.is_empty(), "{query} found nothing");
        assert_eq!(by_qido, by_find, "{query}");
    }
}

/// A raw HTTP/1.1 request to `node` with headers, from `from` (a local address, to the
/// node on that address) or on loopback, as the node's administrator (no credentials on
/// a CORS preflight): (status, head, body).
fn raw(
    node: &Node,
    from: Option<IpAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let to = (
        from.unwrap_or_else(|| "127.0.0.1".parse().unwrap()),
        node.http_port,
    );
    let auth = format!("Bearer {}", node.admin_token());
    let mut headers = headers.to_vec();
    if method != "OPTIONS" {
        headers.push(("Authorization", &auth));
    }
    let mut s = match from {
        None => TcpStream::connect(to).unwrap(),
        Some(ip) => {
            // connect from a chosen source address: the std API has no bind-before-connect,
            // so go through curl
            let mut cmd = Command::new("curl");
            cmd.args(["-s", "-i", "-X", method, "--interface", &ip.to_string()]);
            for (k, v) in &headers {
                cmd.args(["-H", &format!("{k}: {v}")]);
            }
            let out = cmd
                .arg(format!("http://{}:{}{path}", to.0, to.1))
                .output()
                .expect("curl");
            let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
            let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            return (status, head.to_ascii_lowercase(), body.to_string());
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in &headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn qido_rejects_bad_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"));
    let files = corpus_files("charset");
    let h31: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| f.ends_with("chrH31.dcm"))
        .collect();
    assert!(pynetdicom_store(&node, &h31)
        .iter()
        .all(|r| r.status == Some(0)));

    for path in [
        "/dicom-web/studies?NoSuchAttribute=1",
        "/dicom-web/studies?99990010=1",
        "/dicom-web/studies?StudyDate=2020-01-01",
        "/dicom-web/studies?StudyInstanceUID=not-a-uid",
        "/dicom-web/studies?limit=ten",
        "/dicom-web/studies?offset=-1",
        "/dicom-web/studies?fuzzymatching=maybe",
        "/dicom-web/studies?includefield=NoSuchAttribute",
        "/dicom-web/studies?Modality=CT",
        "/dicom-web/studies/1.2.3x/series",
    ] {
        let (status, head, body) = raw(&node, None, "GET", path, &[]);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["status"], 400);
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // dicomweb-client sees the 400 as an HTTP error
    let a = qido(
        &node,
        json!([{"level": "studies", "filters": {"NoSuchAttribute": "1"}}]),
    );
    assert_eq!(a[0]["status"], 400, "{a:?}");

    for accept in [
        "application/dicom+xml",
        "multipart/related; type=\"application/dicom\"",
        "text/html",
    ] {
        let (status, _, body) = raw(
            &node,
            None,
            "GET",
            "/dicom-web/studies",
            &[("Accept", accept)],
        );
        assert_eq!(status, 406, "{accept}: {body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], 406);
    }
    for (accept, media) in [
        ("application/dicom+json", "application/dicom+json"),
        ("application/json", "application/json"),
        ("*/*", "application/dicom+json"),
    ] {
        let (status, head, body) = raw(
            &node,
            None,
            "GET",
            "/dicom-web/studies?PatientName=Yamada*",
            &[("Accept", accept)],
        );
        assert_eq!(status, 200, "{accept}: {body}");
        assert!(head.contains(&format!("content-type: {media}")), "{head}");
        assert_eq!(
            serde_json::from_str::<Value>(&body)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
    // no match: 200 with an empty array (CP-2473), not 204
    let (status, _, body) = raw(
        &node,
        None,
        "GET",
        "/dicom-web/studies?PatientID=nobody",
        &[],
    );
    assert_eq!((status, body.as_str()), (200, "[]"));
}

/// A non-loopback address of this machine, to connect from.
fn non_loopback_address() -> IpAddr {
    let out = Command::new("hostname").arg("-I").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|a| a.is_ipv4() && !a.is_loopback())
        .expect("the access test needs a non-loopback IPv4 address on this machine")
}

#[test]
fn qido_access_hook_and_cors() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("node.toml");
    let write_config = |allow_remote: bool| {
        std::fs::write(
            &config,
            format!(
                "min_free_mb = 16\nbind = \"0.0.0.0\"\naccept_any_ae = true\n\
                 dicomweb_allow_remote = {allow_remote}\n\
                 cors_origins = [\"http://localhost:3000\"]\n"
            ),
        )
        .unwrap();
    };
    write_config(false);
    let mut node = Node::start_with(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let me = non_loopback_address();

    // loopback: allowed; another address: 403 with a problem body
    assert_eq!(raw(&node, None, "GET", "/dicom-web/studies", &[]).0, 200);
    let (status, _, body) = raw(&node, Some(me), "GET", "/dicom-web/studies", &[]);
    assert_eq!(status, 403, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], 403);
    // the hook guards DICOMweb only
    assert_eq!(raw(&node, Some(me), "GET", "/healthz", &[]).0, 200);

    // CORS preflight for the configured origin, none for another
    let preflight = |origin: &str| {
        raw(
            &node,
            None,
            "OPTIONS",
            "/dicom-web/studies",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "accept"),
            ],
        )
    };
    let (status, head, _) = preflight("http://localhost:3000");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("access-control-allow-origin: http://localhost:3000"),
        "{head}"
    );
    assert!(head.contains("access-control-allow-methods"), "{head}");
    let (_, head, _) = preflight("http://evil.example");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    let (_, head, _) = raw(
        &node,
        None,
        "GET",
        "/dicom-web/studies",
        &[("Origin", "http://localhost:3000")],
    );
    assert!(
        head.contains("access-control-allow-origin: http://localhost:3000"),
        "{head}"
    );

    // dicomweb_allow_remote = true opens it
    write_config(true);
    node.restart();
    let (status, _, body) = raw(&node, Some(me), "GET", "/dicom-web/studies", &[]);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn qido_caps_results_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("node.toml");
    std::fs::write(&config, "min_free_mb = 16\nmax_find_results = 3\n").unwrap();
    let node = Node::start_with(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let files: Vec<PathBuf> = uncompressed_corpus().into_iter().take(5).collect();
    assert_eq!(files.len(), 5);
    assert!(storescu(&node, &files).status.success());

    let get = |path: &str| {
        let (status, head, body) = raw(&node, None, "GET", path, &[]);
        assert_eq!(status, 200, "{path}: {body}");
        let n = serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len();
        (n, head)
    };
    // more matches than max_find_results: cut, with the 299 warning
    let (n, head) = get("/dicom-web/instances");
    assert_eq!(n, 3);
    assert!(head.contains("warning: 299 "), "{head}");
    // a limit under the cap is the client's choice: no warning
    let (n, head) = get("/dicom-web/instances?limit=2");
    assert_eq!(n, 2);
    assert!(!head.contains("warning:"), "{head}");
    // offset pages past the cap
    let (n, head) = get("/dicom-web/instances?offset=3");
    assert_eq!(n, 2);
    assert!(!head.contains("warning:"), "{head}");
}
