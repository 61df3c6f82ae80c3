//! Rules that span several attributes, one function per rule. What the macro cannot see
//! (the name, version and aliases of another type) is checked by const assertions in the
//! generated code instead; see `expand_event` and `expand_event_set`.

use crate::ast::{
    AggregateInput, EventEnum, EventStruct, cfg_attr_applies, derives, is_cfg, reshaping_serde_keys,
};
use crate::attr::{
    AGGREGATE, EVENT, KIND, MIGRATE, NAME, SNAPSHOT_EVERY, SNAPSHOT_VERSION, TRANSIENT,
    UPCAST_FROM, event_name_problem,
};
use crate::ctxt::Ctxt;
use crate::print::written;
use std::collections::{BTreeMap, BTreeSet};
use syn::ext::IdentExt;
use syn::{Fields, ImplItem, ItemImpl};

pub fn event_struct(cx: &Ctxt, event: &EventStruct) {
    fields_are_named(cx, event);
    serde_keeps_an_object_of_fields(cx, event);
    fields_are_the_same_in_every_build(cx, event);
    default_name_is_storable(cx, event);
    serde_is_not_derived_twice(cx, event);
    migrate_and_upcast_from_are_exclusive(cx, event);
    older_versions_have_a_chain(cx, event);
    migrate_steps_are_below_the_current_version(cx, event);
    migrate_steps_are_unique(cx, event);
    migrate_steps_have_no_gap(cx, event);
    upcast_from_needs_an_older_version(cx, event);
    aliases_are_distinct(cx, event);
}

pub fn event_enum(cx: &Ctxt, set: &EventEnum) {
    variant_types_are_distinct(cx, set);
    ignored_names_are_distinct(cx, set);
}

pub fn aggregate(cx: &Ctxt, aggregate: &AggregateInput) {
    kind_and_event_are_given(cx, aggregate);
    snapshot_version_needs_snapshot_every(cx, aggregate);
    snapshots_keep_every_field(cx, aggregate);
}

pub fn handler(cx: &Ctxt, handler: &ItemImpl) {
    if handler_is_an_apply_impl(cx, handler) {
        handler_leaves_fingerprint_unset(cx, handler);
    }
}

/// A stored payload is a JSON object: a later version can add a field with a default, and
/// a migration step can edit it by name. A tuple struct would be stored as a bare value
/// (`5`) or an array, a unit struct as `null`; neither can grow.
fn fields_are_named(cx: &Ctxt, event: &EventStruct) {
    let item = event.item;
    let ident = item.ident.unraw();
    let vis = written(&item.vis);
    let vis = if vis.is_empty() { vis } else { vis + " " };
    match &item.fields {
        Fields::Named(_) => {}
        Fields::Unnamed(fields) => {
            let write = match fields.unnamed.iter().collect::<Vec<_>>().as_slice() {
                [field] => {
                    let field_vis = written(&field.vis);
                    let field_vis = if field_vis.is_empty() {
                        field_vis
                    } else {
                        field_vis + " "
                    };
                    format!(
                        "name the field: `{vis}struct {ident} {{ {field_vis}value: {} }}`",
                        written(&field.ty)
                    )
                }
                fields => format!(
                    "name each of its {} fields: `{vis}struct {ident} {{ .. }}`",
                    fields.len()
                ),
            };
            cx.error_spanned_by(
                fields,
                format!(
                    "`#[event]` needs a struct with named fields: a tuple struct is stored as a bare JSON value or array, which a later version cannot extend with a field; {write}"
                ),
            );
        }
        Fields::Unit => {
            cx.error_spanned_by(
                &item.ident,
                format!(
                    "`#[event]` needs a struct with named fields: a unit struct is stored as `null`, which a later version cannot extend with a field; write `{vis}struct {ident} {{}}`"
                ),
            );
        }
    }
}

