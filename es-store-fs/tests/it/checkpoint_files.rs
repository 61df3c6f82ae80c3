//! Guards `FileCheckpoints`: concurrent saves of one name all succeed and a concurrent
//! load only ever sees a saved value; a file copied from another name is refused;
//! temporary files left by a crash are never read as checkpoints; files written before
//! the name was recorded are still read; a file of a newer layout is named as such, not
//! as damage; a failed save names the file.

use es_core::CheckpointStore;
use es_store_fs::FileCheckpoints;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

const THREADS: u64 = 8;
const SAVES: u64 = 500;

/// The value thread `t` saves at its `i`-th save (both from 0): distinct and above 0.
fn value(t: u64, i: u64) -> u64 {
    t * 1_000_000 + i + 1
}

fn was_saved(v: u64) -> bool {
    let (t, i) = ((v - 1) / 1_000_000, (v - 1) % 1_000_000);
    v > 0 && t < THREADS && i < SAVES
}

#[test]
fn concurrent_saves_of_one_name_all_succeed_and_loads_see_only_saved_values() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = Arc::new(FileCheckpoints::open(dir.path()).unwrap());
    let start = Arc::new(Barrier::new(THREADS as usize + 1));
    let saving = Arc::new(AtomicBool::new(true));

    let loader = {
        let (checkpoints, saving) = (Arc::clone(&checkpoints), Arc::clone(&saving));
        std::thread::spawn(move || {
            let mut loads = 0u64;
            let mut seen = BTreeSet::new();
            while saving.load(Ordering::SeqCst) {
                let v = checkpoints
                    .load("sales")
                    .unwrap_or_else(|e| panic!("load {loads} failed: {e}"));
                assert!(v == 0 || was_saved(v), "load {loads} returned {v}");
                seen.insert(v);
                loads += 1;
            }
            (loads, seen.len())
        })
    };
    let savers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (checkpoints, start) = (Arc::clone(&checkpoints), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                for i in 0..SAVES {
                    checkpoints
                        .save("sales", value(t, i))
                        .unwrap_or_else(|e| panic!("thread {t}, save {i} failed: {e}"));
                }
            })
        })
        .collect();
    start.wait();
    for saver in savers {
        saver.join().unwrap();
    }
    saving.store(false, Ordering::SeqCst);
    let (loads, distinct) = loader.join().unwrap();
    println!("{loads} loads saw {distinct} distinct values");
    assert!(loads > 0);

    // The last rename wins, and it is some thread's last save.
    let last = checkpoints.load("sales").unwrap();
    assert!(
        (0..THREADS).any(|t| last == value(t, SAVES - 1)),
        "final value {last}"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["sales.checkpoint"], "no temporary file is left");
}

#[test]
fn a_checkpoint_file_copied_from_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = FileCheckpoints::open(dir.path()).unwrap();
    checkpoints.save("orders", 5).unwrap();
    checkpoints.save("invoices", 7).unwrap();
    let (orders, invoices) = (
        dir.path().join("orders.checkpoint"),
        dir.path().join("invoices.checkpoint"),
    );
    std::fs::copy(&orders, &invoices).unwrap();

    let err = checkpoints.load("invoices").unwrap_err().to_string();
    assert!(err.contains(&invoices.display().to_string()), "{err}");
    assert!(err.contains("`orders`"), "{err}");
    assert!(err.contains("`invoices`"), "{err}");
    assert_eq!(checkpoints.load("orders").unwrap(), 5);

    // Saving the right name again repairs it.
    checkpoints.save("invoices", 8).unwrap();
    assert_eq!(checkpoints.load("invoices").unwrap(), 8);
}

#[test]
fn damaged_checkpoint_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = FileCheckpoints::open(dir.path()).unwrap();
    checkpoints.save("sales", 42).unwrap();
    let path = dir.path().join("sales.checkpoint");
    let good = std::fs::read(&path).unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        let err = checkpoints.load("sales").unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "byte {i}: {err}");
    }
    for cut in 0..good.len() {
        std::fs::write(&path, &good[..cut]).unwrap();
        let err = checkpoints.load("sales").unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn leftover_temporary_files_are_not_read_as_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = FileCheckpoints::open(dir.path()).unwrap();
    checkpoints.save("other", 3).unwrap();
    let other = std::fs::read(dir.path().join("other.checkpoint")).unwrap();
    // What a crash before the rename can leave: a complete or a partial temporary file,
    // of the old single name or of a per-save name.
    std::fs::write(dir.path().join("sales.checkpoint.tmp"), &other).unwrap();
    std::fs::write(dir.path().join("sales.checkpoint.4242-0.tmp"), &other[..5]).unwrap();
    assert_eq!(checkpoints.load("sales").unwrap(), 0);
    checkpoints.save("sales", 9).unwrap();
    assert_eq!(checkpoints.load("sales").unwrap(), 9);
    assert_eq!(checkpoints.load("other").unwrap(), 3);
}

