//! Shared fixtures of the node's integration tests: a node process on free loopback ports
//! in a temp dir, the third-party peers (DCMTK, pynetdicom), and the test corpus; the
//! region's setup over the REST API is in `region.rs`.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod region;
#[allow(unused_imports)] // as dead_code above
pub use region::validate_fhir;

/// The node binary under test.
pub const NODE: &str = env!("CARGO_BIN_EXE_pacs-node");

/// The repo's copy of the shared corpus.
pub fn corpus(sub: &str) -> PathBuf {
    std::env::current_dir()
        .unwrap()
        .join("../testdata/corpus")
        .join(sub)
}

/// A copy of the corpus file `sub` at `to`, changed by `dcmodify` with the options that
/// `options` adds.
pub fn modified_copy(
    sub: &str,
    to: &Path,
    options: impl FnOnce(&mut Command) -> &mut Command,
) -> PathBuf {
    std::fs::copy(corpus(sub), to).unwrap();
    let o = options(&mut dcmtk("dcmodify")).arg(to).output().unwrap();
    assert!(
        o.status.success(),
        "dcmodify: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    to.to_path_buf()
}

/// The valid corpus and the DICOM files of the character set corpus (names in ISO 2022:
/// Japanese, Korean...).
pub fn corpus_with_charsets() -> Vec<PathBuf> {
    let mut files = corpus_files("valid");
    files.extend(
        corpus_files("charset")
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "dcm")),
    );
    files
}

/// Every file directly in a corpus folder, sorted.
pub fn corpus_files(sub: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus(sub))
        .expect("corpus folder")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// A free TCP port on loopback (bound then released: a race we accept in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Path of a peer program; fails the test with the install hint when it is missing.
pub fn peer(program: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(program);
        if p.is_file() {
            return p;
        }
    }
    panic!("{program} not found: run scripts/setup.sh (installs DCMTK and the Python peers)");
}

/// The Python of the peers' venv (pydicom, pynetdicom).
pub fn peer_python() -> PathBuf {
    let root = std::env::var("RENKEI_PEERS").unwrap_or_else(|_| "/tmp/renkei-peers".into());
    let p = Path::new(&root).join("venv/bin/python");
    assert!(
        p.is_file(),
        "{} missing: run scripts/setup.sh (creates the pynetdicom venv)",
        p.display()
    );
    p
}

/// A DCMTK command with TCP_NODELAY set (Debian's DCMTK leaves Nagle on).
pub fn dcmtk(program: &str) -> Command {
    let mut c = Command::new(peer(program));
    c.env("TCP_NODELAY", "1");
    c
}

/// A running node.
pub struct Node {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub dicom_port: u16,
    pub http_port: u16,
    pub ae_title: String,
    pub log: PathBuf,
    /// Extra `serve` arguments, kept for restarts.
    pub extra: Vec<String>,
    port_retries: u32,
}

impl Node {
    /// Start a node on `data_dir` with free ports and wait until it answers.
    pub fn start(data_dir: &Path) -> Node {
        Self::start_with(data_dir, &[])
    }

    /// Start on `dir/data` with `dir/node.toml` of these config lines (and a small
    /// free-space reserve).
    pub fn start_with_config(dir: &Path, config: &str) -> Node {
        let path = dir.join("node.toml");
        std::fs::write(&path, format!("min_free_mb = 16\n{config}")).unwrap();
        Self::start_with(
            &dir.join("data"),
            &["--config", path.to_str().expect("UTF-8 path")],
        )
    }