/// The payload must stay what `fields_are_named` asks for, a JSON object of the struct's
/// own fields, and its shape what the fingerprint describes. Some container attributes of
/// serde store something else, or write the Rust name, which is never stored otherwise.
fn serde_keeps_an_object_of_fields(cx: &Ctxt, event: &EventStruct) {
    const EXTENSIBLE: &str = "the payload of an event must stay an extensible JSON object of the struct's own fields (a later version adds a field to it, a migration step edits it by name, the fingerprint describes its shape)";
    for attr in &event.item.attrs {
        for key in reshaping_serde_keys(attr) {
            let message = match written(&key).as_str() {
                "transparent" => format!(
                    "`#[serde(transparent)]` cannot go on an `#[event]` struct: it stores the one field's value bare (`5`, not `{{\"amount\": 5}}`), and {EXTENSIBLE}; remove it"
                ),
                "tag" => format!(
                    "`#[serde(tag = ..)]` cannot go on an `#[event]` struct: it writes the struct's Rust name into every payload, so that renaming the struct would change what is stored (the stored type name is the event's `name`, kept apart from the payload), and {EXTENSIBLE}; remove it"
                ),
                other => format!(
                    "`#[serde({other} = ..)]` cannot go on an `#[event]` struct: the payload would be another type's JSON, whose shape the event's fingerprint and schema catalogue do not see, and {EXTENSIBLE}; remove it and give the struct the fields to store"
                ),
            };
            cx.error_spanned_by(&key, message);
        }
    }
}

/// A field's `#[cfg(..)]`, or a `#[cfg_attr(..)]` that applies `cfg` or a serde attribute,
/// makes the stored shape depend on the build, where the fingerprint and the schema
/// catalogue, made from the attribute's text, do not: two builds sharing a store would
/// write and read different payloads under one name and version. (An attribute macro sees
/// its fields' conditions unresolved; the struct's own are resolved before it runs.)
fn fields_are_the_same_in_every_build(cx: &Ctxt, event: &EventStruct) {
    const SAME: &str = "stored events must load in every build, and the event's fingerprint and schema catalogue describe one shape for all of them";
    for field in &event.item.fields {
        for attr in &field.attrs {
            if is_cfg(attr) {
                cx.error_spanned_by(
                    attr,
                    format!(
                        "`#[cfg(..)]` cannot go on a field of an `#[event]` struct: {SAME}; keep the field in every build (an `Option` with `#[serde(default)]` can stay empty), or make another version of the event"
                    ),
                );
            } else if cfg_attr_applies(attr, |meta| {
                meta.path()
                    .segments
                    .first()
                    .is_some_and(|s| s.ident.to_string().starts_with("serde"))
            }) {
                cx.error_spanned_by(
                    attr,
                    format!(
                        "`#[cfg_attr(.., serde(..))]` cannot go on a field of an `#[event]` struct: {SAME}; write the serde attribute without a condition"
                    ),
                );
            }
        }
    }
}

/// Without `name = ".."`, the Rust name is what the store records, so it is held to the
/// rules a written name is held to (an identifier can only break the length limit).
fn default_name_is_storable(cx: &Ctxt, event: &EventStruct) {
    if event.attrs.written.mentions(NAME) {
        return;
    }
    if let Some(problem) = event_name_problem(&event.name()) {
        cx.error_spanned_by(
            event.ident(),
            format!(
                "the struct's Rust name is its stored event name (there is no `{NAME} = \"..\"`): {problem}; set a shorter one with `#[event({NAME} = \"..\")]`"
            ),
        );
    }
}

/// `#[event]` derives serde's traits itself (through es-core); a second derive would be a
/// conflicting impl reported far from its cause.
fn serde_is_not_derived_twice(cx: &Ctxt, event: &EventStruct) {
    for path in derives(event.item) {
        let Some(last) = path.segments.last() else {
            continue;
        };
        if last.ident == "Serialize" || last.ident == "Deserialize" {
            cx.error_spanned_by(
                &path,
                format!(
                    "`#[event]` derives `Serialize` and `Deserialize` itself; remove `{}` from `#[derive(..)]` (serde's field attributes such as `#[serde(default)]` still apply)",
                    written(&path)
                ),
            );
        }
    }
}

/// One struct brings its older versions up to date one way: either JSON steps for every
/// older version, or the previous version as a type (whose own chain, JSON or typed, covers
/// the versions before it). Mixing both on one struct would leave two routes for one
/// version.
fn migrate_and_upcast_from_are_exclusive(cx: &Ctxt, event: &EventStruct) {
    let (Some(_), Some(upcast_from)) = (&event.attrs.migrate, &event.attrs.upcast_from) else {
        return;
    };
    let old = written(&upcast_from.value);
    let below = match event.known_version() {
        Some(version) => format!("versions below {version}"),
        None => "older versions".to_owned(),
    };
    cx.error_spanned_by(
        &upcast_from.key,
        format!(
            "`{MIGRATE}` and `{UPCAST_FROM}` cannot be combined: with `{UPCAST_FROM} = {old}`, {below} are decoded by `{old}`; put the JSON steps on `{old}`"
        ),
    );
}

