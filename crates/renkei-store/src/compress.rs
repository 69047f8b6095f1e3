//! The store side of storage compression: replace an instance's blob with a smaller copy
//! of the same object (a lossless re-encoding of its pixel data), verified by the caller
//! before the index is switched to it.
//!
//! The store cannot decode pixels (renkei-transcode is not a dependency), so
//! [`Store::replace_blob_verified`] takes the copy's data set and a `verify` callback that
//! reads the published copy from disk. The order is what makes it safe:
//!
//! 1. the copy is spooled behind our file meta and published (fsync, link, fsync dir); its
//!    temp name stays linked;
//! 2. `verify` reads the published file; a mismatch deletes the copy, nothing else changes;
//! 3. under the UID lock, and only if the instance still points at the original, the
//!    original gets a second temp name too ([`crate::blob::BlobStore::link_temp`]), and one
//!    synced batch switches the record (hash, size, transfer syntax) and the counters;
//! 4. the copy's temp name, the original blob and the original's temp name are removed.
//!
//! A crash anywhere leaves temp names that [`Store::open`] resolves against the index the
//! way it resolves an interrupted C-STORE: a blob the index references is kept, the other
//! is deleted. Before the commit that is the original; after it, the copy. Never neither.

use std::path::Path;

use renkei_model::InstanceRecord;

use crate::blob::Published;
use crate::error::{Result, StoreError};
use crate::{keys, Store};

/// What [`Store::replace_blob_verified`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplaceOutcome {
    /// The index now points at the copy; the original is gone.
    Replaced {
        /// Size of the original blob.
        old_size: u64,
        /// Size of the copy.
        new_size: u64,
    },
    /// The instance is gone or was replaced meanwhile; the newer version wins and the copy
    /// was discarded.
    Changed,
    /// The copy would not be smaller; nothing was written.
    NotSmaller {
        /// Size of the original blob.
        old_size: u64,
        /// Size the copy would have.
        new_size: u64,
    },
    /// `verify` refused the copy (its message); the copy was discarded.
    Mismatch(String),
}

impl Store {
    /// Replace the blob of `sop_uid` by `dataset` (encoded in `transfer_syntax`, without
    /// file meta), if the instance still points at `expected_old_hash` and the copy is
    /// smaller and passes `verify` (called with the published copy's path). See the module
    /// docs for the order of steps and crash safety. Blocking: call it off the runtime.
    pub fn replace_blob_verified(
        &self,
        sop_uid: &str,
        expected_old_hash: &[u8; 32],
        transfer_syntax: &str,
        dataset: &[u8],
        verify: impl FnOnce(&Path) -> std::result::Result<(), String>,
    ) -> Result<ReplaceOutcome> {
        let Some(rec) = self
            .instance(sop_uid)?
            .filter(|r| r.blob_hash == *expected_old_hash)
        else {
            return Ok(ReplaceOutcome::Changed);
        };
        let header = crate::ingest::file_header(&rec.sop_class_uid, &rec.sop_uid, transfer_syntax)?;
        let new_size = (header.len() + dataset.len()) as u64;
        if new_size >= rec.size {
            return Ok(ReplaceOutcome::NotSmaller {
                old_size: rec.size,
                new_size,
            });
        }
        self.check_free_space()?;
        let mut spool = self.blobs.spool()?;
        spool.append(&header)?;
        spool.append(dataset)?;
        let published = self.blobs.publish(&mut spool)?;
        // a copy identical to a blob already there is not ours to delete
        let discard = |why: ReplaceOutcome| -> Result<ReplaceOutcome> {
            if !published.existed {
                self.blobs.remove(&published.hash)?;
            }
            Ok(why)
        };
        if let Err(reason) = verify(&self.blobs.path_of(&published.hash)) {
            return discard(ReplaceOutcome::Mismatch(reason));
        }

        let _guard = self
            .uid_lock(sop_uid)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(old) = self
            .instance(sop_uid)?
            .filter(|r| r.blob_hash == *expected_old_hash)
        else {
            return discard(ReplaceOutcome::Changed);
        };
        let pin = match self.blobs.link_temp(&old.blob_hash) {
            Ok(pin) => pin,
            Err(e) => {
                discard(ReplaceOutcome::Changed)?;
                return Err(e);
            }
        };
        if let Err(e) = self.switch_blob(&old, &published, transfer_syntax) {
            drop(pin);
            discard(ReplaceOutcome::Changed)?;
            return Err(e);
        }
        // the copy is referenced: its temp name can go, then the original (a failure here
        // leaves the pin, which the next start resolves by deleting the original)
        drop(spool);
        self.blobs.remove(&old.blob_hash)?;
        drop(pin);
        Ok(ReplaceOutcome::Replaced {
            old_size: old.size,
            new_size: published.size,
        })
    }

