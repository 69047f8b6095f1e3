//! Facilities, users and bearer tokens.
//!
//! A token is 32 random bytes shown once as `rk_` + 64 hex digits; the index keeps only
//! its SHA-256 (a copy of the index gives no one a usable token), with an expiry and a
//! revocation time. Who may administer what:
//! - facilities: regional administrators;
//! - users: regional administrators (any facility, any role), facility administrators
//!   (their own facility, roles other than the two administrator roles);
//! - tokens: a user's own, or those an administrator of the user could create.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, ShareError};
use crate::model::{now_us, rfc3339, Facility, FacilityKind, Role, TokenRecord, User};
use crate::policy::{Actor, Principal};
use crate::{keys, AuditEvent, Purpose, Share};

/// A new facility, as the API takes it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewFacility {
    /// Code ([`Facility::code`]).
    pub code: String,
    /// Name.
    pub name: String,
    /// Kind ([`FacilityKind::NAMES`]).
    pub kind: String,
    /// AE titles.
    #[serde(default)]
    pub ae_titles: Vec<String>,
    /// Further issuers.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Phone.
    #[serde(default)]
    pub phone: String,
}

/// A new user, as the API takes it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewUser {
    /// Name.
    pub name: String,
    /// Facility code (none only for a regional administrator).
    #[serde(default)]
    pub facility: Option<String>,
    /// Role ([`Role::NAMES`]).
    pub role: String,
    /// Token lifetime in seconds (default: the node's `token_secs`).
    #[serde(default)]
    pub token_ttl_secs: Option<u64>,
}

/// A token as issued: the secret is in here once and nowhere else.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    /// Token id (revocation).
    pub id: String,
    /// The bearer secret.
    pub token: String,
    /// Whose.
    pub user_id: String,
    /// Expiry, RFC 3339.
    pub expires: String,
}

fn check_code(code: &str) -> Result<()> {
    let ok = (1..=16).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ShareError::BadRequest(format!(
            "facility code {code:?} must be 1 to 16 letters, digits or hyphens (a Japanese medical institution code has 10 digits)"
        )))
    }
}

