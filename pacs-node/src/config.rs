//! Node configuration: defaults, then a TOML file (`--config`), then command-line flags.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// A remote DICOM application entity the node knows (a modality, a workstation).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Remote {
    /// Its AE title.
    pub(crate) ae_title: String,
    /// Host name or address.
    pub(crate) host: String,
    /// DICOM port.
    pub(crate) port: u16,
    /// Facility code it belongs to (used by regional sharing).
    #[serde(default)]
    pub(crate) facility: Option<String>,
}

impl std::str::FromStr for Remote {
    type Err = anyhow::Error;

    /// `AE@HOST:PORT`
    fn from_str(s: &str) -> Result<Self> {
        let (ae, addr) = s
            .split_once('@')
            .with_context(|| format!("remote {s:?}: expected AE@HOST:PORT"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .with_context(|| format!("remote {s:?}: expected AE@HOST:PORT"))?;
        let port = port
            .parse()
            .with_context(|| format!("remote {s:?}: bad port {port:?}"))?;
        if ae.is_empty() || ae.len() > 16 {
            bail!("remote {s:?}: AE title must be 1 to 16 characters");
        }
        Ok(Remote {
            ae_title: ae.to_string(),
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            facility: None,
        })
    }
}

/// `storage_compression`: the lossless syntax uncompressed images are stored in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) enum StorageCompression {
    /// Keep every object as received.
    #[default]
    #[serde(rename = "none")]
    None,
    /// JPEG-LS Lossless (1.2.840.10008.1.2.4.80).
    #[serde(rename = "jpeg-ls")]
    JpegLs,
    /// JPEG 2000 Lossless Only (1.2.840.10008.1.2.4.90).
    #[serde(rename = "j2k")]
    J2k,
}

impl StorageCompression {
    /// The transfer syntax compressed copies are written in; None when off.
    pub(crate) fn target(self) -> Option<&'static str> {
        match self {
            StorageCompression::None => None,
            StorageCompression::JpegLs => Some("1.2.840.10008.1.2.4.80"),
            StorageCompression::J2k => Some("1.2.840.10008.1.2.4.90"),
        }
    }
}

/// The config file's shape; every field optional (flags and defaults fill the rest).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Data directory.
    pub(crate) data_dir: Option<PathBuf>,
    /// The node's AE title.
    pub(crate) ae_title: Option<String>,
    /// DICOM port.
    pub(crate) dicom_port: Option<u16>,
    /// HTTP port.
    pub(crate) http_port: Option<u16>,
    /// Address to bind both listeners to.
    pub(crate) bind: Option<IpAddr>,
    /// Accept any calling AE title even off loopback.
    pub(crate) accept_any_ae: Option<bool>,
    /// Associations served at once.
    pub(crate) max_associations: Option<usize>,
    /// Seconds of silence before an association is aborted.
    pub(crate) idle_timeout_secs: Option<u64>,
    /// Largest PDU accepted.
    pub(crate) max_pdu: Option<u32>,
    /// Fold person names when matching (width, kana, case); default true.
    pub(crate) pn_folding: Option<bool>,
    /// Most matches one C-FIND returns before it is cut with 0xA700.
    pub(crate) max_find_results: Option<usize>,
    /// Free space (MiB) to keep on the data dir's file system; stores are refused below it.
    pub(crate) min_free_mb: Option<u64>,
    /// Seconds a C-STORE may take to become durable before it is answered as failed.
    pub(crate) store_timeout_secs: Option<u64>,
    /// Pixel jobs (transcoding for a receiver) run at once; default one per core.
    pub(crate) pixel_workers: Option<usize>,
    /// Re-encode uncompressed images losslessly in the background; default none.
    pub(crate) storage_compression: Option<StorageCompression>,
    /// Serve DICOMweb to peers other than loopback (they still need a token); default true.
    pub(crate) dicomweb_allow_remote: Option<bool>,
    /// Origins browsers may call DICOMweb from (CORS), e.g. `["http://localhost:3000"]`.
    pub(crate) cors_origins: Option<Vec<String>>,
    /// Largest STOW-RS request body in bytes (413 beyond it); 0 is unlimited. Default 4 GiB.
    pub(crate) max_stow_bytes: Option<u64>,
    /// How long a check-in keeps a treating relationship open, in seconds; default 90 days.
    pub(crate) relationship_secs: Option<u64>,
    /// How long a break-glass grant lasts, in seconds; default 4 hours.
    pub(crate) break_glass_secs: Option<u64>,
    /// Default lifetime of new tokens, in seconds; default 365 days.
    pub(crate) token_secs: Option<u64>,
    /// TCP port of the MLLP listener for HL7 v2 messages (on `bind`); none: no listener.
    pub(crate) mllp_port: Option<u16>,
    /// The clinical record: duplicate-check windows, drug classes (`[clinical]`).
    pub(crate) clinical: Option<renkei_share::clinical::ClinicalConfig>,
    /// Known remote AEs.
    #[serde(default)]
    pub(crate) remote: Vec<Remote>,
}

impl FileConfig {
    /// Read a TOML config file.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_remote_flag() {
        let r: Remote = "CT01@10.0.0.5:104".parse().unwrap();
        assert_eq!(
            (r.ae_title.as_str(), r.host.as_str(), r.port),
            ("CT01", "10.0.0.5", 104)
        );
        let r: Remote = "WS@[::1]:11112".parse().unwrap();
        assert_eq!(r.host, "::1");
        assert!("nope".parse::<Remote>().is_err());
        assert!("A@h:notaport".parse::<Remote>().is_err());
        assert!("@h:1".parse::<Remote>().is_err());
    }

    #[test]
    fn parses_file() {
        let c: FileConfig = toml::from_str(
            r#"
            ae_title = "PACS1"
            dicom_port = 104
            [[remote]]
            ae_title = "CT01"
            host = "10.0.0.5"
            port = 104
            facility = "1310000001"
            "#,
        )
        .unwrap();
        assert_eq!(c.ae_title.as_deref(), Some("PACS1"));
        assert_eq!(c.remote[0].facility.as_deref(), Some("1310000001"));
        assert!(toml::from_str::<FileConfig>("nonsense = 1").is_err());
        let c: FileConfig = toml::from_str("mllp_port = 2575").unwrap();
        assert_eq!(c.mllp_port, Some(2575));
        let c: FileConfig = toml::from_str("storage_compression = \"jpeg-ls\"").unwrap();
        assert_eq!(c.storage_compression, Some(StorageCompression::JpegLs));
        assert!(toml::from_str::<FileConfig>("storage_compression = \"zip\"").is_err());
        let c: FileConfig = toml::from_str("max_stow_bytes = 0").unwrap();
        assert_eq!(c.max_stow_bytes, Some(0));
    }
}