    /// Start with extra `serve` arguments.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Node {
        let mut node = Node {
            child: None,
            data_dir: data_dir.to_path_buf(),
            dicom_port: free_port(),
            http_port: free_port(),
            ae_title: "RENKEI".into(),
            // beside the test's files, not on the data dir's file system (which a test may
            // fill up)
            log: std::env::temp_dir().join(format!(
                "renkei-node-{}-{}.log",
                std::process::id(),
                data_dir.display().to_string().replace('/', "_")
            )),
            extra: Vec::new(),
            port_retries: 0,
        };
        node.extra = extra.iter().map(|s| s.to_string()).collect();
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(NODE);
        cmd.arg("serve").arg("--data-dir").arg(&self.data_dir);
        if !extra.contains(&"--config") {
            // a small free-space reserve: test machines may have little disk left, and
            // the 1 GiB default would refuse every store there
            let config = self.log.with_extension("toml");
            std::fs::write(&config, "min_free_mb = 16\n").unwrap();
            cmd.arg("--config").arg(config);
        }
        let child = cmd
            .args(["--ae-title", &self.ae_title])
            .args(["--dicom-port", &self.dicom_port.to_string()])
            .args(["--http-port", &self.http_port.to_string()])
            .args(&extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start pacs-node");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = self.log_text();
                // free_port() releases the port before the node binds it: another process
                // may take it in between. Try other ports (a fresh start only).
                if log.contains("Address already in use") && self.port_retries < 5 {
                    self.port_retries += 1;
                    self.dicom_port = free_port();
                    self.http_port = free_port();
                    std::fs::write(&self.log, "").unwrap();
                    self.child = None;
                    self.spawn();
                    return;
                }
                panic!("pacs-node exited with {status}: {log}");
            }
            if self
                .http_get("/healthz")
                .map(|(s, _)| s == 200)
                .unwrap_or(false)
                && TcpStream::connect(("127.0.0.1", self.dicom_port)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pacs-node did not become ready: {}", self.log_text());
    }

    /// The node's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stop with SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), 15);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("pacs-node did not stop on SIGTERM");
        }
    }

    /// Kill with SIGKILL (a crash) and wait.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same data dir and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Start again after a kill.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// A plain HTTP/1.1 GET on loopback: (status, body).
    pub fn http_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        self.http("GET", path, None)
    }

    /// The bearer token of the regional administrator the node created on its first
    /// start (`DATA/admin.token`).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    }

    /// A plain HTTP/1.1 request on loopback with an optional JSON body, as the regional
    /// administrator: (status, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        let token = self.admin_token();
        self.http_as(Some(&token), method, path, json)
    }

    /// A plain HTTP/1.1 request with the given bearer token (none: no Authorization).
    pub fn http_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let body = json.unwrap_or("");
        let auth = match token {
            Some(t) if !t.is_empty() => format!("Authorization: Bearer {t}\r\n"),
            _ => String::new(),
        };
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut buf = String::new();
        s.read_to_string(&mut buf)?;
        let status = buf
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, dechunk(&body)))
    }

    /// POST a JSON body with a bearer token: (status, the answer as JSON, or as a JSON
    /// string when it is not JSON).
    pub fn post_json(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let (s, b) = self
            .http_as(Some(token), "POST", path, Some(&body.to_string()))
            .unwrap();
        (
            s,
            serde_json::from_str(&b).unwrap_or(serde_json::Value::String(b)),
        )
    }

    /// GET with a bearer token: (status, the answer as JSON, or as a JSON string).
    pub fn get_json(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        let (s, b) = self.http_as(Some(token), "GET", path, None).unwrap();
        (
            s,
            serde_json::from_str(&b).unwrap_or(serde_json::Value::String(b)),
        )
    }

    /// A raw HTTP/1.1 request with a bearer token (none: no Authorization) and extra
    /// headers; the body of the answer with any chunked transfer coding removed.
    pub fn request(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpAnswer {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            self.http_port,
            body.len()
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of the response head");
        let text = String::from_utf8_lossy(&buf[..end]).to_string();
        let mut lines = text.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = buf[end + 4..].to_vec();
        if header(&headers, "transfer-encoding") == Some("chunked") {
            body = dechunk_bytes(&body);
        }
        HttpAnswer {
            status,
            headers,
            body,
        }
    }

    /// `GET /api/statistics` parsed.
    pub fn statistics(&self) -> serde_json::Value {
        let (status, body) = self.http_get("/api/statistics").unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// A counter from /metrics.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing in {body}"))
    }

    /// `echoscu` against the node; true on success.
    pub fn echo(&self) -> bool {
        self.echo_as("ECHOSCU").status.success()
    }

    /// `echoscu` with calling AE title `aet`; its output.
    pub fn echo_as(&self, aet: &str) -> Output {
        dcmtk("echoscu")
            .args(["-aet", aet, "-aec", &self.ae_title])
            .args(["127.0.0.1", &self.dicom_port.to_string()])
            .output()
            .unwrap()
    }

    /// `pacs-node check` must pass (run with the node stopped).
    pub fn assert_check_clean(&self) {
        let check = self.admin(&["check"]);
        assert!(
            check.status.success(),
            "check: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }

    /// Run `pacs-node SUBCOMMAND --data-dir DIR args...`.
    pub fn admin(&self, sub: &[&str]) -> Output {
        Command::new(NODE)
            .args(sub)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn signal(pid: u32, sig: i32) {
    // std can only SIGKILL; `kill` sends the others without unsafe code
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

fn dechunk(body: &str) -> String {
    // axum answers small bodies with Content-Length, but accept chunked too
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((len_line, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(len) = usize::from_str_radix(len_line.trim(), 16) else {
            return body.to_string();
        };
        if len == 0 {
            return out;
        }
        if after.len() < len {
            return body.to_string();
        }
        out.push_str(&after[..len]);
        rest = after[len..].trim_start_matches("\r\n");
    }
}

/// An HTTP answer of [`Node::request`]: status, headers (lower-case names), body bytes.
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&self.body).into_owned())
        })
    }

    /// Every value of the header `name` (lower case), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The first value of the header `name` (lower case) among `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Remove the chunked transfer coding; fails on a malformed one.
fn dechunk_bytes(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let size = std::str::from_utf8(&b[..line_end]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + size]);
        b = &b[line_end + 2 + size + 2..];
    }
}

