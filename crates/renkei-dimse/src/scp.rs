//! The association acceptor (SCP) of the node: one tokio task per association.
//!
//! C-STORE data is never assembled in memory: Data PDVs go straight to the store's spool as
//! they arrive (memory per association is about one PDU), and the blocking part of the
//! store — parse, fsync, rename, index commit — runs on the blocking pool. The response is
//! sent only after the commit, so an acknowledged instance survives a crash.
//!
//! With regional sharing ([`ScpOptions::share`]) every association has an actor of the
//! sharing policy: the user its User Identity signs in ([`AssociationAccess`]), else its
//! calling AE as its facility's workstation. Query/Retrieve answers only what the policy
//! lets it read, a regional patient ID is searched under every local ID linked to it, and
//! each C-FIND, C-MOVE and C-GET leaves exactly one audit record.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_dictionary_std::uids;
use dicom_ul::association::server::AsyncServerAssociation;
use dicom_ul::association::server::Negotiation;
use dicom_ul::association::Association;
use dicom_ul::association::AsyncAssociation;

use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJSource, PDataValue, PDataValueType, PresentationContextResultReason,
    RequestorRoles,
};
use dicom_ul::{ClientAssociationOptions, Pdu, ServerAssociationOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn, Instrument};

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_encoding::TransferSyntax;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use renkei_model::charset::CharacterSets;
use renkei_model::query::{Entity, InfoModel, Level, Query};
use renkei_model::storage_classes::STORAGE_SOP_CLASSES;
use renkei_share::{Actor, AuditEvent, Received, Share};
use renkei_store::{Ingest, IngestMeta, IngestOutcome, Store, StoreError};
use renkei_transcode::transcode::{self, Route};
use renkei_transcode::PixelPool;

use crate::command::{
    encode_response, encode_response_with, encode_retrieve_response, encode_store_rq,
    encode_store_rq_for_move, field, status, Command, Response, SubOperations,
};
use crate::find::encode_identifier;
use crate::metrics::Metrics;
use crate::policy::{AcceptPolicy, AssociationAccess};

/// Settings of the DICOM listener.
#[derive(Debug, Clone)]
pub struct ScpOptions {
    /// The node's AE title.
    pub ae_title: String,
    /// Largest PDU we accept (advertised in negotiation).
    pub max_pdu: u32,
    /// An association silent for this long is aborted (the ARTIM-like guard dicom-ul lacks).
    pub idle_timeout: Duration,
    /// Which calling AE titles may associate.
    pub accept: AcceptPolicy,
    /// Associations served at once; more are rejected as transient "local limit exceeded".
    pub max_associations: usize,
    /// Remote AEs by title: (host, port), the destinations C-MOVE may send to. Shared so
    /// that the REST API can change them without a restart.
    pub remotes: Remotes,
    /// Fold person names when matching (width, kana, case; see
    /// `renkei_model::query::fold_name`).
    pub fold_names: bool,
    /// Most matches one C-FIND returns; beyond, it ends with 0xA700 and a comment asking
    /// for a narrower query.
    pub max_find_results: usize,
    /// How long the durable part of a C-STORE may take before the request is answered
    /// with "out of resources" (a stalled disk must not hang the sender forever).
    pub store_timeout: Duration,
    /// Bounds the pixel work (transcoding for a receiver) that runs at once.
    pub pixel_pool: PixelPool,
    /// Told the SOP Instance UID of every instance stored or replaced (storage
    /// compression). Never waited on: when full the UID is dropped, for a later sweep.
    pub stored: Option<tokio::sync::mpsc::Sender<String>>,
    /// Regional sharing. When set, every association has an actor (the user its User
    /// Identity signs in, else its calling AE as its facility's workstation); C-FIND,
    /// C-MOVE and C-GET answer only what the sharing policy lets that actor read, search a
    /// regional patient ID under every local ID linked to it, and leave one audit record
    /// per request; a C-STORE from a facility's AE indexes data without an Issuer of
    /// Patient ID under the facility's code. None: no policy, no audit (a plain PACS).
    pub share: Option<Arc<Share>>,
}

impl Default for ScpOptions {
    fn default() -> Self {
        ScpOptions {
            ae_title: "RENKEI".into(),
            max_pdu: 256 * 1024,
            idle_timeout: Duration::from_secs(60),
            accept: AcceptPolicy::Any,
            max_associations: 64,
            max_find_results: 10_000,
            fold_names: true,
            remotes: Remotes::default(),
            store_timeout: Duration::from_secs(120),
            pixel_pool: PixelPool::default(),
            stored: None,
            share: None,
        }
    }
}

/// Who is on the other end of an association.
#[derive(Debug)]
struct Peer {
    /// Calling AE title, trimmed.
    calling: String,
    /// The sharing policy's actor (only when the node shares data).
    actor: Option<Actor>,
    /// The Issuer of Patient ID its stores are indexed under when they carry none.
    default_issuer: Option<String>,
    /// What it stored, by study, for the audit record written when it ends (a lock
    /// never held across an await).
    received: std::sync::Mutex<Received>,
}

/// The DICOM service provider: accepts associations and serves C-ECHO and C-STORE.
#[derive(Debug)]
pub struct Scp {
    options: ScpOptions,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
}

/// The Query/Retrieve SOP classes served: (request command, SOP class, information model).
const QR_MODELS: &[(u16, &str, InfoModel)] = &[
    (
        field::C_FIND_RQ,
        uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
        InfoModel::PatientRoot,
    ),
    (
        field::C_FIND_RQ,
        uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
        InfoModel::StudyRoot,
    ),
    (
        field::C_GET_RQ,
        uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
        InfoModel::PatientRoot,
    ),
    (
        field::C_GET_RQ,
        uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET,
        InfoModel::StudyRoot,
    ),
    (
        field::C_MOVE_RQ,
        uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
        InfoModel::PatientRoot,
    ),
    (
        field::C_MOVE_RQ,
        uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE,
        InfoModel::StudyRoot,
    ),
];

/// Remote AE title → (host, port).
pub type Remotes = Arc<std::sync::RwLock<HashMap<String, (String, u16)>>>;

/// Accepted presentation contexts: id → (abstract syntax, transfer syntax).
type Contexts = HashMap<u8, (String, String)>;

/// The accepted presentation contexts of a negotiation (dicom-ul lists rejected ones too).
fn accepted(pcs: &[dicom_ul::pdu::PresentationContextNegotiated]) -> Contexts {
    pcs.iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| {
            (
                pc.id,
                (pc.abstract_syntax.clone(), pc.transfer_syntax.clone()),
            )
        })
        .collect()
}

/// A command whose data set is being received.
enum Pending {
    Store(Box<PendingStore>),
    Find(PendingFind),
}

/// A C-FIND or C-GET whose identifier is being received (small: kept in memory, capped).
struct PendingFind {
    /// C-FIND-RQ or C-GET-RQ.
    op: u16,
    rq: Command,
    pc_id: u8,
    model: InfoModel,
    identifier: Vec<u8>,
}

