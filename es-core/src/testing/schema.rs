//! The schema check: golden payloads of every stored event version, and a catalogue of
//! the stored shapes of the event sets, compared with the code by `cargo test`.
//!
//! Layout, in a fixtures directory of the crate under test:
//!
//! ```text
//! fixtures/
//!   schema-catalogue.json            every checked event set: events, versions, aliases,
//!                                    ignored names, fields and fingerprints
//!   CartEvent/                       one directory per event set (its Rust name)
//!     ProductAdded/                  one per event (its stored name)
//!       v1.json                      the payload as version 1 stored it
//!       v2.json                      ... up to the current version
//! ```
//!
//! A golden payload is history: once written, it is never rewritten. The check reads each
//! one through the set's decoder (the upcast chain), applies the event to a default
//! aggregate, and for the current version also writes it back and compares, so that a
//! field that reads no more is caught. The catalogue catches a change of an event's
//! stored shape that was not given a new version.
//!
//! `ES_SCHEMA_BLESS=1 cargo test` writes the golden payloads of current versions that
//! are missing (from the samples given to the check) and regenerates the catalogue. It
//! cannot make a broken golden payload pass, nor accept a change that stored history would
//! not survive. The manual is `docs/schema-safety.md`.

use crate::schema::{EventSchema, SetSchema};
use crate::{Aggregate, EventSet, IntoEvents};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The environment variable that makes a check write what is missing: set to anything
/// but empty or `0`, as in `ES_SCHEMA_BLESS=1 cargo test`.
pub const BLESS_ENV: &str = "ES_SCHEMA_BLESS";

/// The command that writes missing golden payloads and regenerates the catalogue.
pub const BLESS_COMMAND: &str = "ES_SCHEMA_BLESS=1 cargo test";

/// The catalogue's file name in the fixtures directory, unless
/// [`SchemaCheck::catalogue_path`] says otherwise.
pub const CATALOGUE_FILE: &str = "schema-catalogue.json";

/// The version of the catalogue's format.
const CATALOGUE_FORMAT: u32 = 1;

/// How many differences of one payload a message lists.
const MAX_LISTED: usize = 6;

/// How to accept, on purpose, a change that stored history would not survive: a bless
/// run refuses to, so that the check fails until someone vouches that no store holds it.
const ONLY_IF_NONE_STORED: &str = "only if no store holds such events, remove the name from the catalogue by hand (a bless run never does), along with its golden payloads";

/// Checks event sets against their golden payloads and the schema catalogue.
///
/// Register every event set of the crate in one check (one test), each with samples: one
/// value per event type is enough. Samples are only read when a golden payload of a
/// current version is missing and the check runs in bless mode; the check needs no
/// sample for an event whose golden payloads are all there.
///
/// ```no_run
/// // tests/schema.rs
/// use es_core::testing::SchemaCheck;
/// # use es_core::doc_support::{Account, Deposited, Withdrawn};
///
/// #[test]
/// fn event_schemas() {
///     SchemaCheck::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
///         .aggregate::<Account>((Deposited { amount: 100 }, Withdrawn { amount: 30 }))
///         .run();
/// }
/// ```
pub struct SchemaCheck {
    fixtures: PathBuf,
    catalogue: Option<PathBuf>,
    bless: bool,
    sets: Vec<Box<dyn CheckedSet>>,
}

impl SchemaCheck {
    /// A check of the golden payloads under `fixtures`, with the catalogue at
    /// `fixtures/schema-catalogue.json`. It blesses when [`BLESS_ENV`] is set.
    pub fn new(fixtures: impl Into<PathBuf>) -> Self {
        let bless = std::env::var(BLESS_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        SchemaCheck {
            fixtures: fixtures.into(),
            catalogue: None,
            bless,
            sets: Vec::new(),
        }
    }

    /// Keeps the catalogue at `path` instead.
    pub fn catalogue_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.catalogue = Some(path.into());
        self
    }

    /// Blesses (writes what is missing and regenerates the catalogue) or not, whatever
    /// the environment says.
    pub fn bless(mut self, bless: bool) -> Self {
        self.bless = bless;
        self
    }

    /// Checks the event set of aggregate `A`; each golden payload, once decoded, is also
    /// applied to `A::default()` (a handler that panics fails the check).
    pub fn aggregate<A: Aggregate>(mut self, samples: impl IntoEvents<A::Events>) -> Self {
        let apply: fn(&A::Events) = apply_to_default::<A>;
        self.sets.push(Box::new(Checked::<A::Events>::new(
            samples,
            Some((short_type_name::<A>(), apply)),
        )));
        self
    }

    /// Checks event set `S` on its own (for a set no aggregate folds, such as the events a
    /// projection reads).
    pub fn event_set<S: EventSet>(mut self, samples: impl IntoEvents<S>) -> Self {
        self.sets.push(Box::new(Checked::<S>::new(samples, None)));
        self
    }

    /// Where the golden payload of `event` at `version` of set `set` lives. Characters of
    /// the event name other than ASCII letters, digits, `_`, `-` and a `.` that does not
    /// start it are written `%XX`.
    pub fn golden_path(&self, set: &str, event: &str, version: u32) -> PathBuf {
        self.fixtures
            .join(path_segment(set))
            .join(path_segment(event))
            .join(format!("v{version}.json"))
    }

    /// Where the catalogue lives.
    pub fn catalogue_file(&self) -> PathBuf {
        self.catalogue
            .clone()
            .unwrap_or_else(|| self.fixtures.join(CATALOGUE_FILE))
    }

    /// The catalogue of the registered sets as the code describes them: what a bless run
    /// writes.
    pub fn render_catalogue(&self) -> String {
        render(&self.catalogue_of_code())
    }

    /// The differences between the code and a catalogue's text, as problems (empty when
    /// they agree).
    pub fn compare_catalogue(&self, catalogue: &str) -> Vec<SchemaProblem> {
        let path = self.catalogue_file();
        match serde_json::from_str::<Catalogue>(catalogue) {
            Ok(file) if file.format == CATALOGUE_FORMAT => {
                compare(&self.catalogue_of_code(), &file)
            }
            Ok(file) => vec![SchemaProblem::CatalogueUnreadable {
                path,
                message: format!(
                    "it is in format {}; this version of es-core reads format {CATALOGUE_FORMAT}",
                    file.format
                ),
            }],
            Err(e) => vec![SchemaProblem::CatalogueUnreadable {
                path,
                message: e.to_string(),
            }],
        }
    }

