//! The file store passes the whole store conformance suite, with fsync on every append.
use es_store_fs::FileStore;

fn make() -> (FileStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (FileStore::open(dir.path()).unwrap(), dir)
}

es_core::store_conformance_tests!(make);

mod small_segments {
    //! The same suite with tiny segments, so that appends roll over segment files often.
    use es_store_fs::{FileStore, FileStoreOptions};

    fn make() -> (FileStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let options = FileStoreOptions {
            segment_size: 4096,
            ..FileStoreOptions::default()
        };
        (FileStore::open_with(dir.path(), options).unwrap(), dir)
    }

    es_core::store_conformance_tests!(make);
}