/// Largest C-FIND identifier accepted.
const MAX_IDENTIFIER: usize = 1 << 20;

/// A C-STORE whose data set is being received.
struct PendingStore {
    rq: Command,
    pc_id: u8,
    ingest: Option<Ingest>,
    /// The first failure met while receiving; reported once the data set is complete.
    failure: Option<(u16, String)>,
}

impl Scp {
    /// A service provider storing into `store`.
    pub fn new(options: ScpOptions, store: Arc<Store>, metrics: Arc<Metrics>) -> Self {
        let slots = Arc::new(Semaphore::new(options.max_associations));
        Scp {
            options,
            store,
            metrics,
            slots,
        }
    }

    /// Accept associations on `listener` until `shutdown` turns true. Associations already
    /// open finish on their own.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        loop {
            let (socket, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // e.g. EMFILE: keep serving the associations we have
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => return Ok(()),
            };
            let scp = self.clone();
            let span = tracing::info_span!("assoc", %peer);
            tokio::spawn(async move { scp.handle(socket).await }.instrument(span));
        }
    }

    fn association_options(
        &self,
        access: AssociationAccess,
    ) -> ServerAssociationOptions<'static, AssociationAccess, RetrieveRoles> {
        let mut o = ServerAssociationOptions::new()
            .ae_access_control(access)
            .with_negotiation(RetrieveRoles)
            .ae_title(self.options.ae_title.clone())
            .max_pdu_length(self.options.max_pdu)
            .read_timeout(self.options.idle_timeout)
            .with_abstract_syntax(uids::VERIFICATION);
        for (_, uid, _) in QR_MODELS {
            o = o.with_abstract_syntax(*uid);
        }
        // No transfer syntax list: dicom-ul then accepts any syntax its registry knows,
        // compressed ones included (stored as received).
        for (uid, _) in STORAGE_SOP_CLASSES {
            o = o.with_abstract_syntax(*uid);
        }
        o
    }

    async fn handle(&self, mut socket: TcpStream) {
        if let Err(e) = socket.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            self.metrics
                .associations_rejected
                .fetch_add(1, Ordering::Relaxed);
            warn!(
                limit = self.options.max_associations,
                "association limit reached, rejecting"
            );
            reject_busy(&mut socket).await;
            return;
        };
        let access =
            AssociationAccess::new(self.options.accept.clone(), self.options.share.clone());
        let mut assoc = match self
            .association_options(access.clone())
            .establish_async(socket)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                self.metrics
                    .associations_rejected
                    .fetch_add(1, Ordering::Relaxed);
                info!(error = %e, "association not established");
                return;
            }
        };
        let calling = assoc.peer_ae_title().trim().to_string();
        let peer = self.peer(calling, access.user());
        let contexts = accepted(assoc.presentation_contexts());
        info!(calling = %peer.calling, contexts = contexts.len(), "association accepted");
        self.metrics
            .associations_total
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .associations_active
            .fetch_add(1, Ordering::Relaxed);
        let result = self.serve_association(&mut assoc, &peer, &contexts).await;
        self.metrics
            .associations_active
            .fetch_sub(1, Ordering::Relaxed);
        // an aborted or broken association: its stores are as real (a released one was
        // recorded before its A-RELEASE-RP; then nothing is left)
        self.audit_received(&peer).await;
        match result {
            Ok(()) => debug!("association released"),
            Err(reason) => {
                info!(%reason, "association ended");
                let _ = assoc.abort().await;
            }
        }
    }

    /// The peer of an association: its actor under the sharing policy (the user its User
    /// Identity signed in, else the calling AE), and the issuer its stores default to (the
    /// facility of its AE title, else the user's).
    fn peer(&self, calling: String, user: Option<renkei_share::Principal>) -> Peer {
        let Some(share) = self.options.share.as_ref() else {
            return Peer {
                calling,
                actor: None,
                default_issuer: None,
                received: Default::default(),
            };
        };
        let ae_facility = share.facility_of_ae(&calling);
        let (actor, default_issuer) = match user {
            Some(p) => {
                let issuer = ae_facility.or_else(|| p.facility.clone());
                (Actor::User(p), issuer)
            }
            None => (
                Actor::Ae {
                    title: calling.clone(),
                    facility: ae_facility.clone(),
                },
                ae_facility,
            ),
        };
        Peer {
            calling,
            actor: Some(actor),
            default_issuer,
            received: Default::default(),
        }
    }

    /// Record what the association stored, one audit record per study (renkei_share's
    /// `received` module), however it ended: an aborted association's stores are as real.
    async fn audit_received(&self, peer: &Peer) {
        let (Some(share), Some(actor)) = (self.options.share.clone(), peer.actor.clone()) else {
            return;
        };
        let received =
            std::mem::take(&mut *peer.received.lock().unwrap_or_else(|p| p.into_inner()));
        if received.is_empty() {
            return;
        }
        let written =
            tokio::task::spawn_blocking(move || share.audit_received(&actor, "C-STORE", &received))
                .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot write the audit record of C-STORE"),
            Err(e) => warn!(error = %e, "cannot write the audit record of C-STORE"),
        }
    }

    /// Record a Q/R request answered with a failure before anything was read (one audit
    /// record per request, whatever its outcome).
    fn audit_unanswered(&self, peer: &Peer, action: &str, event: AuditEvent, why: &str) {
        if let (Some(share), Some(actor)) = (&self.options.share, &peer.actor) {
            let mut e = actor.audit(action, event, "");
            e.allowed = false;
            e.detail = format!("not answered: {why}");
            if let Err(err) = share.audit_read(e) {
                warn!(error = %err, "cannot write the audit record of {action}");
            }
        }
    }

    /// Run the association until release (Ok) or until it must be aborted (Err(reason)).
    async fn serve_association(
        &self,
        assoc: &mut AsyncServerAssociation<TcpStream>,
        peer: &Peer,
        contexts: &Contexts,
    ) -> Result<(), String> {
        let mut command_bytes: Vec<u8> = Vec::new();
        let mut pending: Option<Pending> = None;
        loop {
            let pdu = match tokio::time::timeout(self.options.idle_timeout, assoc.receive()).await {
                Err(_) => return Err("idle timeout".into()),
                Ok(Err(e)) => {
                    // an A-ABORT or a dropped connection mid-transfer: the spool of an
                    // incomplete instance is removed when `pending` drops
                    return Err(format!("receive failed: {e}"));
                }
                Ok(Ok(pdu)) => pdu,
            };
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        if !contexts.contains_key(&pdv.presentation_context_id) {
                            return Err(format!(
                                "P-DATA on presentation context {} that was not accepted",
                                pdv.presentation_context_id
                            ));
                        }
                        match pdv.value_type {
                            PDataValueType::Command => {
                                command_bytes.extend_from_slice(&pdv.data);
                                if pdv.is_last {
                                    let bytes = std::mem::take(&mut command_bytes);
                                    self.on_command(
                                        assoc,
                                        pdv.presentation_context_id,
                                        &bytes,
                                        peer,
                                        contexts,
                                        &mut pending,
                                    )
                                    .await?;
                                }
                            }
                            PDataValueType::Data => {
                                match pending.as_mut() {
                                    None => return Err("data set without a command".into()),
                                    Some(Pending::Store(p)) => {
                                        self.metrics
                                            .bytes_received
                                            .fetch_add(pdv.data.len() as u64, Ordering::Relaxed);
                                        if let Some(ingest) = p.ingest.as_mut() {
                                            // A buffered write to the page cache: short
                                            // enough to do on the runtime thread (the fsync
                                            // happens later, on the blocking pool).
                                            if let Err(e) = ingest.append(&pdv.data) {
                                                p.failure = Some(failure_of(&e));
                                                p.ingest = None;
                                            }
                                        }
                                    }
                                    Some(Pending::Find(f)) => {
                                        if f.identifier.len() + pdv.data.len() > MAX_IDENTIFIER {
                                            return Err("C-FIND identifier too large".into());
                                        }
                                        f.identifier.extend_from_slice(&pdv.data);
                                    }
                                }
                                if pdv.is_last {
                                    match pending.take() {
                                        Some(Pending::Store(p)) => {
                                            self.finish_store(assoc, *p, peer).await?
                                        }
                                        Some(Pending::Find(f)) if f.op != field::C_FIND_RQ => {
                                            self.run_retrieve(assoc, f, contexts, peer).await?
                                        }
                                        Some(Pending::Find(f)) => {
                                            self.run_find(assoc, f, contexts, peer).await?
                                        }
                                        None => {}
                                    }
                                }
                            }
                        }
                    }
                }
                Pdu::ReleaseRQ => {
                    // before the A-RELEASE-RP: a sender that has seen its association end
                    // finds its stores in the trail
                    self.audit_received(peer).await;
                    assoc
                        .send(&Pdu::ReleaseRP)
                        .await
                        .map_err(|e| format!("cannot send A-RELEASE-RP: {e}"))?;
                    return Ok(());
                }
                Pdu::AbortRQ { source } => return Err(format!("aborted by peer ({source:?})")),
                other => return Err(format!("unexpected PDU {other:?}")),
            }
        }
    }

    async fn on_command(
        &self,
        assoc: &mut AsyncServerAssociation<TcpStream>,
        pc_id: u8,
        bytes: &[u8],
        peer: &Peer,
        contexts: &Contexts,
        pending: &mut Option<Pending>,
    ) -> Result<(), String> {
        let rq = Command::decode(bytes).map_err(|e| e.to_string())?;
        match rq.field {
            field::C_ECHO_RQ => {
                self.metrics.echoes.fetch_add(1, Ordering::Relaxed);
                respond(assoc, pc_id, &rq, field::C_ECHO_RSP, status::SUCCESS, None).await
            }
            field::C_STORE_RQ => {
                if !rq.has_dataset {
                    peer.received
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .refused("C-STORE-RQ without a data set");
                    return respond(
                        assoc,
                        pc_id,
                        &rq,
                        field::C_STORE_RSP,
                        status::CANNOT_UNDERSTAND,
                        Some("C-STORE-RQ without a data set"),
                    )
                    .await;
                }
                let ts = contexts
                    .get(&pc_id)
                    .map(|(_, ts)| ts.clone())
                    .unwrap_or_default();
                let meta = IngestMeta {
                    sop_class_uid: rq.sop_class_uid.clone(),
                    sop_instance_uid: rq.sop_instance_uid.clone(),
                    transfer_syntax: ts,
                    source_ae: peer.calling.clone(),
                };
                let (ingest, failure) = match self.store.begin_ingest(meta) {
                    Ok(mut i) => {
                        // regional sharing: data without an Issuer of Patient ID is the
                        // sending facility's, so two facilities' local "12345" stay two
                        // patients
                        if let Some(issuer) = &peer.default_issuer {
                            i.set_default_issuer(issuer);
                        }
                        (Some(i), None)
                    }
                    Err(e) => (None, Some(failure_of(&e))),
                };
                *pending = Some(Pending::Store(Box::new(PendingStore {
                    rq,
                    pc_id,
                    ingest,
                    failure,
                })));
                Ok(())
            }
            field::C_FIND_RQ | field::C_GET_RQ | field::C_MOVE_RQ => {
                let op = rq.field;
                let abstract_syntax = contexts.get(&pc_id).map(|(a, _)| a.as_str());
                let model = QR_MODELS
                    .iter()
                    .find(|(o, uid, _)| *o == op && Some(*uid) == abstract_syntax)
                    .map(|(_, _, m)| *m);
                let model = match model {
                    Some(m) => m,
                    _ => {
                        let (action, event) = match op {
                            field::C_FIND_RQ => ("C-FIND", AuditEvent::Query),
                            field::C_GET_RQ => ("C-GET", AuditEvent::InstancesTransferred),
                            _ => ("C-MOVE", AuditEvent::InstancesTransferred),
                        };
                        self.audit_unanswered(peer, action, event, "SOP class not supported");
                        return respond(
                            assoc,
                            pc_id,
                            &rq,
                            op | 0x8000,
                            status::SOP_CLASS_NOT_SUPPORTED,
                            Some("request on a context of another information model"),
                        )
                        .await;
                    }
                };
                *pending = Some(Pending::Find(PendingFind {
                    op,
                    rq,
                    pc_id,
                    model,
                    identifier: Vec::new(),
                }));
                Ok(())
            }
            field::C_CANCEL_RQ => Ok(()), // nothing to cancel for C-ECHO/C-STORE
            other => {
                debug!(field = other, "unsupported command");
                respond(
                    assoc,
                    pc_id,
                    &rq,
                    other | 0x8000,
                    status::UNRECOGNIZED_OPERATION,
                    Some("operation not supported by this node"),
                )
                .await
            }
        }
    }

    async fn finish_store(
        &self,
        assoc: &mut AsyncServerAssociation<TcpStream>,
        p: PendingStore,
        peer: &Peer,
    ) -> Result<(), String> {
        let started = Instant::now();
        let PendingStore {
            rq,
            pc_id,
            ingest,
            failure,
        } = p;
        let result = match (ingest, failure) {
            (_, Some(f)) => Err(f),
            (None, None) => Err((status::OUT_OF_RESOURCES, "storage unavailable".into())),
            (Some(ingest), None) => {
                let store = self.store.clone();
                let task = tokio::task::spawn_blocking(move || store.finish_ingest(ingest));
                match tokio::time::timeout(self.options.store_timeout, task).await {
                    Ok(Ok(Ok((outcome, rec)))) => Ok((outcome, rec.sop_uid, rec.study_uid)),
                    Ok(Ok(Err(e))) => Err(failure_of(&e)),
                    Ok(Err(e)) => {
                        Err((status::OUT_OF_RESOURCES, format!("store task failed: {e}")))
                    }
                    // the commit may still land later; a re-send is then "already stored"
                    Err(_) => Err((
                        status::OUT_OF_RESOURCES,
                        "storage did not answer in time".into(),
                    )),
                }
            }
        };
        let received = || peer.received.lock().unwrap_or_else(|p| p.into_inner());
        let (st, comment) = match result {
            Ok((outcome, sop_uid, study_uid)) => {
                received().stored(&study_uid, outcome);
                self.metrics.stores_ok.fetch_add(1, Ordering::Relaxed);
                self.metrics.observe_store(started.elapsed());
                if let (Some(tx), IngestOutcome::Stored | IngestOutcome::Replaced) =
                    (&self.options.stored, outcome)
                {
                    let _ = tx.try_send(sop_uid.clone());
                }
                match outcome {
                    IngestOutcome::Stored => debug!(sop = %sop_uid, "stored"),
                    IngestOutcome::Duplicate => {
                        self.metrics
                            .stores_duplicate
                            .fetch_add(1, Ordering::Relaxed);
                        info!(sop = %sop_uid, "already stored with identical content");
                    }
                    IngestOutcome::Replaced => {
                        info!(sop = %sop_uid, "replaced the stored version")
                    }
                }
                (status::SUCCESS, None)
            }
            Err((st, comment)) => {
                received().refused(&comment);
                self.metrics.stores_failed.fetch_add(1, Ordering::Relaxed);
                warn!(sop = %rq.sop_instance_uid, status = format_args!("{st:#06X}"), %comment, "C-STORE failed");
                (st, Some(comment))
            }
        };
        respond(
            assoc,
            pc_id,
            &rq,
            field::C_STORE_RSP,
            st,
            comment.as_deref(),
        )
        .await
    }
}

