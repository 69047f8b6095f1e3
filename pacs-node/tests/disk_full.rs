//! A full disk: C-STOREs that do not fit get 0xA700 "out of storage space" (the sender
//! retries later), the node stays up, what was stored stays intact, and storing works again
//! as soon as space is freed. The data dir sits on a small tmpfs (needs root, as CI is).

mod common;

use std::process::Command;

use common::*;

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `size` at `dir`; None (the test is skipped) when not root.
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs (not root); CI runs this test as root");
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn statuses(results: &[PyStoreResult]) -> (usize, usize, usize) {
    let ok = results.iter().filter(|r| r.status == Some(0)).count();
    let full = results
        .iter()
        .filter(|r| r.status == Some(0xA700))
        .inspect(|r| assert_eq!(r.comment.as_deref(), Some("out of storage space"), "{r:?}"))
        .count();
    (ok, full, results.len() - ok - full)
}

#[test]
fn disk_full_refuses_with_a700_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(small) = Tmpfs::mount(&tmp.path().join("small"), "6m") else {
        return;
    };
    let mnt = small.0.clone();
    // keep 1 MiB free: the node refuses before the disk is really full
    let config = tmp.path().join("node.toml");
    std::fs::write(&config, "min_free_mb = 1\n").unwrap();
    let mut node = Node::start_with(&mnt.join("data"), &["--config", config.to_str().unwrap()]);

    let files = corpus_files("valid");
    let first = pynetdicom_store(&node, &files);
    let (ok, full, other) = statuses(&first);
    assert!(
        ok > 0 && full > 0,
        "expected some stored and some refused: {first:#?}"
    );
    assert_eq!(other, 0, "{first:#?}");
    assert!(node.is_running());
    assert!(node.echo());
    let stored = node.statistics();

    // free space: the same files now go in
    let grown = Command::new("mount")
        .args(["-o", "remount,size=256m"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(grown.success());
    let second = pynetdicom_store(&node, &files);
    assert_eq!(statuses(&second), (files.len(), 0, 0));
    assert!(
        node.statistics()["instances"].as_u64() > stored["instances"].as_u64(),
        "{stored}"
    );
    node.stop();
    node.assert_check_clean();
}

#[test]
fn below_the_free_space_reserve_nothing_is_written() {
    // the default reserve is 1 GiB: on a 64 MiB file system every store is refused up
    // front, with the same status, and nothing reaches the blob tree
    let tmp = tempfile::tempdir().unwrap();
    let Some(small) = Tmpfs::mount(&tmp.path().join("small"), "64m") else {
        return;
    };
    let mnt = small.0.clone();
    let empty = tmp.path().join("defaults.toml");
    std::fs::write(&empty, "").unwrap();
    let node = Node::start_with(&mnt.join("data"), &["--config", empty.to_str().unwrap()]);
    let results = pynetdicom_store(&node, &[corpus("valid/CT_small.dcm")]);
    assert_eq!(statuses(&results), (0, 1, 0));
    assert_eq!(node.statistics()["instances"], 0);
}
