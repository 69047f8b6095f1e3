//! Renkei's durable storage: content-addressed blob files plus the RocksDB index.
//!
//! - [`blob`]: temp spools, fsync + rename under the SHA-256, orphan walking.
//! - [`index`]: the RocksDB index (the only module that names `rocksdb`).
//! - [`keys`]: every key layout and column family.
//! - [`ingest`]: the store path of one instance, from received bytes to a committed batch.
//! - [`find`]: C-FIND execution (candidates by hierarchy and unique keys, matching).
//! - [`check`]: consistency check and repair of blobs against the index.
//! - [`compress`]: storage compression's blob swap (verified copy, crash-safe).
//!
//! Layout of a data dir: `blobs/xx/yy/<sha256>.dcm`, `tmp/` (spools), `index/` (RocksDB).
#![deny(missing_docs)]

pub mod blob;
#[cfg(feature = "bulk-load")]
mod bulk;
pub mod check;
pub mod compress;
pub mod error;
pub mod find;
pub mod index;
pub mod ingest;
pub mod keys;
pub mod rawtext;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use renkei_model::{InstanceRecord, PatientKey, PatientRecord, SeriesRecord, StudyRecord};

pub use check::CheckReport;
pub use compress::ReplaceOutcome;
pub use error::{Result, StoreError};
pub use ingest::{Ingest, IngestMeta, IngestOutcome};

use blob::BlobStore;
use index::Index;

/// Number of lock stripes serialising stores of the same SOP Instance UID.
const UID_LOCK_STRIPES: usize = 256;

/// Settings of a store.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Free space to keep on the data dir's file system. Below it, new objects are
    /// refused as "out of storage space" before anything is written, so that RocksDB's own
    /// writes never meet a full disk (where it stalls writers until space returns).
    pub min_free_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            min_free_bytes: 1 << 30,
        }
    }
}

/// A node's storage: blobs and index under one data dir.
#[derive(Debug)]
pub struct Store {
    data_dir: PathBuf,
    options: StoreOptions,
    blobs: BlobStore,
    index: Index,
    /// Two stores of the same SOP Instance UID must not interleave their read of the old
    /// record with their write of the new one; different UIDs never wait on each other
    /// beyond a stripe collision.
    uid_locks: Vec<Mutex<()>>,
}

/// The SOP Instance UID in a spooled file's meta group, if it can be read.
fn sop_uid_of(path: &Path) -> Option<String> {
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::SPECIFIC_CHARACTER_SET)
        .open_file(path)
        .ok()?;
    Some(renkei_model::uid::trim_uid(&obj.meta().media_storage_sop_instance_uid).to_string())
}

/// Counts of what the node holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Patients.
    pub patients: u64,
    /// Studies.
    pub studies: u64,
    /// Series.
    pub series: u64,
    /// Instances.
    pub instances: u64,
    /// Bytes of stored blobs.
    pub bytes: u64,
    /// Instances storage compression replaced by a lossless copy (cumulative).
    pub compressed_instances: u64,
    /// Bytes storage compression saved (cumulative).
    pub compressed_saved_bytes: u64,
}

