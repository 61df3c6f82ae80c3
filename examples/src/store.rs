//! The store an example runs on: the embedded file store by default, PostgreSQL when
//! given a URL.
//!
//! Every example takes the same choice, in this order:
//!
//! 1. `--store <DIR | postgres://URL>` on the command line (or `--store=...`);
//! 2. the example's first plain argument, for the examples that take `[DIR]`;
//! 3. the `ES_STORE` environment variable;
//! 4. the directory `target/example-data/<example>`.
//!
//! A `postgres://` (or `postgresql://`) URL selects [`PgStore`], with the example's tables
//! in a schema of its own (`es_example_<example>`), so that examples never touch the
//! tables of an application that shares the database. Anything else is a directory for
//! [`FileStore`]. [`ExampleStore`] is either, behind the one [`EventStore`] contract, so
//! the examples' code is the same on both.

use es_core::projection::BoxError;
use es_core::{
    AppendResult, EventStore, EventStream, ExpectedVersion, NewEvent, RecordedEventRef,
    SnapshotStore, StoreError, StreamEnd,
};
use es_store_fs::FileStore;
use es_store_pg::{PgStore, PgStoreOptions};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that names the store when no argument does.
pub const STORE_VAR: &str = "ES_STORE";

/// Where an example keeps its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory: the file store in `DIR/events`, checkpoints in `DIR/checkpoints`,
    /// read models beside them.
    Dir(PathBuf),
    /// A PostgreSQL server: the store's tables, checkpoints and read models in `schema`.
    Postgres {
        /// The connection URL.
        url: String,
        /// The schema of the example's tables.
        schema: String,
    },
}

impl Location {
    /// Reads a store argument: a `postgres://` URL or a directory. `example` names the
    /// schema (`es_example_<example>`) used on PostgreSQL.
    pub fn parse(arg: &str, example: &str) -> Location {
        if arg.starts_with("postgres://") || arg.starts_with("postgresql://") {
            Location::Postgres {
                url: arg.to_owned(),
                schema: format!("es_example_{example}"),
            }
        } else {
            Location::Dir(PathBuf::from(arg))
        }
    }

    /// The location chosen by the command line and the environment (see the module's
    /// documentation for the order). `positional` is the example's first plain argument
    /// when the example takes `[DIR]`, `None` when its plain arguments mean something else.
    pub fn choose(example: &str, args: &Args, positional: Option<&str>) -> Location {
        let default = || {
            PathBuf::from("target")
                .join("example-data")
                .join(example)
                .to_string_lossy()
                .into_owned()
        };
        let arg = args
            .store
            .clone()
            .or_else(|| positional.map(str::to_owned))
            .or_else(|| std::env::var(STORE_VAR).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(default);
        Location::parse(&arg, example)
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres { .. })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(dir) => write!(f, "{}", dir.join("events").display()),
            Location::Postgres { url, schema } => {
                write!(
                    f,
                    "PostgreSQL at {}, schema {schema}",
                    without_password(url)
                )
            }
        }
    }
}

/// The URL with any password replaced by `***`, for printing.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// An example's command line: `--store X` and the plain arguments, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// The value of `--store`, if given.
    pub store: Option<String>,
    /// The other arguments, in order.
    pub plain: Vec<String>,
}

impl Args {
    /// The process's arguments.
    pub fn from_env() -> Result<Args, String> {
        Args::parse(std::env::args().skip(1))
    }

    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let mut parsed = Args::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--store" {
                let value = args
                    .next()
                    .ok_or("--store needs a value: a directory or a postgres:// URL")?;
                parsed.store = Some(value);
            } else if let Some(value) = arg.strip_prefix("--store=") {
                parsed.store = Some(value.to_owned());
            } else if arg.starts_with("--") {
                return Err(format!(
                    "unknown option `{arg}`: the examples take `--store <DIR | postgres://URL>`"
                ));
            } else {
                parsed.plain.push(arg);
            }
        }
        Ok(parsed)
    }

    /// The `i`-th plain argument.
    pub fn plain(&self, i: usize) -> Option<&str> {
        self.plain.get(i).map(String::as_str)
    }
}

/// What an example keeps in its directory: the store (`events`), projections'
/// checkpoints, and the orders example's SQLite read model (with the files SQLite keeps
/// beside it).
const EXAMPLE_FILES: [&str; 3] = ["events", "checkpoints", "read-model.sqlite"];