    /// Runs the check and panics with every problem found: the body of a `#[test]`. In
    /// bless mode, what was written is reported on standard error.
    #[track_caller]
    pub fn run(&self) {
        match self.check() {
            Ok(report) => {
                if !report.is_quiet() {
                    // Written past the test harness's capture: a bless run is meant to be read.
                    let _ = writeln!(std::io::stderr(), "{report}");
                }
            }
            Err(failure) => panic!("{failure}"),
        }
    }

    /// Runs the check: every golden payload of every registered set, then the catalogue.
    ///
    /// In bless mode, the missing golden payloads of current versions are first written
    /// from the samples, and the catalogue is rewritten from the code, its differences
    /// accepted (and listed in [`SchemaReport::accepted`]). What writing cannot fix still
    /// fails: a golden payload that no longer reads, one filed under a name the set no
    /// longer answers to, and a catalogue difference that puts stored history at risk (a
    /// removed event, alias or ignored name, a version that went back), which leaves the
    /// catalogue as it was.
    pub fn check(&self) -> Result<SchemaReport, SchemaFailure> {
        let mut problems = Vec::new();
        let mut report = SchemaReport {
            blessed: self.bless,
            ..SchemaReport::default()
        };
        let mut names = BTreeSet::new();
        for set in &self.sets {
            match set.schema() {
                Some(schema) if !names.insert(schema.name) => {
                    problems.push(SchemaProblem::DuplicateSet {
                        set: schema.name.to_owned(),
                    });
                }
                Some(schema) => self.check_goldens(&**set, &schema, &mut problems, &mut report),
                None => problems.push(SchemaProblem::Undescribed {
                    set: set.type_name().to_owned(),
                }),
            }
        }
        self.check_catalogue(&mut problems, &mut report);
        if problems.is_empty() {
            Ok(report)
        } else {
            Err(SchemaFailure {
                problems,
                report,
                paths: Box::new((self.fixtures.clone(), self.catalogue_file())),
            })
        }
    }

    fn check_goldens(
        &self,
        set: &dyn CheckedSet,
        schema: &SetSchema,
        problems: &mut Vec<SchemaProblem>,
        report: &mut SchemaReport,
    ) {
        for event in schema.events {
            // the golden payloads kept under an alias (the event's name before a rename)
            // are history too: each must still read as the event it now names, and at its
            // current version lose nothing when written back; missing ones are not asked for
            for stored_as in std::iter::once(event.name).chain(event.aliases.iter().copied()) {
                let own = stored_as == event.name;
                for version in 1..=event.version {
                    let path = self.golden_path(schema.name, stored_as, version);
                    let current = version == event.version;
                    let golden = GoldenRef {
                        set: schema.name,
                        event,
                        stored_as,
                        version,
                        path: &path,
                    };
                    match std::fs::read(&path) {
                        Ok(bytes) => {
                            report.goldens_checked += 1;
                            check_golden(set, &golden, &bytes, problems);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !own => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            if current && self.bless {
                                if let Some(bytes) = self.write_golden(set, &golden, problems) {
                                    report.written.push(path.clone());
                                    report.goldens_checked += 1;
                                    check_golden(set, &golden, &bytes, problems);
                                }
                            } else {
                                problems.push(SchemaProblem::GoldenMissing {
                                    set: schema.name.to_owned(),
                                    event: event.name.to_owned(),
                                    version,
                                    current,
                                    path,
                                });
                            }
                        }
                        Err(e) => problems.push(SchemaProblem::GoldenUnreadable {
                            path,
                            message: e.to_string(),
                        }),
                    }
                }
                self.check_no_future_goldens(schema, event, stored_as, problems);
            }
        }
        self.check_unanswered_goldens(schema, problems);
    }

    /// Golden payloads filed under a name that no event of the set answers to, neither as
    /// its name nor as an alias, and that the set does not ignore: events stored under it
    /// would fail to load. Blessing cannot fix that; the name must come back (as an alias,
    /// or ignored), or the payloads go, by hand, if no store holds such events.
    fn check_unanswered_goldens(&self, schema: &SetSchema, problems: &mut Vec<SchemaProblem>) {
        let answered: BTreeSet<String> = schema
            .events
            .iter()
            .flat_map(|event| std::iter::once(event.name).chain(event.aliases.iter().copied()))
            .chain(schema.ignored.iter().copied())
            .map(path_segment)
            .collect();
        let set_dir = self.fixtures.join(path_segment(schema.name));
        let Ok(entries) = std::fs::read_dir(&set_dir) else {
            return;
        };
        let mut unanswered: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .map(|entry| {
                (
                    entry.file_name().to_string_lossy().into_owned(),
                    entry.path(),
                )
            })
            .filter(|(segment, _)| !answered.contains(segment))
            .collect();
        unanswered.sort();
        for (segment, dir) in unanswered {
            let versions: Vec<u32> = golden_versions(&dir).into_iter().map(|(v, _)| v).collect();
            if versions.is_empty() {
                continue;
            }
            problems.push(SchemaProblem::GoldenNameUnknown {
                set: schema.name.to_owned(),
                event: name_of_segment(&segment).unwrap_or(segment),
                versions,
                path: dir,
            });
        }
    }