impl Scp {
    /// The query of a C-FIND/C-GET/C-MOVE identifier, and the transfer syntax of its
    /// context; or the failure status and comment to answer with (PS3.4 C.4.1.1.4:
    /// 0xC000 unparseable, 0xA900 identifier does not match the SOP class).
    fn parse_query(
        &self,
        pc_id: u8,
        model: InfoModel,
        identifier: &[u8],
        contexts: &Contexts,
        retrieve: bool,
    ) -> Result<(Query, &'static TransferSyntax), (u16, String)> {
        let ts_uid = contexts
            .get(&pc_id)
            .map(|(_, ts)| ts.as_str())
            .unwrap_or("");
        let ts = TransferSyntaxRegistry.get(ts_uid).ok_or((
            status::CANNOT_UNDERSTAND,
            "unknown transfer syntax".to_string(),
        ))?;
        let obj = read_identifier(identifier, ts).map_err(|e| {
            (
                status::CANNOT_UNDERSTAND,
                format!("cannot parse identifier: {e}"),
            )
        })?;
        let mut query = Query::from_identifier(&obj, model)
            .map_err(|e| (status::DATASET_MISMATCH, e.to_string()))?;
        if retrieve {
            query
                .check_retrieve_keys()
                .map_err(|e| (status::DATASET_MISMATCH, e.to_string()))?;
        }
        query.fold_names = self.options.fold_names;
        Ok((query, ts))
    }