/// Empties `dir` of what an example keeps there (`events`, `checkpoints`,
/// `read-model.sqlite` and the files SQLite keeps beside it), so that a run tells
/// the same story as the last. A directory that holds anything else is refused: the
/// directory given to an example may be the user's, and an example removes only what an
/// example made.
pub fn start_afresh(dir: &Path) -> Result<(), BoxError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", dir.display()).into()),
    };
    let mut ours = Vec::new();
    let mut others = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        let text = name.to_string_lossy();
        // the names themselves, and the files SQLite keeps beside its database
        let made = EXAMPLE_FILES.contains(&&*text)
            || text
                .strip_prefix("read-model.sqlite")
                .is_some_and(|rest| ["-wal", "-shm", "-journal"].contains(&rest));
        if made {
            ours.push(name);
        } else {
            others.push(text.into_owned());
        }
    }
    if !others.is_empty() {
        others.sort();
        return Err(format!(
            "{} holds files no example made ({}): give the example a directory of its own, \
             a new one or one an example made, which it empties at the start of each run",
            dir.display(),
            others.join(", ")
        )
        .into());
    }
    for name in ours {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path)?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The file store or the PostgreSQL store, behind one [`EventStore`].
#[derive(Debug)]
pub enum ExampleStore {
    /// The embedded file store.
    File(FileStore),
    /// The PostgreSQL store.
    Postgres(PgStore),
}

impl ExampleStore {
    /// Opens the store at `location`, emptied first when `fresh` is set (the directory is
    /// removed, or the example's schema dropped), so that every run of a demo tells the
    /// same story.
    pub fn open(location: &Location, fresh: bool) -> Result<ExampleStore, BoxError> {
        match location {
            Location::Dir(dir) => {
                if fresh {
                    start_afresh(dir)?;
                }
                std::fs::create_dir_all(dir)?;
                Ok(ExampleStore::File(FileStore::open(dir.join("events"))?))
            }
            Location::Postgres { url, schema } => {
                if fresh {
                    drop_schema(url, schema)?;
                }
                let options = PgStoreOptions {
                    schema: schema.clone(),
                    ..PgStoreOptions::default()
                };
                Ok(ExampleStore::Postgres(PgStore::connect_with(url, options)?))
            }
        }
    }

    /// Closes the store: the file store syncs and releases its directory (reporting an
    /// error it meets doing so); the PostgreSQL store closes its connections.
    pub fn close(self) -> Result<(), BoxError> {
        match self {
            ExampleStore::File(store) => store.close()?,
            ExampleStore::Postgres(store) => drop(store),
        }
        Ok(())
    }

    fn inner(&self) -> &dyn EventStore {
        match self {
            ExampleStore::File(store) => store,
            ExampleStore::Postgres(store) => store,
        }
    }
}

/// Drops the example's schema and everything in it.
fn drop_schema(url: &str, schema: &str) -> Result<(), BoxError> {
    es_store_pg::schema::check_schema_name(schema)?;
    let mut client = es_store_pg::postgres::Client::connect(url, es_store_pg::postgres::NoTls)?;
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))?;
    Ok(())
}

/// The directory a [`Location::Dir`] names, for what an example keeps beside the store.
pub fn dir_of(location: &Location) -> Option<&Path> {
    match location {
        Location::Dir(dir) => Some(dir),
        Location::Postgres { .. } => None,
    }
}

