//! The store path on a real RocksDB and real files in a temp dir: new, duplicate and
//! replaced instances, bad datasets, counters, and recovery after an interrupted store.

use std::path::{Path, PathBuf};

use renkei_store::{IngestMeta, IngestOutcome, Store, StoreError};

fn corpus(name: &str) -> PathBuf {
    std::env::current_dir()
        .unwrap()
        .join("../../testdata/corpus")
        .join(name)
}

/// Every file of the valid corpus, sorted.
fn valid_files() -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(corpus("valid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// (meta, dataset bytes) of a corpus file, as a C-STORE would deliver them.
fn as_received(path: &Path) -> (IngestMeta, Vec<u8>) {
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
        .open_file(path)
        .unwrap();
    let meta = obj.meta();
    let bytes = std::fs::read(path).unwrap();
    // the raw (0002,0000) value: dicom-object recomputes its own
    let group_len = u32::from_le_bytes(bytes[140..144].try_into().unwrap());
    let start = 144 + group_len as usize;
    (
        IngestMeta {
            sop_class_uid: meta.media_storage_sop_class_uid.clone(),
            sop_instance_uid: meta.media_storage_sop_instance_uid.clone(),
            transfer_syntax: meta.transfer_syntax.clone(),
            source_ae: "TEST".into(),
        },
        bytes[start..].to_vec(),
    )
}

fn store_bytes(store: &Store, meta: IngestMeta, data: &[u8]) -> Result<IngestOutcome, StoreError> {
    let mut ingest = store.begin_ingest(meta)?;
    for chunk in data.chunks(16 * 1024) {
        ingest.append(chunk)?;
    }
    store.finish_ingest(ingest).map(|(o, _)| o)
}

#[test]
fn new_duplicate_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (meta, data) = as_received(&corpus("valid/MR_small.dcm"));
    assert_eq!(
        store_bytes(&store, meta.clone(), &data).unwrap(),
        IngestOutcome::Stored
    );
    let s1 = store.stats().unwrap();
    assert_eq!(
        (s1.patients, s1.studies, s1.series, s1.instances),
        (1, 1, 1, 1)
    );

    assert_eq!(
        store_bytes(&store, meta.clone(), &data).unwrap(),
        IngestOutcome::Duplicate
    );
    assert_eq!(store.stats().unwrap(), s1);

    // the same SOP Instance UID in another transfer syntax: other bytes, replaces
    let (meta2, data2) = as_received(&corpus("valid/MR_small_implicit.dcm"));
    assert_eq!(meta2.sop_instance_uid, meta.sop_instance_uid);
    assert_eq!(
        store_bytes(&store, meta2.clone(), &data2).unwrap(),
        IngestOutcome::Replaced
    );
    let s2 = store.stats().unwrap();
    assert_eq!(s2.instances, 1);
    let rec = store
        .instance(meta.sop_instance_uid.trim_end_matches('\0'))
        .unwrap()
        .unwrap();
    assert_eq!(rec.transfer_syntax, "1.2.840.10008.1.2");
    assert_eq!(s2.bytes, rec.size);
    assert_eq!(store.study_instance_count(&rec.study_uid).unwrap(), 1);
    assert_eq!(
        store.series_instances(&rec.series_uid).unwrap(),
        vec![rec.sop_uid.clone()]
    );
    assert_eq!(
        store.study_series(&rec.study_uid).unwrap(),
        vec![rec.series_uid.clone()]
    );
    // the old version's blob is gone, the new one is there, check is clean
    let report = store.check(false).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        std::fs::read(store.blob_path(&rec.blob_hash))
            .unwrap()
            .len() as u64,
        rec.size
    );
}

#[test]
fn every_valid_corpus_file_stores() {
    // encapsulated (JPEG, JPEG 2000, RLE), deflated, big endian, multi-frame, no pixels
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let files = valid_files();
    for f in files {
        let (meta, data) = as_received(&f);
        if let Err(e) = store_bytes(&store, meta, &data) {
            panic!("{}: {e}", f.display());
        }
    }
    assert!(store.check(false).unwrap().is_clean());
}