    /// Answer a C-FIND: pending responses streamed as the index yields matches (the query
    /// runs on the blocking pool, at most a few identifiers ahead of the network), C-CANCEL
    /// checked between them, a final status at the end (PS3.4 C.4.1).
    async fn run_find(
        &self,
        assoc: &mut AsyncServerAssociation<TcpStream>,
        f: PendingFind,
        contexts: &Contexts,
        peer: &Peer,
    ) -> Result<(), String> {
        let PendingFind {
            rq,
            pc_id,
            model,
            identifier,
            ..
        } = f;
        let (query, ts) = match self.parse_query(pc_id, model, &identifier, contexts, false) {
            Ok(x) => x,
            Err((st, msg)) => {
                self.audit_unanswered(peer, "C-FIND", AuditEvent::Query, &msg);
                return respond(assoc, pc_id, &rq, field::C_FIND_RSP, st, Some(&msg)).await;
            }
        };
        debug!(
            level = query.level.as_str(),
            keys = query.keys.len(),
            "C-FIND"
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        let store = self.store.clone();
        let limit = self.options.max_find_results;
        let worker_ts = ts;
        let scoped = self.options.share.clone().zip(peer.actor.clone());
        let worker = tokio::task::spawn_blocking(move || {
            let mut send = |e: &Entity| {
                tx.blocking_send(encode_identifier(&query, e, worker_ts))
                    .is_ok()
            };
            match scoped {
                Some((share, actor)) => {
                    scoped_find(&store, &share, actor, &query, limit, &mut send)
                }
                None => {
                    let mut n = 0usize;
                    let r = store.find(&query, |e| {
                        n += 1;
                        n <= limit && send(&e)
                    });
                    (r.map_err(|e| e.to_string()), n)
                }
            }
        });
        let max_fragment = max_fragment_for(assoc.peer_max_pdu_length());
        let mut cancelled = false;
        while let Some(bytes) = rx.recv().await {
            let cmd = encode_response_with(&rq, field::C_FIND_RSP, status::PENDING, None, true);
            send_pdv(assoc, pc_id, PDataValueType::Command, &cmd, max_fragment).await?;
            send_pdv(assoc, pc_id, PDataValueType::Data, &bytes, max_fragment).await?;
            if cancel_requested(assoc).await? {
                cancelled = true;
                break;
            }
        }
        drop(rx);
        let (result, n) = worker
            .await
            .map_err(|e| format!("C-FIND task failed: {e}"))?;
        let (st, comment) = if cancelled {
            (status::CANCEL, None)
        } else if let Err(e) = result {
            warn!(error = %e, "C-FIND failed");
            (
                status::OUT_OF_RESOURCES,
                Some("query failed inside the node".to_string()),
            )
        } else if n > limit {
            (
                status::OUT_OF_RESOURCES,
                Some(format!("more than {limit} matches: narrow the query")),
            )
        } else {
            (status::SUCCESS, None)
        };
        respond(assoc, pc_id, &rq, field::C_FIND_RSP, st, comment.as_deref()).await
    }
}

/// A C-FIND under the sharing policy: a PatientID that is a regional ID is searched under
/// every local ID linked to it and answered under the regional ID (one patient-level match
/// for all of them); matches the actor may not read are withheld, as if absent; one audit
/// record whatever the outcome. Returns the result and the number of matches sent (or
/// counted past `limit`).
fn scoped_find(
    store: &Store,
    share: &Share,
    actor: Actor,
    query: &Query,
    limit: usize,
    send: &mut dyn FnMut(&Entity) -> bool,
) -> (Result<(), String>, usize) {
    let mut scope = share.image_scope(actor);
    let mut n = 0usize;
    let (regional, result) = match share.expand_regional_query(query) {
        Err(e) => (None, Err(e.to_string())),
        Ok(None) => (
            None,
            find_admitted(
                store,
                &mut scope,
                std::slice::from_ref(query),
                None,
                limit,
                &mut n,
                send,
            ),
        ),
        Ok(Some((id, queries))) => {
            let merge = query.level == Level::Patient;
            let r = find_admitted(
                store,
                &mut scope,
                &queries,
                Some((&id, merge)),
                limit,
                &mut n,
                send,
            );
            (Some(id), r)
        }
    };
    if let Err(e) = scope.finish(
        "C-FIND",
        AuditEvent::Query,
        regional.as_deref().unwrap_or(""),
    ) {
        warn!(error = %e, "cannot write the audit record of a C-FIND");
    }
    (result, n)
}

/// Run `queries`, passing each admitted match to `send` until it or `limit` says stop.
/// `regional`: (the regional ID the matches are answered under, whether patient-level
/// matches are merged into one).
fn find_admitted(
    store: &Store,
    scope: &mut renkei_share::policy::ImageScope<'_>,
    queries: &[Query],
    regional: Option<(&str, bool)>,
    limit: usize,
    n: &mut usize,
    send: &mut dyn FnMut(&Entity) -> bool,
) -> Result<(), String> {
    let mut merged: Option<Entity> = None;
    let mut failure: Option<String> = None;
    let mut stop = false;
    for q in queries {
        store
            .find(q, |mut e| {
                match scope.admit(&e.patient.key) {
                    Ok((true, _)) => {}
                    Ok((false, _)) => return true,
                    Err(err) => {
                        failure = Some(err.to_string());
                        return false;
                    }
                }
                if let Some((id, merge)) = regional {
                    e.patient.key.patient_id.clear();
                    e.patient.key.patient_id.push_str(id);
                    e.patient.key.issuer.clear();
                    if merge {
                        // the local IDs of one person are one patient under the regional ID
                        match merged.as_mut() {
                            None => merged = Some(e),
                            Some(m) => {
                                if let (Some(a), Some(b)) =
                                    (m.patient_studies.as_mut(), e.patient_studies)
                                {
                                    *a += b;
                                }
                            }
                        }
                        return true;
                    }
                }
                *n += 1;
                if *n > limit || !send(&e) {
                    stop = true;
                    return false;
                }
                true
            })
            .map_err(|e| e.to_string())?;
        if let Some(f) = failure {
            return Err(f);
        }
        if stop {
            return Ok(());
        }
    }
    if let Some(e) = merged {
        *n += 1;
        if *n <= limit {
            send(&e);
        }
    }
    Ok(())
}

/// The instances a C-MOVE/C-GET may send under the sharing policy: those of the query
/// (of every local ID linked to a regional ID it names) whose patient the actor may read;
/// the others are left out, as if absent. One audit record whatever the outcome.
fn scoped_instances(
    store: &Store,
    share: &Share,
    actor: Actor,
    query: &Query,
    action: &str,
) -> Result<Vec<renkei_model::InstanceRecord>, String> {
    let mut scope = share.image_scope(actor);
    let mut regional = None;
    let result = admitted_instances(store, share, &mut scope, query, &mut regional);
    let patient = regional.as_deref().unwrap_or("");
    if let Err(e) = scope.finish(action, AuditEvent::InstancesTransferred, patient) {
        warn!(error = %e, "cannot write the audit record of a {action}");
    }
    result
}

fn admitted_instances(
    store: &Store,
    share: &Share,
    scope: &mut renkei_share::policy::ImageScope<'_>,
    query: &Query,
    regional: &mut Option<String>,
) -> Result<Vec<renkei_model::InstanceRecord>, String> {
    let all = match share
        .expand_regional_query(query)
        .map_err(|e| e.to_string())?
    {
        None => store.instances_for(query).map_err(|e| e.to_string())?,
        Some((id, queries)) => {
            *regional = Some(id);
            let mut all = Vec::new();
            for q in &queries {
                all.extend(store.instances_for(q).map_err(|e| e.to_string())?);
            }
            all
        }
    };
    // the patient of each study, read once
    let mut patients: HashMap<String, Option<renkei_model::PatientKey>> = HashMap::new();
    let mut out = Vec::with_capacity(all.len());
    for inst in all {
        if !patients.contains_key(&inst.study_uid) {
            let key = store
                .study(&inst.study_uid)
                .map_err(|e| e.to_string())?
                .map(|s| s.patient);
            patients.insert(inst.study_uid.clone(), key);
        }
        // a study gone meanwhile (deleted): nothing to send
        let Some(Some(key)) = patients.get(&inst.study_uid) else {
            continue;
        };
        if scope.admit(key).map_err(|e| e.to_string())?.0 {
            out.push(inst);
        }
    }
    Ok(out)
}

/// SCP/SCU role selection (PS3.7 D.3.3.4): a C-GET requester asks to act as the Storage
/// SCP for the classes it wants back; we accept for every Storage SOP class.
#[derive(Debug, Clone, Copy)]
struct RetrieveRoles;

impl Negotiation for RetrieveRoles {
    fn negotiate_roles(&self, sop_class_uid: &str, scu: bool, scp: bool) -> Option<RequestorRoles> {
        let uid = renkei_model::uid::trim_uid(sop_class_uid);
        STORAGE_SOP_CLASSES
            .iter()
            .any(|(u, _)| *u == uid)
            .then_some(RequestorRoles { scu, scp })
    }
}

impl Scp {
    /// Answer a C-GET or C-MOVE (PS3.4 C.4.2, C.4.3): every matching instance is sent as a
    /// C-STORE sub-operation, over this association for C-GET (the requester took the SCP
    /// role) or over a new association to the move destination, in the transfer syntax it
    /// is stored in when the receiver accepted that for the SOP class (otherwise the
    /// sub-operation fails with a reason: transcoding comes with the pixel pipeline).
    /// Pending responses count the sub-operations; C-CANCEL is honoured between them.
    async fn run_retrieve(
        &self,
        assoc: &mut AsyncServerAssociation<TcpStream>,
        f: PendingFind,
        contexts: &Contexts,
        peer: &Peer,
    ) -> Result<(), String> {
        let PendingFind {
            op,
            rq,
            pc_id,
            model,
            identifier,
        } = f;
        let rsp = op | 0x8000;
        let action = if op == field::C_MOVE_RQ {
            "C-MOVE"
        } else {
            "C-GET"
        };
        let event = AuditEvent::InstancesTransferred;
        let (query, ts) = match self.parse_query(pc_id, model, &identifier, contexts, true) {
            Ok(x) => x,
            Err((st, msg)) => {
                self.audit_unanswered(peer, action, event, &msg);
                return respond(assoc, pc_id, &rq, rsp, st, Some(&msg)).await;
            }
        };
        // C-MOVE: the destination must be a known remote AE (PS3.4 C.4.2.1.4.1: 0xA801)
        let destination = if op == field::C_MOVE_RQ {
            let dest = rq.move_destination.trim().to_string();
            let known = self
                .options
                .remotes
                .read()
                .map_err(|_| "remote AE table poisoned".to_string())?
                .get(&dest)
                .cloned();
            match known {
                Some(addr) => Some((dest, addr)),
                None => {
                    let msg = format!("unknown move destination {dest:?}");
                    self.audit_unanswered(peer, action, event, &msg);
                    return respond(
                        assoc,
                        pc_id,
                        &rq,
                        rsp,
                        status::MOVE_DESTINATION_UNKNOWN,
                        Some(&msg),
                    )
                    .await;
                }
            }
        } else {
            None
        };
        let store = self.store.clone();
        let scoped = self.options.share.clone().zip(peer.actor.clone());
        let worker = tokio::task::spawn_blocking(move || match scoped {
            Some((share, actor)) => scoped_instances(&store, &share, actor, &query, action),
            None => store.instances_for(&query).map_err(|e| e.to_string()),
        });
        let instances = match worker.await {
            Ok(Ok(v)) => v,
            r => {
                if let Ok(Err(e)) = r {
                    warn!(error = %e, "{action} query failed");
                }
                let msg = "query failed inside the node";
                return respond(
                    assoc,
                    pc_id,
                    &rq,
                    rsp,
                    status::UNABLE_TO_PERFORM_SUBOPERATIONS,
                    Some(msg),
                )
                .await;
            }
        };
        // the sub-operation counts are US (PS3.7 C.4.2.1): a retrieve they cannot count is
        // refused with a hint, never cut short and reported as a success
        let Ok(total) = u16::try_from(instances.len()) else {
            let msg = format!(
                "{} instances, more than one retrieve can count: retrieve by series",
                instances.len()
            );
            return respond(
                assoc,
                pc_id,
                &rq,
                rsp,
                status::OUT_OF_RESOURCES_MATCHES,
                Some(&msg),
            )
            .await;
        };
        let instances = &instances[..];
        // C-GET sends over this association only the classes for which the requester took
        // the SCP role (PS3.7 D.3.3.4): without it the requester is the SCU alone
        let get_contexts: Contexts = contexts
            .iter()
            .filter(|(_, (class, _))| {
                let class = renkei_model::uid::trim_uid(class);
                assoc.requestor_roles_for(class).scp
                    || assoc.requestor_roles_for(&format!("{class}\0")).scp
            })
            .map(|(id, pair)| (*id, pair.clone()))
            .collect();
        let mut target = match destination {
            None => None,
            Some((ae, (host, port))) => match self
                .open_move_association(&ae, &host, port, instances)
                .await
            {
                Ok(client) => Some(client),
                Err(e) => {
                    warn!(destination = %ae, error = %e, "cannot reach the move destination");
                    let msg = format!("cannot associate with {ae}");
                    return respond(
                        assoc,
                        pc_id,
                        &rq,
                        rsp,
                        status::UNABLE_TO_PERFORM_SUBOPERATIONS,
                        Some(&msg),
                    )
                    .await;
                }
            },
        };
        let mut ops = SubOperations {
            remaining: total,
            ..Default::default()
        };
        let mut failed_uids: Vec<String> = Vec::new();
        let mut first_reason: Option<String> = None;
        let mut cancelled = false;
        let pool = &self.options.pixel_pool;
        let max_fragment = max_fragment_for(assoc.peer_max_pdu_length());
        for (n, inst) in instances.iter().enumerate() {
            if cancelled {
                break;
            }
            ops.remaining = total.saturating_sub(n as u16 + 1);
            let message_id = 0x8000u16.wrapping_add(n as u16);
            let mut path = self.store.blob_path(&inst.blob_hash);
            // the record was read before the sub-operations began: a replacement or the
            // storage compression may have moved the instance to another blob since
            let fresh;
            let inst = if path.exists() {
                inst
            } else {
                match self.store.instance(&inst.sop_uid) {
                    Ok(Some(rec)) => {
                        fresh = rec;
                        path = self.store.blob_path(&fresh.blob_hash);
                        &fresh
                    }
                    _ => inst,
                }
            };
            let outcome = match target.as_mut() {
                None => {
                    store_sub_op(assoc, &get_contexts, pool, inst, &path, message_id, None).await?
                }
                Some((client, client_contexts)) => {
                    let originator = Some((peer.calling.as_str(), rq.message_id));
                    store_sub_op(
                        client,
                        client_contexts,
                        pool,
                        inst,
                        &path,
                        message_id,
                        originator,
                    )
                    .await?
                }
            };
            let (st, cancel) = match outcome {
                SubOp::Sent(st, cancel) => (st, cancel),
                SubOp::NotSent(why) => {
                    warn!(sop = %inst.sop_uid, reason = %why, "sub-operation not sent");
                    first_reason.get_or_insert(why);
                    (status::SOP_CLASS_NOT_SUPPORTED, false)
                }
            };
            cancelled |= cancel;
            match st {
                0x0000 => ops.completed += 1,
                0x0001 | 0xB000..=0xBFFF => ops.warning += 1,
                _ => {
                    ops.failed += 1;
                    failed_uids.push(inst.sop_uid.clone());
                }
            }
            if ops.remaining > 0 && !cancelled {
                let pending =
                    encode_retrieve_response(&rq, rsp, status::PENDING, ops, false, None, false);
                send_pdv(
                    assoc,
                    pc_id,
                    PDataValueType::Command,
                    &pending,
                    max_fragment,
                )
                .await?;
                cancelled |= cancel_requested(assoc).await?;
            }
        }
        if let Some((client, _)) = target {
            if let Err(e) = client.release().await {
                debug!(error = %e, "release of the move association failed");
            }
        }
        let st = if cancelled {
            status::CANCEL
        } else if total > 0 && ops.failed == total {
            status::UNABLE_TO_PERFORM_SUBOPERATIONS
        } else if ops.failed > 0 {
            status::SUBOPERATIONS_FAILED
        } else {
            status::SUCCESS
        };
        // Error Comment is LO: 64 characters at most (PS3.7 C.4.3.1.3)
        let comment = (ops.failed > 0).then(|| {
            let text = first_reason.as_deref().unwrap_or("refused by the receiver");
            text.chars().take(64).collect::<String>()
        });
        let comment = comment.as_deref();
        let with_list = !failed_uids.is_empty();
        let fin = encode_retrieve_response(&rq, rsp, st, ops, true, comment, with_list);
        send_pdv(assoc, pc_id, PDataValueType::Command, &fin, max_fragment).await?;
        if with_list {
            let mut obj = InMemDicomObject::new_empty();
            obj.put(dicom_core::DataElement::new(
                dicom_dictionary_std::tags::FAILED_SOP_INSTANCE_UID_LIST,
                dicom_core::VR::UI,
                dicom_core::PrimitiveValue::Strs(failed_uids.into_iter().collect()),
            ));
            let mut bytes = Vec::new();
            obj.write_dataset_with_ts(&mut bytes, ts)
                .map_err(|e| format!("cannot encode the failed list: {e}"))?;
            send_pdv(assoc, pc_id, PDataValueType::Data, &bytes, max_fragment).await?;
        }
        Ok(())
    }

