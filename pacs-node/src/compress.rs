//! Storage compression (`storage_compression` = "jpeg-ls" | "j2k"): images received in an
//! uncompressed syntax are re-encoded losslessly in the background, after they were
//! acknowledged, so C-STORE latency never pays for a codec.
//!
//! Work arrives two ways: the SOP Instance UIDs the DICOM side stored (a bounded queue it
//! never waits on), and a sweep over every instance at startup, and again whenever the
//! queue was seen full (a UID may have been dropped). Each job runs on the shared
//! [`PixelPool`]: decode the original, encode it, publish the copy, decode the copy from
//! disk and compare every sample; only then does [`Store::replace_blob_verified`] switch
//! the index (if the instance was not replaced meanwhile) and delete the original.
//! Objects that cannot be compressed without changing them (1-bit, YBR_FULL_422, sample
//! bits above Bits Stored, codec limits, a copy no smaller) are marked in the index and
//! never tried again.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tracing::{debug, info, warn};

use renkei_store::{ReplaceOutcome, Store};
use renkei_transcode::decode::{self, Frame, PixelInfo};
use renkei_transcode::transcode::{self, TranscodeError};
use renkei_transcode::PixelPool;

/// UIDs the DICOM side may queue before it starts dropping them (for the next sweep).
pub(crate) const QUEUE: usize = 4096;
/// Instances a sweep reads from the index at a time.
const SWEEP_BATCH: usize = 512;
/// Largest decoded object compressed: the job holds the original's samples, the object
/// and the copy's samples at once, beside retrieves sharing the pool.
const MAX_DECODED_BYTES: usize = 256 << 20;

/// The background compressor.
#[derive(Debug)]
pub(crate) struct Compressor {
    store: Arc<Store>,
    pool: PixelPool,
    target: &'static str,
    /// Jobs queued or running; leaves the rest of the pool to retrieves.
    slots: Arc<Semaphore>,
    /// UIDs in a job now (the queue and a sweep may name the same one).
    busy: Mutex<HashSet<String>>,
    /// The queue was full at some point: a sweep must catch up.
    resweep: Notify,
}

/// What one job did.
#[derive(Debug)]
enum Done {
    /// Not an uncompressed image (or already compressed, or marked).
    NotCandidate,
    /// The instance changed meanwhile; its new version is queued on its own.
    Changed,
    /// Compressed: sizes before and after.
    Compressed(u64, u64),
    /// Cannot be compressed; marked so it is not tried again.
    Skipped(String),
}

impl Compressor {
    /// A compressor writing copies in `target` (a lossless transfer syntax UID), at most
    /// half the pool's workers at once (at least one).
    pub(crate) fn new(store: Arc<Store>, pool: PixelPool, target: &'static str) -> Arc<Self> {
        let jobs = (pool.workers() / 2).max(1);
        Arc::new(Compressor {
            store,
            pool,
            target,
            slots: Arc::new(Semaphore::new(jobs)),
            busy: Mutex::new(HashSet::new()),
            resweep: Notify::new(),
        })
    }

    /// Serve the queue and the sweeps until `stop`. Jobs already running finish on the
    /// pool (or are cut by the runtime's shutdown, which is crash-safe).
    pub(crate) async fn run(
        self: Arc<Self>,
        mut queue: mpsc::Receiver<String>,
        mut stop: watch::Receiver<bool>,
    ) {
        let sweeper = tokio::spawn(self.clone().sweeps());
        loop {
            let uid = tokio::select! {
                _ = stop.changed() => break,
                uid = queue.recv() => match uid {
                    Some(uid) => uid,
                    None => break,
                },
            };
            // only this loop takes from the queue: if it was ever full, this sees it
            if queue.len() + 1 >= queue.max_capacity() {
                self.resweep.notify_one();
            }
            self.clone().submit(uid).await;
        }
        sweeper.abort();
    }

    /// Sweep every instance once, then again each time the queue overflowed.
    async fn sweeps(self: Arc<Self>) {
        loop {
            match self.clone().sweep().await {
                Ok(0) => {}
                Ok(n) => info!(instances = n, "storage compression: sweep queued"),
                Err(e) => warn!(error = %e, "storage compression: sweep failed"),
            }
            self.resweep.notified().await;
        }
    }

