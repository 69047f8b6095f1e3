//! `pacs-node check`: every indexed instance has its blob and the blob matches its hash;
//! every blob is referenced by an instance (else it is an orphan, left by a crash between
//! publishing a blob and committing its batch); the instance counter matches the records.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use renkei_model::InstanceRecord;

use crate::error::{Result, StoreError};
use crate::{keys, Store};

/// What `check` found.
#[derive(Debug, Default, Clone)]
pub struct CheckReport {
    /// Instance records examined.
    pub instances: u64,
    /// Instances whose blob is missing: (SOP Instance UID, expected path).
    pub missing: Vec<(String, PathBuf)>,
    /// Instances whose blob content does not match its hash.
    pub corrupt: Vec<(String, PathBuf)>,
    /// Records that do not decode.
    pub unreadable: Vec<String>,
    /// Blob files no instance references.
    pub orphans: Vec<PathBuf>,
    /// Orphans removed (with `repair`).
    pub removed: u64,
    /// The instance counter, when it disagrees with the records.
    pub counter_mismatch: Option<i64>,
}

impl CheckReport {
    /// Whether everything is consistent (orphans removed by repair count as fixed).
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.corrupt.is_empty()
            && self.unreadable.is_empty()
            && self.orphans.len() as u64 == self.removed
            && self.counter_mismatch.is_none()
    }
}

pub(crate) fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

impl Store {
    /// Verify blobs against the index; with `repair`, remove orphan blobs and fix the
    /// instance counter. Never touches a referenced blob.
    pub fn check(&self, repair: bool) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let mut referenced: HashSet<[u8; 32]> = HashSet::new();
        self.index
            .for_each::<InstanceRecord>(keys::CF_INSTANCE, |key, rec| {
                report.instances += 1;
                let rec = match rec {
                    Ok(r) => r,
                    Err(_) => {
                        report
                            .unreadable
                            .push(String::from_utf8_lossy(key).into_owned());
                        return Ok(true);
                    }
                };
                referenced.insert(rec.blob_hash);
                let path = self.blobs.path_of(&rec.blob_hash);
                match hash_file(&path) {
                    Ok(h) if h == rec.blob_hash => {}
                    Ok(_) => report.corrupt.push((rec.sop_uid, path)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        report.missing.push((rec.sop_uid, path))
                    }
                    Err(e) => return Err(StoreError::io("read", path, e)),
                }
                Ok(true)
            })?;
        for (hash, path) in self.blobs.walk()? {
            if hash.is_some_and(|h| referenced.contains(&h)) {
                continue;
            }
            if repair {
                std::fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
                report.removed += 1;
            }
            report.orphans.push(path);
        }
        let counted = self.index.counter(keys::COUNTER_INSTANCES)?;
        if counted != report.instances as i64 {
            if repair {
                let mut b = self.index.batch();
                b.add(keys::COUNTER_INSTANCES, report.instances as i64 - counted)?;
                b.commit()?;
            } else {
                report.counter_mismatch = Some(counted);
            }
        }
        Ok(report)
    }
}