    /// A new association to a C-MOVE destination, proposing one presentation context per
    /// (SOP class, stored transfer syntax) the instances need.
    async fn open_move_association(
        &self,
        ae: &str,
        host: &str,
        port: u16,
        instances: &[renkei_model::InstanceRecord],
    ) -> Result<(AsyncClientAssociation<TcpStream>, Contexts), String> {
        let mut pairs: Vec<(String, String)> = instances
            .iter()
            .map(|i| (i.sop_class_uid.clone(), i.transfer_syntax.clone()))
            .collect();
        pairs.sort();
        pairs.dedup();
        pairs.truncate(128);
        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(self.options.ae_title.clone())
            .called_ae_title(ae.to_string())
            .max_pdu_length(self.options.max_pdu)
            .read_timeout(self.options.idle_timeout)
            .connection_timeout(Duration::from_secs(10));
        for (class, ts) in &pairs {
            // the stored syntax first, then what it can be converted to without loss
            let offered: Vec<String> = transcode::producible(ts)
                .into_iter()
                .map(String::from)
                .collect();
            options = options.with_presentation_context(class.clone(), offered);
        }
        let mut client = tokio::time::timeout(
            self.options.idle_timeout,
            options.establish_async((host, port)),
        )
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
        if let Err(e) = AsyncAssociation::inner_stream(&mut client).set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let contexts = accepted(client.presentation_contexts());
        Ok((client, contexts))
    }
}

/// What became of one C-STORE sub-operation.
enum SubOp {
    /// Sent: the receiver's status, and whether a C-CANCEL arrived meanwhile (C-GET only).
    Sent(u16, bool),
    /// Not sent, and why (no accepted syntax reachable, or the transcode failed).
    NotSent(String),
}

/// One C-STORE sub-operation of a retrieve over `target`, in the cheapest syntax the
/// receiver accepted for the instance's SOP class (renkei_transcode::transcode::choose):
/// the stored bytes streamed as they are; else the data set re-encoded between
/// uncompressed syntaxes; else the pixel data decoded and encoded (PS3.4 C.4.2.3.1: the
/// SCU may ask for what it can read). Pixel work runs on the bounded pool.
#[allow(clippy::too_many_arguments)]
async fn store_sub_op<A: AsyncAssociation<TcpStream> + Send>(
    target: &mut A,
    contexts: &Contexts,
    pool: &PixelPool,
    inst: &renkei_model::InstanceRecord,
    path: &std::path::Path,
    message_id: u16,
    originator: Option<(&str, u16)>,
) -> Result<SubOp, String> {
    let offered: Vec<(u8, &str)> = contexts
        .iter()
        .filter(|(_, (a, _))| a == &inst.sop_class_uid)
        .map(|(&pc, (_, t))| (pc, renkei_model::uid::trim_uid(t)))
        .collect();
    let syntaxes: Vec<&str> = offered.iter().map(|(_, t)| *t).collect();
    let has_pixels = inst.rows > 0;
    let Some((i, route)) = transcode::choose(&inst.transfer_syntax, &syntaxes, has_pixels) else {
        let why = if syntaxes.is_empty() {
            format!("receiver did not accept {}", inst.sop_class_uid)
        } else {
            format!(
                "stored as {}, receiver accepts only {}",
                inst.transfer_syntax,
                syntaxes.join(", ")
            )
        };
        return Ok(SubOp::NotSent(why));
    };
    let (pc, ts) = (offered[i].0, offered[i].1.to_string());
    let cmd = match originator {
        None => encode_store_rq(message_id, &inst.sop_class_uid, &inst.sop_uid),
        Some((ae, id)) => {
            encode_store_rq_for_move(message_id, &inst.sop_class_uid, &inst.sop_uid, ae, id)
        }
    };
    let max = max_fragment_for(target.peer_max_pdu_length());
    if route == Route::AsIs {
        send_pdv(target, pc, PDataValueType::Command, &cmd, max).await?;
        send_blob_dataset(target, pc, path, max).await?;
    } else {
        // the whole object in memory on the pixel pool: only for these fallbacks
        let owned = path.to_path_buf();
        let target_ts = ts.clone();
        let job = pool
            .run(move || match route {
                Route::Reencode => reencode_blob(&owned, &target_ts),
                _ => transcode::transcode_file(&owned, &target_ts).map_err(|e| e.to_string()),
            })
            .await
            .map_err(|e| e.to_string())?;
        let bytes = match job {
            Ok(b) => b,
            Err(e) => {
                warn!(sop = %inst.sop_uid, to = %ts, error = %e, "cannot transcode for the receiver");
                return Ok(SubOp::NotSent(format!("cannot transcode to {ts}: {e}")));
            }
        };
        debug!(sop = %inst.sop_uid, from = %inst.transfer_syntax, to = %ts, ?route, "sending converted");
        send_pdv(target, pc, PDataValueType::Command, &cmd, max).await?;
        send_pdv(target, pc, PDataValueType::Data, &bytes, max).await?;
    }
    receive_store_response(target, message_id)
        .await
        .map(|(st, cancel)| SubOp::Sent(st, cancel))
}

/// A stored blob's data set written in another uncompressed transfer syntax.
fn reencode_blob(path: &std::path::Path, ts_uid: &str) -> Result<Vec<u8>, String> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| format!("unknown transfer syntax {ts_uid}"))?;
    let mut obj = dicom_object::open_file(path).map_err(|e| e.to_string())?;
    transcode::drop_group_lengths(&mut obj);
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Stream the data set of a stored blob (everything after its file meta group).
async fn send_blob_dataset<A: AsyncAssociation<TcpStream> + Send>(
    assoc: &mut A,
    pc_id: u8,
    path: &std::path::Path,
    max_fragment: usize,
) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    // Reads of a stored blob come from the page cache in max-PDU pieces: short enough for
    // the runtime thread, and memory stays at one PDU.
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut head = [0u8; 144];
    file.read_exact(&mut head)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let group_len = u64::from(u32::from_le_bytes([
        head[140], head[141], head[142], head[143],
    ]));
    let start = 144 + group_len;
    let total = file
        .metadata()
        .map_err(|e| e.to_string())?
        .len()
        .saturating_sub(start);
    file.seek(SeekFrom::Start(start))
        .map_err(|e| e.to_string())?;
    let mut sent = 0u64;
    let mut buf = vec![0u8; max_fragment];
    while sent < total {
        let want = ((total - sent) as usize).min(max_fragment);
        file.read_exact(&mut buf[..want])
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        sent += want as u64;
        AsyncAssociation::send(
            assoc,
            &Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc_id,
                    value_type: PDataValueType::Data,
                    is_last: sent == total,
                    data: buf[..want].to_vec(),
                }],
            },
        )
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    }
    Ok(())
}