fn check_ae(ae: &str) -> Result<String> {
    let t = ae.trim();
    if t.is_empty()
        || t.len() > 16
        || t.contains('\\')
        || !t.is_ascii()
        || t.chars().any(|c| c.is_ascii_control())
    {
        return Err(ShareError::BadRequest(format!(
            "AE title {ae:?} must be 1 to 16 printable ASCII characters (PS3.5 AE)"
        )));
    }
    Ok(t.to_string())
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The principal behind an actor that may administer, or 403.
fn admin_of(actor: &Actor) -> Result<&Principal> {
    match actor {
        Actor::User(p) if matches!(p.role, Role::RegionalAdmin | Role::FacilityAdmin) => Ok(p),
        Actor::User(p) => Err(ShareError::Forbidden(format!(
            "role {} does not administer users or facilities",
            p.role.as_str()
        ))),
        Actor::Ae { .. } => Err(ShareError::Forbidden(
            "DICOM peers do not administer".into(),
        )),
    }
}

impl Share {
    /// Check a bearer token: the signed-in user, or 401 saying why.
    pub fn authenticate(&self, token: &str) -> Result<Principal> {
        let token = token.trim();
        let unknown = || ShareError::Unauthorized("unknown token".into());
        if !token.starts_with("rk_") {
            return Err(unknown());
        }
        let rec: TokenRecord = self
            .get(&keys::key(keys::TOKEN, &[&sha256(token)]))?
            .ok_or_else(unknown)?;
        if let Some(t) = rec.revoked_us {
            return Err(ShareError::Unauthorized(format!(
                "token {} was revoked at {}",
                rec.id,
                rfc3339(t)
            )));
        }
        if rec.expires_us <= now_us() {
            return Err(ShareError::Unauthorized(format!(
                "token {} expired at {}",
                rec.id,
                rfc3339(rec.expires_us)
            )));
        }
        let user = self.user(&rec.user_id)?.ok_or_else(unknown)?;
        Ok(Principal {
            user_id: user.id,
            name: user.name,
            facility: user.facility,
            role: user.role,
            token_id: rec.id,
        })
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> Result<Option<User>> {
        self.get(&keys::text_key(keys::USER, &[id]))
    }

    /// Every user (of one facility when given).
    pub fn users(&self, facility: Option<&str>) -> Result<Vec<User>> {
        let mut out = Vec::new();
        self.index()
            .for_each_prefix(renkei_store::keys::CF_SHARE, &[keys::USER], |_, v| {
                if let Ok(u) = renkei_model::record::decode::<User>(v) {
                    if facility.is_none() || u.facility.as_deref() == facility {
                        out.push(u);
                    }
                }
                Ok(true)
            })?;
        Ok(out)
    }

    /// On a node without users: create the first regional administrator and its token.
    /// None when users exist.
    pub fn bootstrap_admin(&self) -> Result<Option<IssuedToken>> {
        let mut any = false;
        self.index()
            .for_each_prefix(renkei_store::keys::CF_SHARE, &[keys::USER], |_, _| {
                any = true;
                Ok(false)
            })?;
        if any {
            return Ok(None);
        }
        let system = Actor::Ae {
            title: self.config.node_name.clone(),
            facility: None,
        };
        self.transact(|tx| {
            let issued = tx.create_user(
                "regional administrator",
                None,
                Role::RegionalAdmin,
                self.config.token_secs,
            )?;
            let mut e = system.audit(
                "bootstrap regional administrator",
                AuditEvent::SecurityAlert,
                "",
            );
            e.purpose = Purpose::Administration;
            e.detail = format!("user {} created on an empty node", issued.user_id);
            Ok((Some(issued), e))
        })
    }

    /// Register a facility (regional administrators).
    pub fn add_facility(&self, actor: &Actor, new: NewFacility) -> Result<Facility> {
        let p = admin_of(actor)?;
        if p.role != Role::RegionalAdmin {
            return Err(ShareError::Forbidden(
                "only a regional administrator registers facilities".into(),
            ));
        }
        let code = new.code.trim().to_string();
        check_code(&code)?;
        let name = new.name.trim().to_string();
        if name.is_empty() {
            return Err(ShareError::BadRequest("a facility needs a name".into()));
        }
        let kind = FacilityKind::parse(&new.kind)?;
        let ae_titles = new
            .ae_titles
            .iter()
            .map(|a| check_ae(a))
            .collect::<Result<Vec<_>>>()?;
        {
            let map = self.facilities_read();
            if map.by_code.contains_key(&code) {
                return Err(ShareError::Conflict(format!("facility {code} exists")));
            }
            for ae in &ae_titles {
                if let Some(other) = map.by_ae.get(ae) {
                    return Err(ShareError::Conflict(format!(
                        "AE title {ae} already belongs to facility {other}"
                    )));
                }
            }
            for i in &new.issuers {
                if let Some(other) = map.by_issuer.get(i.trim()) {
                    return Err(ShareError::Conflict(format!(
                        "issuer {i} already belongs to facility {other}"
                    )));
                }
            }
        }
        let f = Facility {
            code: code.clone(),
            name,
            kind,
            ae_titles,
            issuers: new
                .issuers
                .iter()
                .map(|i| i.trim().to_string())
                .filter(|i| !i.is_empty())
                .collect(),
            phone: new.phone.trim().to_string(),
            created_us: now_us(),
        };
        let out = self.transact(|tx| {
            if tx
                .get::<Facility>(&keys::text_key(keys::FACILITY, &[&code]))?
                .is_some()
            {
                return Err(ShareError::Conflict(format!("facility {code} exists")));
            }
            tx.put(&keys::text_key(keys::FACILITY, &[&code]), &f)?;
            let mut e = actor.audit("facility add", AuditEvent::SecurityAlert, "");
            e.purpose = Purpose::Administration;
            e.detail = format!(
                "facility {code} ({}) with AE titles {:?}",
                f.name, f.ae_titles
            );
            Ok((f.clone(), e))
        })?;
        self.facilities
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(out.clone());
        Ok(out)
    }

    /// Create a user and its first token.
    pub fn add_user(&self, actor: &Actor, new: NewUser) -> Result<(User, IssuedToken)> {
        let p = admin_of(actor)?;
        let role = Role::parse(&new.role)?;
        let name = new.name.trim().to_string();
        if name.is_empty() {
            return Err(ShareError::BadRequest("a user needs a name".into()));
        }
        let facility = new
            .facility
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty());
        match (role, facility) {
            (Role::RegionalAdmin, None) => {}
            (_, None) => {
                return Err(ShareError::BadRequest(format!(
                    "a {} belongs to a facility: give its code",
                    role.as_str()
                )))
            }
            (_, Some(f)) if self.facility(f).is_none() => {
                return Err(ShareError::NotFound(format!("no facility {f}")))
            }
            _ => {}
        }
        if p.role == Role::FacilityAdmin
            && (facility != p.facility.as_deref()
                || matches!(role, Role::RegionalAdmin | Role::FacilityAdmin))
        {
            return Err(ShareError::Forbidden(
                "a facility administrator creates clinical and EMS users of its own facility only"
                    .into(),
            ));
        }
        let ttl = new.token_ttl_secs.unwrap_or(self.config.token_secs);
        self.transact(|tx| {
            let issued = tx.create_user(&name, facility.map(str::to_string), role, ttl)?;
            let user: User = tx
                .get(&keys::text_key(keys::USER, &[&issued.user_id]))?
                .unwrap_or_else(|| User {
                    id: issued.user_id.clone(),
                    name: name.clone(),
                    facility: facility.map(str::to_string),
                    role,
                    created_us: now_us(),
                });
            let mut e = actor.audit("user add", AuditEvent::SecurityAlert, "");
            e.purpose = Purpose::Administration;
            e.detail = format!(
                "user {} ({}) at {:?}",
                issued.user_id,
                role.as_str(),
                facility
            );
            Ok(((user, issued), e))
        })
    }

    /// A further token for a user (the user itself, or its administrator).
    pub fn issue_token(
        &self,
        actor: &Actor,
        user_id: &str,
        ttl_secs: Option<u64>,
    ) -> Result<IssuedToken> {
        let user = self
            .user(user_id)?
            .ok_or_else(|| ShareError::NotFound(format!("no user {user_id}")))?;
        self.may_manage(actor, &user)?;
        let ttl = ttl_secs.unwrap_or(self.config.token_secs);
        self.transact(|tx| {
            let issued = tx.create_token(user_id, ttl)?;
            let mut e = actor.audit("token issue", AuditEvent::SecurityAlert, "");
            e.purpose = Purpose::Administration;
            e.detail = format!("token {} for user {user_id}", issued.id);
            Ok((issued, e))
        })
    }

    /// Revoke a token by id.
    pub fn revoke_token(&self, actor: &Actor, token_id: &str) -> Result<TokenRecord> {
        let hash = self
            .index()
            .get_raw(
                renkei_store::keys::CF_SHARE,
                &keys::text_key(keys::TOKEN_ID, &[token_id]),
            )?
            .ok_or_else(|| ShareError::NotFound(format!("no token {token_id}")))?;
        let key = keys::key(keys::TOKEN, &[&hash]);
        let mut rec: TokenRecord = self
            .get(&key)?
            .ok_or_else(|| ShareError::NotFound(format!("no token {token_id}")))?;
        let user = self
            .user(&rec.user_id)?
            .ok_or_else(|| ShareError::NotFound(format!("no user {}", rec.user_id)))?;
        self.may_manage(actor, &user)?;
        if rec.revoked_us.is_some() {
            return Ok(rec);
        }
        rec.revoked_us = Some(now_us());
        self.transact(|tx| {
            tx.put(&key, &rec)?;
            let mut e = actor.audit("token revoke", AuditEvent::SecurityAlert, "");
            e.purpose = Purpose::Administration;
            e.detail = format!("token {token_id} of user {}", rec.user_id);
            Ok((rec.clone(), e))
        })
    }

    /// Whether `actor` may manage `user`'s tokens.
    fn may_manage(&self, actor: &Actor, user: &User) -> Result<()> {
        let Actor::User(p) = actor else {
            return Err(ShareError::Forbidden(
                "DICOM peers do not administer".into(),
            ));
        };
        let ok = p.user_id == user.id
            || p.role == Role::RegionalAdmin
            || (p.role == Role::FacilityAdmin
                && p.facility.is_some()
                && p.facility == user.facility
                && !matches!(user.role, Role::RegionalAdmin | Role::FacilityAdmin));
        if ok {
            Ok(())
        } else {
            Err(ShareError::Forbidden(format!(
                "{} may not manage the tokens of user {}",
                p.user_id, user.id
            )))
        }
    }
}

impl crate::Tx<'_, '_> {
    fn create_user(
        &mut self,
        name: &str,
        facility: Option<String>,
        role: Role,
        ttl_secs: u64,
    ) -> Result<IssuedToken> {
        let id = format!("u{}", self.next_seq("user")?);
        let user = User {
            id: id.clone(),
            name: name.to_string(),
            facility,
            role,
            created_us: now_us(),
        };
        self.put(&keys::text_key(keys::USER, &[&id]), &user)?;
        self.create_token(&id, ttl_secs)
    }

    fn create_token(&mut self, user_id: &str, ttl_secs: u64) -> Result<IssuedToken> {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = format!("rk_{}", hex::encode(secret));
        let mut idb = [0u8; 6];
        rand::rng().fill_bytes(&mut idb);
        let id = format!("t{}", hex::encode(idb));
        let now = now_us();
        let expires_us = now.saturating_add(ttl_secs.saturating_mul(1_000_000));
        let hash = sha256(&token);
        self.put(
            &keys::key(keys::TOKEN, &[&hash]),
            &TokenRecord {
                id: id.clone(),
                user_id: user_id.to_string(),
                created_us: now,
                expires_us,
                revoked_us: None,
            },
        )?;
        self.put_raw(&keys::text_key(keys::TOKEN_ID, &[&id]), &hash)?;
        Ok(IssuedToken {
            id,
            token,
            user_id: user_id.to_string(),
            expires: rfc3339(expires_us),
        })
    }
}
