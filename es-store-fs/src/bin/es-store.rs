//! `es-store`: inspect a file event store. Every command but `import`, and `repair`
//! without `--dry-run`, opens the store read-only, without the write lock, so it works
//! beside a running application; beside a live writer it shows the appends the writer had
//! acknowledged when it opened (see `FileStore::open_read_only`).

use clap::{Parser, Subcommand};
use es_core::{EventStore, RecordedEvent};
use es_store_fs::tools::{self, IndexStatus, RepairError};
use es_store_fs::{FileStore, OpenError};
use std::borrow::Cow;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "es-store",
    version,
    about = "Inspect, verify, export and import a file event store"
)]
struct Cli {
    /// Print JSON (one object per line for event listings) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Counts: events, streams, segments, bytes.
    Stats {
        /// The store directory.
        dir: PathBuf,
    },
    /// Lists streams with their versions.
    Streams {
        /// The store directory.
        dir: PathBuf,
        /// Only streams of this aggregate kind (the id's prefix before `-`).
        #[arg(long)]
        kind: Option<String>,
    },
    /// Prints one stream's events.
    Read {
        /// The store directory.
        dir: PathBuf,
        /// The stream id.
        stream: String,
        /// First stream version to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
    /// Prints the global log.
    Tail {
        /// The store directory.
        dir: PathBuf,
        /// First global position to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Keep printing new events as the writer acknowledges them (durable ones only in
        /// the default durability; until interrupted). Stops with an error if the log
        /// moves back below what was printed (a crash took back appends that were not yet
        /// durable, or a repair cut the log): the positions printed would be reused.
        #[arg(long)]
        follow: bool,
    },
    /// Checks every frame and the index; exits non-zero on damage.
    Verify {
        /// The store directory.
        dir: PathBuf,
    },
    /// Cuts damage out of the log (the first bad frame and everything after it), after
    /// saying what is dropped: the bytes, the positions, and how many of those events lie
    /// in intact frames after the damage (save them first; the dry run says how). Events
    /// in the cut are lost: copy the directory first. Index files that disagree with the
    /// log are written again from it, which cuts nothing.
    Repair {
        /// The store directory (must not be open elsewhere).
        dir: PathBuf,
        /// Only say what a repair would drop; change nothing. Beside a live writer, reads
        /// the log up to the end the writer published, as `verify` does. Exits 0 either
        /// way: `verify` is the check whose exit status tells damage.
        #[arg(long)]
        dry_run: bool,
    },
    /// Writes every event as JSON Lines.
    Export {
        /// The store directory.
        dir: PathBuf,
        /// Output file (standard output when absent). Written beside the path and renamed
        /// over it once whole and synced; created private to its owner (0600), or with the
        /// permissions of the file it replaces. A path that is not a regular file (a link,
        /// a device, a FIFO, a directory), or one among a store's files, is refused.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Imports JSON Lines written by `export` into a store (all or nothing per stream).
    ///
    /// Each stream is one append, so a stream is imported whole or not at all; the
    /// import raises the store's limits on one append to what one frame of the log holds
    /// (100,000 events, 32 MiB of events), and refuses a larger stream. A stream that exists is refused, unless it
    /// holds these events' ids as one append (the same file imported twice): then it is
    /// counted as already imported, and nothing is written. A stream whose first event in
    /// the file has version n > 1 (events saved with `tail --from` before a repair) is
    /// appended where the stream ends, if it ends at version n - 1.
    Import {
        /// The store directory (created if needed; must not be open elsewhere).
        dir: PathBuf,
        /// The JSON Lines file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(message) => {
            note(&format!("es-store: {}", shown(&message)));
            ExitCode::FAILURE
        }
    }
}

/// `text` as a terminal can show it without harm: stored text (stream ids, event types,
/// metadata, payloads, and the reasons that quote them) comes from whoever wrote the
/// store or the input, and control characters in it (escape sequences among them), line
/// separators and bidirectional controls would act on the terminal instead of being
/// shown. They are written as Rust escapes (`\n`, `\u{1b}`, `\u{202e}`). JSON listings
/// write them as JSON escapes instead (`tools::json_displayable`); an export writes
/// payloads byte for byte, for an import to store the same bytes.
fn shown(text: &str) -> Cow<'_, str> {
    es_core::store::displayable(text)
}