/// Wait for the C-STORE-RSP of a sub-operation; (status, whether a C-CANCEL came first).
async fn receive_store_response<A: AsyncAssociation<TcpStream> + Send>(
    assoc: &mut A,
    message_id: u16,
) -> Result<(u16, bool), String> {
    let mut cancelled = false;
    let mut bytes = Vec::new();
    loop {
        match AsyncAssociation::receive(assoc)
            .await
            .map_err(|e| format!("receive failed: {e}"))?
        {
            Pdu::PData { data } => {
                for pdv in data {
                    if pdv.value_type != PDataValueType::Command {
                        continue;
                    }
                    bytes.extend_from_slice(&pdv.data);
                    if !pdv.is_last {
                        continue;
                    }
                    let all = std::mem::take(&mut bytes);
                    if let Ok(c) = Command::decode(&all) {
                        if c.field == field::C_CANCEL_RQ {
                            cancelled = true;
                            continue;
                        }
                    }
                    let r = Response::decode(&all).map_err(|e| e.to_string())?;
                    r.check(field::C_STORE_RSP, message_id)
                        .map_err(|e| e.to_string())?;
                    return Ok((r.status, cancelled));
                }
            }
            Pdu::AbortRQ { .. } => return Err("aborted by peer during a sub-operation".into()),
            other => return Err(format!("unexpected PDU during a sub-operation: {other:?}")),
        }
    }
}

