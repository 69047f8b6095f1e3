//! The RocksDB index: open with the column families of [`crate::keys`], point reads of
//! records, atomic write batches, counters and prefix scans. No `rocksdb` type leaves this
//! module; callers speak in records and [`Batch`]es.
//!
//! Durability: every batch is written with a synced WAL. RocksDB already groups concurrent
//! writers: one leader appends the batches of every waiting writer to the WAL and fsyncs once
//! for all of them, so N concurrent C-STOREs cost about one WAL fsync, not N.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode,
    MergeOperands, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};
use serde::{de::DeserializeOwned, Serialize};

use renkei_model::record::{decode, encode};

use crate::error::{Result, StoreError};
use crate::keys;

/// The embedded index.
pub struct Index {
    db: DB,
    write_opts: WriteOptions,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.db.path())
            .finish()
    }
}

fn add_counters(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut total = existing.map(keys::decode_counter).unwrap_or(0);
    for op in operands {
        total = total.wrapping_add(keys::decode_counter(op));
    }
    Some(keys::counter_value(total).to_vec())
}

impl Index {
    /// Open (creating) the index at `path` for reading and writing. Only one process may.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, false)
    }

    /// Open an existing index read-only; works beside the process that writes it and sees
    /// what was committed when it opened.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        Self::open_with(path, true)
    }

    fn open_with(path: &Path, read_only: bool) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        opts.set_max_background_jobs(2);
        let mut table = BlockBasedOptions::default();
        // point lookups by UID dominate: a bloom filter skips most SST reads
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        let cfs = keys::ALL_CFS.iter().map(|name| {
            let mut cf = Options::default();
            cf.set_compression_type(DBCompressionType::Lz4);
            cf.set_block_based_table_factory(&table);
            if *name == keys::CF_COUNTERS {
                cf.set_merge_operator_associative("renkei_add_i64", add_counters);
            }
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let db = if read_only {
            DB::open_cf_descriptors_read_only(&opts, path, cfs, false)?
        } else {
            DB::open_cf_descriptors(&opts, path, cfs)?
        };
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(true);
        let index = Index { db, write_opts };
        index.check_schema(read_only)?;
        Ok(index)
    }

    fn check_schema(&self, read_only: bool) -> Result<()> {
        let cf = self.cf(keys::CF_META)?;
        match self.db.get_pinned_cf(cf, keys::META_SCHEMA)? {
            None if read_only => Ok(()),
            None => {
                let mut b = self.batch();
                b.put_bytes(
                    keys::CF_META,
                    keys::META_SCHEMA,
                    &keys::SCHEMA_VERSION.to_le_bytes(),
                )?;
                b.commit()
            }
            Some(v) if v.as_ref() == keys::SCHEMA_VERSION.to_le_bytes() => Ok(()),
            Some(v) => Err(StoreError::Index(format!(
                "index schema {:?} is not the version this program reads ({})",
                v.as_ref(),
                keys::SCHEMA_VERSION
            ))),
        }
    }

    /// Write every memtable to SST files, so that the next open replays no WAL.
    pub fn flush(&self) -> Result<()> {
        for name in keys::ALL_CFS {
            self.db.flush_cf(self.cf(name)?)?;
        }
        Ok(())
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Index(format!("missing column family {name}")))
    }

    /// Read and decode one record.
    pub fn get<T: DeserializeOwned>(&self, cf: &str, key: &[u8]) -> Result<Option<T>> {
        match self.db.get_pinned_cf(self.cf(cf)?, key)? {
            None => Ok(None),
            Some(v) => decode(&v).map(Some).map_err(|e| StoreError::Corrupt {
                key: format!("{cf}/{}", String::from_utf8_lossy(key)),
                reason: e.to_string(),
            }),
        }
    }

    /// Read raw bytes of a key.
    pub fn get_raw(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(cf)?, key)?
            .map(|v| v.to_vec()))
    }

    /// Read a counter (0 when absent).
    pub fn counter(&self, key: &[u8]) -> Result<i64> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(keys::CF_COUNTERS)?, key)?
            .map(|v| keys::decode_counter(&v))
            .unwrap_or(0))
    }

    /// Number of keys in a column family (exact: iterates).
    pub fn count(&self, cf: &str) -> Result<u64> {
        let mut ro = ReadOptions::default();
        ro.fill_cache(false);
        let mut n = 0;
        for item in self
            .db
            .iterator_cf_opt(self.cf(cf)?, ro, IteratorMode::Start)
        {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Keys in `cf` that start with `prefix`, in order, with the prefix removed.
    pub fn keys_with_prefix(&self, cf: &str, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let iter = self
            .db
            .iterator_cf(self.cf(cf)?, IteratorMode::From(prefix, Direction::Forward));
        for item in iter {
            let (k, _) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push(k[prefix.len()..].to_vec());
        }
        Ok(out)
    }

    /// Visit keys of `cf` from `start` on, in order, while `f` returns true.
    pub fn scan_keys(
        &self,
        cf: &str,
        start: &[u8],
        mut f: impl FnMut(&[u8]) -> bool,
    ) -> Result<()> {
        let iter = self
            .db
            .iterator_cf(self.cf(cf)?, IteratorMode::From(start, Direction::Forward));
        for item in iter {
            let (k, _) = item?;
            if !f(&k) {
                break;
            }
        }
        Ok(())
    }

    /// Visit every (key, decoded value) of a column family in key order, while `f` returns
    /// `Ok(true)`.
    pub fn for_each<T: DeserializeOwned>(
        &self,
        cf: &str,
        mut f: impl FnMut(&[u8], Result<T, StoreError>) -> Result<bool>,
    ) -> Result<()> {
        let mut ro = ReadOptions::default();
        ro.fill_cache(false);
        for item in self
            .db
            .iterator_cf_opt(self.cf(cf)?, ro, IteratorMode::Start)
        {
            let (k, v) = item?;
            let rec = decode::<T>(&v).map_err(|e| StoreError::Corrupt {
                key: format!("{cf}/{}", String::from_utf8_lossy(&k)),
                reason: e.to_string(),
            });
            if !f(&k, rec)? {
                break;
            }
        }
        Ok(())
    }

    /// Visit the (key, raw value) pairs of `cf` whose key starts with `prefix`, in key
    /// order, while `f` returns `Ok(true)`.
    pub fn for_each_prefix(
        &self,
        cf: &str,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let iter = self
            .db
            .iterator_cf(self.cf(cf)?, IteratorMode::From(prefix, Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(prefix) || !f(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    /// The last (key, raw value) of `cf` whose key starts with `prefix`.
    pub fn last_with_prefix(&self, cf: &str, prefix: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf)?);
        // the first key after every key with this prefix: the prefix "plus one"
        let mut upper = prefix.to_vec();
        while let Some(last) = upper.pop() {
            if last < 0xff {
                upper.push(last + 1);
                break;
            }
        }
        if upper.is_empty() {
            it.seek_to_last();
        } else {
            it.seek_for_prev(&upper);
            if it.valid() && it.key() == Some(upper.as_slice()) {
                it.prev();
            }
        }
        it.status()?;
        match (it.key(), it.value()) {
            (Some(k), Some(v)) if k.starts_with(prefix) => Ok(Some((k.to_vec(), v.to_vec()))),
            _ => Ok(None),
        }
    }

    /// Start an empty batch of changes on this index.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            index: self,
            batch: WriteBatch::default(),
        }
    }
}

/// Changes to the index, applied atomically by [`Batch::commit`].
pub struct Batch<'a> {
    index: &'a Index,
    batch: WriteBatch,
}