    /// Writes the golden payload of a current version from the sample of its event.
    fn write_golden(
        &self,
        set: &dyn CheckedSet,
        golden: &GoldenRef,
        problems: &mut Vec<SchemaProblem>,
    ) -> Option<Vec<u8>> {
        let payload = match set.sample(golden.event.name) {
            None => {
                problems.push(SchemaProblem::NoSample {
                    set: golden.set.to_owned(),
                    event: golden.event.name.to_owned(),
                    version: golden.version,
                    path: golden.path.to_owned(),
                });
                return None;
            }
            Some(Err(message)) => {
                problems.push(SchemaProblem::SampleInvalid {
                    set: golden.set.to_owned(),
                    message,
                });
                return None;
            }
            Some(Ok(payload)) => payload,
        };
        let pretty = serde_json::from_slice::<Value>(&payload)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .map(|text| text + "\n");
        let text = match pretty {
            Ok(text) => text,
            Err(e) => {
                problems.push(SchemaProblem::SampleInvalid {
                    set: golden.set.to_owned(),
                    message: format!("the sample of `{}` is not JSON: {e}", golden.event.name),
                });
                return None;
            }
        };
        match write_file(golden.path, &text) {
            Ok(()) => Some(text.into_bytes()),
            Err(message) => {
                problems.push(SchemaProblem::Io {
                    path: golden.path.to_owned(),
                    message,
                });
                None
            }
        }
    }

    /// A golden payload newer than the code: the version went back.
    fn check_no_future_goldens(
        &self,
        schema: &SetSchema,
        event: &EventSchema,
        stored_as: &str,
        problems: &mut Vec<SchemaProblem>,
    ) {
        let dir = self
            .fixtures
            .join(path_segment(schema.name))
            .join(path_segment(stored_as));
        let ahead = golden_versions(&dir)
            .into_iter()
            .filter(|(version, _)| *version > event.version);
        for (version, path) in ahead {
            problems.push(SchemaProblem::GoldenAhead {
                set: schema.name.to_owned(),
                event: stored_as.to_owned(),
                version,
                current: event.version,
                path,
            });
        }
    }

    fn check_catalogue(&self, problems: &mut Vec<SchemaProblem>, report: &mut SchemaReport) {
        let path = self.catalogue_file();
        let code = self.catalogue_of_code();
        let differences = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let differences = self.compare_catalogue(&text);
                if self.bless && (text != render(&code)) {
                    report.catalogue_written = Some(path.clone());
                }
                differences
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.bless {
                    report.catalogue_written = Some(path.clone());
                }
                vec![SchemaProblem::CatalogueMissing { path: path.clone() }]
            }
            Err(e) => vec![SchemaProblem::CatalogueUnreadable {
                path: path.clone(),
                message: e.to_string(),
            }],
        };
        if !self.bless {
            problems.extend(differences);
            return;
        }
        // A difference that stored history would not survive (a removed event, alias or
        // ignored name, a version that went back, a set no longer registered) is not the
        // bless run's to accept: it fails, and the catalogue is left as it is, so that it
        // keeps failing until the name comes back or someone removes it from the catalogue
        // by hand. Nor is a catalogue it cannot read (a merge conflict, a newer format)
        // written over: what it records would be lost unchecked.
        let (at_risk, differences): (Vec<_>, Vec<_>) = differences.into_iter().partition(|p| {
            matches!(
                p,
                SchemaProblem::HistoryAtRisk { .. } | SchemaProblem::CatalogueUnreadable { .. }
            )
        });
        if !at_risk.is_empty() {
            report.catalogue_written = None;
            problems.extend(at_risk);
            return;
        }
        if report.catalogue_written.is_some()
            && let Err(message) = write_file(&path, &render(&code))
        {
            report.catalogue_written = None;
            problems.push(SchemaProblem::Io { path, message });
            return;
        }
        report.accepted = differences
            .iter()
            .filter_map(SchemaProblem::catalogue_change)
            .collect();
    }

    fn catalogue_of_code(&self) -> Catalogue {
        let mut sets = BTreeMap::new();
        // A set registered twice is reported; the first registration counts.
        for schema in self.sets.iter().filter_map(|set| set.schema()) {
            sets.entry(schema.name.to_owned())
                .or_insert_with(|| catalogue_set(&schema));
        }
        Catalogue {
            format: CATALOGUE_FORMAT,
            about: format!(
                "The stored shape of each event set, checked by `cargo test` (es_core::testing::SchemaCheck). After a deliberate change, regenerate it with `{BLESS_COMMAND}` and review the diff."
            ),
            sets,
        }
    }
}

impl fmt::Debug for SchemaCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaCheck")
            .field("fixtures", &self.fixtures)
            .field("catalogue", &self.catalogue_file())
            .field("bless", &self.bless)
            .field(
                "sets",
                &self.sets.iter().map(|s| s.type_name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One golden payload under check.
struct GoldenRef<'a> {
    set: &'static str,
    event: &'static EventSchema,
    /// The type name the payload is stored under: the event's, or one of its aliases.
    stored_as: &'a str,
    version: u32,
    path: &'a Path,
}

/// Decodes one golden payload, applies it, and for the current version compares it with
/// what the code writes back.
fn check_golden(
    set: &dyn CheckedSet,
    golden: &GoldenRef,
    bytes: &[u8],
    problems: &mut Vec<SchemaProblem>,
) {
    let stored: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(e) => {
            problems.push(SchemaProblem::GoldenUnreadable {
                path: golden.path.to_owned(),
                message: format!("not JSON: {e}"),
            });
            return;
        }
    };
    let (event, set_name, version) = (golden.event, golden.set, golden.version);
    let read = match set.read(golden.stored_as, version, bytes) {
        Ok(Some(read)) => read,
        Ok(None) => {
            problems.push(SchemaProblem::GoldenBroken {
                set: set_name.to_owned(),
                event: event.name.to_owned(),
                version,
                path: golden.path.to_owned(),
                error: "the set ignores it".to_owned(),
            });
            return;
        }
        Err(error) => {
            problems.push(SchemaProblem::GoldenBroken {
                set: set_name.to_owned(),
                event: event.name.to_owned(),
                version,
                path: golden.path.to_owned(),
                error,
            });
            return;
        }
    };
    if let (Some(aggregate), Err(message)) = (set.aggregate(), read.applied) {
        problems.push(SchemaProblem::ApplyPanicked {
            aggregate: aggregate.to_owned(),
            event: event.name.to_owned(),
            version,
            path: golden.path.to_owned(),
            message,
        });
    }
    if version != event.version {
        return;
    }
    let written = read
        .written
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string()));
    match written {
        Ok(written) => {
            let mut differences = Vec::new();
            lost_data(&stored, &written, "", &mut differences);
            if !differences.is_empty() {
                problems.push(SchemaProblem::GoldenLossy {
                    set: set_name.to_owned(),
                    event: event.name.to_owned(),
                    version,
                    path: golden.path.to_owned(),
                    differences,
                });
            }
        }
        Err(message) => problems.push(SchemaProblem::SampleInvalid {
            set: set_name.to_owned(),
            message: format!(
                "`{}` read from {} cannot be encoded again: {message}",
                event.name,
                golden.path.display()
            ),
        }),
    }
}