    /// Queue every candidate instance; the number queued.
    async fn sweep(self: Arc<Self>) -> Result<usize, String> {
        let mut after = String::new();
        let mut queued = 0;
        loop {
            let store = self.store.clone();
            let from = after.clone();
            let batch = tokio::task::spawn_blocking(move || {
                let uids = store.instance_uids_after(&from, SWEEP_BATCH)?;
                let last = uids.last().cloned();
                let mut todo = Vec::new();
                for uid in uids {
                    if candidate(&store, &uid)?.is_some() {
                        todo.push(uid);
                    }
                }
                Ok::<_, renkei_store::StoreError>((last, todo))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let (Some(last), todo) = batch else {
                return Ok(queued);
            };
            after = last;
            for uid in todo {
                queued += 1;
                self.clone().submit(uid).await;
            }
        }
    }

    /// Start a job for `uid` once a slot is free (back-pressure for the sweep).
    async fn submit(self: Arc<Self>, uid: String) {
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        if !self.lock_busy().insert(uid.clone()) {
            return;
        }
        tokio::spawn(async move {
            let job = {
                let (this, uid) = (self.clone(), uid.clone());
                self.pool.run(move || this.compress(&uid)).await
            };
            self.lock_busy().remove(&uid);
            drop(slot);
            match job {
                Ok(Ok(Done::Compressed(old, new))) => {
                    debug!(sop = %uid, old, new, "storage compression: compressed")
                }
                Ok(Ok(Done::Skipped(why))) => {
                    info!(sop = %uid, reason = %why, "storage compression: kept uncompressed")
                }
                Ok(Ok(Done::NotCandidate | Done::Changed)) => {}
                // not marked: a restart tries again
                Ok(Err(e)) => warn!(sop = %uid, error = %e, "storage compression failed"),
                Err(e) => warn!(sop = %uid, error = %e, "storage compression job failed"),
            }
        });
    }

    fn lock_busy(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One instance, blocking (on the pixel pool). Errors are transient (I/O, index);
    /// what the data itself prevents is a [`Done::Skipped`], marked in the index.
    fn compress(&self, uid: &str) -> Result<Done, String> {
        let Some(hash) = candidate(&self.store, uid).map_err(|e| e.to_string())? else {
            return Ok(Done::NotCandidate);
        };
        let path = self.store.blob_path(&hash);
        let outcome = match self.compress_blob(uid, &hash, &path)? {
            Err(reason) => Done::Skipped(reason),
            Ok(ReplaceOutcome::Replaced { old_size, new_size }) => {
                Done::Compressed(old_size, new_size)
            }
            Ok(ReplaceOutcome::NotSmaller { old_size, new_size }) => Done::Skipped(format!(
                "the {} copy would not be smaller ({new_size} bytes, {old_size} now)",
                self.target
            )),
            Ok(ReplaceOutcome::Mismatch(why)) => {
                warn!(sop = %uid, reason = %why, "storage compression: copy differs, discarded");
                Done::Skipped(why)
            }
            Ok(_) => Done::Changed,
        };
        if let Done::Skipped(_) = outcome {
            self.store
                .mark_compress_skipped(uid, &hash)
                .map_err(|e| e.to_string())?;
        }
        Ok(outcome)
    }

    /// Encode the blob at `path` and hand the copy to the store with its verification.
    /// The inner error is why the data cannot be compressed; the outer one is transient.
    #[allow(clippy::type_complexity)]
    fn compress_blob(
        &self,
        uid: &str,
        hash: &[u8; 32],
        path: &Path,
    ) -> Result<Result<ReplaceOutcome, String>, String> {
        let obj = dicom_object::OpenFileOptions::new()
            .open_file(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let original = match decode_checked(&obj) {
            Ok(frames) => frames,
            Err(why) => return Ok(Err(why)),
        };
        drop(obj);
        let dataset = match transcode::transcode_file(path, self.target) {
            Ok(bytes) => bytes,
            Err(TranscodeError::Read(e)) => return Err(e),
            Err(e) => return Ok(Err(e.to_string())),
        };
        let target = self.target;
        let verify = |copy: &Path| -> Result<(), String> {
            let obj = dicom_object::OpenFileOptions::new()
                .open_file(copy)
                .map_err(|e| format!("cannot read the copy: {e}"))?;
            let ts = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']);
            if ts != target {
                return Err(format!("the copy is in {ts}, not {target}"));
            }
            let frames = decode::decode_all(&obj).map_err(|e| format!("the copy: {e}"))?;
            same_frames(&original, &frames)
        };
        self.store
            .replace_blob_verified(uid, hash, target, &dataset, verify)
            .map(Ok)
            .map_err(|e| e.to_string())
    }
}

/// The blob hash of `uid` if it is an image stored uncompressed that was not given up on.
fn candidate(store: &Store, uid: &str) -> renkei_store::Result<Option<[u8; 32]>> {
    let Some(rec) = store.instance(uid)? else {
        return Ok(None);
    };
    // deflate already compresses; the others carry native pixel data
    let uncompressed = transcode::is_native(&rec.transfer_syntax)
        && rec.transfer_syntax.trim_end_matches(['\0', ' ']) != transcode::DEFLATED_LE;
    if !uncompressed || rec.frames == 0 || store.compress_skipped(uid, &rec.blob_hash)? {
        return Ok(None);
    }
    Ok(Some(rec.blob_hash))
}

/// Every frame of an uncompressed object, if compressing it would keep the Image Pixel
/// module as it is: the decoders unpack 1-bit data and expand YBR_FULL_422, and a copy
/// of those would be another layout, not the same object.
fn decode_checked(
    obj: &dicom_object::FileDicomObject<dicom_object::InMemDicomObject>,
) -> Result<Vec<Frame>, String> {
    let info: PixelInfo = decode::pixel_info(obj).map_err(|e| e.to_string())?;
    let total = info
        .decoded_frame_bytes()
        .saturating_mul(info.frames as usize);
    if total > MAX_DECODED_BYTES {
        return Err(format!(
            "{total} bytes decoded is more than a compression job holds ({MAX_DECODED_BYTES})"
        ));
    }
    let frames = decode::decode_all(obj).map_err(|e| e.to_string())?;
    for f in &frames {
        if f.samples_per_pixel != info.samples_per_pixel
            || f.bits_allocated != info.bits_allocated
            || f.bits_stored != info.bits_stored
            || f.photometric != info.photometric
        {
            return Err(format!(
                "decoded layout differs from the stored one ({} {}-bit {})",
                info.photometric, info.bits_allocated, info.samples_per_pixel
            ));
        }
    }
    Ok(frames)
}

/// Whether two decodings hold the same samples; else what differs first.
fn same_frames(a: &[Frame], b: &[Frame]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} frames, the copy has {}", a.len(), b.len()));
    }
    for (i, (fa, fb)) in a.iter().zip(b).enumerate() {
        let shape = |f: &Frame| {
            (
                f.rows,
                f.cols,
                f.samples_per_pixel,
                f.bits_allocated,
                f.bits_stored,
                f.signed,
            )
        };
        if shape(fa) != shape(fb) || fa.photometric != fb.photometric {
            return Err(format!(
                "frame {i}: layout {:?} vs {:?}",
                shape(fa),
                shape(fb)
            ));
        }
        if fa.samples != fb.samples {
            let n = fa
                .samples
                .iter_i64()
                .zip(fb.samples.iter_i64())
                .filter(|(x, y)| x != y)
                .count();
            return Err(format!("frame {i}: {n} samples differ"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use renkei_transcode::decode::{Photometric, Samples};

    fn frame(samples: Vec<u16>) -> Frame {
        Frame {
            rows: 1,
            cols: samples.len() as u32,
            samples_per_pixel: 1,
            bits_allocated: 16,
            bits_stored: 12,
            signed: false,
            photometric: Photometric::Monochrome2,
            samples: Samples::U16(samples),
        }
    }

    #[test]
    fn one_differing_sample_fails_verification() {
        let a = [frame(vec![1, 2, 3])];
        assert!(same_frames(&a, &[frame(vec![1, 2, 3])]).is_ok());
        let e = same_frames(&a, &[frame(vec![1, 2, 4])]).unwrap_err();
        assert!(e.contains("1 samples differ"), "{e}");
        let mut signed = frame(vec![1, 2, 3]);
        signed.signed = true;
        assert!(same_frames(&a, &[signed]).is_err());
        assert!(same_frames(&a, &[]).is_err());
    }
}