/// Writes `message` on standard error. A standard error that cannot be written (closed,
/// or a pipe whose reader is gone) loses the message; it never stops the tool.
fn note(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Writes one line of text for a person to read.
fn say(out: &mut dyn Write, line: &str) -> Result<(), String> {
    writeln!(out, "{}", shown(line)).map_err(output_failed)
}

/// Writes one line of JSON, with what would act on a terminal written as JSON escapes.
fn say_json(out: &mut dyn Write, value: &serde_json::Value) -> Result<(), String> {
    let line = tools::json_displayable(&value.to_string()).into_owned();
    writeln!(out, "{line}").map_err(output_failed)
}

fn output_failed(e: std::io::Error) -> String {
    format!("writing to standard output: {e}")
}

/// What a torn tail is, for every command that reports one: the store does not record
/// which durability mode wrote it, and only under `Always` is it sure that the torn
/// append was never acknowledged.
const TORN_TAIL_IS: &str = "what a crash left of a write it interrupted: never acknowledged \
     if the store was written with Durability::Always (the default), but under \
     Durability::Periodic or None a machine crash can tear appends that were acknowledged \
     (the store does not record which mode wrote it)";

fn open(dir: &Path) -> Result<FileStore, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a store directory", dir.display()));
    }
    FileStore::open_read_only(dir).map_err(|e| e.to_string())
}