impl Store {
    /// Open (creating) the store in `data_dir` with default options; removes temp files of
    /// interrupted transfers.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Self::open_with(data_dir, StoreOptions::default())
    }

    /// Open (creating) the store in `data_dir`.
    pub fn open_with(data_dir: &Path, options: StoreOptions) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::io("create", data_dir, e))?;
        let blobs = BlobStore::open(data_dir)?;
        let index = Index::open(&data_dir.join("index"))?;
        let store = Store {
            data_dir: data_dir.to_path_buf(),
            options,
            blobs,
            index,
            uid_locks: (0..UID_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        };
        store.recover_interrupted()?;
        store.build_indexes_once()?;
        Ok(store)
    }

    /// Fill the secondary indexes for studies stored before they existed (once).
    fn build_indexes_once(&self) -> Result<()> {
        if self
            .index
            .get_raw(keys::CF_META, keys::META_IDX_BUILT)?
            .is_some()
        {
            return Ok(());
        }
        let mut b = self.index.batch();
        let mut n = 0u64;
        self.index
            .for_each::<StudyRecord>(keys::CF_STUDY, |_, study| {
                let study = study?;
                let name = self
                    .patient(&study.patient)?
                    .map(|p| p.name)
                    .unwrap_or_default();
                for key in find::study_index_keys(&study, &name, "") {
                    b.put_bytes(keys::CF_IDX, &key, &[])?;
                }
                for series_uid in self.study_series(&study.study_uid)? {
                    if let Some(series) = self.series(&series_uid)? {
                        if !series.modality.is_empty() {
                            let key = keys::idx_key(
                                keys::IDX_MODALITY,
                                &series.modality,
                                &study.study_uid,
                            );
                            b.put_bytes(keys::CF_IDX, &key, &[])?;
                        }
                    }
                }
                n += 1;
                Ok(true)
            })?;
        b.put_bytes(keys::CF_META, keys::META_IDX_BUILT, &[1])?;
        b.commit()?;
        if n > 0 {
            tracing::info!(studies = n, "built the study indexes");
        }
        Ok(())
    }

    /// Resolve temp files left by a crash. A partial one is deleted. A published one (its
    /// blob is linked under `blobs/`) may or may not have had its index batch committed:
    /// if the index does not reference that blob for the file's SOP Instance UID, the blob
    /// is an orphan of an unacknowledged store and is deleted too.
    fn recover_interrupted(&self) -> Result<()> {
        let (mut partial, mut orphans) = (0usize, 0usize);
        for (path, published) in self.blobs.leftovers()? {
            if published {
                let hash = check::hash_file(&path).map_err(|e| StoreError::io("read", &path, e))?;
                let referenced = sop_uid_of(&path)
                    .map(|uid| self.instance(&uid))
                    .transpose()?
                    .flatten()
                    .is_some_and(|rec| rec.blob_hash == hash);
                if !referenced {
                    self.blobs.remove(&hash)?;
                    orphans += 1;
                }
            } else {
                partial += 1;
            }
            std::fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
        }
        if partial + orphans > 0 {
            tracing::info!(
                partial,
                orphans,
                "cleaned up transfers interrupted by the last shutdown"
            );
        }
        Ok(())
    }

    /// Open an existing store read-only (for `stats` and `check` beside a running node).
    pub fn open_read_only(data_dir: &Path) -> Result<Self> {
        let blobs = BlobStore::open_existing(data_dir)?;
        let index = Index::open_read_only(&data_dir.join("index"))?;
        Ok(Store {
            data_dir: data_dir.to_path_buf(),
            options: StoreOptions::default(),
            blobs,
            index,
            uid_locks: (0..UID_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        })
    }

    /// The index, for the crates that keep their own column families in it
    /// (`renkei-share`: sharing domain and audit trail).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The data dir this store lives in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Path of a stored blob.
    pub fn blob_path(&self, hash: &[u8; 32]) -> PathBuf {
        self.blobs.path_of(hash)
    }

    /// The instance record of a SOP Instance UID.
    pub fn instance(&self, sop_uid: &str) -> Result<Option<InstanceRecord>> {
        self.index.get(keys::CF_INSTANCE, sop_uid.as_bytes())
    }

    /// The series record of a Series Instance UID.
    pub fn series(&self, series_uid: &str) -> Result<Option<SeriesRecord>> {
        self.index.get(keys::CF_SERIES, series_uid.as_bytes())
    }

    /// The study record of a Study Instance UID.
    pub fn study(&self, study_uid: &str) -> Result<Option<StudyRecord>> {
        self.index.get(keys::CF_STUDY, study_uid.as_bytes())
    }

    /// The patient record of a patient key.
    pub fn patient(&self, key: &PatientKey) -> Result<Option<PatientRecord>> {
        self.index.get(keys::CF_PATIENT, &keys::patient_key(key))
    }

    /// SOP Instance UIDs of a series, in key order.
    pub fn series_instances(&self, series_uid: &str) -> Result<Vec<String>> {
        self.children(&keys::series_instance_prefix(series_uid))
    }

    /// Series Instance UIDs of a study, in key order.
    pub fn study_series(&self, study_uid: &str) -> Result<Vec<String>> {
        self.children(&keys::study_series_prefix(study_uid))
    }

    /// Study Instance UIDs of a patient, in key order.
    pub fn patient_studies(&self, key: &PatientKey) -> Result<Vec<String>> {
        self.children(&keys::patient_study_prefix(key))
    }

    /// Number of instances in a study.
    pub fn study_instance_count(&self, study_uid: &str) -> Result<u64> {
        Ok(self
            .index
            .counter(&keys::study_instances(study_uid))?
            .max(0) as u64)
    }

    /// Number of instances in a series.
    pub fn series_instance_count(&self, series_uid: &str) -> Result<u64> {
        Ok(self
            .index
            .counter(&keys::series_instances(series_uid))?
            .max(0) as u64)
    }

    fn children(&self, prefix: &[u8]) -> Result<Vec<String>> {
        self.index
            .keys_with_prefix(keys::CF_CHILDREN, prefix)?
            .into_iter()
            .map(|k| {
                String::from_utf8(k).map_err(|_| StoreError::Corrupt {
                    key: String::from_utf8_lossy(prefix).into_owned(),
                    reason: "child key is not UTF-8".into(),
                })
            })
            .collect()
    }

    /// Exact counts. Instances and bytes come from counters; the other levels are counted
    /// by iterating their column family (cheap next to what the counts describe).
    pub fn stats(&self) -> Result<Stats> {
        Ok(Stats {
            patients: self.index.count(keys::CF_PATIENT)?,
            studies: self.index.count(keys::CF_STUDY)?,
            series: self.index.count(keys::CF_SERIES)?,
            instances: self.index.counter(keys::COUNTER_INSTANCES)?.max(0) as u64,
            bytes: self.index.counter(keys::COUNTER_BYTES)?.max(0) as u64,
            compressed_instances: self
                .index
                .counter(keys::COUNTER_COMPRESSED_INSTANCES)?
                .max(0) as u64,
            compressed_saved_bytes: self
                .index
                .counter(keys::COUNTER_COMPRESSED_SAVED_BYTES)?
                .max(0) as u64,
        })
    }

    /// Refuse (as out of space) when the data dir's file system has less than the reserve.
    pub fn check_free_space(&self) -> Result<()> {
        let st = rustix::fs::statvfs(&self.data_dir)
            .map_err(|e| StoreError::io("statvfs", &self.data_dir, e.into()))?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < self.options.min_free_bytes {
            return Err(StoreError::OutOfSpace {
                path: self.data_dir.clone(),
            });
        }
        Ok(())
    }

    fn uid_lock(&self, uid: &str) -> &Mutex<()> {
        // FNV-1a: stable and cheap; only spreads UIDs over stripes
        let h = uid.bytes().fold(0xcbf29ce484222325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        &self.uid_locks[(h % UID_LOCK_STRIPES as u64) as usize]
    }
}
