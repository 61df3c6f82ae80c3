//! `es-store`: inspect a file event store. Every command but `import`, and `repair`
//! without `--dry-run`, opens the store read-only, without the write lock, so it works
//! beside a running application; beside a live writer it shows the appends the writer had
//! acknowledged when it opened (see `FileStore::open_read_only`).

use clap::{Parser, Subcommand};
use es_core::{EventStore, RecordedEvent};
use es_store_fs::tools::{self, IndexStatus};
use es_store_fs::{FileStore, OpenError};
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
    /// saying what is dropped. Events in the cut are lost: copy the directory first.
    Repair {
        /// The store directory (must not be open elsewhere).
        dir: PathBuf,
        /// Only say what a repair would drop; change nothing. Exits 0 either way:
        /// `verify` is the check whose exit status tells damage.
        #[arg(long)]
        dry_run: bool,
    },
    /// Writes every event as JSON Lines.
    Export {
        /// The store directory.
        dir: PathBuf,
        /// Output file (standard output when absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Imports JSON Lines written by `export` into a store (all or nothing per stream).
    ///
    /// Each stream is one append, so a stream is imported whole or not at all; the
    /// import raises the store's limits on one append to what one frame of the log holds
    /// (100,000 events, 32 MiB of events), and refuses a larger stream. A stream that exists is refused, unless it
    /// holds these events' ids as one append (the same file imported twice): then it is
    /// counted as already imported, and nothing is written.
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
            eprintln!("es-store: {message}");
            ExitCode::FAILURE
        }
    }
}

fn open(dir: &Path) -> Result<FileStore, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a store directory", dir.display()));
    }
    FileStore::open_read_only(dir).map_err(|e| e.to_string())
}