fn run(cli: &Cli) -> Result<ExitCode, String> {
    let mut out = std::io::stdout().lock();
    let out: &mut dyn Write = &mut out;
    match &cli.command {
        Command::Stats { dir } => {
            let store = open(dir)?;
            let head = store.head_position().map_err(|e| e.to_string())?;
            let bytes = store.log_bytes().map_err(|e| e.to_string())?;
            let report = store.recovery_report();
            if cli.json {
                let v = serde_json::json!({
                    "events": head,
                    "streams": store.stream_count(),
                    "log_bytes": bytes,
                    "index_rebuilt": report.index_rebuilt,
                    "frames_scanned_on_open": report.frames_scanned,
                    "torn_tail": report.torn_tail.map(torn_json),
                });
                say_json(out, &v)?;
            } else {
                say(out, &format!("events:     {head}"))?;
                say(out, &format!("streams:    {}", store.stream_count()))?;
                say(out, &format!("log bytes:  {bytes}"))?;
                if head > 0 {
                    say(
                        out,
                        &format!("bytes/event: {:.0}", bytes as f64 / head as f64),
                    )?;
                }
                let index = if report.index_rebuilt {
                    "missing or stale (rebuilt in memory)"
                } else {
                    "present"
                };
                say(out, &format!("index:      {index}"))?;
                if let Some(t) = report.torn_tail {
                    say(
                        out,
                        &format!(
                            "torn tail:  {} bytes at segment {} offset {} ({TORN_TAIL_IS}; cut at the next writable open)",
                            t.bytes, t.segment, t.offset
                        ),
                    )?;
                }
            }
        }
        Command::Streams { dir, kind } => {
            let store = open(dir)?;
            for (stream, version) in store.streams() {
                if kind
                    .as_deref()
                    .is_some_and(|k| es_core::stream_kind(&stream) != k)
                {
                    continue;
                }
                if cli.json {
                    say_json(
                        out,
                        &serde_json::json!({"stream": stream, "version": version}),
                    )?;
                } else {
                    // the tab is the column separator: only the stored id is escaped
                    writeln!(out, "{}\t{version}", shown(&stream)).map_err(output_failed)?;
                }
            }
        }
        Command::Read { dir, stream, from } => {
            let store = open(dir)?;
            let events = store
                .read_stream(stream, *from)
                .map_err(|e| e.to_string())?;
            let mut printed = 0u64;
            for e in events {
                print_event(out, cli.json, e.map_err(|e| e.to_string())?)?;
                printed += 1;
            }
            // a stream exists once it holds an event: a mistyped id is told from a stream
            // read past its end
            if printed == 0 && store.stream_version(stream).map_err(|e| e.to_string())? == 0 {
                return Err(format!(
                    "there is no stream `{stream}` in {} (`es-store streams` lists them)",
                    dir.display()
                ));
            }
        }
        Command::Tail { dir, from, follow } => {
            let mut next = *from;
            // the last event printed: its position and id, looked for at every poll
            let mut printed: Option<(u64, uuid::Uuid)> = None;
            loop {
                let store = open(dir)?;
                if let Some((position, id)) = printed {
                    let head = store.head_position().map_err(|e| e.to_string())?;
                    let there = store
                        .read_all(position)
                        .map_err(|e| e.to_string())?
                        .next()
                        .transpose()
                        .map_err(|e| e.to_string())?
                        .filter(|e| e.position == position);
                    let reason = match there {
                        None => format!("the log now ends at position {head}, before it"),
                        Some(e) if e.event_id != id => {
                            format!("it now holds another event, {}", e.event_id)
                        }
                        Some(_) => String::new(),
                    };
                    if !reason.is_empty() {
                        return Err(format!(
                            "event {id} was printed at position {position}, but {reason}: the \
                             log was replaced from there or before (a crash took back appends \
                             that were not yet durable, or a repair cut the log), and going on \
                             would skip the events that took the printed positions"
                        ));
                    }
                }
                for e in store.read_all(next).map_err(|e| e.to_string())? {
                    let e = e.map_err(|e| e.to_string())?;
                    next = e.position + 1;
                    printed = Some((e.position, e.event_id));
                    print_event(out, cli.json, e)?;
                }
                out.flush().map_err(output_failed)?;
                if !follow {
                    break;
                }
                drop(store);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        Command::Verify { dir } => return verify(dir, cli.json, out),
        Command::Repair { dir, dry_run } => return repair(dir, *dry_run, cli.json, out),
        Command::Export { dir, out: file } => {
            let store = open(dir)?;
            let n = match file {
                // written beside the target and renamed over it once whole and synced: a
                // failed export leaves an earlier file of that name as it was. The
                // temporary file is this run's own, created new (never one another export
                // is writing, nor a link planted in its place)
                Some(path) => {
                    if let Some(refused) = export_target_refused(path) {
                        return Err(refused);
                    }
                    // the file replaced keeps its permissions; a new one is private, as the
                    // store's files are
                    let replaced_mode = std::fs::symlink_metadata(path)
                        .ok()
                        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
                    let mut tmp = path.clone().into_os_string();
                    tmp.push(format!(".{}.tmp", std::process::id()));
                    let tmp = PathBuf::from(tmp);
                    let mut created = false;
                    let written = (|| {
                        let f = std::os::unix::fs::OpenOptionsExt::mode(
                            std::fs::OpenOptions::new().write(true).create_new(true),
                            0o600,
                        )
                        .open(&tmp)
                        .map_err(|e| format!("{}: {e}", tmp.display()))?;
                        created = true;
                        if let Some(mode) = replaced_mode {
                            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
                                mode & 0o777,
                            ))
                            .map_err(|e| format!("{}: {e}", tmp.display()))?;
                        }
                        let mut w = std::io::BufWriter::new(f);
                        // a failed read names the store's file; a failed write, the output
                        let n = tools::export_jsonl(&store, 1, &mut w).map_err(|e| match e {
                            tools::ExportError::Store(e) => {
                                format!("reading {}: {e}", dir.display())
                            }
                            e => format!("{}: {e}", tmp.display()),
                        })?;
                        let f = w
                            .into_inner()
                            .map_err(|e| format!("{}: {}", tmp.display(), e.error()))?;
                        f.sync_all()
                            .map_err(|e| format!("{}: {e}", tmp.display()))?;
                        std::fs::rename(&tmp, path)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                        // the rename itself made durable
                        let parent = match path.parent() {
                            Some(p) if !p.as_os_str().is_empty() => p,
                            _ => Path::new("."),
                        };
                        std::fs::File::open(parent)
                            .and_then(|d| d.sync_all())
                            .map_err(|e| format!("{}: {e}", parent.display()))?;
                        Ok::<_, String>(n)
                    })();
                    // only this run's own file: one of that name it did not create may be
                    // another export's
                    if written.is_err() && created {
                        let _ = std::fs::remove_file(&tmp);
                    }
                    written?
                }
                None => tools::export_jsonl(&store, 1, out).map_err(|e| e.to_string())?,
            };
            note(&format!("exported {n} events"));
        }
        Command::Import { dir, file } => return import(dir, file, cli.json, out),
    }
    Ok(ExitCode::SUCCESS)
}

