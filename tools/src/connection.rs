/*!
Connection flags shared by the network subcommands, and association setup.

The flags follow DCMTK (`echoscu`, `storescu`): the peer's `HOST PORT` come
first, then `-aet` (our AE title) and `-aec` (the peer's AE title). clap
cannot parse multi-letter short flags, so [`rewrite_dcmtk_args`] turns them
into long flags before clap sees the command line.
*/

use std::error::Error as StdError;
use std::ffi::OsString;
use std::io;
use std::net::TcpStream;
use std::time::Duration;

use dicom_ul::association::Error as UlError;
use dicom_ul::pdu::{AssociationRJ, AssociationRJResult};
use dicom_ul::{ClientAssociation, ClientAssociationOptions};

/// Our A-ASSOCIATE-RQ always offers this many contexts at most (PS3.8 9.3.2.2:
/// context IDs are odd numbers 1..=255).
pub(crate) const MAX_PRESENTATION_CONTEXTS: usize = 128;

/// Where to connect and how to introduce ourselves.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectionArgs {
    /// Host name or IP address of the DICOM node (PACS, modality, workstation).
    #[arg(value_name = "HOST")]
    pub(crate) host: String,

    /// TCP port of the DICOM node (often 104 or 11112).
    #[arg(value_name = "PORT")]
    pub(crate) port: u16,

    /// Calling AE title: the name this tool uses to introduce itself.
    /// The peer may only accept names it knows. Also accepted as `-aet`.
    #[arg(long = "aet", value_name = "AE", default_value = "RENKEI-SCU",
          value_parser = parse_ae_title)]
    pub(crate) calling_ae: String,

    /// Called AE title: the AE title of the DICOM node you are talking to.
    /// Also accepted as `-aec`.
    #[arg(long = "aec", value_name = "AE", default_value = "RENKEI",
          value_parser = parse_ae_title)]
    pub(crate) called_ae: String,

    /// Give up on connecting, or on waiting for the peer, after this many
    /// seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) timeout: u64,

    /// Largest PDU we are willing to receive, in bytes (what we announce to
    /// the peer). What we send is limited by the peer's own maximum.
    #[arg(long, value_name = "N", default_value_t = 65_536,
          value_parser = clap::value_parser!(u32).range(4096..))]
    pub(crate) max_pdu: u32,
}

/// Why an association could not be set up.
#[derive(Debug)]
pub(crate) enum EstablishError {
    /// The peer sent A-ASSOCIATE-RJ; the text is the reason.
    Rejected(String),
    /// The peer accepted the association but none of the presentation
    /// contexts we offered.
    NoContextAccepted,
    /// Anything else: TCP connect, timeouts, protocol errors.
    Other(String),
}

impl std::fmt::Display for EstablishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EstablishError::Rejected(reason) => write!(f, "association rejected: {reason}"),
            EstablishError::NoContextAccepted => {
                f.write_str("association rejected: no presentation context accepted")
            }
            EstablishError::Other(text) => f.write_str(text),
        }
    }
}

impl ConnectionArgs {
    /// `AE@host:port`, as printed in messages.
    pub(crate) fn peer_label(&self) -> String {
        format!("{}@{}", self.called_ae, self.address())
    }

    /// `host:port`, with brackets around an IPv6 literal.
    pub(crate) fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// Request an association offering `contexts` (abstract syntax, transfer
    /// syntaxes). The i-th context gets presentation context ID `2 i + 1`.
    pub(crate) fn establish(
        &self,
        contexts: &[(String, Vec<String>)],
    ) -> Result<ClientAssociation<TcpStream>, EstablishError> {
        self.establish_with_roles(contexts, &[])
    }

    /// Establish for operation `name` (e.g. "C-FIND") on `model`; on failure print why,
    /// naming the peer, and return None.
    pub(crate) fn establish_for(
        &self,
        name: &str,
        model: &str,
        contexts: &[(String, Vec<String>)],
        scp_roles: &[String],
    ) -> Option<ClientAssociation<TcpStream>> {
        let peer = self.peer_label();
        match self.establish_with_roles(contexts, scp_roles) {
            Ok(a) => Some(a),
            Err(EstablishError::NoContextAccepted) => {
                eprintln!("{name} to {peer}: the peer does not support {model} ({name})");
                None
            }
            Err(e) => {
                eprintln!("{name} to {peer}: {e}");
                None
            }
        }
    }

    pub(crate) fn establish_with_roles(
        &self,
        contexts: &[(String, Vec<String>)],
        scp_roles: &[String],
    ) -> Result<ClientAssociation<TcpStream>, EstablishError> {
        debug_assert!(contexts.len() <= MAX_PRESENTATION_CONTEXTS);
        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(self.calling_ae.as_str())
            .called_ae_title(self.called_ae.as_str())
            .max_pdu_length(self.max_pdu)
            .connection_timeout(self.timeout())
            .read_timeout(self.timeout())
            .write_timeout(self.timeout());
        for (abstract_syntax, transfer_syntaxes) in contexts {
            options = options.with_presentation_context(
                abstract_syntax.as_str(),
                transfer_syntaxes.iter().map(String::as_str).collect(),
            );
        }
        for sop_class in scp_roles {
            options = options.with_role_selection(sop_class.as_str(), false, true);
        }
        tracing::debug!(
            peer = %self.peer_label(),
            calling = %self.calling_ae,
            contexts = contexts.len(),
            "requesting association"
        );
        let association = options.establish(self.address()).map_err(|e| match e {
            UlError::Rejected { association_rj, .. } => {
                EstablishError::Rejected(describe_reject(&association_rj))
            }
            UlError::NoAcceptedPresentationContexts { .. } => EstablishError::NoContextAccepted,
            other => EstablishError::Other(describe_ul_error(&other, self.timeout)),
        })?;
        // Without this, Nagle's algorithm holds back the small PDU that
        // follows a command until the peer's delayed ACK: ~40 ms per message.
        let mut association = association;
        if let Err(e) = association.inner_stream().set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        tracing::debug!(
            peer_max_pdu = association.acceptor_max_pdu_length(),
            accepted = association.presentation_contexts().len(),
            "association established"
        );
        Ok(association)
    }
}