/// What of `stored` does not come back in `written`: dropped keys (other than nulls) and
/// changed values. Keys that only `written` has are new fields, which lose nothing.
fn lost_data(stored: &Value, written: &Value, at: &str, out: &mut Vec<String>) {
    let place = if at.is_empty() { "/" } else { at };
    match (stored, written) {
        (Value::Object(stored), Value::Object(written)) => {
            for (key, value) in stored {
                let path = format!("{at}/{key}");
                match written.get(key) {
                    Some(again) => lost_data(value, again, &path, out),
                    None if value.is_null() => {}
                    None => out.push(format!("`{path}` ({value}) is dropped")),
                }
            }
        }
        (Value::Array(stored), Value::Array(written)) if stored.len() == written.len() => {
            for (i, (value, again)) in stored.iter().zip(written).enumerate() {
                lost_data(value, again, &format!("{at}/{i}"), out);
            }
        }
        (Value::Number(a), Value::Number(b)) if same_number(a, b) => {}
        (stored, written) if stored == written => {}
        (stored, written) => out.push(format!("`{place}` was {stored}, reads back as {written}")),
    }
}

/// Whether a number reads back as the same number. Integers are compared exactly: as
/// `f64`s, two integers beyond 2^53 that differ by one compare equal, and a changed id or
/// amount would pass. An integer and a float are the same when the float is that integer
/// exactly, so that `1` stored in a float field and written back as `1.0` loses nothing,
/// while `9007199254740993` read into a float field, which writes it back as
/// `9007199254740992.0`, is a loss. Two floats are compared as `f64`.
fn same_number(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    let integer = |n: &serde_json::Number| {
        n.as_u64()
            .map(i128::from)
            .or_else(|| n.as_i64().map(i128::from))
    };
    // within ±2^64 a float with no fraction converts to i128 exactly
    let is_exactly = |float: &serde_json::Number, i: i128| {
        float
            .as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.abs() < 1.9e19 && f as i128 == i)
    };
    match (integer(a), integer(b)) {
        (Some(a), Some(b)) => a == b,
        (Some(i), None) => is_exactly(b, i),
        (None, Some(i)) => is_exactly(a, i),
        (None, None) => a.as_f64() == b.as_f64(),
    }
}

