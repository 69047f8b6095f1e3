//! Regional sharing: what makes the node a regional network rather than one hospital's
//! PACS. Every facility reaches one patient's record through one regional patient ID, only
//! with the patient's consent, and every access is recorded.
//!
//! - [`model`]: facilities, users and roles, tokens, regional patients, consent, cards,
//!   treating relationships, break-glass grants;
//! - [`ids`]: regional IDs and card numbers with check digits;
//! - [`admin`]: facilities, users, bearer tokens (random, stored hashed, expiring,
//!   revocable), the first regional administrator;
//! - [`identity`]: enrolment, the regional patient index and its cross-references
//!   (IHE PIX-like link, unlink, merge with history);
//! - [`care`]: cards, consent, check-in (treating relationships), break-glass;
//! - [`policy`]: the one access policy every read path asks (DIMSE, DICOMweb, FHIR);
//! - [`audit`]: the hash-chained audit trail and its FHIR AuditEvent export;
//! - [`hl7`]: HL7 v2.5 import (JAHIS / SS-MIX2 messages) into the clinical record;
//! - [`keys`]: every key layout of the `share` and `audit` column families.
//!
//! The domain lives in two column families of the node's one RocksDB index
//! (`renkei_store::keys::CF_SHARE`, `CF_AUDIT`), so a change and its audit record commit
//! in one write batch. Changes are serialised by one lock, which also orders the audit
//! chain; administrative changes are rare, reads never take it except to append their
//! audit record.
#![deny(missing_docs)]

pub mod admin;
pub mod audit;
pub mod care;
pub mod clinical;
pub mod error;
pub mod hl7;
pub mod identity;
pub mod ids;
pub mod keys;
pub mod model;
pub mod policy;
pub mod received;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::{de::DeserializeOwned, Serialize};

use renkei_model::record::{decode, encode};
use renkei_store::index::{Batch, Index};
use renkei_store::keys::CF_SHARE;
use renkei_store::{Store, StoreError};

pub use audit::{AuditEntry, AuditEvent, AuditRecord, Purpose};
pub use error::{Result, ShareError};
pub use model::{Facility, Role, User};
pub use policy::{Actor, Category, Decision, Principal};
pub use received::Received;

use audit::ChainHead;
use model::now_us;

/// Settings of the sharing domain.
#[derive(Debug, Clone)]
pub struct ShareConfig {
    /// How long a check-in keeps the treating relationship open (seconds).
    pub relationship_secs: u64,
    /// How long a break-glass grant lasts (seconds).
    pub break_glass_secs: u64,
    /// Default lifetime of a new token (seconds).
    pub token_secs: u64,
    /// The node's AE title (the audit source).
    pub node_name: String,
    /// The clinical record's duplicate checks and summary.
    pub clinical: clinical::ClinicalConfig,
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            relationship_secs: 90 * 24 * 3600,
            break_glass_secs: 4 * 3600,
            token_secs: 365 * 24 * 3600,
            node_name: "RENKEI".into(),
            clinical: clinical::ClinicalConfig::default(),
        }
    }
}

/// The facilities, mirrored in memory for the lookups every query makes.
#[derive(Debug, Default)]
struct FacilityMap {
    by_code: HashMap<String, Facility>,
    by_ae: HashMap<String, String>,
    by_issuer: HashMap<String, String>,
}

impl FacilityMap {
    fn insert(&mut self, f: Facility) {
        for ae in &f.ae_titles {
            self.by_ae.insert(ae.clone(), f.code.clone());
        }
        self.by_issuer.insert(f.code.clone(), f.code.clone());
        for i in &f.issuers {
            self.by_issuer.insert(i.clone(), f.code.clone());
        }
        self.by_code.insert(f.code.clone(), f);
    }
}

/// The sharing domain of one node.
pub struct Share {
    store: Arc<Store>,
    config: ShareConfig,
    facilities: RwLock<FacilityMap>,
    /// Serialises changes and appends to the audit chain; holds the chain's end.
    writer: Mutex<ChainHead>,
    /// HL7 messages being imported (a resend waits for the first: `hl7` module docs).
    hl7_in_flight: hl7::InFlight,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share")
            .field("config", &self.config)
            .finish()
    }
}

