//! `/api/…` of regional sharing: facilities, users and tokens, patients (links, merge,
//! consent, cards), check-in, break-glass, unlinked data and the audit trail. Every
//! handler acts as the signed-in user ([`crate::auth`]); what the user may do is decided
//! in `renkei-share`, never here.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use renkei_share::admin::{NewFacility, NewUser};
use renkei_share::care::ConsentChange;
use renkei_share::identity::LocalId;
use renkei_share::policy::{Category, Subject};
use renkei_share::{audit, Actor, AuditEvent, Principal, Purpose, Role, Share, ShareError};

use crate::auth::{actor, blocking};
use crate::{ApiError, AppState};

/// Routes of this group.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/whoami", get(whoami))
        .route("/api/facilities", get(facilities).post(add_facility))
        .route("/api/users", get(users).post(add_user))
        .route("/api/users/{id}/tokens", post(issue_token))
        .route("/api/tokens/{id}", delete(revoke_token))
        .route("/api/patients", post(enroll))
        .route("/api/patients/{id}", get(patient))
        .route("/api/patients/{id}/links", post(link))
        .route("/api/patients/{id}/links/{issuer}/{pid}", delete(unlink))
        .route("/api/patients/{id}/merge", post(merge))
        .route("/api/patients/{id}/consent", post(consent))
        .route("/api/patients/{id}/cards", post(issue_card))
        .route("/api/cards/{number}", get(card).delete(revoke_card))
        .route("/api/encounters/checkin", post(checkin))
        .route("/api/breakglass", post(break_glass))
        .route("/api/unlinked", get(unlinked))
        .route("/api/audit", get(audit_list))
}

type Res = Result<Json<Value>, ApiError>;
type Created = Result<(StatusCode, Json<Value>), ApiError>;

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

async fn whoami(State(st): State<AppState>, Extension(p): Extension<Principal>) -> Res {
    let facility = p.facility.as_deref().and_then(|f| st.share.facility(f));
    Ok(Json(json!({
        "user_id": p.user_id, "name": p.name, "facility": p.facility, "role": p.role,
        "token_id": p.token_id,
        "facility_name": facility.map(|f| f.name),
        "single_site": st.share.single_site(),
    })))
}

async fn facilities(State(st): State<AppState>) -> Res {
    Ok(Json(to_json(&st.share.facilities())))
}

async fn add_facility(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Json(new): Json<NewFacility>,
) -> Created {
    let share = st.share.clone();
    let f = blocking(move || share.add_facility(&actor(&p), new)).await?;
    Ok((StatusCode::CREATED, Json(to_json(&f))))
}

#[derive(Deserialize)]
struct UsersQuery {
    facility: Option<String>,
}

async fn users(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<UsersQuery>,
) -> Res {
    let facility = match p.role {
        Role::RegionalAdmin => q.facility,
        Role::FacilityAdmin => p.facility.clone(),
        _ => {
            return Err(ApiError::Forbidden(format!(
                "role {} does not list users",
                p.role.as_str()
            )))
        }
    };
    let share = st.share.clone();
    let users = blocking(move || share.users(facility.as_deref())).await?;
    Ok(Json(to_json(&users)))
}

async fn add_user(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Json(new): Json<NewUser>,
) -> Created {
    let share = st.share.clone();
    let (user, token) = blocking(move || share.add_user(&actor(&p), new)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": user, "token": token})),
    ))
}

#[derive(Deserialize, Default)]
struct TokenBody {
    ttl_secs: Option<u64>,
}

async fn issue_token(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Option<Json<TokenBody>>,
) -> Created {
    let ttl = body.and_then(|Json(b)| b.ttl_secs);
    let share = st.share.clone();
    let t = blocking(move || share.issue_token(&actor(&p), &id, ttl)).await?;
    Ok((StatusCode::CREATED, Json(to_json(&t))))
}