fn run(cli: &Cli) -> Result<ExitCode, String> {
    let mut out = std::io::stdout().lock();
    let w = |out: &mut dyn Write, line: String| -> Result<(), String> {
        writeln!(out, "{line}").map_err(|e| e.to_string())
    };
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
                w(&mut out, v.to_string())?;
            } else {
                w(&mut out, format!("events:     {head}"))?;
                w(&mut out, format!("streams:    {}", store.stream_count()))?;
                w(&mut out, format!("log bytes:  {bytes}"))?;
                if head > 0 {
                    w(
                        &mut out,
                        format!("bytes/event: {:.0}", bytes as f64 / head as f64),
                    )?;
                }
                let index = if report.index_rebuilt {
                    "missing or stale (rebuilt in memory)"
                } else {
                    "present"
                };
                w(&mut out, format!("index:      {index}"))?;
                if let Some(t) = report.torn_tail {
                    w(
                        &mut out,
                        format!(
                            "torn tail:  {} bytes at segment {} offset {} (never acknowledged; cut at the next writable open)",
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
                    w(
                        &mut out,
                        serde_json::json!({"stream": stream, "version": version}).to_string(),
                    )?;
                } else {
                    w(&mut out, format!("{stream}\t{version}"))?;
                }
            }
        }
        Command::Read { dir, stream, from } => {
            let store = open(dir)?;
            let events = store
                .read_stream(stream, *from)
                .map_err(|e| e.to_string())?;
            for e in events {
                print_event(&mut out, cli.json, &e.map_err(|e| e.to_string())?)?;
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
                    print_event(&mut out, cli.json, &e)?;
                }
                out.flush().map_err(|e| e.to_string())?;
                if !follow {
                    break;
                }
                drop(store);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        Command::Verify { dir } => return verify(dir, cli.json, &mut out),
        Command::Repair { dir, dry_run } => return repair(dir, *dry_run, cli.json, &mut out),
        Command::Export { dir, out: file } => {
            let store = open(dir)?;
            let n = match file {
                // written beside the target and renamed over it once whole and synced: a
                // failed export leaves an earlier file of that name as it was
                Some(path) => {
                    let mut tmp = path.clone().into_os_string();
                    tmp.push(".tmp");
                    let tmp = PathBuf::from(tmp);
                    let written = (|| {
                        let f = std::fs::File::create(&tmp)
                            .map_err(|e| format!("{}: {e}", tmp.display()))?;
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
                    if written.is_err() {
                        let _ = std::fs::remove_file(&tmp);
                    }
                    written?
                }
                None => tools::export_jsonl(&store, 1, &mut out).map_err(|e| e.to_string())?,
            };
            eprintln!("exported {n} events");
        }
        Command::Import { dir, file } => {
            let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
            // one append per stream: as large as one frame of the log can hold (a frame
            // of 100,000 events of 32 MiB in all, with the longest type names, is below
            // the format's 64 MiB)
            let limits = es_core::Limits {
                max_batch_events: 100_000,
                max_batch_size: 32 * 1024 * 1024,
                ..es_core::Limits::default()
            };
            let store = FileStore::open_with(
                dir,
                es_store_fs::FileStoreOptions {
                    limits,
                    ..es_store_fs::FileStoreOptions::default()
                },
            )
            .map_err(|e| e.to_string())?;
            let report =
                tools::import_jsonl(&store, &mut BufReader::new(f)).map_err(|e| e.to_string())?;
            store.close().map_err(|e| e.to_string())?;
            if cli.json {
                let refused: Vec<_> = report
                    .streams_refused
                    .iter()
                    .map(|r| serde_json::json!({"stream": r.stream_id, "reason": r.reason}))
                    .collect();
                w(
                    &mut out,
                    serde_json::json!({
                        "streams_imported": report.streams_imported,
                        "events_imported": report.events_imported,
                        "streams_already_imported": report.streams_already_imported,
                        "streams_refused": refused,
                    })
                    .to_string(),
                )?;
            } else {
                w(
                    &mut out,
                    format!(
                        "imported {} events in {} streams",
                        report.events_imported, report.streams_imported
                    ),
                )?;
                if report.streams_already_imported > 0 {
                    w(
                        &mut out,
                        format!(
                            "{} streams already held these events (the same ids): nothing written",
                            report.streams_already_imported
                        ),
                    )?;
                }
                for r in &report.streams_refused {
                    w(
                        &mut out,
                        format!("refused stream `{}`: {}", r.stream_id, r.reason),
                    )?;
                }
            }
            if !report.streams_refused.is_empty() {
                return Ok(ExitCode::from(2));
            }
        }
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
    let line = |out: &mut dyn Write, s: String| writeln!(out, "{s}").map_err(|e| e.to_string());
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
                line(
                    out,
                    serde_json::json!({
                        "ok": true,
                        "segments": report.segments,
                        "frames": report.frames,
                        "events": report.events,
                        "streams": report.streams,
                        "bytes": report.bytes,
                        "torn_tail": report.torn_tail.map(torn_json),
                        "index": index,
                    })
                    .to_string(),
                )?;
            } else {
                line(
                    out,
                    format!(
                        "ok: {} events in {} streams, {} frames in {} segments, {} bytes checked",
                        report.events, report.streams, report.frames, report.segments, report.bytes
                    ),
                )?;
                line(out, format!("index: {index}"))?;
                if let Some(t) = report.torn_tail {
                    line(
                        out,
                        format!(
                            "torn tail: {} bytes at segment {} offset {} (never acknowledged; cut at the next writable open)",
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
                line(out, serde_json::json!({"ok": false, "file": file, "segment": segment, "offset": offset, "reason": reason}).to_string())?;
            } else {
                line(
                    out,
                    format!(
                        "CORRUPTED: {} (segment {segment}) at offset {offset}: {reason}",
                        file.display()
                    ),
                )?;
                line(
                    out,
                    format!(
                        "see what a repair would drop: es-store repair --dry-run {}",
                        dir.display()
                    ),
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
    let report = tools::repair(dir, dry_run).map_err(|e| e.to_string())?;
    let verb = if dry_run { "would drop" } else { "dropped" };
    let line = |out: &mut dyn Write, s: String| writeln!(out, "{s}").map_err(|e| e.to_string());
    if json {
        let repaired = report.repaired.as_ref().map(|r| {
            serde_json::json!({
                "segment": r.segment,
                "offset": r.offset,
                "reason": r.reason,
                "bytes_dropped": r.bytes_dropped,
                "segments_removed": r.segments_removed,
            })
        });
        line(
            out,
            serde_json::json!({
                "dry_run": dry_run,
                "repaired": repaired,
                "torn_tail": report.torn_tail.map(torn_json),
                "headers_rewritten": report
                    .headers_rewritten
                    .iter()
                    .map(|h| serde_json::json!({"segment": h.segment, "reason": h.reason}))
                    .collect::<Vec<_>>(),
                "removed_empty_segment": report.removed_empty_segment,
                "index_rebuilt": report.index_rebuilt,
            })
            .to_string(),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let rewrite = if dry_run {
        "would write again"
    } else {
        "wrote again"
    };
    for h in &report.headers_rewritten {
        line(
            out,
            format!(
                "{rewrite} the header of segment {} ({}); its frames are intact, nothing dropped",
                h.segment, h.reason
            ),
        )?;
    }
    if let Some(seg) = report.removed_empty_segment {
        let remove = if dry_run { "would remove" } else { "removed" };
        line(
            out,
            format!("{remove} segment {seg}, whose header never became durable (it held no event)"),
        )?;
    }
    match &report.repaired {
        None if report.headers_rewritten.is_empty() && report.removed_empty_segment.is_none() => {
            line(out, "no damage: nothing to repair".into())?
        }
        None => {}
        Some(r) => {
            line(
                out,
                format!(
                    "damage at segment {} offset {}: {}",
                    r.segment, r.offset, r.reason
                ),
            )?;
            line(
                out,
                format!(
                    "{verb} {} bytes of segment {} from offset {}, and segments {:?} whole",
                    r.bytes_dropped, r.segment, r.offset, r.segments_removed
                ),
            )?;
        }
    }
    if let Some(t) = report.torn_tail {
        line(
            out,
            format!(
                "torn tail (never acknowledged): {} bytes at segment {} offset {}",
                t.bytes, t.segment, t.offset
            ),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_event(out: &mut dyn Write, json: bool, e: &RecordedEvent) -> Result<(), String> {
    let text = if json {
        serde_json::to_string(e).map_err(|e| e.to_string())?
    } else {
        let mut s = format!(
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
            s.push_str(&format!(" by {actor}"));
        }
        s.push_str("\n        ");
        s.push_str(&String::from_utf8_lossy(&e.payload));
        s
    };
    writeln!(out, "{text}").map_err(|e| e.to_string())
}