/// Parse a C-FIND/C-GET/C-MOVE identifier, decoding its text by every value of its
/// Specific Character Set (a Japanese workstation sends `\ISO 2022 IR 87` kanji, which
/// dicom-rs alone would garble; see renkei_model::charset).
fn read_identifier(bytes: &[u8], ts: &TransferSyntax) -> Result<InMemDicomObject, String> {
    let mut obj = InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| e.to_string())?;
    let charsets = CharacterSets::parse(&renkei_model::extract::text(
        &obj,
        dicom_dictionary_std::tags::SPECIFIC_CHARACTER_SET,
    ));
    if charsets.needs_own_decoding() {
        for (tag, vr, raw) in renkei_store::rawtext::raw_text_elements(bytes, ts)? {
            let text = charsets.decode(&raw, vr == dicom_core::VR::PN);
            obj.put(dicom_core::DataElement::new(
                tag,
                vr,
                dicom_core::PrimitiveValue::from(text.trim_end_matches([' ', '\0'])),
            ));
        }
    }
    Ok(obj)
}

/// The largest PDV payload for a peer's max PDU (which counts the 6-byte PDV header),
/// capped at 1 MiB (0 means unlimited) and even.
fn max_fragment_for(peer_max_pdu: u32) -> usize {
    let max = if peer_max_pdu == 0 {
        1 << 20
    } else {
        peer_max_pdu.clamp(1024, 1 << 20)
    };
    (max - 6) as usize & !1
}

