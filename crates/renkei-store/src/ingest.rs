//! The store path of one instance (ARCHITECTURE "C-STORE"): received bytes are appended to
//! a spool behind a file meta header we write; [`Store::finish_ingest`] then parses the
//! header up to Pixel Data, extracts the index records, publishes the blob (fsync, rename,
//! fsync dir) and commits one write batch with a synced WAL. Only then is success returned.
//!
//! Duplicates: a SOP Instance UID already stored with identical bytes is a success that
//! changes nothing. With different bytes the new version replaces the old one atomically
//! (one batch moves every key), and the old blob is removed after the commit; a modality
//! that re-sends a corrected image expects the correction to win. See docs/STORAGE.md.

use std::time::{SystemTime, UNIX_EPOCH};

use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::OpenFileOptions;

use renkei_model::charset::CharacterSets;
use renkei_model::extract::text;
use renkei_model::uid::{
    is_valid_uid, trim_uid, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME,
};
use renkei_model::{extract_record, IndexRecord, InstanceRecord, CHARSET_TEXT_TAGS};

use std::io::{Read, Seek, SeekFrom};

use crate::blob::Spool;
use crate::error::{Result, StoreError};
use crate::{keys, Store};

/// What the sender told us about the object before sending it.
#[derive(Debug, Clone, Default)]
pub struct IngestMeta {
    /// Affected SOP Class UID of the C-STORE request.
    pub sop_class_uid: String,
    /// Affected SOP Instance UID of the C-STORE request.
    pub sop_instance_uid: String,
    /// Transfer syntax the dataset is encoded in.
    pub transfer_syntax: String,
    /// Calling AE title (empty for HTTP).
    pub source_ae: String,
}

/// An instance being received.
#[derive(Debug)]
pub struct Ingest {
    spool: Spool,
    meta: IngestMeta,
    header_len: u64,
    default_issuer: String,
}

impl Ingest {
    /// Append dataset bytes as they arrive.
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.spool.append(bytes)
    }

    /// Bytes written so far (file meta included).
    pub fn size(&self) -> u64 {
        self.spool.size()
    }

    /// The Issuer of Patient ID to index the instance under when its data set has none:
    /// the sending facility (regional sharing), so that two facilities' local ID "12345"
    /// stay two patients. The blob keeps the data set as received.
    pub fn set_default_issuer(&mut self, issuer: &str) {
        self.default_issuer = issuer.to_string();
    }
}

/// What storing an instance did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// A new instance.
    Stored,
    /// The same SOP Instance UID with identical bytes was already stored; nothing changed.
    Duplicate,
    /// The SOP Instance UID was stored with other bytes; this version replaced it.
    Replaced,
}

impl Store {
    /// Start receiving an instance: a spool with the preamble and a file meta group.
    pub fn begin_ingest(&self, meta: IngestMeta) -> Result<Ingest> {
        self.check_free_space()?;
        for (what, uid) in [
            ("Affected SOP Class UID", &meta.sop_class_uid),
            ("Affected SOP Instance UID", &meta.sop_instance_uid),
        ] {
            if !is_valid_uid(trim_uid(uid)) {
                return Err(StoreError::Invalid(format!("invalid {what} {uid:?}")));
            }
        }
        let header = file_header(
            &meta.sop_class_uid,
            &meta.sop_instance_uid,
            &meta.transfer_syntax,
        )?;
        let mut spool = self.blobs.spool()?;
        spool.append(&header)?;
        Ok(Ingest {
            spool,
            meta,
            header_len: header.len() as u64,
            default_issuer: String::new(),
        })
    }