    /// One synced batch: the record points at the copy, the counters move.
    fn switch_blob(
        &self,
        old: &InstanceRecord,
        copy: &Published,
        transfer_syntax: &str,
    ) -> Result<()> {
        let mut new = old.clone();
        new.blob_hash = copy.hash;
        new.size = copy.size;
        new.transfer_syntax = transfer_syntax.to_string();
        let saved = old.size as i64 - new.size as i64;
        let mut b = self.index.batch();
        b.put(keys::CF_INSTANCE, new.sop_uid.as_bytes(), &new)?;
        b.add(keys::COUNTER_BYTES, -saved)?;
        b.add(keys::COUNTER_COMPRESSED_SAVED_BYTES, saved)?;
        b.add(keys::COUNTER_COMPRESSED_INSTANCES, 1)?;
        b.commit()
    }

    /// Remember that `sop_uid`, stored as the blob `hash`, cannot be compressed, so that
    /// neither a restart nor a re-queue tries again (a replacement has another hash).
    pub fn mark_compress_skipped(&self, sop_uid: &str, hash: &[u8; 32]) -> Result<()> {
        let mut b = self.index.batch();
        b.put_bytes(keys::CF_META, &keys::compress_skip(sop_uid), hash)?;
        b.commit()
    }

    /// Whether `sop_uid` stored as the blob `hash` was marked as not compressible.
    pub fn compress_skipped(&self, sop_uid: &str, hash: &[u8; 32]) -> Result<bool> {
        Ok(self
            .index
            .get_raw(keys::CF_META, &keys::compress_skip(sop_uid))?
            .is_some_and(|v| v.as_slice() == hash))
    }