impl EventStore for ExampleStore {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.inner().append(stream_id, expected, events)
    }

    fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
    ) -> Result<EventStream<'_>, StoreError> {
        self.inner().read_stream(stream_id, from_version)
    }

    fn read_all(&self, from_position: u64) -> Result<EventStream<'_>, StoreError> {
        self.inner().read_all(from_position)
    }

    fn stream_version(&self, stream_id: &str) -> Result<u64, StoreError> {
        self.inner().stream_version(stream_id)
    }

    fn head_position(&self) -> Result<u64, StoreError> {
        self.inner().head_position()
    }

    fn wait_for_head(&self, position: u64, timeout: Duration) -> Result<u64, StoreError> {
        self.inner().wait_for_head(position, timeout)
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        self.inner().snapshots()
    }

    fn version_of_event(
        &self,
        stream_id: &str,
        event_id: uuid::Uuid,
    ) -> Result<Option<u64>, StoreError> {
        self.inner().version_of_event(stream_id, event_id)
    }

    // the rest is forwarded too: each store's own way is faster (reads lent from its
    // buffers, a stream's end without a read) or safer (a projection's checkpoint past
    // the end of a file store's log is refused only if the store says its head can move
    // back)
    fn visit_all(
        &self,
        from_position: u64,
        visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.inner().visit_all(from_position, visit)
    }

    fn visit_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        visit: &mut dyn FnMut(RecordedEventRef<'_>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        self.inner().visit_stream(stream_id, from_version, visit)
    }

    fn stream_end(&self, stream_id: &str) -> Result<Option<StreamEnd>, StoreError> {
        self.inner().stream_end(stream_id)
    }

    fn head_can_move_back(&self) -> bool {
        self.inner().head_can_move_back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        Args::parse(list.iter().map(|s| s.to_string()))
    }

    /// The file store's head can move back (a crash in `Periodic`, a repair): the example
    /// store says so too, so that a projection's checkpoint past its end is refused.
    #[test]
    fn the_file_store_behind_an_example_store_keeps_its_answers() {
        let dir = tempfile::tempdir().unwrap();
        let store = ExampleStore::open(&Location::Dir(dir.path().to_owned()), true).unwrap();
        assert!(store.head_can_move_back());
        let event = NewEvent::new("Noted", 1, b"{}".to_vec());
        store
            .append("s-1", ExpectedVersion::Any, vec![event])
            .unwrap();
        assert_eq!(store.stream_end("s-1").unwrap().map(|e| e.version), Some(1));
    }

    /// An example started afresh removes what an example keeps in its directory and
    /// nothing else; a directory holding anything else is refused, untouched (it removed
    /// the whole directory, the user's files with it).
    #[test]
    fn an_example_empties_only_what_an_example_made() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Dir(dir.path().to_owned());
        let store = ExampleStore::open(&location, true).unwrap();
        store
            .append(
                "s-1",
                ExpectedVersion::Any,
                vec![NewEvent::new("Noted", 1, b"{}".to_vec())],
            )
            .unwrap();
        store.close().unwrap();
        std::fs::create_dir(dir.path().join("checkpoints")).unwrap();
        std::fs::write(dir.path().join("read-model.sqlite-wal"), b"").unwrap();
        let store = ExampleStore::open(&location, true).unwrap();
        assert_eq!(store.head_position().unwrap(), 0, "started afresh");
        store.close().unwrap();
        // names an example never makes, some of them starting like one it makes
        for name in [
            "notes.txt",
            "events.csv",
            "checkpoints-2024",
            "read-model.sqlite.bak",
            "events-journal",
            "checkpoints-wal",
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, b"the user's").unwrap();
            let err = ExampleStore::open(&location, true).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), b"the user's");
            assert!(dir.path().join("events").exists());
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn store_flag_and_plain_arguments() {
        let a = args(&["--store", "postgres://u@h/db", "orders"]).unwrap();
        assert_eq!(a.store.as_deref(), Some("postgres://u@h/db"));
        assert_eq!(a.plain, vec!["orders".to_owned()]);
        let a = args(&["--store=/tmp/x"]).unwrap();
        assert_eq!(a.store.as_deref(), Some("/tmp/x"));
        assert!(args(&["--store"]).unwrap_err().contains("needs a value"));
        assert!(args(&["--stor", "x"]).unwrap_err().contains("--stor"));
    }

    #[test]
    fn urls_select_postgres_with_a_schema_per_example() {
        assert_eq!(
            Location::parse("postgresql://h/db", "bank_account"),
            Location::Postgres {
                url: "postgresql://h/db".into(),
                schema: "es_example_bank_account".into()
            }
        );
        assert_eq!(
            Location::parse("data/x", "bank_account"),
            Location::Dir(PathBuf::from("data/x"))
        );
        let flag = args(&["--store", "a", "b"]).unwrap();
        assert_eq!(
            Location::choose("x", &flag, flag.plain(0)),
            Location::Dir("a".into())
        );
        let plain = args(&["b"]).unwrap();
        assert_eq!(
            Location::choose("x", &plain, plain.plain(0)),
            Location::Dir("b".into())
        );
    }

    #[test]
    fn printed_urls_hide_the_password() {
        let shown = Location::parse("postgres://es:secret@db:5432/es", "x").to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("es:***@db:5432/es"), "{shown}");
    }
}