/// The most steps a message lists.
const SHOWN: usize = 8;

fn older_versions_have_a_chain(cx: &Ctxt, event: &EventStruct) {
    let Some(version) = &event.attrs.version else {
        return;
    };
    // A chain that was written (or meant) but did not parse is reported already.
    if version.value.value < 2 || event.mentions_chain() {
        return;
    }
    let current = version.value.value;
    // a long chain is shown by its first steps: a version such as a date would otherwise
    // make a message of millions of steps
    let mut steps = (1..current)
        .take(SHOWN)
        .map(|v| format!("{v} => to_v{}", v + 1))
        .collect::<Vec<_>>()
        .join(", ");
    if current - 1 > SHOWN as u32 {
        steps.push_str(&format!(
            ", .. (one step per version, {} in all)",
            current - 1
        ));
    }
    cx.error_spanned_by(
        &version.value.lit,
        format!(
            "`version = {current}` needs an upcast chain for the stored versions below it: add `{MIGRATE}({steps})` or `{UPCAST_FROM} = {}V{}` (the previous version kept as a type)",
            event.ident(),
            current - 1
        ),
    );
}

fn migrate_steps_are_below_the_current_version(cx: &Ctxt, event: &EventStruct) {
    let (Some(migrate), Some(current)) = (&event.attrs.migrate, event.known_version()) else {
        return;
    };
    for step in &migrate.value.steps {
        let from = step.from.value;
        if from < current {
            continue;
        }
        let takes = match current {
            1 => "no step".to_owned(),
            2 => "only `1 => ..`".to_owned(),
            _ => format!("`1 => ..` to `{} => ..`", current - 1),
        };
        let written = if event.attrs.version.is_some() {
            format!("`version = {current}`")
        } else {
            "version 1 (no `version = ..`)".to_owned()
        };
        let next = u64::from(from) + 1;
        let hint = if from == current {
            format!("; to migrate to version {next}, set `version = {next}`")
        } else {
            String::new()
        };
        cx.error_spanned_by(
            &step.from.lit,
            format!(
                "migration step `{from} => ..` turns version {from} into {next}, but the event is at {written}: steps start below the current version, so this event takes {takes}{hint}"
            ),
        );
    }
}

fn migrate_steps_are_unique(cx: &Ctxt, event: &EventStruct) {
    let Some(migrate) = &event.attrs.migrate else {
        return;
    };
    let mut seen = BTreeSet::new();
    for step in &migrate.value.steps {
        if !seen.insert(step.from.value) {
            cx.error_spanned_by(
                &step.from.lit,
                format!(
                    "duplicate migration step `{} => ..`: each version has exactly one step to the next",
                    step.from.value
                ),
            );
        }
    }
}

fn migrate_steps_have_no_gap(cx: &Ctxt, event: &EventStruct) {
    let Some(migrate) = &event.attrs.migrate else {
        return;
    };
    // A malformed step or a mix with `upcast_from` is reported already; the gap it leaves
    // would be the same mistake twice.
    if !migrate.value.complete || event.attrs.written.mentions(UPCAST_FROM) {
        return;
    }
    let Some(current) = event.known_version() else {
        return;
    };
    let present: BTreeSet<u32> = migrate
        .value
        .steps
        .iter()
        .map(|s| s.from.value)
        .filter(|&v| (1..current).contains(&v))
        .collect();
    // counted, never collected: a version such as a date leaves millions missing
    let missing_count = u64::from(current - 1) - present.len() as u64;
    if missing_count == 0 {
        return;
    }
    let mut listed = (1..current)
        .filter(|v| !present.contains(v))
        .take(SHOWN)
        .map(|v| format!("`{v} => ..`"))
        .collect::<Vec<_>>()
        .join(", ");
    if missing_count > SHOWN as u64 {
        listed.push_str(&format!(" and {} more", missing_count - SHOWN as u64));
    }
    let (noun, pronoun) = if missing_count == 1 {
        ("step", "it")
    } else {
        ("steps", "them")
    };
    cx.error_spanned_by(
        &migrate.key,
        format!(
            "the migration chain to version {current} has a gap: {noun} {listed} missing; payloads stored at every version from 1 to {} must reach {current}, so add {pronoun}",
            current - 1
        ),
    );
}

