//! The SCP under the regional sharing policy (issue 6), against DCMTK and pynetdicom:
//! stores from a facility's AE are indexed under the facility's issuer; C-FIND, C-GET and
//! C-MOVE answer only what the actor (calling AE's facility, or the user of the
//! association's User Identity) may read, search a regional ID under every linked local
//! ID and answer under it; one audit record per request; a bad token rejects the
//! association.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use renkei_dimse::{Metrics, Scp, ScpOptions};
use renkei_share::admin::{NewFacility, NewUser};
use renkei_share::identity::{LocalId, NewPatient};
use renkei_share::{Actor, Share, ShareConfig};
use renkei_store::{Store, StoreOptions};
use tokio::sync::watch;

/// An SCP on a free loopback port, in process, with its store and (maybe) sharing domain.
struct Node {
    rt: tokio::runtime::Runtime,
    port: u16,
    stop: watch::Sender<bool>,
    store: Arc<Store>,
    share: Arc<Share>,
    remotes: renkei_dimse::scp::Remotes,
    tmp: tempfile::TempDir,
}

impl Node {
    fn start() -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open_with(
                &tmp.path().join("data"),
                StoreOptions {
                    min_free_bytes: 16 << 20,
                },
            )
            .unwrap(),
        );
        let share = Arc::new(Share::open(store.clone(), ShareConfig::default()).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let options = ScpOptions {
            share: Some(share.clone()),
            ..ScpOptions::default()
        };
        let remotes = options.remotes.clone();
        let scp = Arc::new(Scp::new(
            options,
            store.clone(),
            Arc::new(Metrics::default()),
        ));
        let (stop, stop_rx) = watch::channel(false);
        rt.spawn(scp.serve(listener, stop_rx));
        Node {
            rt,
            port,
            stop,
            store,
            share,
            remotes,
            tmp,
        }
    }

    /// Records in the audit chain (checked intact).
    fn audit_records(&self) -> u64 {
        let report = renkei_share::audit::verify(self.store.index()).unwrap();
        assert_eq!(report.problem, None);
        report.records
    }

    /// A DCMTK tool with `-aet calling -aec RENKEI`, the given options, `-k` keys.
    fn dcmtk(&self, program: &str, calling: &str, options: &[&str], keys: &[&str]) -> String {
        let mut cmd = Command::new(program);
        cmd.env("TCP_NODELAY", "1")
            .arg("-v")
            .args(options)
            .args(["-aet", calling, "-aec", "RENKEI"]);
        for k in keys {
            cmd.args(["-k", k]);
        }
        let o = cmd
            .args(["127.0.0.1", &self.port.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e} (DCMTK installed? scripts/setup.sh)"));
        text(&o)
    }

    fn storescu(&self, calling: &str, files: &[PathBuf]) {
        let o = Command::new("storescu")
            .env("TCP_NODELAY", "1")
            .args(["-aet", calling, "-aec", "RENKEI"])
            .args(["127.0.0.1", &self.port.to_string()])
            .args(files)
            .output()
            .unwrap();
        assert!(o.status.success(), "storescu: {}", text(&o));
    }

    /// Study Instance UIDs and Patient IDs of a study-level C-FIND by PatientID.
    fn find_studies(&self, calling: &str, patient_id: &str) -> (Vec<String>, Vec<String>) {
        let log = self.dcmtk(
            "findscu",
            calling,
            &["-S"],
            &[
                "QueryRetrieveLevel=STUDY",
                &format!("PatientID={patient_id}"),
                "StudyInstanceUID",
                "IssuerOfPatientID",
            ],
        );
        assert!(
            log.contains("Received Final Find Response (Success)"),
            "{log}"
        );
        (values(&log, "(0020,000d)"), values(&log, "(0010,0020)"))
    }

    /// A patient-level C-GET by PatientID into a fresh folder: the files received.
    fn get_patient(&self, calling: &str, patient_id: &str, out: &str) -> Vec<PathBuf> {
        let dir = self.tmp.path().join(out);
        std::fs::create_dir_all(&dir).unwrap();
        let log = self.dcmtk(
            "getscu",
            calling,
            &["-P", "-od", dir.to_str().unwrap()],
            &[
                "QueryRetrieveLevel=PATIENT",
                &format!("PatientID={patient_id}"),
            ],
        );
        assert!(log.contains("Received C-GET Response (Success)"), "{log}");
        files_in(&dir)
    }

    /// pynetdicom C-FIND (study root, STUDY level) with a user identity of type 1 whose
    /// user name is `token`: None when the association was rejected, else the Patient IDs
    /// of the matches.
    fn py_find(&self, calling: &str, token: &str, patient_id: &str) -> Option<Vec<String>> {
        let python = std::env::var("RENKEI_PEERS").unwrap_or_else(|_| "/tmp/renkei-peers".into())
            + "/venv/bin/python";
        let o = Command::new(&python)
            .args(["-c", PY_FIND, "127.0.0.1", &self.port.to_string()])
            .args([calling, token, patient_id])
            .output()
            .unwrap_or_else(|e| panic!("{python}: {e} (scripts/setup.sh creates the venv)"));
        assert!(o.status.success(), "pynetdicom: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        let line = out.lines().last().unwrap_or_default().to_string();
        if line == "REJECTED" {
            return None;
        }
        let (status, matches) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        assert_eq!(status, "0", "final C-FIND status: {out}");
        Some(
            matches
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        // let serve() see it before the runtime goes
        self.rt
            .block_on(async { tokio::time::sleep(std::time::Duration::from_millis(20)).await });
    }
}

const PY_FIND: &str = r#"
import sys
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND
host, port, calling, token, pid = sys.argv[1:6]
ae = AE(ae_title=calling)
ae.add_requested_context(FIND)
ui = UserIdentityNegotiation()
ui.user_identity_type = 1
ui.primary_field = token.encode()
assoc = ae.associate(host, int(port), ae_title="RENKEI", ext_neg=[ui])
if not assoc.is_established:
    print("REJECTED" if assoc.is_rejected else "FAILED")
    sys.exit(0)
ds = Dataset()
ds.QueryRetrieveLevel = "STUDY"
ds.PatientID = pid
ds.StudyInstanceUID = ""
found, final = [], None
for status, ident in assoc.send_c_find(ds, FIND):
    if status is None:
        break
    if status.Status in (0xFF00, 0xFF01):
        found.append(str(ident.PatientID))
    else:
        final = status.Status
assoc.release()
print(f"{final} {','.join(found)}")
"#;

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// Values of `tag` in the responses of a DCMTK tool's verbose output (its dump of the
/// request, printed first, skipped).
fn values(log: &str, tag: &str) -> Vec<String> {
    let responses = log.split_once("Find Response").map_or("", |(_, r)| r);
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

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A small CT image of `patient_id` (no Issuer of Patient ID) in study `study` (a UID
/// suffix), written to `dir`.
fn ct(dir: &Path, patient_id: &str, name: &str, study: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let root = "1.2.826.0.1.3680043.10.1459";
    let sop = format!("{root}.3.{study}.1");
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag, vr, v: &str| obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    put(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE);
    put(tags::SOP_INSTANCE_UID, VR::UI, &sop);
    put(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &format!("{root}.1.{study}"),
    );
    put(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &format!("{root}.2.{study}"),
    );
    put(tags::PATIENT_ID, VR::LO, patient_id);
    put(tags::PATIENT_NAME, VR::PN, name);
    put(tags::PATIENT_BIRTH_DATE, VR::DA, "19700101");
    put(tags::STUDY_DATE, VR::DA, "20250101");
    put(tags::MODALITY, VR::CS, "CT");
    put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
    obj.put(DataElement::new(
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(1u16),
    ));
    obj.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(4u16),
    ));
    obj.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(4u16),
    ));
    obj.put(DataElement::new(
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(16u16),
    ));
    obj.put(DataElement::new(
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(12u16),
    ));
    obj.put(DataElement::new(
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(11u16),
    ));
    obj.put(DataElement::new(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0u16),
    ));
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U8(vec![0u8; 32].into()),
    ));
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
                .media_storage_sop_instance_uid(&sop),
        )
        .unwrap();
    let path = dir.join(format!("{study}.dcm"));
    file.write_to_file(&path).unwrap();
    path
}

