//! How clinical resources are kept in the `share` column family (rows `D`, `V`, `P` of
//! [`crate::keys`]):
//!
//! - `D` type, id → [`Stored`]: the current version (JSON text plus what the policy and the
//!   history need: patient, recording facility, category, version, time);
//! - `V` type, id, version (10 digits) → [`Stored`]: each earlier version, written when an
//!   update replaces it;
//! - `P` patient, type, date (14 digits, UTC), id → [`Entry`]: the patient's timeline with
//!   the search keys, so that a search, a duplicate check, `$everything` and `$summary`
//!   read one key range of the patient and decode only the documents they return.
//!
//! DocumentReference attachments are files: `DATA/documents/<sha256>` (written to a temp
//! file, fsynced, renamed, directory fsynced) before the index batch commits; the
//! resource keeps a `Binary/<id>-<version>-<n>` URL and the hash. A crash between the
//! file and the batch leaves an unreferenced file, never a reference without its file.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use renkei_model::record::decode;
use renkei_store::keys::CF_SHARE;
use renkei_store::StoreError;

use super::ResourceType;
use crate::error::Result;
use crate::{keys, Share, Tx};

/// One version of a resource, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    /// Resource type.
    pub(crate) rtype: String,
    /// Id.
    pub(crate) id: String,
    /// Version (1, 2, …).
    pub(crate) version: u64,
    /// When this version was written (µs).
    pub(crate) updated_us: u64,
    /// Regional ID.
    pub(crate) patient: String,
    /// Recording facility.
    pub(crate) facility: String,
    /// Policy category ([`crate::policy::Category::as_str`]).
    pub(crate) category: String,
    /// Timeline date key (14 digits).
    pub(crate) date: String,
    /// The resource, JSON text (with id and meta).
    pub(crate) json: String,
}

/// A timeline row: what searches filter on without reading the document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Recording facility.
    pub(crate) facility: String,
    /// Policy category.
    pub(crate) category: String,
    /// Status.
    pub(crate) status: String,
    /// `system|code` of the main code.
    pub(crate) codes: Vec<String>,
    /// `system|code` of the categories.
    pub(crate) categories: Vec<String>,
    /// Body sites (imaging orders).
    pub(crate) sites: Vec<String>,
    /// End of a prescription (Unix seconds).
    pub(crate) until: Option<i64>,
}

/// A timeline row with its key.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    /// Type.
    pub(crate) rtype: ResourceType,
    /// Date key.
    pub(crate) date: String,
    /// Id.
    pub(crate) id: String,
    /// The row.
    pub(crate) entry: Entry,
}

pub(crate) fn doc_key(t: &str, id: &str) -> Vec<u8> {
    keys::text_key(keys::CLINICAL_DOC, &[t, id])
}

pub(crate) fn version_key(t: &str, id: &str, version: u64) -> Vec<u8> {
    keys::text_key(keys::CLINICAL_VERSION, &[t, id, &format!("{version:010}")])
}

pub(crate) fn timeline_key(patient: &str, t: &str, date: &str, id: &str) -> Vec<u8> {
    keys::text_key(keys::CLINICAL_TIMELINE, &[patient, t, date, id])
}

fn corrupt(key: &[u8], e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    }
}

fn parse_hit(k: &[u8], v: &[u8]) -> std::result::Result<Option<Hit>, StoreError> {
    let parts = keys::split(k);
    let [_patient, t, date, id] = parts.as_slice() else {
        return Ok(None);
    };
    let Some(rtype) = std::str::from_utf8(t).ok().and_then(ResourceType::parse) else {
        return Ok(None);
    };
    let entry: Entry = decode(v).map_err(|e| corrupt(k, e))?;
    Ok(Some(Hit {
        rtype,
        date: String::from_utf8_lossy(date).into_owned(),
        id: String::from_utf8_lossy(id).into_owned(),
        entry,
    }))
}

impl Share {
    /// The current version of a resource.
    pub(crate) fn load(&self, t: ResourceType, id: &str) -> Result<Option<Stored>> {
        if id.contains('\0') {
            return Ok(None);
        }
        self.get(&doc_key(t.as_str(), id))
    }

    /// One version of a resource (the current one or an earlier one).
    pub(crate) fn load_version(
        &self,
        t: ResourceType,
        id: &str,
        version: u64,
    ) -> Result<Option<Stored>> {
        match self.load(t, id)? {
            Some(cur) if cur.version == version => Ok(Some(cur)),
            Some(cur) if version < cur.version => self.get(&version_key(t.as_str(), id, version)),
            _ => Ok(None),
        }
    }