async fn revoke_token(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Res {
    let share = st.share.clone();
    let t = blocking(move || share.revoke_token(&actor(&p), &id)).await?;
    Ok(Json(to_json(&t)))
}

async fn enroll(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Json(new): Json<renkei_share::identity::NewPatient>,
) -> Created {
    let share = st.share.clone();
    let pat = blocking(move || share.enroll(&actor(&p), new)).await?;
    Ok((StatusCode::CREATED, Json(to_json(&pat))))
}

/// Whether the actor may see a patient's identity record (links, cards, history):
/// regional administrators, the patient's own facilities, or whoever the policy lets read
/// demographics. Audited.
fn identity_access(share: &Share, a: &Actor, id: &str, what: &str) -> Result<(), ShareError> {
    let p = share.patient(id)?;
    let (allowed, reason, bg) = match a {
        Actor::User(u) if u.role == Role::RegionalAdmin => (true, "regional administrator", false),
        _ => {
            let own = match a.facility() {
                Some(f) => share.is_facility_patient(f, &p.id)?,
                None => false,
            };
            let d = share.decide(
                a,
                Subject {
                    patient: Some(&p),
                    owner: if own { a.facility() } else { None },
                    category: Category::Demographics,
                },
            )?;
            (d.allowed, d.reason, d.break_glass)
        }
    };
    let mut e = a.audit(what, AuditEvent::PatientRecord, &p.id);
    e.allowed = allowed;
    e.break_glass = bg;
    e.detail = reason.to_string();
    if matches!(a, Actor::User(u) if u.role == Role::RegionalAdmin) {
        e.purpose = Purpose::Administration;
    }
    share.audit_read(e)?;
    if allowed {
        Ok(())
    } else {
        Err(ShareError::Forbidden(format!("not permitted: {reason}")))
    }
}

async fn patient(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Res {
    let share = st.share.clone();
    blocking(move || {
        identity_access(&share, &actor(&p), &id, "identity read")?;
        let pat = share.patient(&id)?;
        Ok(Json(json!({
            "patient": pat,
            "links": share.links(&pat.id)?,
            "cards": share.cards(&pat.id)?,
            "history": share.history(&pat.id)?,
        })))
    })
    .await
}

async fn link(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Json(local): Json<LocalId>,
) -> Res {
    let share = st.share.clone();
    let pat = blocking(move || share.link(&actor(&p), &id, &local)).await?;
    Ok(Json(json!({"patient": pat.id, "linked": true})))
}

async fn unlink(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, issuer, pid)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let share = st.share.clone();
    let local = LocalId {
        issuer,
        patient_id: pid,
    };
    blocking(move || share.unlink(&actor(&p), &id, &local)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct MergeBody {
    from: String,
}

async fn merge(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Json(b): Json<MergeBody>,
) -> Res {
    let share = st.share.clone();
    let pat = blocking(move || share.merge(&actor(&p), &id, &b.from)).await?;
    Ok(Json(to_json(&pat)))
}

async fn consent(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Json(c): Json<ConsentChange>,
) -> Res {
    let share = st.share.clone();
    let pat = blocking(move || share.set_consent(&actor(&p), &id, c)).await?;
    Ok(Json(to_json(&pat)))
}

async fn issue_card(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Created {
    let share = st.share.clone();
    let c = blocking(move || share.issue_card(&actor(&p), &id)).await?;
    Ok((StatusCode::CREATED, Json(to_json(&c))))
}

/// `GET /api/cards/{number}`: the regional ID an active card resolves to (the "type or
/// scan the card" step). Names the patient only: reading the record is the policy's call.
async fn card(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(number): Path<String>,
) -> Res {
    let share = st.share.clone();
    blocking(move || {
        let a = actor(&p);
        let r = share.resolve_card(&number);
        let mut e = a.audit("card lookup", AuditEvent::PatientRecord, "");
        match &r {
            Ok(pat) => e.patient = pat.id.clone(),
            Err(err) => {
                e.allowed = false;
                e.detail = err.to_string();
            }
        }
        share.audit_read(e)?;
        let pat = r?;
        Ok(Json(json!({"card": number, "patient": pat.id})))
    })
    .await
}

async fn revoke_card(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(number): Path<String>,
) -> Res {
    let share = st.share.clone();
    let c = blocking(move || share.revoke_card(&actor(&p), &number)).await?;
    Ok(Json(to_json(&c)))
}

#[derive(Deserialize)]
struct CheckinBody {
    card: String,
}

async fn checkin(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Json(b): Json<CheckinBody>,
) -> Res {
    let share = st.share.clone();
    let c = blocking(move || share.checkin(&actor(&p), &b.card)).await?;
    Ok(Json(to_json(&c)))
}

#[derive(Deserialize)]
struct BreakGlassBody {
    card: Option<String>,
    patient: Option<String>,
    #[serde(default)]
    reason: String,
}

async fn break_glass(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Json(b): Json<BreakGlassBody>,
) -> Created {
    let reference = b.card.or(b.patient).ok_or_else(|| {
        ApiError::BadRequest("break-glass names the patient: \"card\" or \"patient\"".into())
    })?;
    let share = st.share.clone();
    let g = blocking(move || share.break_glass(&actor(&p), &reference, &b.reason)).await?;
    Ok((StatusCode::CREATED, Json(to_json(&g))))
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

async fn unlinked(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<LimitQuery>,
) -> Res {
    let share = st.share.clone();
    let v = blocking(move || share.unlinked(&actor(&p), q.limit.unwrap_or(1000))).await?;
    Ok(Json(to_json(&v)))
}

#[derive(Deserialize)]
struct AuditQuery {
    patient: Option<String>,
    limit: Option<usize>,
}

/// The audit records of a patient, for regional administrators and the patient's own
/// facilities (a facility with a local ID linked to the patient). Reading them is itself
/// audited (110101 Audit Log Used).
pub(crate) fn audit_records(
    share: &Arc<Share>,
    a: &Actor,
    patient: Option<&str>,
    limit: usize,
) -> Result<Vec<audit::AuditRecord>, ShareError> {
    let patient = patient
        .ok_or_else(|| ShareError::BadRequest("name the patient: ?patient=<regional ID>".into()))?;
    let pat = share.patient(patient)?;
    let allowed = match a {
        Actor::User(u) if u.role == Role::RegionalAdmin => true,
        Actor::User(u) if u.role != Role::EmsCrew => match &u.facility {
            Some(f) => share.is_facility_patient(f, &pat.id)?,
            None => false,
        },
        _ => false,
    };
    let mut e = a.audit("audit read", AuditEvent::AuditLogUsed, &pat.id);
    e.allowed = allowed;
    e.purpose = Purpose::Administration;
    if !allowed {
        e.detail = "not the patient's facility".into();
        share.audit_read(e)?;
        return Err(ShareError::Forbidden(
            "the audit trail of a patient is for regional administrators and the patient's own facilities".into(),
        ));
    }
    let records = audit::for_patient(share_index(share), &pat.id, limit)?;
    share.audit_read(e)?;
    Ok(records)
}

fn share_index(share: &Share) -> &renkei_store::index::Index {
    share.store().index()
}

async fn audit_list(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<AuditQuery>,
) -> Res {
    let share = st.share.clone();
    blocking(move || {
        let recs = audit_records(
            &share,
            &actor(&p),
            q.patient.as_deref(),
            q.limit.unwrap_or(1000),
        )?;
        let out: Vec<Value> = recs
            .iter()
            .map(|r| {
                let mut v = to_json(&r.entry);
                v["seq"] = json!(r.seq);
                v["time"] = json!(renkei_share::model::rfc3339(r.time_us));
                v
            })
            .collect();
        Ok(Json(Value::Array(out)))
    })
    .await
}