#[test]
fn stored_blob_is_a_readable_file_with_the_sent_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let path = corpus("valid/CT_small.dcm");
    let (meta, data) = as_received(&path);
    store_bytes(&store, meta.clone(), &data).unwrap();
    let rec = store
        .instance(meta.sop_instance_uid.trim_end_matches('\0'))
        .unwrap()
        .unwrap();
    let blob = std::fs::read(store.blob_path(&rec.blob_hash)).unwrap();
    assert!(blob.ends_with(&data));
    let obj = dicom_object::open_file(store.blob_path(&rec.blob_hash)).unwrap();
    assert_eq!(
        obj.meta().transfer_syntax(),
        meta.transfer_syntax.trim_end_matches('\0')
    );
    assert_eq!((rec.rows, rec.columns, rec.frames), (128, 128, 1));
    let study = store.study(&rec.study_uid).unwrap().unwrap();
    let patient = store.patient(&study.patient).unwrap().unwrap();
    assert!(!patient.name.alphabetic.is_empty());
    assert_eq!(
        store.patient_studies(&study.patient).unwrap(),
        vec![rec.study_uid]
    );
}

#[test]
fn bad_datasets_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (meta, data) = as_received(&corpus("valid/MR_small.dcm"));

    // a data set cut short inside its pixel data
    let err = store_bytes(&store, meta.clone(), &data[..data.len() - 100]).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");

    // a command whose SOP Instance UID is not a UID
    let mut bad = meta.clone();
    bad.sop_instance_uid = "dccc9599".into();
    let err = store_bytes(&store, bad, &data).unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid Affected SOP Instance UID"),
        "{err}"
    );

    // garbage bytes
    let err = store_bytes(&store, meta.clone(), &[0xff; 100]).unwrap_err();
    assert!(
        matches!(err, StoreError::Unparseable(_) | StoreError::Invalid(_)),
        "{err}"
    );

    // a dataset without Study/Series UIDs
    let (m, d) = as_received(&corpus("edge/JPEGLSNearLossless_08.dcm"));
    let err = store_bytes(&store, m, &d).unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(ref s) if s.contains("missing")),
        "{err}"
    );

    assert_eq!(store.stats().unwrap().instances, 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert!(store.check(false).unwrap().is_clean());
}

#[test]
fn the_dataset_uids_win_over_the_command() {
    // rtplan.dcm's file meta names another SOP Instance UID than its data set; a sender
    // that copies the meta into the command must still get the image stored, under the
    // data set's UID, with a blob whose meta agrees
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (meta, data) = as_received(&corpus("valid/rtplan.dcm"));
    assert_eq!(
        store_bytes(&store, meta, &data).unwrap(),
        IngestOutcome::Stored
    );
    let uid = "1.2.777.777.77.7.7777.7777.20030903150023";
    let rec = store.instance(uid).unwrap().unwrap();
    let blob = dicom_object::open_file(store.blob_path(&rec.blob_hash)).unwrap();
    assert_eq!(blob.meta().media_storage_sop_instance_uid(), uid);
    assert!(std::fs::read(store.blob_path(&rec.blob_hash))
        .unwrap()
        .ends_with(&data));
    assert!(store.check(false).unwrap().is_clean());
}

#[test]
fn restart_cleans_interrupted_stores() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let (meta, data) = as_received(&corpus("valid/CT_small.dcm"));
        store_bytes(&store, meta, &data).unwrap();
        // an incoming object cut off mid-transfer: its spool is never finished
        let (meta, data) = as_received(&corpus("valid/MR_small.dcm"));
        let mut ingest = store.begin_ingest(meta).unwrap();
        ingest.append(&data[..1000]).unwrap();
        std::mem::forget(ingest); // as if the process died
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(store.stats().unwrap().instances, 1);
    assert!(store.check(false).unwrap().is_clean());
}

#[test]
fn check_finds_missing_corrupt_and_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for f in [
        "valid/CT_small.dcm",
        "valid/MR_small.dcm",
        "valid/rtplan.dcm",
    ] {
        let (meta, data) = as_received(&corpus(f));
        store_bytes(&store, meta, &data).unwrap();
    }
    let ct = store
        .instance("1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322")
        .unwrap()
        .unwrap();
    let mr = store
        .instance("1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457")
        .unwrap()
        .unwrap();
    std::fs::remove_file(store.blob_path(&ct.blob_hash)).unwrap();
    let mut bytes = std::fs::read(store.blob_path(&mr.blob_hash)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(store.blob_path(&mr.blob_hash), bytes).unwrap();
    let orphan = store.blob_path(&[0xab; 32]);
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"stray").unwrap();

    let r = store.check(false).unwrap();
    assert_eq!(r.instances, 3);
    assert_eq!(r.missing.len(), 1);
    assert_eq!(r.corrupt.len(), 1);
    assert_eq!(r.orphans, vec![orphan.clone()]);
    assert!(!r.is_clean());
    let r = store.check(true).unwrap();
    assert_eq!(r.removed, 1);
    assert!(!orphan.exists());
    // repair never touches referenced blobs: the corrupt one is still reported
    assert_eq!(store.check(false).unwrap().corrupt.len(), 1);
}