#[test]
fn checkpoint_files_written_without_a_name_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sales.checkpoint");
    // The earlier layout: the position and its CRC32C, both little-endian.
    let position = 1234u64.to_le_bytes();
    let mut old = position.to_vec();
    old.extend_from_slice(&crate::common::crc32c_of(&position).to_le_bytes());
    std::fs::write(&path, &old).unwrap();

    let checkpoints = FileCheckpoints::open(dir.path()).unwrap();
    assert_eq!(checkpoints.load("sales").unwrap(), 1234);
    checkpoints.save("sales", 1235).unwrap();
    assert_eq!(checkpoints.load("sales").unwrap(), 1235);
    assert_ne!(std::fs::read(&path).unwrap().len(), old.len());
}

#[test]
fn a_checkpoint_file_of_a_newer_layout_is_not_called_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = FileCheckpoints::open(dir.path()).unwrap();
    let path = dir.path().join("sales.checkpoint");
    for extra in [0usize, 400] {
        let mut newer = b"ESCKPT04".to_vec();
        newer.extend_from_slice(&[7u8; 40]);
        newer.extend(std::iter::repeat_n(1u8, extra));
        let crc = crate::common::crc32c_of(&newer);
        newer.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &newer).unwrap();
        let err = checkpoints.load("sales").unwrap_err().to_string();
        assert!(
            err.contains("newer format (ESCKPT04)") && err.contains(&path.display().to_string()),
            "{err}"
        );
        // the same bytes with a bit flipped are damage
        newer[20] ^= 1;
        std::fs::write(&path, &newer).unwrap();
        let err = checkpoints.load("sales").unwrap_err().to_string();
        assert!(err.contains("is damaged"), "{err}");
    }
}

#[test]
fn a_failed_save_names_the_checkpoint_file() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = FileCheckpoints::open(dir.path()).unwrap();
    // a directory where the file goes: the rename over it fails
    let path = dir.path().join("sales.checkpoint");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("keep"), b"x").unwrap();
    let err = checkpoints.save("sales", 5).unwrap_err().to_string();
    assert!(
        err.contains("saving checkpoint file") && err.contains(&path.display().to_string()),
        "{err}"
    );
}

/// `FileCheckpoints`' own methods return a typed error that `?` turns into
/// `Box<dyn Error>` (the boxed error of the trait, `Send + Sync`, does not convert); a
/// name that cannot name a file is refused as such, naming it, and nothing is written.
#[test]
fn own_methods_give_typed_errors_that_question_mark_converts() {
    use es_store_fs::CheckpointFileError;
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = FileCheckpoints::open(dir.path()).unwrap();
    fn save_and_load(c: &FileCheckpoints, name: &str) -> Result<u64, Box<dyn std::error::Error>> {
        c.save(name, 7)?;
        Ok(c.load(name)?)
    }
    assert_eq!(save_and_load(&checkpoints, "sales").unwrap(), 7);
    for bad in ["", "sales.v2", "a/b", "café", &"n".repeat(129)] {
        let err = checkpoints.save(bad, 1).unwrap_err();
        assert!(
            matches!(&err, CheckpointFileError::InvalidName { name } if name == bad),
            "{err}"
        );
        assert!(err.to_string().contains("invalid projection name"), "{err}");
        let err = checkpoints.load(bad).unwrap_err();
        assert!(
            matches!(err, CheckpointFileError::InvalidName { .. }),
            "{err}"
        );
        // through the trait: the same error, boxed
        let err = CheckpointStore::save(&checkpoints, bad, 1).unwrap_err();
        assert!(err.downcast_ref::<CheckpointFileError>().is_some(), "{err}");
    }
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "only the checkpoint of `sales`");
}