impl Batch<'_> {
    /// Put an encoded record.
    pub fn put<T: Serialize>(&mut self, cf: &str, key: &[u8], value: &T) -> Result<()> {
        self.put_bytes(cf, key, &encode(value))
    }

    /// Put raw bytes.
    pub fn put_bytes(&mut self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let h = self.index.cf(cf)?;
        self.batch.put_cf(h, key, value);
        Ok(())
    }

    /// Delete a key.
    pub fn delete(&mut self, cf: &str, key: &[u8]) -> Result<()> {
        let h = self.index.cf(cf)?;
        self.batch.delete_cf(h, key);
        Ok(())
    }

    /// Add `delta` to a counter.
    pub fn add(&mut self, key: &[u8], delta: i64) -> Result<()> {
        if delta == 0 {
            return Ok(());
        }
        let h = self.index.cf(keys::CF_COUNTERS)?;
        self.batch.merge_cf(h, key, keys::counter_value(delta));
        Ok(())
    }

    /// Write the batch atomically with a synced WAL.
    pub fn commit(self) -> Result<()> {
        self.index
            .db
            .write_opt(self.batch, &self.index.write_opts)?;
        Ok(())
    }

    /// Write the batch atomically to the WAL without waiting for its fsync: it survives a
    /// crash of the process, and the next synced commit (any writer's) makes it durable
    /// against power loss too, since the WAL is one ordered log. For records of reads (the
    /// audit of a query), where an fsync per query would cost more than the query.
    pub fn commit_unsynced(self) -> Result<()> {
        self.index
            .db
            .write_opt(self.batch, &WriteOptions::default())?;
        Ok(())
    }

    /// Number of changes in the batch.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Whether the batch holds no change.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}