/// AE titles are at most 16 characters of the default repertoire, no
/// backslash, and not only spaces (PS3.5 6.2).
fn parse_ae_title(s: &str) -> Result<String, String> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err("AE title must not be empty".into());
    }
    if s.len() > 16 {
        return Err(format!("AE title {s:?} is longer than 16 characters"));
    }
    if s.chars().any(|c| !(' '..='~').contains(&c) || c == '\\') {
        return Err(format!(
            "AE title {s:?} may only contain printable ASCII characters other than '\\'"
        ));
    }
    Ok(trimmed.to_string())
}

/// Rewrite DCMTK-style `-aet`/`-aec`/`-aem` to `--aet`/`--aec`/`--aem`.
///
/// clap only has single-character short flags, so `-aet X` would be parsed
/// as `-a -e -t X`. People who use DCMTK type `-aet` by habit, and scripts
/// written for `storescu` use it, so we accept it by rewriting the argument
/// before clap parses. Only standalone arguments are touched (also `-aet=X`),
/// and nothing after a `--` separator, so a file named `-aet` can still be
/// passed after `--`.
pub(crate) fn rewrite_dcmtk_args<I>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = OsString>,
{
    let mut after_separator = false;
    args.into_iter()
        .map(|arg| {
            if after_separator {
                return arg;
            }
            let Some(text) = arg.to_str() else {
                return arg;
            };
            if text == "--" {
                after_separator = true;
                return arg;
            }
            for flag in ["-aet", "-aec", "-aem"] {
                if text == flag {
                    return OsString::from(format!("-{flag}"));
                }
                if let Some(value) = text.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                    return OsString::from(format!("-{flag}={value}"));
                }
            }
            arg
        })
        .collect()
}

/// A one-line description of a dicom-ul error, with its causes, and with a
/// socket timeout spelled out as such.
pub(crate) fn describe_ul_error(error: &UlError, timeout_secs: u64) -> String {
    if let UlError::Rejected { association_rj, .. } = error {
        return format!("association rejected: {}", describe_reject(association_rj));
    }
    if let Some(io_error) = find_io_error(error) {
        match io_error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                return format!("no answer from the peer within {timeout_secs} s (timeout)");
            }
            io::ErrorKind::ConnectionRefused => {
                return "connection refused (is the DICOM node listening on that port?)".into();
            }
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                return format!("connection lost: {io_error}");
            }
            _ => {}
        }
    }
    if matches!(error, UlError::ConnectionClosed { .. }) {
        return "connection closed by the peer".into();
    }
    error_chain(error)
}

/// "calling AE title not recognized (permanent)"
fn describe_reject(rj: &AssociationRJ) -> String {
    let kind = match rj.result {
        AssociationRJResult::Permanent => "permanent",
        AssociationRJResult::Transient => "transient, may work later",
    };
    format!("{} ({kind})", rj.source)
}

fn find_io_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io_error) = e.downcast_ref::<io::Error>() {
            return Some(io_error);
        }
        current = e.source();
    }
    None
}

/// `outer: inner: innermost`, skipping a cause whose text repeats the
/// previous one.
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut last = text.clone();
    let mut current = error.source();
    while let Some(e) = current {
        let part = e.to_string();
        if !last.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        last = part;
        current = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(args: &[&str]) -> Vec<String> {
        rewrite_dcmtk_args(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn rewrites_standalone_dcmtk_flags() {
        assert_eq!(
            rewrite(&["renkei", "echo", "pacs", "104", "-aet", "ME", "-aec", "PACS"]),
            ["renkei", "echo", "pacs", "104", "--aet", "ME", "--aec", "PACS"]
        );
        assert_eq!(
            rewrite(&["renkei", "move", "h", "1", "-aem", "DEST", "-aem=D2"]),
            ["renkei", "move", "h", "1", "--aem", "DEST", "--aem=D2"]
        );
        assert_eq!(
            rewrite(&["renkei", "store", "-aet=ME", "h", "1", "f"]),
            ["renkei", "store", "--aet=ME", "h", "1", "f"]
        );
    }

    #[test]
    fn leaves_other_arguments_alone() {
        assert_eq!(
            rewrite(&["renkei", "store", "h", "1", "-aetx", "--aet", "X", "-j", "2"]),
            ["renkei", "store", "h", "1", "-aetx", "--aet", "X", "-j", "2"]
        );
        assert_eq!(
            rewrite(&["renkei", "store", "h", "1", "--", "-aet"]),
            ["renkei", "store", "h", "1", "--", "-aet"]
        );
    }

    #[test]
    fn rewritten_flags_parse_with_clap() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            conn: ConnectionArgs,
        }
        let cli = Cli::try_parse_from(rewrite_dcmtk_args(
            ["x", "localhost", "11112", "-aet", "ME", "-aec", "PACS"].map(OsString::from),
        ))
        .unwrap();
        assert_eq!(cli.conn.calling_ae, "ME");
        assert_eq!(cli.conn.called_ae, "PACS");
        assert_eq!(cli.conn.peer_label(), "PACS@localhost:11112");
        assert_eq!(cli.conn.max_pdu, 65_536);
        assert!(Cli::try_parse_from(["x", "h", "1", "--aet", "SEVENTEEN-CHARS-X"]).is_err());
    }
}