#[test]
fn text_is_indexed_as_utf8_by_specific_character_set() {
    // single-valued sets decoded by dicom-rs, and ISO 2022 code extensions (Japanese,
    // Korean) decoded by renkei-model's charset module
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (file, alphabetic, ideographic) in [
        ("charset/chrFren.dcm", "Buc^Jérôme", ""),
        ("charset/chrGerm.dcm", "Äneas^Rüdiger", ""),
        ("charset/chrX1.dcm", "Wang^XiaoDong", "王^小東"),
        ("charset/chrH31.dcm", "Yamada^Tarou", "山田^太郎"),
        ("charset/chrKoreanMulti.dcm", "김희중", ""),
    ] {
        let (meta, data) = as_received(&corpus(file));
        let uid = meta.sop_instance_uid.trim_end_matches('\0').to_string();
        store_bytes(&store, meta, &data).unwrap();
        let rec = store.instance(&uid).unwrap().unwrap();
        let study = store.study(&rec.study_uid).unwrap().unwrap();
        let patient = store.patient(&study.patient).unwrap().unwrap();
        assert_eq!(patient.name.alphabetic, alphabetic, "{file}");
        assert_eq!(patient.name.ideographic, ideographic, "{file}");
        if file.ends_with("chrH31.dcm") {
            assert_eq!(patient.name.phonetic, "やまだ^たろう");
        }
    }
}

#[test]
fn study_queries_use_the_secondary_indexes() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use renkei_model::query::{InfoModel, Query};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let files = valid_files();
    for f in &files {
        let (meta, data) = as_received(f);
        store_bytes(&store, meta, &data).unwrap();
    }
    let mut all = Vec::new();
    let q = |pairs: &[(dicom_core::Tag, VR, &str)]| {
        let mut o = dicom_object::InMemDicomObject::new_empty();
        o.put(DataElement::new(
            dicom_dictionary_std::tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from("STUDY"),
        ));
        for (t, vr, v) in pairs {
            o.put(DataElement::new(*t, *vr, PrimitiveValue::from(*v)));
        }
        Query::from_identifier(&o, InfoModel::StudyRoot).unwrap()
    };
    store
        .find(&q(&[]), |e| {
            all.push(e.study.unwrap());
            true
        })
        .unwrap();
    // for each way in, the index answer equals a scan filtered by hand
    let t = dicom_dictionary_std::tags::ACCESSION_NUMBER;
    let with_acc = all.iter().find(|s| !s.accession_number.is_empty()).unwrap();
    let mut got = Vec::new();
    store
        .find(&q(&[(t, VR::SH, &with_acc.accession_number)]), |e| {
            got.push(e.study.unwrap().study_uid);
            true
        })
        .unwrap();
    let want: Vec<_> = all
        .iter()
        .filter(|s| s.accession_number == with_acc.accession_number)
        .map(|s| s.study_uid.clone())
        .collect();
    assert_eq!(got.len(), want.len());
    let t = dicom_dictionary_std::tags::STUDY_DATE;
    let mut got = 0;
    store
        .find(&q(&[(t, VR::DA, "20040101-20051231")]), |_| {
            got += 1;
            true
        })
        .unwrap();
    let want = all
        .iter()
        .filter(|s| s.study_date.as_str() >= "20040101" && s.study_date.as_str() <= "20051231")
        .count();
    assert!(want > 0);
    assert_eq!(got, want);
    // reopening does not rebuild (marker present) and answers the same
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let mut again = 0;
    store
        .find(&q(&[(t, VR::DA, "20040101-20051231")]), |_| {
            again += 1;
            true
        })
        .unwrap();
    assert_eq!(again, want);
}