/// One line of `store_pynetdicom.py` output.
#[derive(Debug, serde::Deserialize)]
pub struct PyStoreResult {
    pub file: String,
    pub status: Option<u16>,
    pub comment: Option<String>,
    pub sop: Option<String>,
    pub error: Option<String>,
}

/// Send files with pynetdicom; one result per file.
pub fn pynetdicom_store(node: &Node, files: &[PathBuf]) -> Vec<PyStoreResult> {
    let script = std::env::current_dir()
        .unwrap()
        .join("tests/peers/store_pynetdicom.py");
    let out = Command::new(peer_python())
        .arg(script)
        .args(["127.0.0.1", &node.dicom_port.to_string(), &node.ae_title])
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "store_pynetdicom.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The dataset bytes of a DICOM file (everything after the file meta group).
pub fn dataset_bytes(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[128..132],
        b"DICM",
        "{} has no preamble",
        path.display()
    );
    // (0002,0000) UL group length: tag 4 + VR 2 + length 2 + value 4
    let group_len = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    bytes[144 + group_len..].to_vec()
}

/// The `renkei` CLI built beside the node (`cargo test --workspace` builds both).
pub fn renkei_cli() -> PathBuf {
    let p = Path::new(NODE).with_file_name("renkei");
    assert!(
        p.is_file(),
        "{} missing: build the workspace (cargo test --workspace --release)",
        p.display()
    );
    p
}

