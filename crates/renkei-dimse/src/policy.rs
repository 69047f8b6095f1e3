//! Which calling AE titles may associate (ARCHITECTURE; issue "foundation"): any while the
//! node listens on loopback only, otherwise only those configured, unless told to accept
//! any. A refusal is an A-ASSOCIATE-RJ, permanent, "calling AE title not recognized"
//! (PS3.8 9.3.4).
//!
//! [`AssociationAccess`] adds the User Identity of regional sharing.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity, UserIdentityType};
use renkei_share::{Actor, AuditEvent, Principal, Share};
use tracing::{info, warn};

/// The calling-AE policy.
#[derive(Debug, Clone)]
pub enum AcceptPolicy {
    /// Every calling AE title is accepted.
    Any,
    /// Only these calling AE titles (compared after trimming spaces, case-sensitive as
    /// PS3.5 defines AE values).
    Listed(HashSet<String>),
    /// Only the remote AEs currently configured (the table `/api/remotes` edits).
    Remotes(crate::scp::Remotes),
}

impl AcceptPolicy {
    /// A policy accepting the given titles.
    pub fn listed<I: IntoIterator<Item = S>, S: AsRef<str>>(titles: I) -> Self {
        AcceptPolicy::Listed(
            titles
                .into_iter()
                .map(|t| t.as_ref().trim().to_string())
                .collect(),
        )
    }

    /// Whether `calling` may associate.
    pub fn allows(&self, calling: &str) -> bool {
        match self {
            AcceptPolicy::Any => true,
            AcceptPolicy::Listed(set) => set.contains(calling.trim()),
            AcceptPolicy::Remotes(table) => table
                .read()
                .map(|t| t.contains_key(calling.trim()))
                .unwrap_or(false),
        }
    }
}

impl AccessControl for AcceptPolicy {
    fn check_access(
        &self,
        _this_ae_title: &str,
        calling_ae_title: &str,
        _called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if self.allows(calling_ae_title) {
            Ok(())
        } else {
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        }
    }
}

/// The access control of one association (built per connection): the calling-AE policy,
/// then, when the node shares data regionally, the User Identity of the A-ASSOCIATE-RQ
/// (PS3.7 D.3.3.7). Its token — the username of type 1, the passcode of type 2, the JWT
/// field of type 5 — must be a valid bearer token of the sharing domain; the signed-in
/// user is kept in [`AssociationAccess::user`] for the association (dicom-ul forgets the
/// identity once the association is established). A token that does not authenticate
/// rejects the association (A-ASSOCIATE-RJ permanent, service user, no reason given),
/// logged and audited; on a single-site node (no facility configured) it is ignored
/// instead, so that a device sending some user name keeps working as before.
#[derive(Debug, Clone)]
pub struct AssociationAccess {
    accept: AcceptPolicy,
    share: Option<Arc<Share>>,
    user: Arc<Mutex<Option<Principal>>>,
}

impl AssociationAccess {
    /// The access control of a new connection.
    pub fn new(accept: AcceptPolicy, share: Option<Arc<Share>>) -> Self {
        AssociationAccess {
            accept,
            share,
            user: Arc::default(),
        }
    }

    /// The user the association's User Identity signed in, once negotiated.
    pub fn user(&self) -> Option<Principal> {
        self.user.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The bearer token a User Identity carries (PS3.7 D.3.3.7.1), for the types that carry
/// one; None for Kerberos and SAML, which the node does not take.
pub fn token_of(identity: &UserIdentity) -> Option<String> {
    let field = match identity.identity_type() {
        UserIdentityType::Username | UserIdentityType::Jwt => identity.primary_field(),
        UserIdentityType::UsernamePassword => identity.secondary_field(),
        _ => return None,
    };
    let text = String::from_utf8_lossy(&field);
    let token = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!token.is_empty()).then(|| token.to_string())
}

impl AccessControl for AssociationAccess {
    fn check_access(
        &self,
        _this_ae_title: &str,
        calling_ae_title: &str,
        _called_ae_title: &str,
        user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        // an AE title registered to a facility is known to the node as much as a
        // configured remote AE is
        let registered = self
            .share
            .as_ref()
            .is_some_and(|s| s.facility_of_ae(calling_ae_title).is_some());
        if !registered && !self.accept.allows(calling_ae_title) {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        let (Some(share), Some(identity)) = (&self.share, user_identity) else {
            return Ok(());
        };
        let calling = calling_ae_title.trim();
        let refusal = match token_of(identity) {
            None => format!(
                "user identity of type {:?} is not taken (send a bearer token as user name, passcode or JWT)",
                identity.identity_type()
            ),
            Some(token) => match share.authenticate(&token) {
                Ok(p) => {
                    info!(calling, user = %p.user_id, role = p.role.as_str(), facility = ?p.facility, "user identity accepted");
                    *self.user.lock().unwrap_or_else(|p| p.into_inner()) = Some(p);
                    return Ok(());
                }
                Err(e) => e.to_string(),
            },
        };
        if share.single_site() {
            info!(calling, reason = %refusal, "user identity ignored on a single-site node");
            return Ok(());
        }
        warn!(calling, reason = %refusal, "association rejected: user identity refused");
        let actor = Actor::Ae {
            title: calling.to_string(),
            facility: share.facility_of_ae(calling),
        };
        let mut entry = actor.audit("DICOM association", AuditEvent::SecurityAlert, "");
        entry.allowed = false;
        entry.detail = format!("user identity refused: {refusal}");
        if let Err(e) = share.audit_read(entry) {
            warn!(error = %e, "cannot record the refused association in the audit trail");
        }
        Err(AssociationRJServiceUserReason::NoReasonGiven)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_titles_only() {
        let p = AcceptPolicy::listed(["CT01", " MR02 "]);
        assert!(p.allows("CT01"));
        assert!(p.allows("MR02  "));
        assert!(!p.allows("ct01"));
        assert_eq!(
            p.check_access("RENKEI", "EVIL", "RENKEI", None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
        assert!(AcceptPolicy::Any.allows("whatever"));
    }

    #[test]
    fn token_of_identity_types() {
        let t = |ty, p: &[u8], s: &[u8]| {
            token_of(&UserIdentity::new(false, ty, p.to_vec(), s.to_vec()))
        };
        assert_eq!(
            t(UserIdentityType::Username, b"rk_abc ", b""),
            Some("rk_abc".into())
        );
        assert_eq!(
            t(UserIdentityType::UsernamePassword, b"alice", b"rk_def\0"),
            Some("rk_def".into())
        );
        assert_eq!(
            t(UserIdentityType::Jwt, b"rk_ghi", b""),
            Some("rk_ghi".into())
        );
        assert_eq!(t(UserIdentityType::SamlAssertion, b"<x/>", b""), None);
        assert_eq!(t(UserIdentityType::Username, b"", b""), None);
    }
}
