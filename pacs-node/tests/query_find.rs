//! C-FIND against DCMTK findscu and pynetdicom: levels, matching kinds, derived keys,
//! Japanese names in kanji, kana and romaji, cancel, limits, bad identifiers.

mod common;

use std::collections::BTreeSet;

use common::*;

fn findscu(node: &Node, root: &str, keys: &[&str]) -> String {
    dcmtk_qr(node, "findscu", &[root], keys)
}

/// Values of `tag` in findscu's dumps of the responses (its dump of the request, printed
/// first, is skipped).
fn values(text: &str, tag: &str) -> Vec<String> {
    let responses = text.split_once("Find Response").map_or("", |(_, r)| r);
    responses
        .lines()
        .filter(|l| l.contains(tag))
        .filter_map(|l| {
            Some(
                l.split_once('[')?
                    .1
                    .split_once(']')?
                    .0
                    .trim_matches(['\0', ' '])
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn c_find_levels_matching_and_japanese() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"));
    dcmsend_dir(&node, &corpus("valid"));
    dcmsend_dir(&node, &corpus("charset"));
    let stats = node.statistics();

    // universal study query: one pending response per study, derived keys filled
    let all = findscu(
        &node,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            "StudyInstanceUID",
            "ModalitiesInStudy",
            "NumberOfStudyRelatedInstances",
        ],
    );
    assert!(
        all.contains("Received Final Find Response (Success)"),
        "{all}"
    );
    let uids = values(&all, "(0020,000d)");
    assert_eq!(
        uids.len() as u64,
        stats["studies"].as_u64().unwrap(),
        "{all}"
    );
    let counts: u64 = values(&all, "(0020,1208)")
        .iter()
        .map(|v| v.parse::<u64>().unwrap())
        .sum();
    assert_eq!(counts, stats["instances"].as_u64().unwrap());
    assert!(values(&all, "(0008,0061)").iter().any(|m| m == "CT"));

    // date range: only studies inside it
    let ranged = findscu(
        &node,
        "-S",
        &["QueryRetrieveLevel=STUDY", "StudyDate=20040101-20041231"],
    );
    let dates = values(&ranged, "(0008,0020)");
    assert!(!dates.is_empty());
    assert!(
        dates
            .iter()
            .all(|d| d.as_str() >= "20040101" && d.as_str() <= "20041231"),
        "{dates:?}"
    );

    // a multi-valued return key used as a matching key: studies with a CT series
    let ct = findscu(
        &node,
        "-S",
        &["QueryRetrieveLevel=STUDY", "ModalitiesInStudy=CT"],
    );
    let mods = values(&ct, "(0008,0061)");
    assert!(!mods.is_empty(), "{ct}");
    assert!(
        mods.iter().all(|m| m.split('\\').any(|v| v == "CT")),
        "{mods:?}"
    );

    // UID list and series/image levels below it
    let two: Vec<&str> = uids.iter().take(2).map(String::as_str).collect();
    let list = findscu(
        &node,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("StudyInstanceUID={}", two.join("\\")),
        ],
    );
    assert_eq!(values(&list, "(0020,000d)").len(), 2);
    let series = findscu(
        &node,
        "-S",
        &[
            "QueryRetrieveLevel=SERIES",
            &format!("StudyInstanceUID={}", two[0]),
            "SeriesInstanceUID",
            "Modality",
        ],
    );
    let series_uids = values(&series, "(0020,000e)");
    assert!(!series_uids.is_empty(), "{series}");
    let images = findscu(
        &node,
        "-S",
        &[
            "QueryRetrieveLevel=IMAGE",
            &format!("StudyInstanceUID={}", two[0]),
            &format!("SeriesInstanceUID={}", series_uids[0]),
            "SOPInstanceUID",
        ],
    );
    assert!(!values(&images, "(0008,0018)").is_empty(), "{images}");

    // a hierarchical query without its parent's unique key is refused with a reason
    let bad = pynetdicom_find(&node, "study", "SERIES", &["SeriesInstanceUID="]);
    assert_eq!(bad.final_status, Some(0xA900));
    assert!(bad.comment.unwrap().contains("StudyInstanceUID"));

    // Japanese: kanji, kana and romaji find the same patient (ISO 2022 IR 87 on ingest)
    let mut found = BTreeSet::new();
    for key in [
        "山田*",
        "やまだ*",
        "Yamada*",
        "yamada^tarou",
        "ヤマダ*",
        "ﾔﾏﾀﾞ*",
    ] {
        let r = pynetdicom_find(
            &node,
            "study",
            "STUDY",
            &[&format!("PatientName={key}"), "StudyInstanceUID="],
        );
        assert_eq!(r.final_status, Some(0), "{key}");
        // chrJapMulti.dcm holds another patient named only in kana (やまだ^たろう)
        let hit = r
            .matches
            .iter()
            .find(|m| m["PatientName"] == "Yamada^Tarou=山田^太郎=やまだ^たろう")
            .unwrap_or_else(|| panic!("{key}: {:?}", r.matches));
        assert!(r.matches.len() <= 2, "{key}: {:?}", r.matches);
        found.insert(hit["StudyInstanceUID"].clone());
    }
    assert_eq!(found.len(), 1);

    // the same query sent the way Japanese workstations do: ISO 2022 IR 87 with escapes
    let r = pynetdicom_find(
        &node,
        "study",
        "STUDY",
        &[
            "--charset",
            "\\ISO 2022 IR 87",
            "PatientName=山田^太郎",
            "StudyInstanceUID=",
        ],
    );
    assert_eq!(r.final_status, Some(0));
    assert_eq!(r.matches.len(), 1, "{:?}", r.matches);
    assert!(found.contains(&r.matches[0]["StudyInstanceUID"]));

    // patient root: PATIENT level, then the patient's studies by PatientID
    let patients = pynetdicom_find(
        &node,
        "patient",
        "PATIENT",
        &["PatientID=", "NumberOfPatientRelatedStudies="],
    );
    assert_eq!(patients.final_status, Some(0));
    assert_eq!(
        patients.matches.len() as u64,
        stats["patients"].as_u64().unwrap()
    );
    let pid = patients
        .matches
        .iter()
        .map(|m| &m["PatientID"])
        .find(|p| !p.is_empty())
        .unwrap();
    let studies = pynetdicom_find(
        &node,
        "patient",
        "STUDY",
        &[&format!("PatientID={pid}"), "StudyInstanceUID="],
    );
    assert_eq!(studies.final_status, Some(0));
    assert!(!studies.matches.is_empty());
}

#[test]
fn c_find_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("node.toml");
    std::fs::write(&config, "max_find_results = 5\nmin_free_mb = 16\n").unwrap();
    let node = Node::start_with(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    dcmsend_dir(&node, &corpus("valid"));

    // over the limit: cut with 0xA700 and a comment, not a hang
    let r = pynetdicom_find(&node, "study", "STUDY", &["StudyInstanceUID="]);
    assert_eq!(r.matches.len(), 5);
    assert_eq!(r.final_status, Some(0xA700));
    assert!(r.comment.unwrap().contains("more than 5"));

    assert!(node.echo());
}

#[test]
fn c_find_cancel() {
    // many studies, and the C-CANCEL sent right behind the request (not after reading a
    // response: pynetdicom decodes a pending response more slowly than the node sends the
    // next thousand), so it reaches the node while matches are still streaming
    let tmp = tempfile::tempdir().unwrap();
    let files = synth(&tmp.path().join("synth"), 1000, 1, 32);
    let node = Node::start(&tmp.path().join("data"));
    let out = storescu(&node, &files);
    assert!(out.status.success(), "{out:?}");
    let r = pynetdicom_find(
        &node,
        "study",
        "STUDY",
        &["--cancel-after", "0", "StudyInstanceUID="],
    );
    assert_eq!(r.final_status, Some(0xFE00), "{} matches", r.matches.len());
    assert!(r.matches.len() < 1000, "{} matches", r.matches.len());
    // the association and the node carry on
    let again = pynetdicom_find(&node, "study", "STUDY", &["StudyInstanceUID="]);
    assert_eq!(again.final_status, Some(0));
    assert_eq!(again.matches.len(), 1000);
    assert!(node.echo());
}