/// Generate `n` CT-like instances (`size`×`size`, 16-bit) with fresh UIDs into `dir`.
pub fn synth(dir: &Path, n: usize, per_series: usize, size: u16) -> Vec<PathBuf> {
    let out = Command::new(renkei_cli())
        .args(["synth", "--out"])
        .arg(dir)
        .args([
            "--count",
            &n.to_string(),
            "--per-series",
            &per_series.to_string(),
        ])
        .args(["--rows", &size.to_string(), "--cols", &size.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "renkei synth failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    files.sort();
    assert_eq!(files.len(), n);
    files
}

/// Result of `find_pynetdicom.py`.
#[derive(Debug, serde::Deserialize)]
pub struct PyFindResult {
    pub matches: Vec<std::collections::BTreeMap<String, String>>,
    pub final_status: Option<u16>,
    pub comment: Option<String>,
}

/// C-FIND with pynetdicom: `model` "study" or "patient", keys as `Keyword=value`.
pub fn pynetdicom_find(node: &Node, model: &str, level: &str, args: &[&str]) -> PyFindResult {
    let script = std::env::current_dir()
        .unwrap()
        .join("tests/peers/find_pynetdicom.py");
    let out = Command::new(peer_python())
        .arg(script)
        .args([
            "127.0.0.1",
            &node.dicom_port.to_string(),
            &node.ae_title,
            model,
            level,
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "find_pynetdicom.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).replace("\"final\":", "\"final_status\":");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Send a folder with DCMTK dcmsend (each file in its own transfer syntax).
pub fn dcmsend_dir(node: &Node, dir: &Path) {
    let out = dcmtk("dcmsend")
        .args([
            "-aec",
            &node.ae_title,
            "127.0.0.1",
            &node.dicom_port.to_string(),
        ])
        .args(["--scan-directories", "--no-halt"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success() || out.status.code() == Some(21),
        "dcmsend: {out:?}"
    );
}

/// `storescu` of `files` to the node as calling AE `calling` with `options`; it must succeed.
pub fn storescu_as(node: &Node, calling: &str, options: &[&str], files: &[PathBuf]) {
    let o = dcmtk("storescu")
        .args(options)
        .args(["-aet", calling, "-aec", &node.ae_title, "127.0.0.1"])
        .arg(node.dicom_port.to_string())
        .args(files)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "storescu as {calling}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `storescu` of `files` to the node (uncompressed syntaxes, as storescu proposes them).
pub fn storescu(node: &Node, files: &[PathBuf]) -> Output {
    dcmtk("storescu")
        .args([
            "-aec",
            &node.ae_title,
            "127.0.0.1",
            &node.dicom_port.to_string(),
        ])
        .args(files)
        .output()
        .unwrap()
}

/// A DCMTK Q/R tool (findscu, getscu, movescu) run against the node with `-k` keys after
/// `options`; its whole output.
pub fn dcmtk_qr(node: &Node, program: &str, options: &[&str], keys: &[&str]) -> String {
    let mut cmd = dcmtk(program);
    cmd.arg("-v").args(options).args(["-aec", &node.ae_title]);
    for k in keys {
        cmd.args(["-k", k]);
    }
    let o = cmd
        .args(["127.0.0.1", &node.dicom_port.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// A text attribute of a DICOM file's data set (UIDs without padding).
pub fn file_attr(path: &Path, tag: dicom_core::Tag) -> String {
    dicom_object::OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
        .open_file(path)
        .unwrap()
        .element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// The files in a folder, sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Among `received` (named by DCMTK after the SOP Instance UID), the copy of `original`.
pub fn counterpart<'a>(received: &'a [PathBuf], original: &Path) -> &'a Path {
    let sop = file_attr(original, dicom_dictionary_std::tags::SOP_INSTANCE_UID);
    received
        .iter()
        .find(|p| p.to_string_lossy().ends_with(&sop))
        .unwrap_or_else(|| panic!("{sop} was not received"))
}

/// The uncompressed transfer syntaxes: Explicit VR LE, Implicit VR LE, Explicit VR BE.
pub const UNCOMPRESSED_SYNTAXES: [&str; 3] = [
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.2",
];

/// The transfer syntax of a DICOM file (from its file meta group).
pub fn file_transfer_syntax(path: &Path) -> String {
    dicom_object::OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
        .open_file(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// The Pixel Data of a DICOM file as decoded values in little-endian byte order (so the
/// same image compares equal whatever uncompressed syntax carries it); None without one.
pub fn pixel_data(path: &Path) -> Option<Vec<u8>> {
    let obj = dicom_object::open_file(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let e = obj
        .element_opt(dicom_dictionary_std::tags::PIXEL_DATA)
        .unwrap_or_else(|e| panic!("{}: pixel data: {e}", path.display()))?;
    Some(
        e.to_bytes()
            .unwrap_or_else(|e| panic!("{}: pixel data is not native: {e}", path.display()))
            .into_owned(),
    )
}

/// The valid corpus files stored in an uncompressed syntax, one per SOP Instance UID (the
/// corpus holds some instances in several syntaxes; the first by file name is kept).
pub fn uncompressed_corpus() -> Vec<PathBuf> {
    let mut seen = std::collections::BTreeSet::new();
    corpus_files("valid")
        .into_iter()
        .filter(|f| UNCOMPRESSED_SYNTAXES.contains(&file_transfer_syntax(f).as_str()))
        .filter(|f| seen.insert(file_attr(f, dicom_dictionary_std::tags::SOP_INSTANCE_UID)))
        .collect()
}

/// One instance received by the pynetdicom Storage SCP of `get_pynetdicom.py` or
/// `move_pynetdicom.py`.
#[derive(Debug, serde::Deserialize)]
pub struct PyReceived {
    pub sop: String,
    pub ts: String,
    pub class: String,
    /// Move Originator AE Title of the C-STORE-RQ (C-MOVE only).
    #[serde(default)]
    pub originator_ae: Option<String>,
    /// Move Originator Message ID of the C-STORE-RQ (C-MOVE only).
    #[serde(default)]
    pub originator_id: Option<u16>,
}

/// Result of `get_pynetdicom.py` / `move_pynetdicom.py`: the final status and counts, the
/// counts of every pending response as [remaining, completed, failed, warning], and what
/// the Storage SCP side received.
#[derive(Debug, serde::Deserialize)]
pub struct PyRetrieveResult {
    #[serde(rename = "final")]
    pub final_status: Option<u16>,
    pub comment: Option<String>,
    #[serde(default)]
    pub remaining: Option<u16>,
    pub completed: Option<u16>,
    pub failed: Option<u16>,
    pub warning: Option<u16>,
    pub pending: Vec<[Option<u16>; 4]>,
    pub failed_uids: Vec<String>,
    pub cancel_sent: bool,
    /// C-STORE-RQs that reached the C-GET requester, handled or not (C-GET only).
    #[serde(default)]
    pub store_requests: usize,
    pub received: Vec<PyReceived>,
    pub error: Option<String>,
}

fn run_retrieve_script(script: &str, node: &Node, args: &[String]) -> PyRetrieveResult {
    let path = std::env::current_dir()
        .unwrap()
        .join("tests/peers")
        .join(script);
    let out = Command::new(peer_python())
        .arg(&path)
        .args(["127.0.0.1", &node.dicom_port.to_string(), &node.ae_title])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: PyRetrieveResult =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{script}: {e}: {stdout}"));
    assert!(r.error.is_none(), "{script} {args:?}: {r:?}");
    r
}

/// C-GET with pynetdicom (`get_pynetdicom.py`): `model` "study" or "patient", received
/// instances written to `out` named by SOP Instance UID (see `counterpart`); `options` are the script's
/// (`--sop-class`, `--ts`, `--store-status`, `--cancel-after-first`, `--no-roles`), keys
/// `Keyword=value`.
pub fn pynetdicom_get(
    node: &Node,
    model: &str,
    level: &str,
    out: &Path,
    options: &[&str],
    keys: &[&str],
) -> PyRetrieveResult {
    let mut args: Vec<String> = vec![model.into(), level.into(), "--out".into()];
    args.push(out.to_str().expect("UTF-8 path").into());
    args.extend(options.iter().map(|s| s.to_string()));
    for k in keys {
        args.extend(["-k".into(), k.to_string()]);
    }
    run_retrieve_script("get_pynetdicom.py", node, &args)
}

/// C-MOVE with pynetdicom (`move_pynetdicom.py`) to a pynetdicom Storage SCP it runs
/// itself as `dest_ae` on `dest_port` (the node must know it as a remote), writing to
/// `out`; `options` are the script's (`--move-aet`, `--scp-ts`, `--cancel-after-first`,
/// `--store-status`), keys `Keyword=value`.
pub fn pynetdicom_move(
    node: &Node,
    model: &str,
    level: &str,
    (dest_ae, dest_port): (&str, u16),
    out: &Path,
    options: &[&str],
    keys: &[&str],
) -> PyRetrieveResult {
    let mut args: Vec<String> = vec![model.into(), level.into(), "--out".into()];
    args.push(out.to_str().expect("UTF-8 path").into());
    args.extend(["--dest-aet".into(), dest_ae.into()]);
    args.extend(["--dest-port".into(), dest_port.to_string()]);
    args.extend(options.iter().map(|s| s.to_string()));
    for k in keys {
        args.extend(["-k".into(), k.to_string()]);
    }
    run_retrieve_script("move_pynetdicom.py", node, &args)
}

/// A text attribute of a DICOM file's data set (UIDs without padding), None when absent.
pub fn file_attr_opt(path: &Path, tag: dicom_core::Tag) -> Option<String> {
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
        .open_file(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let e = obj.element_opt(tag).ok()??;
    Some(e.to_str().ok()?.trim_end_matches(['\0', ' ']).to_string())
}

/// `renkei store` of `files` to the node: each file sent in its own transfer syntax, its
/// data set byte for byte (pynetdicom drops group length elements and storescu re-encodes,
/// so this is the sender for tests that compare retrieved data sets with the files).
pub fn renkei_store(node: &Node, files: &[PathBuf]) {
    let out = Command::new(renkei_cli())
        .args(["store", "127.0.0.1", &node.dicom_port.to_string()])
        .args(["-aec", &node.ae_title])
        .args(files)
        .output()
        .expect("run renkei store");
    assert!(
        out.status.success(),
        "renkei store: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