    /// A new spool whose file meta names the dataset's own UIDs, with the received dataset
    /// bytes copied behind it.
    fn respool(
        &self,
        old: &Spool,
        header_len: u64,
        sop_class: &str,
        sop_uid: &str,
        ts: &str,
    ) -> Result<Spool> {
        let header = file_header(sop_class, sop_uid, ts)?;
        let mut spool = self.blobs.spool()?;
        spool.append(&header)?;
        let mut f =
            std::fs::File::open(old.path()).map_err(|e| StoreError::io("read", old.path(), e))?;
        f.seek(SeekFrom::Start(header_len))
            .map_err(|e| StoreError::io("read", old.path(), e))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| StoreError::io("read", old.path(), e))?;
            if n == 0 {
                break;
            }
            spool.append(&buf[..n])?;
        }
        Ok(spool)
    }

    /// Finish an instance: parse, index, make durable. Blocking (file I/O and fsync): call
    /// it off the async runtime.
    pub fn finish_ingest(&self, ingest: Ingest) -> Result<(IngestOutcome, InstanceRecord)> {
        let Ingest {
            mut spool,
            meta,
            header_len,
            default_issuer,
        } = ingest;
        spool.flush()?;
        let obj = OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(spool.path())
            .map_err(|e| StoreError::Unparseable(error_chain(&e)))?;
        let mut rec = extract_record(&obj, &meta.transfer_syntax)
            .map_err(|e| StoreError::Invalid(format!("cannot index the dataset: {e}")))?;
        let charsets = CharacterSets::parse(&text(&obj, tags::SPECIFIC_CHARACTER_SET));
        drop(obj);
        if charsets.needs_own_decoding() {
            // dicom-rs decoded with the first value only: decode the indexed text again
            match crate::rawtext::raw_values(
                spool.path(),
                header_len,
                &meta.transfer_syntax,
                CHARSET_TEXT_TAGS,
            ) {
                Ok(Some(values)) => {
                    for (tag, bytes) in values {
                        let pn = CHARSET_TEXT_TAGS.iter().any(|&(t, pn)| t == tag && pn);
                        rec.set_text(tag, &charsets.decode(&bytes, pn));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot re-read text for its character set"),
            }
        }
        if rec.patient.key.issuer.is_empty() && !default_issuer.is_empty() {
            rec.patient.key.issuer = default_issuer.clone();
            rec.study.patient.issuer = default_issuer;
        }
        crate::validate::check_complete(spool.path(), header_len, &meta.transfer_syntax)
            .map_err(StoreError::Unparseable)?;
        // The dataset's own UIDs identify the object. Some senders put other values in the
        // command (e.g. copied from a stale file meta group); refusing them would lose an
        // image other PACS accept, so the dataset wins and the blob's meta is rewritten to
        // match it.
        let (cmd_uid, cmd_class) = (
            trim_uid(&meta.sop_instance_uid),
            trim_uid(&meta.sop_class_uid),
        );
        if rec.instance.sop_uid != cmd_uid || rec.instance.sop_class_uid != cmd_class {
            tracing::warn!(
                command_sop_uid = cmd_uid,
                dataset_sop_uid = %rec.instance.sop_uid,
                command_sop_class = cmd_class,
                dataset_sop_class = %rec.instance.sop_class_uid,
                "C-STORE command and data set disagree; storing under the data set's UIDs"
            );
            spool = self.respool(
                &spool,
                header_len,
                &rec.instance.sop_class_uid,
                &rec.instance.sop_uid,
                &meta.transfer_syntax,
            )?;
        }

        let _guard = self
            .uid_lock(&rec.instance.sop_uid)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let old = self.instance(&rec.instance.sop_uid)?;
        // the object may have eaten into the reserve while it arrived
        self.check_free_space()?;
        let published = self.blobs.publish(&mut spool)?;
        if let Some(old) = &old {
            if old.blob_hash == published.hash {
                return Ok((IngestOutcome::Duplicate, old.clone()));
            }
        }

        let inst = &mut rec.instance;
        inst.size = published.size;
        inst.blob_hash = published.hash;
        inst.source_ae = meta.source_ae;
        inst.stored_at_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or_default();

        let mut b = self.index.batch();
        self.put_records(&mut b, &rec, old.as_ref())?;
        b.commit()?;
        // the blob is referenced now: its temp name can go
        drop(spool);

        let outcome = match old {
            None => IngestOutcome::Stored,
            Some(old) => {
                // the index no longer points at the old blob; a failure here only leaves
                // an orphan for `check --repair`
                if let Err(e) = self.blobs.remove(&old.blob_hash) {
                    tracing::warn!(error = %e, "could not remove replaced blob");
                }
                IngestOutcome::Replaced
            }
        };
        Ok((outcome, rec.instance))
    }

    /// Every index write of one instance (records, secondary indexes, links, counters),
    /// replacing `old` when the SOP Instance UID was stored before. One code path for
    /// C-STORE and the benchmark bulk load.
    pub(crate) fn put_records(
        &self,
        b: &mut crate::index::Batch<'_>,
        rec: &IndexRecord,
        old: Option<&InstanceRecord>,
    ) -> Result<()> {
        b.put(
            keys::CF_INSTANCE,
            rec.instance.sop_uid.as_bytes(),
            &rec.instance,
        )?;
        b.put(
            keys::CF_SERIES,
            rec.series.series_uid.as_bytes(),
            &rec.series,
        )?;
        b.put(keys::CF_STUDY, rec.study.study_uid.as_bytes(), &rec.study)?;
        for key in
            crate::find::study_index_keys(&rec.study, &rec.patient.name, &rec.series.modality)
        {
            b.put_bytes(keys::CF_IDX, &key, &[])?;
        }
        // a patient's name changed (a corrected registration): the latest name wins in the
        // patient record, so index it for the patient's other studies too
        if let Some(known) = self.patient(&rec.patient.key)? {
            if known.name != rec.patient.name {
                for study_uid in self.patient_studies(&rec.patient.key)? {
                    for key in crate::find::name_index_keys(&rec.patient.name, &study_uid) {
                        b.put_bytes(keys::CF_IDX, &key, &[])?;
                    }
                }
            }
        }
        b.put(
            keys::CF_PATIENT,
            &keys::patient_key(&rec.patient.key),
            &rec.patient,
        )?;
        let inst = &rec.instance;
        b.put_bytes(
            keys::CF_CHILDREN,
            &keys::series_instance(&inst.series_uid, &inst.sop_uid),
            &[],
        )?;
        b.put_bytes(
            keys::CF_CHILDREN,
            &keys::study_series(&inst.study_uid, &inst.series_uid),
            &[],
        )?;
        b.put_bytes(
            keys::CF_CHILDREN,
            &keys::patient_study(&rec.patient.key, &inst.study_uid),
            &[],
        )?;
        let size = inst.size as i64;
        match old {
            None => {
                b.add(keys::COUNTER_INSTANCES, 1)?;
                b.add(keys::COUNTER_BYTES, size)?;
                b.add(&keys::study_instances(&inst.study_uid), 1)?;
                b.add(&keys::series_instances(&inst.series_uid), 1)?;
            }
            Some(old) => {
                b.add(keys::COUNTER_BYTES, size - old.size as i64)?;
                if old.series_uid != inst.series_uid {
                    b.delete(
                        keys::CF_CHILDREN,
                        &keys::series_instance(&old.series_uid, &old.sop_uid),
                    )?;
                    b.add(&keys::series_instances(&old.series_uid), -1)?;
                    b.add(&keys::series_instances(&inst.series_uid), 1)?;
                }
                if old.study_uid != inst.study_uid {
                    b.add(&keys::study_instances(&old.study_uid), -1)?;
                    b.add(&keys::study_instances(&inst.study_uid), 1)?;
                }
            }
        }
        Ok(())
    }
}

/// Preamble, `DICM` and a file meta group (PS3.10 7.1) naming the given UIDs, our
/// implementation UID and version.
pub(crate) fn file_header(sop_class: &str, sop_uid: &str, ts: &str) -> Result<Vec<u8>> {
    let file_meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(trim_uid(sop_class))
        .media_storage_sop_instance_uid(trim_uid(sop_uid))
        .transfer_syntax(trim_uid(ts))
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .build()
        .map_err(|e| StoreError::Invalid(format!("cannot build file meta: {e}")))?;
    let mut header = Vec::with_capacity(256);
    header.extend_from_slice(&[0u8; 128]);
    header.extend_from_slice(b"DICM");
    file_meta
        .write(&mut header)
        .map_err(|e| StoreError::Invalid(format!("cannot write file meta: {e}")))?;
    Ok(header)
}

/// An error with its causes, `outer: inner: innermost` (dicom-rs puts the useful part in
/// the sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        cur = inner.source();
    }
    out
}