fn upcast_from_needs_an_older_version(cx: &Ctxt, event: &EventStruct) {
    let (Some(upcast_from), Some(version)) = (&event.attrs.upcast_from, event.known_version())
    else {
        return;
    };
    if version < 2 {
        cx.error_spanned_by(
            &upcast_from.key,
            format!(
                "`{UPCAST_FROM}` names the previous version of this event, but this is version 1: set `version = 2` (or higher) on `{}`",
                event.ident()
            ),
        );
    }
}

fn aliases_are_distinct(cx: &Ctxt, event: &EventStruct) {
    let name = event.known_name();
    let mut seen = BTreeSet::new();
    for alias in event.aliases() {
        let value = alias.value();
        if name.as_ref() == Some(&value) {
            cx.error_spanned_by(
                alias,
                format!("alias \"{value}\" is the event's own name; aliases are the names it was stored under before"),
            );
        } else if !seen.insert(value.clone()) {
            cx.error_spanned_by(alias, format!("duplicate alias \"{value}\""));
        }
    }
}

fn variant_types_are_distinct(cx: &Ctxt, set: &EventEnum) {
    let mut seen: BTreeMap<String, &syn::Ident> = BTreeMap::new();
    for variant in &set.variants {
        let ty = written(variant.ty);
        if let Some(first) = seen.get(&ty) {
            cx.error_spanned_by(
                variant.ty,
                format!(
                    "`{ty}` is already wrapped by variant `{first}`: each event struct appears once in an event set"
                ),
            );
        } else {
            seen.insert(ty, variant.ident);
        }
    }
}

fn ignored_names_are_distinct(cx: &Ctxt, set: &EventEnum) {
    let mut seen = BTreeSet::new();
    for name in set.ignored() {
        if !seen.insert(name.value()) {
            cx.error_spanned_by(
                name,
                format!("\"{}\" is already in the `ignore` list", name.value()),
            );
        }
    }
}

/// A state kept in snapshots is restored from its JSON: a field serde skips (writing it,
/// reading it, or both) comes back as its default, where a replay of the events gives it its value, so that a load from a
/// snapshot and a load from the events would see different states. Such a field is said
/// to be `#[aggregate(transient)]` (a cache, a count of what this load folded), or kept
/// in the snapshot. (The derive's input has its `cfg` and `cfg_attr` resolved already.)
/// `#[aggregate(..)]` on a field takes `transient` alone.
fn snapshots_keep_every_field(cx: &Ctxt, aggregate: &AggregateInput) {
    let fields: Vec<&syn::Field> = match &aggregate.input.data {
        syn::Data::Struct(data) => data.fields.iter().collect(),
        syn::Data::Enum(data) => data.variants.iter().flat_map(|v| &v.fields).collect(),
        syn::Data::Union(_) => Vec::new(),
    };
    let snapshots = aggregate.attrs.snapshot_every.is_some();
    for field in fields {
        let mut transient = false;
        for attr in field.attrs.iter().filter(|a| a.path().is_ident(AGGREGATE)) {
            let parsed = attr.parse_args_with(
                syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated,
            );
            match parsed {
                Ok(keys) if keys.iter().all(|k| matches!(k, syn::Meta::Path(p) if p.is_ident(TRANSIENT))) => {
                    transient = true;
                }
                _ => cx.error_spanned_by(
                    attr,
                    format!(
                        "on a field, `#[{AGGREGATE}(..)]` takes `{TRANSIENT}` alone: `#[{AGGREGATE}({TRANSIENT})]` marks a field that snapshots leave out (serde skips it)"
                    ),
                ),
            }
        }
        let mut skips = Vec::new();
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("serde")) {
            let Ok(keys) = attr.parse_args_with(
                syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated,
            ) else {
                continue;
            };
            let skipped = ["skip", "skip_serializing", "skip_deserializing"];
            skips.extend(
                keys.iter()
                    .map(syn::Meta::path)
                    .filter(|key| skipped.iter().any(|k| key.is_ident(k)))
                    .cloned(),
            );
        }
        if snapshots && transient && skips.is_empty() {
            let name = field
                .ident
                .as_ref()
                .map_or_else(|| "the field".to_owned(), |i| format!("`{i}`"));
            cx.error_spanned_by(
                &field.ty,
                format!(
                    "{name} is `#[{AGGREGATE}({TRANSIENT})]`, but serde keeps it, and so do snapshots: add `#[serde(skip)]` to leave it out, or remove `{TRANSIENT}`"
                ),
            );
        }
        if !snapshots || transient {
            continue;
        }
        for key in &skips {
            cx.error_spanned_by(
                key,
                format!(
                    "`#[serde({})]` on a field of a state kept in snapshots (`{SNAPSHOT_EVERY}`): a state restored from a snapshot holds the field's default where a replay of the events gives it its value. Keep the field in the snapshot; or, if it may differ (a cache, a count of what one load folded), say so with `#[{AGGREGATE}({TRANSIENT})]` on it",
                    written(key)
                ),
            );
        }
    }
}