#[test]
fn name_modality_and_patient_keys_use_indexes_and_agree_with_a_scan() {
    use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
    use dicom_dictionary_std::tags;
    use renkei_model::query::{InfoModel, Query};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut files = valid_files();
    files.extend(
        [
            "charset/chrH31.dcm",
            "charset/chrX1.dcm",
            "charset/chrFren.dcm",
        ]
        .map(corpus),
    );
    for f in &files {
        let (meta, data) = as_received(f);
        // a few valid files share UIDs or fail on purpose elsewhere; the index is what counts
        let _ = store_bytes(&store, meta, &data);
    }
    let query = |level: &str, keys: &[(Tag, VR, &str)], fold: bool| {
        let mut o = dicom_object::InMemDicomObject::new_empty();
        o.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from(level),
        ));
        for (t, vr, v) in keys {
            o.put(DataElement::new(*t, *vr, PrimitiveValue::from(*v)));
        }
        let model = if level == "PATIENT" {
            InfoModel::PatientRoot
        } else {
            InfoModel::StudyRoot
        };
        let mut q = Query::from_identifier(&o, model).unwrap();
        q.fold_names = fold;
        q
    };
    let ids = |q: &Query| {
        let mut out = Vec::new();
        store
            .find(q, |e| {
                let st = e.study.map(|s| s.study_uid).unwrap_or_default();
                out.push(format!("{}/{}", e.patient.key.patient_id, st));
                true
            })
            .unwrap();
        out.sort();
        out
    };
    // the same query's answer by brute force: every entity of the level, filtered
    let scanned = |q: &Query| {
        let mut all = query(q.level.as_str(), &[], q.fold_names);
        all.return_tags = q.return_tags.clone();
        let mut out = Vec::new();
        store
            .find(&all, |e| {
                if q.matches(|t| e.value(t)) {
                    let st = e.study.map(|s| s.study_uid).unwrap_or_default();
                    out.push(format!("{}/{}", e.patient.key.patient_id, st));
                }
                true
            })
            .unwrap();
        out.sort();
        out
    };
    let pn = tags::PATIENT_NAME;
    let mis = tags::MODALITIES_IN_STUDY;
    // (query, the plan it must use, how many it must find when that is known)
    let cases: Vec<(Query, &str, Option<usize>)> = vec![
        (
            query("STUDY", &[(pn, VR::PN, "Yamada*")], true),
            "idx n",
            Some(1),
        ),
        (
            query("STUDY", &[(pn, VR::PN, "山田*")], true),
            "idx n",
            Some(1),
        ),
        (
            query("STUDY", &[(pn, VR::PN, "ﾔﾏﾀﾞ*")], true),
            "idx n",
            Some(1),
        ),
        (
            query("STUDY", &[(pn, VR::PN, "yamada*")], true),
            "idx n",
            Some(1),
        ),
        (
            query("STUDY", &[(pn, VR::PN, "Yamada*")], false),
            "idx n",
            Some(1),
        ),
        (
            query("STUDY", &[(pn, VR::PN, "yamada*")], false),
            "idx n",
            Some(0),
        ),
        (
            query("STUDY", &[(pn, VR::PN, "Yamada^Tarou")], true),
            "idx n",
            Some(1),
        ),
        (query("STUDY", &[(pn, VR::PN, "*ou")], true), "scan", None),
        (query("STUDY", &[(mis, VR::CS, "MR")], true), "idx m", None),
        (
            query("STUDY", &[(mis, VR::CS, "CT\\MR")], true),
            "idx m",
            None,
        ),
        (
            query(
                "STUDY",
                &[(mis, VR::CS, "CT"), (tags::PATIENT_ID, VR::LO, "1CT1")],
                true,
            ),
            "idx p",
            Some(1),
        ),
        (
            query("PATIENT", &[(tags::PATIENT_ID, VR::LO, "1CT1")], true),
            "idx p",
            Some(1),
        ),
        (
            query("PATIENT", &[(pn, VR::PN, "Buc*")], true),
            "idx n",
            Some(1),
        ),
        (
            query("PATIENT", &[(pn, VR::PN, "王*")], true),
            "idx n",
            Some(1),
        ),
    ];
    for (q, plan, count) in &cases {
        let explained = store.explain(q).unwrap();
        assert!(explained.starts_with(plan), "{:?}: {explained}", q.keys);
        let found = ids(q);
        assert_eq!(found, scanned(q), "{:?}", q.keys);
        if let Some(n) = count {
            assert_eq!(found.len(), *n, "{:?}: {found:?}", q.keys);
        }
    }
    let (mr, ct_or_mr) = (ids(&cases[8].0).len(), ids(&cases[9].0).len());
    assert!(mr > 0 && ct_or_mr > mr, "MR {mr}, CT or MR {ct_or_mr}");
}