impl Share {
    /// Open the sharing domain in the store's index.
    pub fn open(store: Arc<Store>, config: ShareConfig) -> Result<Share> {
        let mut map = FacilityMap::default();
        store
            .index()
            .for_each_prefix(CF_SHARE, &[keys::FACILITY], |k, v| {
                let f: Facility = decode(v).map_err(|e| StoreError::Corrupt {
                    key: String::from_utf8_lossy(k).into_owned(),
                    reason: e.to_string(),
                })?;
                map.insert(f);
                Ok(true)
            })?;
        let head = ChainHead::load(store.index())?;
        Ok(Share {
            store,
            config,
            facilities: RwLock::new(map),
            writer: Mutex::new(head),
            hl7_in_flight: hl7::InFlight::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ShareConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn index(&self) -> &Index {
        self.store.index()
    }

    /// Read a share record.
    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        Ok(self.index().get(CF_SHARE, key)?)
    }

    /// Whether no facility is configured: the node is then a single-site PACS and every
    /// accepted DICOM peer sees everything.
    pub fn single_site(&self) -> bool {
        self.facilities_read().by_code.is_empty()
    }

    fn facilities_read(&self) -> std::sync::RwLockReadGuard<'_, FacilityMap> {
        self.facilities.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The facility an AE title belongs to.
    pub fn facility_of_ae(&self, ae_title: &str) -> Option<String> {
        self.facilities_read().by_ae.get(ae_title.trim()).cloned()
    }

    /// The facility an Issuer of Patient ID belongs to.
    pub fn facility_of_issuer(&self, issuer: &str) -> Option<String> {
        self.facilities_read().by_issuer.get(issuer).cloned()
    }

    /// A facility by code.
    pub fn facility(&self, code: &str) -> Option<Facility> {
        self.facilities_read().by_code.get(code).cloned()
    }

    /// Every facility, by code.
    pub fn facilities(&self) -> Vec<Facility> {
        let mut v: Vec<Facility> = self.facilities_read().by_code.values().cloned().collect();
        v.sort_by(|a, b| a.code.cmp(&b.code));
        v
    }

    /// Run a change under the writer lock: `f` reads what it needs and puts its changes
    /// into the batch, and returns its result with the audit entry; the entry is chained
    /// into the same batch, committed with a synced WAL. When `f` fails nothing is written.
    fn transact<T>(&self, f: impl FnOnce(&mut Tx<'_, '_>) -> Result<(T, AuditEntry)>) -> Result<T> {
        self.transact_many(|tx| f(tx).map(|(out, entry)| (out, vec![entry])))
    }

    /// [`Share::transact`] for a change of several operations (a batch of creates): one
    /// audit record per operation, all chained into the one batch.
    fn transact_many<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_, '_>) -> Result<(T, Vec<AuditEntry>)>,
    ) -> Result<T> {
        let mut head = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = self.index().batch();
        let mut tx = Tx {
            share: self,
            batch: &mut batch,
            seqs: HashMap::new(),
        };
        let (out, entries) = f(&mut tx)?;
        let seqs = std::mem::take(&mut tx.seqs);
        for (name, value) in seqs {
            batch.put_bytes(
                CF_SHARE,
                &keys::text_key(keys::SEQUENCE, &[name]),
                &value.to_be_bytes(),
            )?;
        }
        let now = now_us();
        let mut new_head = *head;
        for entry in entries {
            new_head = new_head.append(&mut batch, entry, now)?;
        }
        batch.commit()?;
        *head = new_head;
        Ok(out)
    }

    /// Append the audit record of a read (or of a refused request), without an fsync of
    /// its own (see [`audit`]).
    pub fn audit_read(&self, entry: AuditEntry) -> Result<()> {
        let mut head = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = self.index().batch();
        let new_head = head.append(&mut batch, entry, now_us())?;
        batch.commit_unsynced()?;
        *head = new_head;
        Ok(())
    }

    /// Check the whole audit chain.
    pub fn verify_audit(index: &Index) -> Result<audit::VerifyReport> {
        audit::verify(index)
    }
}

/// A change being built under the writer lock.
pub(crate) struct Tx<'s, 'b> {
    share: &'s Share,
    batch: &'b mut Batch<'s>,
    /// Sequence counters advanced in this change (name → new value).
    seqs: HashMap<&'static str, u64>,
}

impl Tx<'_, '_> {
    /// Read a record (committed state: a change reads before it writes).
    pub(crate) fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        self.share.get(key)
    }

    /// Put a record.
    pub(crate) fn put<T: Serialize>(&mut self, key: &[u8], value: &T) -> Result<()> {
        self.batch.put_bytes(CF_SHARE, key, &encode(value))?;
        Ok(())
    }

    /// Put raw bytes.
    pub(crate) fn put_raw(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.batch.put_bytes(CF_SHARE, key, value)?;
        Ok(())
    }

    /// Delete a key.
    pub(crate) fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.batch.delete(CF_SHARE, key)?;
        Ok(())
    }

    /// The next value of sequence `name` (1, 2, …).
    pub(crate) fn next_seq(&mut self, name: &'static str) -> Result<u64> {
        let current = match self.seqs.get(name) {
            Some(v) => *v,
            None => self
                .share
                .index()
                .get_raw(CF_SHARE, &keys::text_key(keys::SEQUENCE, &[name]))?
                .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0),
        };
        self.seqs.insert(name, current + 1);
        Ok(current + 1)
    }
}