    /// Every version of a resource, newest first.
    pub(crate) fn versions(&self, t: ResourceType, id: &str) -> Result<Vec<Stored>> {
        let Some(cur) = self.load(t, id)? else {
            return Ok(Vec::new());
        };
        let mut older = Vec::new();
        let prefix = keys::text_prefix(keys::CLINICAL_VERSION, &[t.as_str(), id]);
        self.index().for_each_prefix(CF_SHARE, &prefix, |k, v| {
            older.push(decode::<Stored>(v).map_err(|e| corrupt(k, e))?);
            Ok(true)
        })?;
        older.reverse();
        let mut out = vec![cur];
        out.extend(older);
        Ok(out)
    }

    /// Visit the timeline rows of `patients`, of one type or all, in key order (date
    /// ascending within a type), while `f` returns true.
    pub(crate) fn timeline(
        &self,
        patients: &[String],
        t: Option<ResourceType>,
        mut f: impl FnMut(Hit) -> bool,
    ) -> Result<()> {
        for p in patients {
            let prefix = match t {
                Some(t) => keys::text_prefix(keys::CLINICAL_TIMELINE, &[p, t.as_str()]),
                None => keys::text_prefix(keys::CLINICAL_TIMELINE, &[p]),
            };
            let mut go = true;
            self.index().for_each_prefix(CF_SHARE, &prefix, |k, v| {
                if let Some(h) = parse_hit(k, v)? {
                    go = f(h);
                }
                Ok(go)
            })?;
            if !go {
                break;
            }
        }
        Ok(())
    }

    /// The timeline rows of `patients` and type `t` dated from `from` (a date key) on: a
    /// seek, then only the rows in the window (duplicate checks).
    pub(crate) fn timeline_from(
        &self,
        patients: &[String],
        t: ResourceType,
        from: &str,
    ) -> Result<Vec<Hit>> {
        let mut out = Vec::new();
        for p in patients {
            let prefix = keys::text_prefix(keys::CLINICAL_TIMELINE, &[p, t.as_str()]);
            let mut start = prefix.clone();
            start.extend_from_slice(from.as_bytes());
            let mut found = Vec::new();
            self.index().scan_keys(CF_SHARE, &start, |k| {
                if k.starts_with(&prefix) {
                    found.push(k.to_vec());
                    true
                } else {
                    false
                }
            })?;
            for k in found {
                if let Some(v) = self.index().get_raw(CF_SHARE, &k)? {
                    if let Some(h) = parse_hit(&k, &v)? {
                        out.push(h);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Where attachments live.
    pub(crate) fn documents_dir(&self) -> PathBuf {
        self.store().data_dir().join("documents")
    }

    /// Store attachment bytes durably under their SHA-256 (hex); an existing file is kept.
    pub(crate) fn write_blob(&self, bytes: &[u8]) -> Result<String> {
        use sha2::{Digest, Sha256};
        let hex = hex::encode(Sha256::digest(bytes));
        let dir = self.documents_dir();
        let path = dir.join(&hex);
        if path.is_file() {
            return Ok(hex);
        }
        let io =
            |what: &'static str, p: &std::path::Path, e: std::io::Error| StoreError::io(what, p, e);
        std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        let tmp = dir.join(format!(".{hex}.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        f.write_all(bytes).map_err(|e| io("write", &tmp, e))?;
        f.sync_all().map_err(|e| io("fsync", &tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| io("rename", &path, e))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync", &dir, e))?;
        Ok(hex)
    }

    /// Attachment bytes by SHA-256 (hex).
    pub(crate) fn read_blob(&self, hex: &str) -> Result<Option<Vec<u8>>> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let path = self.documents_dir().join(hex);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", &path, e).into()),
        }
    }
}

impl Tx<'_, '_> {
    /// Write a version: the document, its timeline row, and (for an update) the previous
    /// version kept under `V` with its old timeline row removed.
    pub(crate) fn put_resource(
        &mut self,
        stored: &Stored,
        entry: &Entry,
        previous: Option<&Stored>,
    ) -> Result<()> {
        if let Some(old) = previous {
            self.put(&version_key(&old.rtype, &old.id, old.version), old)?;
            self.delete(&timeline_key(&old.patient, &old.rtype, &old.date, &old.id))?;
        }
        self.put(&doc_key(&stored.rtype, &stored.id), stored)?;
        self.put(
            &timeline_key(&stored.patient, &stored.rtype, &stored.date, &stored.id),
            entry,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_keys_sort_by_date_within_a_type() {
        let a = timeline_key("0000000013", "Observation", "20240101000000", "9");
        let b = timeline_key("0000000013", "Observation", "20240102000000", "1");
        assert!(a < b);
        let p = keys::text_prefix(keys::CLINICAL_TIMELINE, &["0000000013", "Observation"]);
        assert!(a.starts_with(&p));
        assert!(!timeline_key("0000000013", "ObservationX", "2", "1").starts_with(&p));
    }
}
