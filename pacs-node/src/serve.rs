//! `pacs-node serve`: resolve settings, open the store, run the DICOM and HTTP listeners
//! until SIGINT/SIGTERM.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use renkei_dimse::scp::Remotes;
use renkei_dimse::{AcceptPolicy, Metrics, Scp, ScpOptions};
use renkei_share::{Share, ShareConfig};
use renkei_store::{Store, StoreOptions};
use renkei_web::dicomweb::DicomWebOptions;
use renkei_web::AppState;

use crate::config::{FileConfig, Remote, StorageCompression};
use crate::ServeArgs;

/// Everything `serve` needs, after defaults, config file and flags.
#[derive(Debug)]
pub(crate) struct Settings {
    data_dir: PathBuf,
    store: StoreOptions,
    bind: IpAddr,
    dicom_port: u16,
    http_port: u16,
    scp: ScpOptions,
    remotes: Vec<Remote>,
    compression: StorageCompression,
    dicomweb: DicomWebOptions,
    share: ShareConfig,
    /// The MLLP listener's port (HL7 v2), when configured.
    mllp_port: Option<u16>,
}

impl Settings {
    /// Merge defaults < config file < flags.
    pub(crate) fn resolve(args: ServeArgs) -> Result<Self> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let ae_title = args
            .ae_title
            .or(file.ae_title)
            .unwrap_or_else(|| "RENKEI".into());
        if ae_title.is_empty() || ae_title.len() > 16 || ae_title.contains('\\') {
            bail!("AE title {ae_title:?} must be 1 to 16 characters without '\\'");
        }
        let bind = args
            .bind
            .or(file.bind)
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut remotes = file.remote;
        remotes.extend(args.remotes);
        let remote_table: Remotes = Arc::new(RwLock::new(
            remotes
                .iter()
                .map(|r| (r.ae_title.clone(), (r.host.clone(), r.port)))
                .collect::<HashMap<_, _>>(),
        ));
        let accept_any = args.accept_any_ae || file.accept_any_ae.unwrap_or(false);
        let accept = if bind.is_loopback() || accept_any {
            AcceptPolicy::Any
        } else {
            if remotes.is_empty() {
                warn!("bound to {bind} with no remote AE configured: every association will be rejected (add [[remote]] or --accept-any-ae)");
            }
            AcceptPolicy::Remotes(remote_table.clone())
        };
        let defaults = ScpOptions::default();
        // QIDO-RS answers with the same cap and name folding as C-FIND
        let dicomweb = DicomWebOptions {
            max_results: file.max_find_results.unwrap_or(defaults.max_find_results),
            fold_names: file.pn_folding.unwrap_or(defaults.fold_names),
            // tokens guard DICOMweb now; `false` keeps it to this machine as well
            allow_remote: file.dicomweb_allow_remote.unwrap_or(true),
            cors_origins: DicomWebOptions::parse_origins(&file.cors_origins.unwrap_or_default())?,
            max_stow_bytes: file
                .max_stow_bytes
                .unwrap_or(DicomWebOptions::default().max_stow_bytes),
            ..DicomWebOptions::default()
        };
        Ok(Settings {
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./renkei-data")),
            store: StoreOptions {
                min_free_bytes: file
                    .min_free_mb
                    .map(|mb| mb << 20)
                    .unwrap_or(StoreOptions::default().min_free_bytes),
            },
            bind,
            dicom_port: args.dicom_port.or(file.dicom_port).unwrap_or(11112),
            http_port: args.http_port.or(file.http_port).unwrap_or(8042),
            scp: ScpOptions {
                ae_title: ae_title.clone(),
                accept,
                max_pdu: file.max_pdu.unwrap_or(defaults.max_pdu),
                idle_timeout: file
                    .idle_timeout_secs
                    .map(Duration::from_secs)
                    .unwrap_or(defaults.idle_timeout),
                max_associations: file.max_associations.unwrap_or(defaults.max_associations),
                max_find_results: file.max_find_results.unwrap_or(defaults.max_find_results),
                fold_names: file.pn_folding.unwrap_or(defaults.fold_names),
                remotes: remote_table,
                store_timeout: file
                    .store_timeout_secs
                    .map(Duration::from_secs)
                    .unwrap_or(defaults.store_timeout),
                pixel_pool: file
                    .pixel_workers
                    .map(renkei_transcode::PixelPool::new)
                    .unwrap_or(defaults.pixel_pool),
                stored: None,
                share: None,
            },
            remotes,
            compression: file.storage_compression.unwrap_or_default(),
            dicomweb,
            mllp_port: file.mllp_port,
            share: {
                let d = ShareConfig::default();
                ShareConfig {
                    relationship_secs: file.relationship_secs.unwrap_or(d.relationship_secs),
                    break_glass_secs: file.break_glass_secs.unwrap_or(d.break_glass_secs),
                    token_secs: file.token_secs.unwrap_or(d.token_secs),
                    node_name: ae_title.clone(),
                    clinical: file.clinical.unwrap_or(d.clinical),
                }
            },
        })
    }
}