/// The catalogue file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Catalogue {
    format: u32,
    #[serde(default)]
    about: String,
    sets: BTreeMap<String, CatalogueSet>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CatalogueSet {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ignored: Vec<String>,
    events: BTreeMap<String, CatalogueEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CatalogueEvent {
    version: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attributes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fields: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
}

fn catalogue_set(schema: &SetSchema) -> CatalogueSet {
    let mut ignored: Vec<String> = schema.ignored.iter().map(|s| (*s).to_owned()).collect();
    ignored.sort();
    let events = schema
        .events
        .iter()
        .map(|event| {
            let mut aliases: Vec<String> = event.aliases.iter().map(|s| (*s).to_owned()).collect();
            aliases.sort();
            let entry = CatalogueEvent {
                version: event.version,
                aliases,
                attributes: event.attributes.iter().map(|s| (*s).to_owned()).collect(),
                fields: event
                    .fields
                    .map(|fields| fields.iter().map(ToString::to_string).collect()),
                fingerprint: (event.fingerprint != 0)
                    .then(|| format!("{:#018x}", event.fingerprint)),
            };
            (event.name.to_owned(), entry)
        })
        .collect();
    CatalogueSet { ignored, events }
}

fn render(catalogue: &Catalogue) -> String {
    let mut text = serde_json::to_string_pretty(catalogue).expect("a catalogue is plain JSON");
    text.push('\n');
    text
}

/// The differences between the code's catalogue and the file's, judged.
fn compare(code: &Catalogue, file: &Catalogue) -> Vec<SchemaProblem> {
    let mut problems = Vec::new();
    for (name, set) in &code.sets {
        match file.sets.get(name) {
            Some(recorded) => compare_set(name, set, recorded, &mut problems),
            None => problems.push(SchemaProblem::CatalogueOutdated {
                set: name.clone(),
                message: "the event set is not in the catalogue yet".to_owned(),
            }),
        }
    }
    // a set the check no longer registers (renamed, or left out) would take its events'
    // names, versions and ignored names out of the catalogue unchecked: a bless run does
    // not drop it
    for (name, set) in file
        .sets
        .iter()
        .filter(|(n, _)| !code.sets.contains_key(*n))
    {
        problems.push(SchemaProblem::HistoryAtRisk {
            set: name.clone(),
            change: format!(
                "the catalogue lists this event set ({} events), but the check does not register it",
                set.events.len()
            ),
            advice: "register it with `SchemaCheck::aggregate` or `SchemaCheck::event_set`. If the set was renamed, rename its entry in the catalogue and its directory of golden payloads by hand, so that its events are compared with what it held; if the set is gone and no store holds its events, remove its entry by hand (a bless run never does)".to_owned(),
        });
    }
    problems
}

fn compare_set(
    set: &str,
    code: &CatalogueSet,
    file: &CatalogueSet,
    problems: &mut Vec<SchemaProblem>,
) {
    let outdated = |message: String| SchemaProblem::CatalogueOutdated {
        set: set.to_owned(),
        message,
    };
    let at_risk = |change: String, advice: String| SchemaProblem::HistoryAtRisk {
        set: set.to_owned(),
        change,
        advice,
    };
    let answers = |name: &str| {
        code.events
            .iter()
            .find(|(n, e)| *n == name || e.aliases.iter().any(|a| a == name))
            .map(|(n, _)| n.clone())
    };
    for name in file.ignored.iter().filter(|n| !code.ignored.contains(*n)) {
        match answers(name) {
            None => problems.push(at_risk(
                format!("\"{name}\" is no longer ignored"),
                format!("stored `{name}` events will fail to load as an unknown type. Put it back in `#[event(ignore = [..])]`; {ONLY_IF_NONE_STORED}"),
            )),
            // a retired name taken again: what was stored under it, skipped until now,
            // would be decoded and applied as the new event
            Some(event) => problems.push(at_risk(
                format!("\"{name}\", ignored until now, is decoded by `{event}`"),
                format!("stored `{name}` events, skipped until now, would be read as `{event}` however they were written. Give the new event another name and keep \"{name}\" ignored; {ONLY_IF_NONE_STORED}"),
            )),
        }
    }
    for name in code.ignored.iter().filter(|n| !file.ignored.contains(n)) {
        if !file.events.contains_key(name) {
            problems.push(outdated(format!("it now ignores \"{name}\"")));
        }
    }
    for (name, recorded) in &file.events {
        match code.events.get(name) {
            Some(event) => compare_event(set, name, event, recorded, problems),
            None if code.ignored.contains(name) => {
                problems.push(outdated(format!(
                    "event `{name}` is retired: the set now ignores it"
                )));
                // its own aliases name stored events too
                for alias in &recorded.aliases {
                    if !code.ignored.contains(alias) && answers(alias).is_none() {
                        problems.push(at_risk(
                            format!("alias \"{alias}\" of the retired `{name}` is neither ignored nor an alias of another event"),
                            format!("events stored as `{alias}` will fail to load as an unknown type. Add \"{alias}\" to the set's `ignore = [..]` as well; {ONLY_IF_NONE_STORED}"),
                        ));
                    }
                }
            }
            None => match answers(name) {
                Some(successor) => {
                    problems.push(outdated(format!(
                        "event `{name}` was renamed `{successor}`, which keeps \"{name}\" as an alias"
                    )));
                    // the successor reads what was stored under the old name: the same
                    // versions, the same shape at each, and the old name's own aliases
                    // (what the catalogue must record of the rename is said above)
                    if let Some(event) = code.events.get(&successor) {
                        let mut found = Vec::new();
                        compare_event(set, &successor, event, recorded, &mut found);
                        problems.extend(found.into_iter().filter(|p| {
                            !matches!(p, SchemaProblem::CatalogueOutdated { .. })
                        }));
                    }
                }
                None => problems.push(at_risk(
                    format!("event `{name}` (version {}) was removed", recorded.version),
                    format!("stored `{name}` events will fail to load as an unknown type. Keep the event, add \"{name}\" to the set's `ignore = [..]` to skip them, or give its successor `aliases = [\"{name}\"]`; {ONLY_IF_NONE_STORED}"),
                )),
            },
        }
    }
    for (name, event) in &code.events {
        if file.events.contains_key(name) {
            continue;
        }
        let renamed = event.aliases.iter().any(|a| file.events.contains_key(a));
        if !renamed {
            problems.push(outdated(format!(
                "event `{name}` (version {}) is new",
                event.version
            )));
        }
    }
}

fn compare_event(
    set: &str,
    name: &str,
    code: &CatalogueEvent,
    file: &CatalogueEvent,
    problems: &mut Vec<SchemaProblem>,
) {
    let outdated = |message: String| SchemaProblem::CatalogueOutdated {
        set: set.to_owned(),
        message,
    };
    let at_risk = |change: String, advice: String| SchemaProblem::HistoryAtRisk {
        set: set.to_owned(),
        change,
        advice,
    };
    let before = problems.len();
    for alias in file.aliases.iter().filter(|a| !code.aliases.contains(a)) {
        problems.push(at_risk(
            format!("alias \"{alias}\" of `{name}` was removed"),
            format!("events stored as `{alias}` will fail to load as an unknown type. Put it back in `aliases = [..]`; {ONLY_IF_NONE_STORED}"),
        ));
    }
    if code.version < file.version {
        problems.push(at_risk(
            format!(
                "`{name}` went back from version {} to version {}",
                file.version, code.version
            ),
            format!(
                "events stored at version {} will fail to load as a version newer than the code. Restore `version = {}`",
                file.version, file.version
            ),
        ));
        return;
    }
    if code.version > file.version {
        problems.push(outdated(format!(
            "`{name}` is now at version {} (the catalogue has version {})",
            code.version, file.version
        )));
        return;
    }
    if code.fingerprint.is_some()
        && file.fingerprint.is_some()
        && code.fingerprint != file.fingerprint
    {
        let mut changes = Vec::new();
        list_changes(
            "attribute",
            &file.attributes,
            &code.attributes,
            &mut changes,
        );
        let no_fields = Vec::new();
        list_changes(
            "field",
            file.fields.as_ref().unwrap_or(&no_fields),
            code.fields.as_ref().unwrap_or(&no_fields),
            &mut changes,
        );
        if changes.is_empty() {
            changes.push("the struct's form changed (named, tuple or unit fields)".to_owned());
        }
        problems.push(SchemaProblem::ChangedWithoutVersionBump {
            set: set.to_owned(),
            event: name.to_owned(),
            version: code.version,
            changes,
        });
        return;
    }
    let added_aliases: Vec<&String> = code
        .aliases
        .iter()
        .filter(|a| !file.aliases.contains(a))
        .collect();
    if !added_aliases.is_empty() {
        problems.push(outdated(format!(
            "`{name}` has new aliases: {}",
            added_aliases
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if (code.fingerprint != file.fingerprint || code != file) && problems.len() == before {
        problems.push(outdated(format!("the description of `{name}` changed")));
    }
}

/// `- old` and `+ new` lines for the items of one kind that differ.
fn list_changes(kind: &str, before: &[String], after: &[String], out: &mut Vec<String>) {
    for item in before.iter().filter(|i| !after.contains(i)) {
        out.push(format!("- {kind} `{item}`"));
    }
    for item in after.iter().filter(|i| !before.contains(i)) {
        out.push(format!("+ {kind} `{item}`"));
    }
}

/// Something the check found wrong. Each message says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaProblem {
    /// The set was not described by `#[event]` (`EventSet::SCHEMA` is `None`).
    Undescribed {
        /// The set's Rust type.
        set: String,
    },
    /// Two registered sets have the same Rust name, which names their fixtures directory
    /// and their catalogue entry.
    DuplicateSet {
        /// The name.
        set: String,
    },
    /// A golden payload is missing.
    GoldenMissing {
        /// The event set.
        set: String,
        /// The event's stored name.
        event: String,
        /// The version whose payload is missing.
        version: u32,
        /// Whether it is the current version (which a bless run can write).
        current: bool,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A bless run found no sample to write a golden payload from.
    NoSample {
        /// The event set.
        set: String,
        /// The event's stored name.
        event: String,
        /// The current version.
        version: u32,
        /// The payload that could not be written.
        path: PathBuf,
    },
    /// A sample, or an event decoded from a golden payload, cannot be encoded.
    SampleInvalid {
        /// The event set.
        set: String,
        /// What failed.
        message: String,
    },
    /// A golden payload cannot be read or is not JSON.
    GoldenUnreadable {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The set cannot decode a golden payload: a migration or a field change broke a
    /// stored version.
    GoldenBroken {
        /// The event set.
        set: String,
        /// The event's stored name.
        event: String,
        /// The stored version.
        version: u32,
        /// The golden payload.
        path: PathBuf,
        /// What decoding reported.
        error: String,
    },
    /// Data of a golden payload of the current version does not survive a read and a
    /// write: a field was removed or changed meaning without a new version.
    GoldenLossy {
        /// The event set.
        set: String,
        /// The event's stored name.
        event: String,
        /// The current version.
        version: u32,
        /// The golden payload.
        path: PathBuf,
        /// What is lost, one entry per JSON path.
        differences: Vec<String>,
    },
    /// A handler panicked on a decoded golden payload.
    ApplyPanicked {
        /// The aggregate.
        aggregate: String,
        /// The event's stored name.
        event: String,
        /// The stored version.
        version: u32,
        /// The golden payload.
        path: PathBuf,
        /// The panic message.
        message: String,
    },
    /// Golden payloads filed under a name that no event of the set answers to (by name or
    /// alias) and that it does not ignore: events stored under it would fail to load.
    GoldenNameUnknown {
        /// The event set.
        set: String,
        /// The name the payloads are filed under.
        event: String,
        /// The versions of the payloads.
        versions: Vec<u32>,
        /// Their directory.
        path: PathBuf,
    },
    /// A golden payload of a version newer than the code's.
    GoldenAhead {
        /// The event set.
        set: String,
        /// The event's stored name.
        event: String,
        /// The payload's version.
        version: u32,
        /// The code's version.
        current: u32,
        /// The golden payload.
        path: PathBuf,
    },
    /// An event's stored shape changed but its version did not: the silent breaking
    /// change.
    ChangedWithoutVersionBump {
        /// The event set.
        set: String,
        /// The event's stored name.
        event: String,
        /// The version it is still at.
        version: u32,
        /// `- field ..` / `+ field ..` lines.
        changes: Vec<String>,
    },
    /// The code no longer reads something stores may hold: a removed event, alias or
    /// ignored name, or a version that went back.
    HistoryAtRisk {
        /// The event set.
        set: String,
        /// What changed.
        change: String,
        /// What it does to stored events, and what to do.
        advice: String,
    },
    /// The catalogue lags behind a change that keeps history readable (a new event, a new
    /// version, a new alias): regenerate it.
    CatalogueOutdated {
        /// The event set.
        set: String,
        /// What changed.
        message: String,
    },
    /// There is no catalogue yet.
    CatalogueMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The catalogue cannot be read or parsed; a bless run leaves it as it is.
    CatalogueUnreadable {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A file could not be written in a bless run.
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

impl fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SchemaProblem as P;
        match self {
            P::Undescribed { set } => write!(
                f,
                "event set `{set}` has no schema description (`EventSet::SCHEMA` is `None`): annotate it with `#[event]`, or set `SCHEMA` in its hand-written `EventSet` impl"
            ),
            P::DuplicateSet { set } => write!(
                f,
                "two registered event sets are named `{set}`: a set's Rust name names its fixtures directory and catalogue entry, so register each set once and rename one of two sets that share a name"
            ),
            P::GoldenMissing {
                set,
                event,
                version,
                current: true,
                path,
            } => write!(
                f,
                "`{set}`: no golden payload for `{event}` version {version} at {}. Write it from a sample with `{BLESS_COMMAND}`, review it and check it in",
                path.display()
            ),
            P::GoldenMissing {
                set,
                event,
                version,
                current: false,
                path,
            } => write!(
                f,
                "`{set}`: no golden payload for `{event}` version {version} at {}. An older version cannot be written from today's code: save there, by hand, a payload exactly as version {version} stored it (the `payload` of an exported event of that version will do)",
                path.display()
            ),
            P::NoSample {
                set,
                event,
                version,
                path,
            } => write!(
                f,
                "`{set}`: cannot write the golden payload of `{event}` version {version} ({}): no sample of `{event}` was given. Add one to the samples passed to `SchemaCheck::aggregate` or `SchemaCheck::event_set`",
                path.display()
            ),
            P::SampleInvalid { set, message } => write!(f, "`{set}`: {message}"),
            P::GoldenUnreadable { path, message } => {
                write!(
                    f,
                    "cannot read the golden payload {}: {message}",
                    path.display()
                )
            }
            P::GoldenBroken {
                set,
                event,
                version,
                path,
                error,
            } => write!(
                f,
                "`{set}` can no longer read the golden payload of `{event}` version {version} ({}): {error}.\n   Events stored at version {version} would fail to load the same way. If a migration step broke, fix it. If the struct's fields changed, keep version {version} readable: raise `version` and add a step from the old shape (`migrate(N => f)`, or `upcast_from = ` the old struct kept as a type). Do not edit the golden payload to make it pass: it is what stores hold",
                path.display()
            ),
            P::GoldenLossy {
                set,
                event,
                version,
                path,
                differences,
            } => write!(
                f,
                "`{set}`: `{event}` version {version} does not read all of its golden payload ({}): {}.\n   Events stored at version {version} lose the same data when read. To drop or change a field, raise `version` with a migration step that says what becomes of the old data; otherwise restore the field",
                path.display(),
                listed(differences)
            ),
            P::ApplyPanicked {
                aggregate,
                event,
                version,
                path,
                message,
            } => write!(
                f,
                "applying `{event}` version {version} ({}) to a default `{aggregate}` panicked: {message}. A handler must not panic: the event already happened",
                path.display()
            ),
            P::GoldenNameUnknown {
                set,
                event,
                versions,
                path,
            } => write!(
                f,
                "`{set}`: golden payloads are filed under \"{event}\" ({}, version{} {}), a name no event of the set answers to: stored `{event}` events would fail to load as an unknown type. If the event was renamed, give its successor `aliases = [\"{event}\"]`; to skip such events, add \"{event}\" to the set's `ignore = [..]`; delete the golden payloads only if no store holds such events",
                path.display(),
                if versions.len() == 1 { "" } else { "s" },
                versions
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            P::GoldenAhead {
                set,
                event,
                version,
                current,
                path,
            } => write!(
                f,
                "`{set}`: there is a golden payload of `{event}` version {version} ({}), but the code is at version {current}: stored events of version {version} would fail to load. Restore `version = {version}`, or delete the file if that version was never stored",
                path.display()
            ),
            P::ChangedWithoutVersionBump {
                set,
                event,
                version,
                changes,
            } => {
                writeln!(
                    f,
                    "`{set}`: event `{event}` changed its stored shape but is still at version {version}:"
                )?;
                for change in changes {
                    writeln!(f, "       {change}")?;
                }
                write!(
                    f,
                    "   Events already stored at version {version} have the old shape. If the change breaks them, set `version = {}` on the struct with a step from version {version} (`migrate({version} => f)`, or `upcast_from = ` the old struct kept as a type), then run `{BLESS_COMMAND}` to write the new golden payload and catalogue. If the change is compatible (a new field with `#[serde(default)]`, say), accept it by regenerating the catalogue with `{BLESS_COMMAND}`",
                    version + 1
                )
            }
            P::HistoryAtRisk {
                set,
                change,
                advice,
            } => write!(f, "`{set}`: {change}: {advice}"),
            P::CatalogueOutdated { set, message } => write!(
                f,
                "`{set}`: {message}; record it by regenerating the catalogue with `{BLESS_COMMAND}`"
            ),
            P::CatalogueMissing { path } => write!(
                f,
                "no schema catalogue at {}: create it with `{BLESS_COMMAND}` and check it in",
                path.display()
            ),
            P::CatalogueUnreadable { path, message } => write!(
                f,
                "cannot read the schema catalogue {}: {message}. A bless run does not write over it: mend it by hand (resolve a merge conflict; a catalogue of a newer format needs that version of es-core), or delete it and create it again with `{BLESS_COMMAND}`, reviewing the diff",
                path.display()
            ),
            P::Io { path, message } => write!(f, "cannot write {}: {message}", path.display()),
        }
    }
}

impl SchemaProblem {
    /// What a catalogue difference changes, without the advice: what a bless run reports
    /// it accepted.
    fn catalogue_change(&self) -> Option<String> {
        match self {
            SchemaProblem::ChangedWithoutVersionBump {
                set,
                event,
                version,
                changes,
            } => Some(format!(
                "`{set}`: `{event}` changed its stored shape at version {version}: {}",
                changes.join(", ")
            )),
            SchemaProblem::CatalogueOutdated { set, message } => {
                Some(format!("`{set}`: {message}"))
            }
            _ => None,
        }
    }
}

fn listed(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > MAX_LISTED {
        text.push_str(&format!("; and {} more", items.len() - MAX_LISTED));
    }
    text
}

/// What a check did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaReport {
    /// Whether it ran in bless mode.
    pub blessed: bool,
    /// Golden payloads read.
    pub goldens_checked: usize,
    /// Golden payloads written (bless mode).
    pub written: Vec<PathBuf>,
    /// The catalogue, when it was (re)written (bless mode).
    pub catalogue_written: Option<PathBuf>,
    /// The differences between the code and the catalogue that a bless run accepted.
    pub accepted: Vec<String>,
}

impl SchemaReport {
    fn is_quiet(&self) -> bool {
        self.written.is_empty() && self.catalogue_written.is_none()
    }
}

impl fmt::Display for SchemaReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "schema check: {} golden payloads read",
            self.goldens_checked
        )?;
        for path in &self.written {
            write!(f, "\n  wrote golden payload {}", path.display())?;
        }
        if let Some(path) = &self.catalogue_written {
            write!(f, "\n  wrote the catalogue {}", path.display())?;
        }
        for accepted in &self.accepted {
            write!(f, "\n  accepted: {accepted}")?;
        }
        if !self.is_quiet() {
            write!(
                f,
                "\n  review the new files with `git diff` before checking them in"
            )?;
        }
        Ok(())
    }
}

/// Why a check failed: every problem found.
#[derive(Debug, Clone)]
pub struct SchemaFailure {
    /// The problems, golden payloads first, then the catalogue.
    pub problems: Vec<SchemaProblem>,
    /// What was checked and written.
    pub report: SchemaReport,
    /// The fixtures directory and the catalogue file.
    paths: Box<(PathBuf, PathBuf)>,
}

impl fmt::Display for SchemaFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "the event schema check found {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, problem) in self.problems.iter().enumerate() {
            writeln!(f, "\n{}. {problem}", i + 1)?;
        }
        write!(
            f,
            "\nGolden payloads are under {}, the catalogue is {}. `{BLESS_COMMAND}` writes the missing golden payloads of current versions and regenerates the catalogue; it never rewrites a golden payload that exists.",
            self.paths.0.display(),
            self.paths.1.display()
        )
    }
}