/// Send one message part, split into PDUs the peer accepts.
async fn send_pdv<A: AsyncAssociation<TcpStream> + Send>(
    assoc: &mut A,
    pc_id: u8,
    value_type: PDataValueType,
    bytes: &[u8],
    max_fragment: usize,
) -> Result<(), String> {
    let mut chunks = bytes.chunks(max_fragment.max(2)).peekable();
    if bytes.is_empty() {
        return Err("empty message part".into());
    }
    while let Some(chunk) = chunks.next() {
        AsyncAssociation::send(
            assoc,
            &Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc_id,
                    value_type: value_type.clone(),
                    is_last: chunks.peek().is_none(),
                    data: chunk.to_vec(),
                }],
            },
        )
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    }
    Ok(())
}

/// Whether the peer sent a C-CANCEL (checked without waiting; only one C-FIND is
/// outstanding on an association, so it is this one). Any other PDU in the middle of a
/// C-FIND ends the association.
async fn cancel_requested(assoc: &mut AsyncServerAssociation<TcpStream>) -> Result<bool, String> {
    // A C-CANCEL sent right behind the request may already sit in dicom-ul's read buffer,
    // read together with the C-FIND-RQ; otherwise ask the kernel, not tokio: tokio's
    // readiness flag only changes when its driver polls epoll, which a C-FIND streaming
    // into a writable socket may never yield to. A non-blocking MSG_PEEK is one syscall.
    let (socket, buffered) = assoc.get_mut();
    let waiting = !buffered.is_empty() || {
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(&*socket).peek(&mut probe) {
            Ok(_) => true, // a PDU, or the peer closed: receive() below tells which
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => return Err(format!("connection failed: {e}")),
        }
    };
    if !waiting {
        return Ok(false);
    }
    match assoc
        .receive()
        .await
        .map_err(|e| format!("receive failed: {e}"))?
    {
        Pdu::PData { data } => {
            for pdv in data {
                if pdv.value_type == PDataValueType::Command {
                    if let Ok(c) = Command::decode(&pdv.data) {
                        if c.field == field::C_CANCEL_RQ {
                            return Ok(true);
                        }
                    }
                }
            }
            Err("unexpected message during C-FIND".into())
        }
        Pdu::AbortRQ { .. } => Err("aborted by peer during C-FIND".into()),
        other => Err(format!("unexpected PDU during C-FIND: {other:?}")),
    }
}

/// The DIMSE status and comment for a store error (PS3.4 B.2.3).
fn failure_of(e: &StoreError) -> (u16, String) {
    match e {
        StoreError::OutOfSpace { .. } => (status::OUT_OF_RESOURCES, "out of storage space".into()),
        // the comment holds 64 characters: the innermost cause says the most
        StoreError::Unparseable(m) => (
            status::CANNOT_UNDERSTAND,
            format!("cannot parse: {}", m.rsplit(": ").next().unwrap_or(m)),
        ),
        StoreError::Invalid(m) => (status::DATASET_MISMATCH, m.clone()),
        other => {
            warn!(error = %other, "storage error");
            (status::OUT_OF_RESOURCES, "internal storage error".into())
        }
    }
}

async fn respond(
    assoc: &mut AsyncServerAssociation<TcpStream>,
    pc_id: u8,
    rq: &Command,
    rsp_field: u16,
    st: u16,
    comment: Option<&str>,
) -> Result<(), String> {
    let data = encode_response(rq, rsp_field, st, comment);
    assoc
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data,
            }],
        })
        .await
        .map_err(|e| format!("cannot send response: {e}"))
}

/// Refuse an association for lack of capacity: read its A-ASSOCIATE-RQ, answer with a
/// transient A-ASSOCIATE-RJ "local limit exceeded" (PS3.8 9.3.4), so the peer retries.
async fn reject_busy(socket: &mut TcpStream) {
    let mut header = [0u8; 6];
    let read = async {
        socket.read_exact(&mut header).await?;
        let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]).min(1 << 20);
        let mut rest = vec![0u8; len as usize];
        socket.read_exact(&mut rest).await
    };
    if tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .is_err()
    {
        return;
    }
    let rj = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    });
    let mut buf = Vec::new();
    if dicom_ul::write_pdu(&mut buf, &rj).is_ok() {
        let _ = socket.write_all(&buf).await;
    }
}