fn kind_and_event_are_given(cx: &Ctxt, aggregate: &AggregateInput) {
    let attrs = &aggregate.attrs;
    let ident = aggregate.ident();
    let Some(attribute) = &attrs.attribute else {
        cx.error_spanned_by(
            ident,
            format!(
                "`#[derive(Aggregate)]` needs `#[aggregate({KIND} = \"...\", {EVENT} = ...)]` on `{ident}`: the stream prefix and the `#[event]` enum of its events"
            ),
        );
        return;
    };
    if !attrs.written.mentions(KIND) {
        cx.error_spanned_by(
            attribute,
            format!(
                "missing `{KIND} = \"...\"` in `#[aggregate(...)]`: the prefix of the stream ids of `{ident}`, as in `{KIND} = \"{}\"`",
                ident.to_string().to_lowercase()
            ),
        );
    }
    if !attrs.written.mentions(EVENT) {
        cx.error_spanned_by(
            attribute,
            format!(
                "missing `{EVENT} = ...` in `#[aggregate(...)]`: the `#[event]` enum of the events of `{ident}`, as in `{EVENT} = {ident}Event`"
            ),
        );
    }
}

fn snapshot_version_needs_snapshot_every(cx: &Ctxt, aggregate: &AggregateInput) {
    let attrs = &aggregate.attrs;
    if let Some(version) = &attrs.snapshot_version
        && !attrs.written.mentions(SNAPSHOT_EVERY)
    {
        cx.error_spanned_by(
            &version.key,
            format!(
                "`{SNAPSHOT_VERSION}` needs `{SNAPSHOT_EVERY} = N`: without it the aggregate keeps no snapshots"
            ),
        );
    }
}

/// Only `Apply` handlers are part of a snapshot fingerprint; on any other impl the hash
/// would be computed and never read.
fn handler_is_an_apply_impl(cx: &Ctxt, handler: &ItemImpl) -> bool {
    let Some((path, _)) = &handler.trait_ else {
        cx.error_spanned_by(
            &handler.self_ty,
            "`#[fingerprint]` goes on an `Apply` handler, `impl Apply<Event> for Aggregate { .. }`, not on an inherent impl: only the handlers are part of a snapshot fingerprint",
        );
        return false;
    };
    let is_apply = path.segments.last().is_some_and(|s| s.ident == "Apply");
    if handler.modifiers.polarity.is_some() || !is_apply {
        cx.error_spanned_by(
            path,
            format!(
                "`#[fingerprint]` goes on an `Apply` handler, `impl Apply<Event> for Aggregate {{ .. }}`, not on an impl of `{}`",
                written(path)
            ),
        );
        return false;
    }
    true
}

fn handler_leaves_fingerprint_unset(cx: &Ctxt, handler: &ItemImpl) {
    for item in &handler.items {
        if let ImplItem::Const(constant) = item
            && constant.ident == "FINGERPRINT"
        {
            cx.error_spanned_by(
                &constant.ident,
                "`#[fingerprint]` sets `FINGERPRINT` itself: remove this constant, or remove `#[fingerprint]` to keep your own",
            );
        }
    }
}