impl std::error::Error for SchemaFailure {}

/// One registered event set, with its type erased.
trait CheckedSet {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Option<SetSchema>;
    /// The aggregate the decoded events are applied to, if any.
    fn aggregate(&self) -> Option<&'static str>;
    /// The encoded payload of the first sample of `event_type`.
    fn sample(&self, event_type: &str) -> Option<Result<Vec<u8>, String>>;
    /// Decodes a stored payload; `None` for an ignored type.
    fn read(&self, event_type: &str, version: u32, payload: &[u8]) -> Result<Option<Read>, String>;
}

/// A decoded golden payload.
struct Read {
    /// The event encoded again.
    written: Result<Vec<u8>, String>,
    /// Applying it to a default aggregate: the panic message if it panicked.
    applied: Result<(), String>,
}

/// The aggregate's name and a function applying an event to its default state.
type ApplyTo<S> = Option<(&'static str, fn(&S))>;

struct Checked<S> {
    samples: Vec<(&'static str, Result<Vec<u8>, String>)>,
    apply: ApplyTo<S>,
}

impl<S: EventSet> Checked<S> {
    fn new(samples: impl IntoEvents<S>, apply: ApplyTo<S>) -> Self {
        let mut events = Vec::new();
        samples.into_events(&mut events);
        let samples = events
            .iter()
            .map(|e| {
                let encoded = e.encode().map(|e| e.payload).map_err(|e| e.to_string());
                (e.event_type(), encoded)
            })
            .collect();
        Checked { samples, apply }
    }
}

impl<S: EventSet> CheckedSet for Checked<S> {
    fn type_name(&self) -> &'static str {
        short_type_name::<S>()
    }

    fn schema(&self) -> Option<SetSchema> {
        S::SCHEMA
    }

    fn aggregate(&self) -> Option<&'static str> {
        self.apply.map(|(name, _)| name)
    }

    fn sample(&self, event_type: &str) -> Option<Result<Vec<u8>, String>> {
        self.samples
            .iter()
            .find(|(t, _)| *t == event_type)
            .map(|(_, encoded)| encoded.clone())
    }

    fn read(&self, event_type: &str, version: u32, payload: &[u8]) -> Result<Option<Read>, String> {
        let Some(event) = S::decode(event_type, version, payload).map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let written = event.encode().map(|e| e.payload).map_err(|e| e.to_string());
        let applied = match self.apply {
            Some((_, apply)) => {
                catch_unwind(AssertUnwindSafe(|| apply(&event))).map_err(|p| panic_message(&*p))
            }
            None => Ok(()),
        };
        Ok(Some(Read { written, applied }))
    }
}