/// Run the node until a termination signal.
pub(crate) async fn serve(mut s: Settings) -> Result<()> {
    let store = {
        let (dir, options) = (s.data_dir.clone(), s.store);
        tokio::task::spawn_blocking(move || Store::open_with(&dir, options))
            .await?
            .with_context(|| format!("cannot open data dir {}", s.data_dir.display()))?
    };
    let store = Arc::new(store);
    let share = open_share(store.clone(), s.share.clone(), &s.data_dir).await?;
    let metrics = Arc::new(Metrics::default());
    let dicom_addr = SocketAddr::new(s.bind, s.dicom_port);
    let http_addr = SocketAddr::new(s.bind, s.http_port);
    let dicom = TcpListener::bind(dicom_addr)
        .await
        .with_context(|| format!("cannot listen for DICOM on {dicom_addr}"))?;
    let http = TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {http_addr}"))?;
    let stats = store.stats()?;
    info!(
        data_dir = %s.data_dir.display(),
        ae_title = %s.scp.ae_title,
        dicom = %dicom_addr,
        http = %http_addr,
        remotes = s.remotes.len(),
        instances = stats.instances,
        "Renkei node ready"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    // remotes saved through /api/remotes override the config's
    match renkei_web::routes::remotes::load_saved(&s.data_dir) {
        Ok(saved) => {
            if let Ok(mut table) = s.scp.remotes.write() {
                for r in saved {
                    table.insert(r.ae_title, (r.host, r.port));
                }
            }
        }
        Err(e) => warn!(error = %e, "ignoring saved remote AEs"),
    }
    let remotes_table = s.scp.remotes.clone();
    let mut scp_options = s.scp;
    scp_options.share = Some(share.clone());
    if let Some(target) = s.compression.target() {
        let (tx, rx) = tokio::sync::mpsc::channel(crate::compress::QUEUE);
        s.dicomweb.stored = Some(tx.clone()); // STOW-RS instances too
        scp_options.stored = Some(tx);
        let compressor =
            crate::compress::Compressor::new(store.clone(), scp_options.pixel_pool.clone(), target);
        info!(transfer_syntax = target, "storage compression on");
        tokio::spawn(compressor.run(rx, stop_rx.clone()));
    }
    if let Some(port) = s.mllp_port {
        let addr = SocketAddr::new(s.bind, port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for MLLP (HL7 v2) on {addr}"))?;
        info!(mllp = %addr, "HL7 v2 MLLP listener ready");
        tokio::spawn(crate::mllp::serve(listener, share.clone(), stop_rx.clone()));
    }
    let pixel_pool = scp_options.pixel_pool.clone(); // WADO-RS shares the DICOM side's pool
    let scp = Arc::new(Scp::new(scp_options, store.clone(), metrics.clone()));
    let dicom_task = tokio::spawn(scp.serve(dicom, stop_rx.clone()));
    let app = renkei_web::app(AppState {
        store,
        metrics,
        remotes: remotes_table,
        dicomweb: s.dicomweb,
        pixel_pool,
        share,
    });
    let mut http_stop = stop_rx.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(
            http,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = http_stop.changed().await;
        })
        .await
    });

    shutdown_signal().await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = dicom_task.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    Ok(())
}

/// Open the sharing domain; on a node without users, create the first regional
/// administrator and write its token to `DATA/admin.token` (mode 0600).
async fn open_share(
    store: Arc<Store>,
    config: ShareConfig,
    data_dir: &std::path::Path,
) -> Result<Arc<Share>> {
    let token_file = data_dir.join(ADMIN_TOKEN_FILE);
    let share = tokio::task::spawn_blocking(move || -> Result<Arc<Share>> {
        let share = Share::open(store, config).context("cannot open the sharing domain")?;
        if let Some(issued) = share.bootstrap_admin().context("cannot create the first administrator")? {
            write_secret(&token_file, &issued.token)?;
            info!(
                user = %issued.user_id,
                token_file = %token_file.display(),
                "first start: created the regional administrator; its bearer token is in the token file (renkei admin reads it)"
            );
        }
        Ok(Arc::new(share))
    })
    .await??;
    if share.single_site() {
        info!("no facility configured: single-site PACS (every accepted AE sees everything over DICOM; HTTP needs a token)");
    } else {
        info!(facilities = share.facilities().len(), "regional sharing on");
    }
    Ok(share)
}

/// Where the first administrator's token is written.
pub(crate) const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Write a secret readable by the owner only.
fn write_secret(path: &std::path::Path, secret: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{secret}").with_context(|| format!("cannot write {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
