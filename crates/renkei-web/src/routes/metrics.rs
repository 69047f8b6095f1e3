//! `GET /metrics`: Prometheus text exposition format 0.0.4, written by hand (a handful of
//! series; see renkei_dimse::metrics for why no metrics crate).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::{ApiError, AppState};

/// Routes of this group.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let store = state.store.clone();
    let stats = tokio::task::spawn_blocking(move || store.stats()).await??;
    let m = &state.metrics;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::with_capacity(2048);
    metric(
        &mut out,
        "renkei_instances",
        "gauge",
        "Instances stored.",
        stats.instances,
    );
    metric(
        &mut out,
        "renkei_studies",
        "gauge",
        "Studies stored.",
        stats.studies,
    );
    metric(
        &mut out,
        "renkei_stored_bytes",
        "gauge",
        "Bytes of stored DICOM files.",
        stats.bytes,
    );
    metric(
        &mut out,
        "renkei_storage_compression_saved_bytes",
        "counter",
        "Bytes storage compression saved by re-encoding uncompressed images losslessly.",
        stats.compressed_saved_bytes,
    );
    metric(
        &mut out,
        "renkei_storage_compressed_instances_total",
        "counter",
        "Instances storage compression replaced by a verified lossless copy.",
        stats.compressed_instances,
    );
    metric(
        &mut out,
        "renkei_associations_active",
        "gauge",
        "DICOM associations open now.",
        load(&m.associations_active),
    );
    metric(
        &mut out,
        "renkei_associations_total",
        "counter",
        "DICOM associations accepted.",
        load(&m.associations_total),
    );
    metric(
        &mut out,
        "renkei_associations_rejected_total",
        "counter",
        "DICOM associations rejected.",
        load(&m.associations_rejected),
    );
    metric(
        &mut out,
        "renkei_cstore_success_total",
        "counter",
        "C-STORE requests answered with success.",
        load(&m.stores_ok),
    );
    metric(
        &mut out,
        "renkei_cstore_duplicate_total",
        "counter",
        "C-STORE requests of an instance already stored identically.",
        load(&m.stores_duplicate),
    );
    metric(
        &mut out,
        "renkei_cstore_failure_total",
        "counter",
        "C-STORE requests answered with a failure status.",
        load(&m.stores_failed),
    );
    metric(
        &mut out,
        "renkei_cstore_received_bytes_total",
        "counter",
        "Data set bytes received by C-STORE.",
        load(&m.bytes_received),
    );
    metric(
        &mut out,
        "renkei_cecho_total",
        "counter",
        "C-ECHO requests answered.",
        load(&m.echoes),
    );
    let h = m.store_latency();
    let name = "renkei_cstore_duration_seconds";
    let _ = writeln!(out, "# HELP {name} Time from a C-STORE's last data fragment to its durable commit.\n# TYPE {name} histogram");
    for (le, count) in &h.buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(
        out,
        "{name}_sum {}\n{name}_count {}",
        h.sum_seconds, h.count
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
