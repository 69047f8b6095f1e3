//! Index records without blobs, for benchmarks (feature `bulk-load`): the query benches
//! need an index of a million instances, and a million C-STOREs with fsync would take an
//! hour. The records go through [`Store::put_records`], the very writes C-STORE makes, in
//! batches of many instances. `check` reports such instances' blobs as missing: never
//! use this on a node's real data directory.

use renkei_model::IndexRecord;

use crate::error::Result;
use crate::Store;

impl Store {
    /// Index `records` as C-STORE would, in one batch, without blobs.
    pub fn bulk_index(&self, records: &[IndexRecord]) -> Result<()> {
        let mut b = self.index.batch();
        for rec in records {
            let old = self.instance(&rec.instance.sop_uid)?;
            self.put_records(&mut b, rec, old.as_ref())?;
        }
        b.commit()
    }

    /// Flush the index to SST files (after a bulk load, so the next open is quick).
    pub fn flush_index(&self) -> Result<()> {
        self.index.flush()
    }
}