    /// Up to `limit` SOP Instance UIDs in key order, starting after `after` (from the first
    /// when empty): a sweep over every instance in bounded pieces.
    pub fn instance_uids_after(&self, after: &str, limit: usize) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(limit.min(4096));
        let mut bad = None;
        self.index
            .scan_keys(keys::CF_INSTANCE, after.as_bytes(), |k| {
                if k == after.as_bytes() {
                    return true;
                }
                match std::str::from_utf8(k) {
                    Ok(uid) => out.push(uid.to_string()),
                    Err(_) => bad = Some(String::from_utf8_lossy(k).into_owned()),
                }
                bad.is_none() && out.len() < limit
            })?;
        match bad {
            Some(key) => Err(StoreError::Corrupt {
                key,
                reason: "SOP Instance UID key is not UTF-8".into(),
            }),
            None => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IngestMeta;

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const ELE: &str = "1.2.840.10008.1.2.1";
    const JLS: &str = "1.2.840.10008.1.2.4.80";

    /// A minimal CT data set in Explicit VR LE, with `pad` bytes of pixel data.
    fn dataset(sop: &str, pad: usize) -> Vec<u8> {
        use dicom_core::{DataElement, PrimitiveValue, VR};
        use dicom_dictionary_std::tags;
        use dicom_encoding::TransferSyntaxIndex;
        let mut obj = dicom_object::InMemDicomObject::new_empty();
        let s = |t, vr, v: &str| DataElement::new(t, vr, PrimitiveValue::from(v));
        obj.put(s(tags::SOP_CLASS_UID, VR::UI, CT));
        obj.put(s(tags::SOP_INSTANCE_UID, VR::UI, sop));
        obj.put(s(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"));
        obj.put(s(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4"));
        obj.put(s(tags::PATIENT_ID, VR::LO, "P1"));
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(vec![7u8; pad]),
        ));
        let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
            .get(ELE)
            .unwrap();
        let mut out = Vec::new();
        obj.write_dataset_with_ts(&mut out, ts).unwrap();
        out
    }

    fn store_one(store: &Store, sop: &str, pad: usize) -> [u8; 32] {
        let mut ingest = store
            .begin_ingest(IngestMeta {
                sop_class_uid: CT.into(),
                sop_instance_uid: sop.into(),
                transfer_syntax: ELE.into(),
                source_ae: "T".into(),
            })
            .unwrap();
        ingest.append(&dataset(sop, pad)).unwrap();
        store.finish_ingest(ingest).unwrap().1.blob_hash
    }

    fn open(dir: &Path) -> Store {
        Store::open_with(dir, crate::StoreOptions { min_free_bytes: 0 }).unwrap()
    }

    #[test]
    fn replaces_only_a_verified_smaller_copy_of_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let old = store_one(&store, "1.9.1", 4096);
        let before = store.stats().unwrap();

        // not smaller: nothing written
        let big = dataset("1.9.1", 8192);
        let r = store
            .replace_blob_verified("1.9.1", &old, JLS, &big, |_| Ok(()))
            .unwrap();
        assert!(matches!(r, ReplaceOutcome::NotSmaller { .. }), "{r:?}");

        // refused by verify: the copy is gone, the original stays
        let small = dataset("1.9.1", 16);
        let r = store
            .replace_blob_verified("1.9.1", &old, JLS, &small, |_| Err("differs".into()))
            .unwrap();
        assert_eq!(r, ReplaceOutcome::Mismatch("differs".into()));
        assert!(store.check(false).unwrap().is_clean());
        assert_eq!(store.instance("1.9.1").unwrap().unwrap().blob_hash, old);

        // another version arrived: it wins
        let r = store
            .replace_blob_verified("1.9.1", &[0; 32], JLS, &small, |_| Ok(()))
            .unwrap();
        assert_eq!(r, ReplaceOutcome::Changed);

        let mut seen = None;
        let r = store
            .replace_blob_verified("1.9.1", &old, JLS, &small, |p| {
                seen = Some(std::fs::read(p).map_err(|e| e.to_string())?);
                Ok(())
            })
            .unwrap();
        let ReplaceOutcome::Replaced { old_size, new_size } = r else {
            panic!("{r:?}")
        };
        let rec = store.instance("1.9.1").unwrap().unwrap();
        assert_eq!(rec.transfer_syntax, JLS);
        assert_eq!(rec.size, new_size);
        assert!(seen.unwrap().ends_with(&small));
        assert!(!store.blob_path(&old).exists());
        let after = store.stats().unwrap();
        assert_eq!(after.bytes, before.bytes - (old_size - new_size));
        assert_eq!(after.compressed_saved_bytes, old_size - new_size);
        assert_eq!(after.compressed_instances, 1);
        let report = store.check(false).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert!(store.blobs.leftovers().unwrap().is_empty());
    }

    /// The copy published (its temp name still linked), as a crash would leave it.
    fn publish_copy(store: &Store, sop: &str) -> Published {
        let mut spool = store.blobs.spool().unwrap();
        spool
            .append(&crate::ingest::file_header(CT, sop, JLS).unwrap())
            .unwrap();
        spool.append(&dataset(sop, 16)).unwrap();
        let published = store.blobs.publish(&mut spool).unwrap();
        std::mem::forget(spool);
        published
    }

    #[test]
    fn a_crash_leaves_the_original_or_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        // crash after publishing the copy, before the commit: the original stays
        let (old, copy) = {
            let store = open(dir.path());
            let old = store_one(&store, "1.9.2", 4096);
            std::mem::forget(store.blobs.link_temp(&old).unwrap());
            (old, publish_copy(&store, "1.9.2"))
        };
        let store = open(dir.path());
        assert!(store.blob_path(&old).exists());
        assert!(!store.blob_path(&copy.hash).exists());
        assert_eq!(store.instance("1.9.2").unwrap().unwrap().blob_hash, old);
        assert!(store.check(false).unwrap().is_clean());
        assert!(store.blobs.leftovers().unwrap().is_empty());

        // crash after the commit, before the temp names and the original are removed: the
        // copy stays, the original goes
        let copy = {
            std::mem::forget(store.blobs.link_temp(&old).unwrap());
            let copy = publish_copy(&store, "1.9.2");
            let rec = store.instance("1.9.2").unwrap().unwrap();
            store.switch_blob(&rec, &copy, JLS).unwrap();
            drop(store);
            copy
        };
        let store = open(dir.path());
        assert!(!store.blob_path(&old).exists());
        assert!(store.blob_path(&copy.hash).exists());
        assert_eq!(
            store.instance("1.9.2").unwrap().unwrap().blob_hash,
            copy.hash
        );
        let report = store.check(false).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert!(store.blobs.leftovers().unwrap().is_empty());
    }

    #[test]
    fn skip_marks_follow_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.mark_compress_skipped("1.9.3", &[1; 32]).unwrap();
        assert!(store.compress_skipped("1.9.3", &[1; 32]).unwrap());
        assert!(!store.compress_skipped("1.9.3", &[2; 32]).unwrap());
        for uid in ["1.9.5", "1.9.4", "1.9.6"] {
            store_one(&store, uid, 32);
        }
        assert_eq!(
            store.instance_uids_after("", 2).unwrap(),
            ["1.9.4", "1.9.5"]
        );
        assert_eq!(store.instance_uids_after("1.9.5", 2).unwrap(), ["1.9.6"]);
    }
}