fn apply_to_default<A: Aggregate>(event: &A::Events) {
    let mut state = A::default();
    state.apply_event(event);
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// `Cart` for `my_crate::domain::Cart`.
fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// A name as one path segment: ASCII letters, digits, `_`, `-` and non-leading `.` as
/// they are, every other byte as `%XX`.
fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, byte) in name.bytes().enumerate() {
        let plain =
            byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || (byte == b'.' && i > 0);
        if plain {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The name that [`path_segment`] wrote as `segment`, or `None` for a segment it did not
/// write.
fn name_of_segment(segment: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(segment.len());
    let mut rest = segment.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The golden payloads in an event's directory (`v<N>.json`) with their versions, in
/// order.
fn golden_versions(dir: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .strip_prefix('v')?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            Some((version, entry.path()))
        })
        .collect();
    versions.sort();
    versions
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    std::fs::write(path, text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_segments_escape_what_a_file_system_may_not_take() {
        assert_eq!(path_segment("ProductAdded"), "ProductAdded");
        assert_eq!(path_segment("cart.item-added_v2"), "cart.item-added_v2");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(path_segment(".hidden"), "%2Ehidden");
        assert_eq!(path_segment("é"), "%C3%A9");
    }

    #[test]
    fn path_segments_read_back_as_the_names_they_were_written_from() {
        for name in ["ProductAdded", "a/b c", ".hidden", "é", "100%"] {
            assert_eq!(name_of_segment(&path_segment(name)).as_deref(), Some(name));
        }
        assert_eq!(name_of_segment("%4"), None);
        assert_eq!(name_of_segment("%ZZ"), None);
        assert_eq!(name_of_segment("%FF"), None);
    }

    #[test]
    fn lost_data_compares_integers_exactly() {
        let mut out = Vec::new();
        // 2^53 + 1 and 2^53 are the same f64
        lost_data(
            &json!({"a": 9_007_199_254_740_993_u64, "b": -9_007_199_254_740_993_i64}),
            &json!({"a": 9_007_199_254_740_992_u64, "b": -9_007_199_254_740_992_i64}),
            "",
            &mut out,
        );
        assert_eq!(
            out,
            [
                "`/a` was 9007199254740993, reads back as 9007199254740992",
                "`/b` was -9007199254740993, reads back as -9007199254740992"
            ]
        );
        out.clear();
        lost_data(
            &json!({"a": u64::MAX, "b": 2, "c": -1}),
            &json!({"a": u64::MAX, "b": 2.0, "c": -1}),
            "",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        // an integer read into a float field, which cannot hold it: a loss (it compared
        // as two floats, equal)
        lost_data(
            &json!({"a": 9_007_199_254_740_993_u64, "b": -3, "c": 0.5}),
            &json!({"a": 9_007_199_254_740_992.0, "b": -3.0, "c": 0.5}),
            "",
            &mut out,
        );
        assert_eq!(
            out,
            ["`/a` was 9007199254740993, reads back as 9007199254740992.0"]
        );
    }

    #[test]
    fn lost_data_ignores_new_fields_and_nulls() {
        let mut out = Vec::new();
        lost_data(
            &json!({"a": 1, "b": null, "c": [1, 2], "d": {"e": "x"}}),
            &json!({"a": 1.0, "c": [1, 2], "d": {"e": "x", "f": 2}, "g": true}),
            "",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        lost_data(
            &json!({"a": 1, "c": [1, 2], "d": {"e": "x"}}),
            &json!({"a": 2, "c": [1], "d": {}}),
            "",
            &mut out,
        );
        assert_eq!(
            out,
            [
                "`/a` was 1, reads back as 2",
                "`/c` was [1,2], reads back as [1]",
                "`/d/e` (\"x\") is dropped"
            ]
        );
    }
}