/// Why `export --out path` must not write there, if it must not: an export renames a new
/// file over the path, which would replace a link, a device or a FIFO with a file of
/// events (`/dev/null` among them), and put a foreign file among a store's own.
fn export_target_refused(path: &Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let kind = meta.file_type();
        let what = if kind.is_symlink() {
            "a symbolic link"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else {
            ""
        };
        if !what.is_empty() {
            return Some(format!(
                "{} is {what}: an export writes a new file and renames it over the path \
                 given, which would replace it; give the path of a regular file (or of none \
                 yet), or leave out --out to write to standard output",
                path.display()
            ));
        }
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // a missing directory: creating the file fails, naming it
    let parent = std::fs::canonicalize(parent).ok()?;
    let store = [Some(parent.as_path()), parent.parent()]
        .into_iter()
        .flatten()
        .find(|d| {
            ["ES-STORE", "LOCK", "PUBLISHED", "00000000000000000000.seg"]
                .iter()
                .any(|name| d.join(name).exists())
        })?;
    Some(format!(
        "{} lies in the event store {}: an export never writes among a store's files",
        path.display(),
        store.display()
    ))
}

/// `path` as a shell reads it back: as it is when it holds only characters no shell
/// treats specially; else in single quotes (a quote written `'\''`); and when it holds a
/// character that acts on a terminal or bytes that are not UTF-8, in bash's `$'...'`
/// quotes with those written as escapes (`\n`, `\u202e`, `\xff`), which the terminal shows
/// as they are. A suggested command with it can be pasted and runs on that path, never a
/// command hidden in its name.
fn quoted(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let plain = !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"_-./+,:@%=".contains(&b));
    if plain {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(es_core::store::acts_on_display) => {
            format!("'{}'", text.replace('\'', "'\\''"))
        }
        _ => {
            let mut out = String::from("$'");
            for chunk in bytes.utf8_chunks() {
                for c in chunk.valid().chars() {
                    match c {
                        '\'' => out.push_str("\\'"),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str("\\t"),
                        c if es_core::store::acts_on_display(c) => {
                            out.push_str(&format!("\\u{:04x}", u32::from(c)));
                        }
                        c => out.push(c),
                    }
                }
                for b in chunk.invalid() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            out.push('\'');
            out
        }
    }
}

fn import(dir: &Path, file: &Path, json: bool, out: &mut dyn Write) -> Result<ExitCode, String> {
    // the whole input is read and checked before the store is opened (or created): an
    // input that cannot be imported leaves nothing behind
    let input_error = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
    let f = std::fs::File::open(file).map_err(|e| input_error(&e))?;
    let checked = tools::read_import(&mut BufReader::new(f)).map_err(|e| input_error(&e))?;
    // one append per stream: as large as one frame of the log can hold (a frame of
    // 100,000 events of 32 MiB in all, with the longest type names, is below the
    // format's 64 MiB)
    let limits = es_core::Limits {
        max_batch_events: 100_000,
        max_batch_size: 32 * 1024 * 1024,
        ..es_core::Limits::default()
    };
    // every stream checked as the store will check its append, before anything is
    // written: an event the store would refuse refuses the whole input
    checked.check(&limits).map_err(|e| input_error(&e))?;
    let store = FileStore::open_with(
        dir,
        es_store_fs::FileStoreOptions {
            limits,
            ..es_store_fs::FileStoreOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let report = tools::write_import(&store, checked);
    // what was appended is reported whether or not the close succeeds: those appends
    // were acknowledged (synced) before it
    let closed = store.close().map_err(|e| {
        format!(
            "closing the store {} after the import failed: {e}; the events reported \
             imported above were acknowledged before it",
            dir.display()
        )
    });
    if json {
        let refused: Vec<_> = report
            .streams_refused
            .iter()
            .map(|r| serde_json::json!({"stream": r.stream_id, "reason": r.reason}))
            .collect();
        say_json(
            out,
            &serde_json::json!({
                "streams_imported": report.streams_imported,
                "events_imported": report.events_imported,
                "streams_already_imported": report.streams_already_imported,
                "streams_refused": refused,
                "close_error": closed.as_ref().err(),
            }),
        )?;
    } else {
        say(
            out,
            &format!(
                "imported {} events in {} streams",
                report.events_imported, report.streams_imported
            ),
        )?;
        if report.streams_already_imported > 0 {
            say(
                out,
                &format!(
                    "{} streams already held these events (the same ids): nothing written",
                    report.streams_already_imported
                ),
            )?;
        }
        for r in &report.streams_refused {
            say(
                out,
                &format!("refused stream `{}`: {}", r.stream_id, r.reason),
            )?;
        }
    }
    out.flush().map_err(output_failed)?;
    closed?;
    if !report.streams_refused.is_empty() {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &Path, json: bool, out: &mut dyn Write) -> Result<ExitCode, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a store directory", dir.display()));
    }
    let total = tools::log_size(dir).map_err(|e| e.to_string())?;
    let bar = if total > 64 * 1024 * 1024 && !json {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("verifying {bar:40} {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let result = tools::verify(dir, &|n| bar.inc(n));
    bar.finish_and_clear();
    match result {
        Ok(report) => {
            let index = match &report.index {
                IndexStatus::Consistent { covered_frames } => {
                    format!("consistent ({covered_frames} frames covered)")
                }
                IndexStatus::Missing => "missing (rebuilt at the next open)".into(),
                IndexStatus::Unusable(why) => format!("unusable: {why} (rebuilt at the next open)"),
                IndexStatus::Disagrees(why) => format!("disagrees with the log: {why}"),
                IndexStatus::Newer => {
                    "written by the live writer after the end checked; not compared".into()
                }
            };
            if json {
                say_json(
                    out,
                    &serde_json::json!({
                        "ok": true,
                        "segments": report.segments,
                        "frames": report.frames,
                        "events": report.events,
                        "streams": report.streams,
                        "bytes": report.bytes,
                        "torn_tail": report.torn_tail.map(torn_json),
                        "index": index,
                    }),
                )?;
            } else {
                say(
                    out,
                    &format!(
                        "ok: {} events in {} streams, {} frames in {} segments, {} bytes checked",
                        report.events, report.streams, report.frames, report.segments, report.bytes
                    ),
                )?;
                say(out, &format!("index: {index}"))?;
                if let Some(t) = report.torn_tail {
                    say(
                        out,
                        &format!(
                            "torn tail: {} bytes at segment {} offset {} ({TORN_TAIL_IS}; cut at the next writable open)",
                            t.bytes, t.segment, t.offset
                        ),
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(OpenError::Corrupted {
            file,
            segment,
            offset,
            reason,
        }) => {
            if json {
                say_json(
                    out,
                    &serde_json::json!({"ok": false, "file": file, "segment": segment, "offset": offset, "reason": reason}),
                )?;
            } else {
                say(
                    out,
                    &format!(
                        "CORRUPTED: {} (segment {segment}) at offset {offset}: {reason}",
                        file.display()
                    ),
                )?;
                // an index is derived from the log: a repair writes it again and cuts
                // nothing, which the dry run says too
                let is_index = file.extension().is_some_and(|e| e == "idx" || e == "flt")
                    || file.file_name().is_some_and(|n| n == "index.dat");
                let hint = if is_index {
                    "this index is derived from the log: a repair writes it again and cuts \
                     nothing of the log; see what it would do"
                } else {
                    "see what a repair would drop"
                };
                say(
                    out,
                    &format!("{hint}: es-store repair --dry-run {}", quoted(dir)),
                )?;
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.to_string()),
    }
}

fn torn_json(t: es_store_fs::TornTail) -> serde_json::Value {
    serde_json::json!({"segment": t.segment, "offset": t.offset, "bytes": t.bytes})
}

fn repair(dir: &Path, dry_run: bool, json: bool, out: &mut dyn Write) -> Result<ExitCode, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a store directory", dir.display()));
    }
    // a repair that cut the log and then failed to close still reports what it cut,
    // before its error
    let (report, close_error) = match tools::repair_detailed(dir, dry_run) {
        Ok(report) => (report, None),
        Err(e) => {
            let message = e.to_string();
            match e {
                RepairError::NotClosed { report, .. } | RepairError::StaleLeft { report, .. } => {
                    (*report, Some(format!("{}: {message}", dir.display())))
                }
                _ => return Err(message),
            }
        }
    };
    if json {
        say_json(out, &repair_json(&report, dry_run, close_error.as_deref()))?;
    } else {
        say_repair(out, dir, &report, dry_run)?;
    }
    out.flush().map_err(output_failed)?;
    match close_error {
        Some(message) => Err(message),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn repair_json(
    report: &tools::RepairReport,
    dry_run: bool,
    close_error: Option<&str>,
) -> serde_json::Value {
    let recovery = &report.recovery;
    let cut = report.cut.as_ref();
    let repaired = recovery.repaired.as_ref().map(|r| {
        serde_json::json!({
            "segment": r.segment,
            "offset": r.offset,
            "reason": r.reason,
            "bytes_dropped": r.bytes_dropped,
            "segments_removed": r.segments_removed,
            "first_position_cut": cut.map(|c| c.first_position),
            "last_position_cut": cut.and_then(|c| c.last_position),
            "intact_frames_after_damage": cut.map(|c| c.intact_frames),
            "intact_events_after_damage": cut.map(|c| c.intact_events),
            "first_intact_position": cut.and_then(|c| c.first_intact_position),
            "searched_whole_cut": cut.map(|c| c.searched_whole),
        })
    });
    serde_json::json!({
        "dry_run": dry_run,
        "repaired": repaired,
        "torn_tail": recovery.torn_tail.map(torn_json),
        "headers_rewritten": recovery
            .headers_rewritten
            .iter()
            .map(|h| serde_json::json!({"segment": h.segment, "reason": h.reason}))
            .collect::<Vec<_>>(),
        "removed_empty_segment": recovery.removed_empty_segment,
        "index_rebuilt": recovery.index_rebuilt,
        "stale_indexes": report
            .stale_indexes
            .iter()
            .map(|s| serde_json::json!({"file": s.file, "reason": s.reason}))
            .collect::<Vec<_>>(),
        "live_writer_end": report
            .live_writer_end
            .map(|e| serde_json::json!({"segment": e.segment, "offset": e.offset})),
        "close_error": close_error,
    })
}

fn say_repair(
    out: &mut dyn Write,
    dir: &Path,
    report: &tools::RepairReport,
    dry_run: bool,
) -> Result<(), String> {
    let recovery = &report.recovery;
    let (cut_one, cut, wrote) = if dry_run {
        ("would be cut", "would be cut", "would write")
    } else {
        ("was cut", "were cut", "wrote")
    };
    if let Some(end) = report.live_writer_end {
        say(
            out,
            &format!(
                "a writer holds the store: read up to the end it published (segment {} \
                 offset {}); frames after it may still be being written. A repair can run \
                 only once the writer has closed",
                end.segment, end.offset
            ),
        )?;
    }
    for h in &recovery.headers_rewritten {
        let rewrite = if dry_run {
            "would write again"
        } else {
            "wrote again"
        };
        say(
            out,
            &format!(
                "{rewrite} the header of segment {} ({}); its frames are intact, nothing dropped",
                h.segment, h.reason
            ),
        )?;
    }
    if let Some(seg) = recovery.removed_empty_segment {
        let remove = if dry_run { "would remove" } else { "removed" };
        say(
            out,
            &format!(
                "{remove} segment {seg}, whose header never became durable (it held no event)"
            ),
        )?;
    }
    match &recovery.repaired {
        None if recovery.headers_rewritten.is_empty()
            && recovery.removed_empty_segment.is_none()
            && report.stale_indexes.is_empty() =>
        {
            say(out, "no damage: nothing to repair")?
        }
        None => {}
        Some(r) => {
            say(
                out,
                &format!(
                    "damage at segment {} offset {}: {}",
                    r.segment, r.offset, r.reason
                ),
            )?;
            let dropped = if dry_run { "would drop" } else { "dropped" };
            say(
                out,
                &format!(
                    "{dropped} {} bytes of segment {} from offset {}, and segments {:?} whole",
                    r.bytes_dropped, r.segment, r.offset, r.segments_removed
                ),
            )?;
        }
    }
    if let Some(c) = &report.cut {
        let positions = match c.last_position {
            Some(last) => {
                let total = last - c.first_position + 1;
                let events = match total {
                    1 => format!("the event at position {last} {cut_one}"),
                    _ => format!(
                        "the {total} events at positions {} to {last} {cut}",
                        c.first_position
                    ),
                };
                let frames = plural(c.intact_frames, "intact frame", "intact frames");
                let readable = match c.first_intact_position {
                    None => "none of them is in an intact frame after the damage".to_owned(),
                    Some(from) if c.intact_events >= total => format!(
                        "all of them are in {frames} after the damage, from position {from} \
                         on, and still readable"
                    ),
                    Some(from) => format!(
                        "{} of them, in {frames} from position {from} on, are still readable; \
                         the other {}, the damaged frame's among them, are not",
                        c.intact_events,
                        total - c.intact_events
                    ),
                };
                format!("{events}: {readable}")
            }
            None => format!(
                "the events from position {} on {cut}: how many the damaged frame holds \
                 cannot be read, and no intact frame follows it",
                c.first_position
            ),
        };
        say(out, &positions)?;
        if !c.searched_whole {
            say(
                out,
                "the search for intact frames stopped early (the bytes cut hold many \
                 frame-like lengths): the counts of intact frames and events are lower bounds",
            )?;
        }
        if dry_run && let Some(from) = c.first_intact_position {
            say(
                out,
                &format!(
                    "to keep the readable ones, save them before repairing, while the store \
                     still opens read-only: es-store --json tail {} --from {from} > saved.jsonl; \
                     after the repair, `es-store import {} saved.jsonl` appends each stream's \
                     saved events where the stream ends, and refuses the streams whose events \
                     before them were cut",
                    quoted(dir),
                    quoted(dir)
                ),
            )?;
        }
    }
    if report.cut.is_none()
        && let Some(r) = &recovery.repaired
        && (r.bytes_dropped > 0 || !r.segments_removed.is_empty())
    {
        say(
            out,
            "the events cut could not be counted: the log changed between the count made \
             before the repair and the repair itself",
        )?;
    }
    for stale in &report.stale_indexes {
        say(
            out,
            &format!(
                "{wrote} {} again from the log: {}; an index is derived data, so \
                 nothing of the log is cut for it",
                stale.file.display(),
                stale.reason
            ),
        )?;
    }
    if let Some(t) = recovery.torn_tail {
        let cut_tail = if dry_run {
            "cut at the next writable open"
        } else {
            "cut"
        };
        say(
            out,
            &format!(
                "torn tail: {} bytes at segment {} offset {} ({TORN_TAIL_IS}; {cut_tail})",
                t.bytes, t.segment, t.offset
            ),
        )?;
    }
    Ok(())
}

/// `n` with the noun that fits it.
fn plural(n: u64, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        _ => format!("{n} {many}"),
    }
}

fn print_event(out: &mut dyn Write, json: bool, e: RecordedEvent) -> Result<(), String> {
    if json {
        // one object per line, as `export` writes it; written whole to a buffer first so
        // that a stored payload that is not JSON is told from a failed write
        let position = e.position;
        let mut line = Vec::new();
        tools::write_event_line(&mut line, e).map_err(|err| {
            format!("the event at position {position} cannot be written as JSON: {err}")
        })?;
        // written by serde_json (UTF-8), then a line break, which stays one
        let line = String::from_utf8_lossy(&line);
        let line = line.strip_suffix('\n').unwrap_or(&line);
        return writeln!(out, "{}", tools::json_displayable(line)).map_err(output_failed);
    }
    let mut head = format!(
        "#{:<6} {} v{} {} (schema {}) at {}",
        e.position,
        e.stream_id,
        e.stream_version,
        e.event_type,
        e.schema_version,
        e.timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    if let Some(actor) = &e.metadata.actor {
        head.push_str(&format!(" by {actor}"));
    }
    say(out, &head)?;
    let payload = tools::without_whitespace(&e.payload);
    say(
        out,
        &format!("        {}", String::from_utf8_lossy(&payload)),
    )
}
