//! Helpers shared by the CLI's integration tests.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// What one run of `renkei` printed.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run the renkei binary; fail the test if it runs for more than 60 s.
pub fn renkei(args: &[&str]) -> Run {
    renkei_env(args, &[])
}

/// Run the renkei binary with environment changes: `(name, Some(value))` sets a
/// variable, `(name, None)` removes it.
pub fn renkei_env(args: &[&str], env: &[(&str, Option<&str>)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_renkei"));
    for (name, value) in env {
        match value {
            Some(v) => command.env(name, v),
            None => command.env_remove(name),
        };
    }
    let mut child = command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start renkei");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for renkei") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("renkei {args:?} hung for more than 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    };
    eprintln!(
        "$ renkei {}\n[{}]\n{}{}",
        args.join(" "),
        run.status,
        run.stdout,
        run.stderr
    );
    run
}

/// A peer or the node binary is missing: the test fails, because the README's setup
/// installs every peer and `cargo test --workspace` builds the node — a silently skipped
/// test would pass without testing anything. `RENKEI_ALLOW_SKIP=1` turns it into a skip
/// (printed), for `cargo test -p renkei-tools` alone on a machine without the peers.
pub fn missing(what: &str) {
    if std::env::var_os("RENKEI_ALLOW_SKIP").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED (RENKEI_ALLOW_SKIP=1): {what}");
    } else {
        panic!("{what} (set RENKEI_ALLOW_SKIP=1 to skip instead)");
    }
}