fn study_uid(study: u32) -> String {
    format!("1.2.826.0.1.3680043.10.1459.1.{study}")
}

fn facility(code: &str, ae: &str) -> NewFacility {
    NewFacility {
        code: code.into(),
        name: format!("facility {code}"),
        kind: "hospital".into(),
        ae_titles: vec![ae.into()],
        ..Default::default()
    }
}

fn user(share: &Share, admin: &Actor, name: &str, facility: &str, role: &str) -> (Actor, String) {
    let (_, issued) = share
        .add_user(
            admin,
            NewUser {
                name: name.into(),
                facility: Some(facility.into()),
                role: role.into(),
                token_ttl_secs: None,
            },
        )
        .unwrap();
    let actor = Actor::User(share.authenticate(&issued.token).unwrap());
    (actor, issued.token)
}

/// The whole scenario of the issue: two facilities' local "12345" stay two patients; a
/// third facility sees them under the regional ID only after check-in; each facility sees
/// its own unlinked data; a user identity answers as the user; one audit record per
/// request.
#[test]
fn regional_access_over_dimse() {
    let node = Node::start();
    let share = &node.share;
    let admin_token = share.bootstrap_admin().unwrap().expect("empty node");
    let admin = Actor::User(share.authenticate(&admin_token.token).unwrap());
    share
        .add_facility(&admin, facility("FAC-A", "MOD_A"))
        .unwrap();
    share
        .add_facility(&admin, facility("FAC-B", "MOD_B"))
        .unwrap();
    share
        .add_facility(&admin, facility("FAC-C", "WS_C"))
        .unwrap();
    let (doctor_c, doctor_c_token) = user(share, &admin, "doctor C", "FAC-C", "doctor");
    let (_, ems_token) = user(share, &admin, "crew C", "FAC-C", "ems-crew");

    // the same local ID at two facilities, no issuer in the data; and A's own other patient
    let files = node.tmp.path().join("files");
    node.storescu(
        "MOD_A",
        &[
            ct(&files, "12345", "YAMADA^Taro", 1),
            ct(&files, "777", "SATO^Jiro", 3),
        ],
    );
    node.storescu("MOD_B", &[ct(&files, "12345", "YAMADA^Taro", 2)]);
    let issuer_of = |study| {
        node.store
            .study(&study_uid(study))
            .unwrap()
            .unwrap()
            .patient
    };
    assert_eq!(issuer_of(1).issuer, "FAC-A");
    assert_eq!(issuer_of(2).issuer, "FAC-B");
    assert_eq!(issuer_of(3).issuer, "FAC-A");
    assert_eq!(
        node.store.stats().unwrap().patients,
        3,
        "two facilities' 12345 are two patients"
    );

    let enrolled = share
        .enroll(
            &admin,
            NewPatient {
                family: "山田".into(),
                given: "太郎".into(),
                birth_date: "1970-01-01".into(),
                sex: "male".into(),
                consent: true,
                local_ids: vec![
                    LocalId {
                        issuer: "FAC-A".into(),
                        patient_id: "12345".into(),
                    },
                    LocalId {
                        issuer: "FAC-B".into(),
                        patient_id: "12345".into(),
                    },
                ],
                ..Default::default()
            },
        )
        .unwrap();
    let rid = enrolled.id.clone();

    // no treating relationship yet: C sees nothing, one audit record for the request
    let before = node.audit_records();
    let (studies, _) = node.find_studies("WS_C", &rid);
    assert!(studies.is_empty(), "{studies:?}");
    assert_eq!(node.audit_records(), before + 1);
    assert!(node.get_patient("WS_C", &rid, "get-before").is_empty());
    assert_eq!(node.audit_records(), before + 2);

    // A sees its own study under the regional ID, not B's
    let (studies, ids) = node.find_studies("MOD_A", &rid);
    assert_eq!(studies, vec![study_uid(1)]);
    assert_eq!(ids, vec![rid.clone()]);

    // after check-in with the card: both studies, under the regional ID
    let card = share.issue_card(&admin, &rid).unwrap();
    share.checkin(&doctor_c, &card.number).unwrap();
    let before = node.audit_records();
    let (mut studies, ids) = node.find_studies("WS_C", &rid);
    studies.sort();
    assert_eq!(studies, vec![study_uid(1), study_uid(2)]);
    assert_eq!(ids, vec![rid.clone(), rid.clone()]);
    assert_eq!(node.audit_records(), before + 1);
    let last = last_audit(&node);
    assert_eq!(last.entry.action, "C-FIND");
    assert_eq!(last.entry.patient, rid);
    assert_eq!(last.entry.actor, "AE:WS_C");
    assert_eq!(last.entry.facility, "FAC-C");
    assert!(last.entry.allowed);

    // a patient-level query by regional ID: one patient, the regional ID
    let log = node.dcmtk(
        "findscu",
        "WS_C",
        &["-P"],
        &[
            "QueryRetrieveLevel=PATIENT",
            &format!("PatientID={rid}"),
            "NumberOfPatientRelatedStudies",
        ],
    );
    assert_eq!(values(&log, "(0010,0020)"), vec![rid.clone()], "{log}");
    assert_eq!(values(&log, "(0020,1200)"), vec!["2".to_string()], "{log}");

    // C-GET by regional ID: both instances; one audit record
    let before = node.audit_records();
    assert_eq!(node.get_patient("WS_C", &rid, "get-after").len(), 2);
    assert_eq!(node.audit_records(), before + 1);
    assert_eq!(last_audit(&node).entry.action, "C-GET");
    assert_eq!(last_audit(&node).entry.detail, "2 matches");

    // C-MOVE by regional ID to movescu's own storage SCP
    let move_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    node.remotes
        .write()
        .unwrap()
        .insert("WS_C".into(), ("127.0.0.1".into(), move_port));
    let moved = node.tmp.path().join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    let before = node.audit_records();
    let log = node.dcmtk(
        "movescu",
        "WS_C",
        &[
            "-P",
            "-aem",
            "WS_C",
            "--port",
            &move_port.to_string(),
            "-od",
            moved.to_str().unwrap(),
        ],
        &["QueryRetrieveLevel=PATIENT", &format!("PatientID={rid}")],
    );
    assert!(
        log.contains("Received Final Move Response (Success)"),
        "{log}"
    );
    assert_eq!(files_in(&moved).len(), 2, "{log}");
    assert_eq!(node.audit_records(), before + 1);
    assert_eq!(last_audit(&node).entry.action, "C-MOVE");

    // A's unlinked patient: A only
    assert_eq!(node.find_studies("MOD_A", "777").0, vec![study_uid(3)]);
    assert!(node.find_studies("MOD_B", "777").0.is_empty());
    assert!(node.find_studies("WS_C", "777").0.is_empty());
    assert!(node.get_patient("WS_C", "777", "get-777").is_empty());
    // a universal study query from B: its own study only
    let log = node.dcmtk(
        "findscu",
        "MOD_B",
        &["-S"],
        &["QueryRetrieveLevel=STUDY", "StudyInstanceUID"],
    );
    assert_eq!(values(&log, "(0020,000d)"), vec![study_uid(2)], "{log}");

    // user identities: the doctor of C from any AE sees what C sees; an EMS crew member
    // reads no images; a bad token is rejected (and audited)
    let before = node.audit_records();
    let mut ids = node
        .py_find("ANY_AE", &doctor_c_token, &rid)
        .expect("accepted");
    ids.sort();
    assert_eq!(ids, vec![rid.clone(), rid.clone()]);
    assert_eq!(node.audit_records(), before + 1);
    let last = last_audit(&node);
    assert_eq!(
        last.entry.actor,
        match &doctor_c {
            Actor::User(p) => p.user_id.clone(),
            _ => unreachable!(),
        }
    );
    assert_eq!(node.py_find("WS_C", &ems_token, &rid), Some(vec![]));
    assert_eq!(node.audit_records(), before + 2);
    assert_eq!(node.py_find("WS_C", "rk_not-a-token", &rid), None);
    assert_eq!(node.audit_records(), before + 3);
    let last = last_audit(&node);
    assert!(!last.entry.allowed);
    assert!(
        last.entry.detail.contains("unknown token"),
        "{:?}",
        last.entry
    );
    // a revoked token too
    let doctor_id = match &doctor_c {
        Actor::User(p) => p.token_id.clone(),
        _ => unreachable!(),
    };
    share.revoke_token(&admin, &doctor_id).unwrap();
    assert_eq!(node.py_find("ANY_AE", &doctor_c_token, &rid), None);

    // a malformed request is one record too
    let before = node.audit_records();
    let log = node.dcmtk("getscu", "WS_C", &["-S"], &["QueryRetrieveLevel=STUDY"]);
    assert!(!log.contains("(Success)"), "{log}");
    assert_eq!(node.audit_records(), before + 1);
}

