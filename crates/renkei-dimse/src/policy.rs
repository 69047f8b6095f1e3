//! Which calling AE titles may associate (ARCHITECTURE; issue "foundation"): any while the
//! node listens on loopback only, otherwise only those configured, unless told to accept
//! any. A refusal is an A-ASSOCIATE-RJ, permanent, "calling AE title not recognized"
//! (PS3.8 9.3.4).

use std::collections::HashSet;

use dicom_ul::association::server::AccessControl;
use dicom_ul::pdu::{AssociationRJServiceUserReason, UserIdentity};

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
}