/// The last audit record.
fn last_audit(node: &Node) -> renkei_share::AuditRecord {
    let seq = node.audit_records();
    node.store
        .index()
        .get(
            renkei_store::keys::CF_AUDIT,
            &renkei_share::keys::audit_record(seq),
        )
        .unwrap()
        .expect("an audit record")
}

/// With the sharing domain but no facility (a single-site node): everyone sees
/// everything, data keeps its empty issuer, requests are still audited once.
#[test]
fn single_site_sees_everything() {
    let node = Node::start();
    let files = node.tmp.path().join("files");
    node.storescu("MOD_A", &[ct(&files, "12345", "YAMADA^Taro", 1)]);
    node.storescu("MOD_B", &[ct(&files, "12345", "YAMADA^Taro", 2)]);
    assert_eq!(
        node.store
            .study(&study_uid(1))
            .unwrap()
            .unwrap()
            .patient
            .issuer,
        ""
    );
    let before = node.audit_records();
    let (mut studies, _) = node.find_studies("ANYONE", "12345");
    studies.sort();
    assert_eq!(studies, vec![study_uid(1), study_uid(2)]);
    assert_eq!(node.audit_records(), before + 1);
    assert_eq!(node.get_patient("ANYONE", "12345", "get").len(), 2);
    assert_eq!(node.audit_records(), before + 2);
    // an unknown user name is ignored on a single-site node
    assert_eq!(
        node.py_find("ANYONE", "someone", "12345").map(|v| v.len()),
        Some(2)
    );
}
