//! The attribute grammar: `#[event(...)]` on a struct or an enum, `#[aggregate(...)]` on
//! an aggregate. Each key is a named constant; every key is parsed on its own, so that one
//! mistake neither hides nor garbles the next, and each value is checked at its token.

use crate::ctxt::Ctxt;
use proc_macro2::{Delimiter, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::{Ident, LitInt, LitStr, Token};

// `#[event(...)]` on a struct.
pub const NAME: &str = "name";
pub const ALIASES: &str = "aliases";
pub const VERSION: &str = "version";
pub const MIGRATE: &str = "migrate";
pub const UPCAST_FROM: &str = "upcast_from";
pub const EVENT_STRUCT_KEYS: &[&str] = &[NAME, ALIASES, VERSION, MIGRATE, UPCAST_FROM];

// `#[event(...)]` on an enum.
pub const IGNORE: &str = "ignore";
pub const EVENT_ENUM_KEYS: &[&str] = &[IGNORE];

// `#[event(...)]` on a variant of an enum.
pub const LEGACY: &str = "legacy";
pub const EVENT_VARIANT_KEYS: &[&str] = &[LEGACY];

// `#[aggregate(...)]`.
pub const AGGREGATE: &str = "aggregate";
pub const KIND: &str = "kind";
pub const EVENT: &str = "event";
pub const SNAPSHOT_EVERY: &str = "snapshot_every";
/// On a field of an aggregate's state: left out of snapshots.
pub const TRANSIENT: &str = "transient";
pub const SNAPSHOT_VERSION: &str = "snapshot_version";
pub const AGGREGATE_KEYS: &[&str] = &[KIND, EVENT, SNAPSHOT_EVERY, SNAPSHOT_VERSION];

/// How each key is written, for error messages.
fn example(key: &str) -> &'static str {
    match key {
        NAME => "name = \"ProductAdded\"",
        ALIASES => "aliases = [\"ItemAdded\"]",
        VERSION => "version = 2",
        MIGRATE => "migrate(1 => to_v2)",
        UPCAST_FROM => "upcast_from = ProductAddedV2",
        IGNORE => "ignore = [\"CartViewed\"]",
        KIND => "kind = \"cart\"",
        EVENT => "event = CartEvent",
        SNAPSHOT_EVERY => "snapshot_every = 100",
        SNAPSHOT_VERSION => "snapshot_version = 2",
        _ => "key = value",
    }
}

/// The keys written so far in one attribute, or across all `#[aggregate(...)]` of one
/// item: a valid key written twice is reported at its second occurrence.
#[derive(Default)]
pub struct Written {
    attribute: &'static str,
    valid: &'static [&'static str],
    keys: Vec<&'static str>,
    /// The valid keys that mistyped keys were closest to.
    meant: Vec<&'static str>,
}

impl Written {
    fn new(attribute: &'static str, valid: &'static [&'static str]) -> Self {
        Written {
            attribute,
            valid,
            keys: Vec::new(),
            meant: Vec::new(),
        }
    }

    /// True when `key` was written, or a mistyped key was taken to mean it (so that a key
    /// reported as mistyped or with a bad value is not also reported missing).
    pub fn mentions(&self, key: &str) -> bool {
        self.keys.contains(&key) || self.meant.contains(&key)
    }
}

/// The longest event type name a store accepts by default (`Limits::max_event_type_len`).
const MAX_NAME_LEN: usize = 256;

/// One attribute value with the key it was written under, for error spans.
pub struct Attr<T> {
    pub key: Ident,
    pub value: T,
}

/// An integer literal and its value.
pub struct Number<T> {
    pub value: T,
    pub lit: LitInt,
}

/// The steps of `migrate(...)`.
pub struct MigrateSteps {
    pub steps: Vec<MigrateStep>,
    /// False when some step was malformed (and reported): the chain is then not checked
    /// for gaps, which would only repeat that error.
    pub complete: bool,
}

/// One step of `migrate(...)`: the function that turns version `from` into `from + 1`.
pub struct MigrateStep {
    pub from: Number<u32>,
    pub function: syn::Expr,
}

#[derive(Default)]
pub struct EventStructAttrs {
    /// The keys written, or meant by a mistyped key, whether or not their values parsed.
    pub written: Written,
    pub name: Option<Attr<LitStr>>,
    pub aliases: Option<Attr<Vec<LitStr>>>,
    pub version: Option<Attr<Number<u32>>>,
    pub migrate: Option<Attr<MigrateSteps>>,
    pub upcast_from: Option<Attr<syn::Type>>,
}

#[derive(Default)]
pub struct EventEnumAttrs {
    pub ignore: Option<Attr<Vec<LitStr>>>,
}

#[derive(Default)]
pub struct EventVariantAttrs {
    /// `legacy`: still decoded and applied, no longer produced by commands.
    pub legacy: Option<Ident>,
}

#[derive(Default)]
pub struct AggregateAttrs {
    /// The keys of all `#[aggregate(...)]` attributes, once they are parsed.
    pub written: Written,
    /// The `aggregate` path of the first `#[aggregate(...)]`, for errors about missing keys.
    pub attribute: Option<syn::Path>,
    pub kind: Option<Attr<LitStr>>,
    pub event: Option<Attr<syn::Type>>,
    pub snapshot_every: Option<Attr<Number<u64>>>,
    pub snapshot_version: Option<Attr<Number<u32>>>,
}

/// Parses the arguments of `#[event(...)]` on a struct.
pub fn event_struct(cx: &Ctxt, args: TokenStream) -> EventStructAttrs {
    let mut attrs = EventStructAttrs::default();
    let mut written = Written::new(EVENT, EVENT_STRUCT_KEYS);
    parse_keys(cx, args, &mut written, |meta, key| {
        match key.to_string().as_str() {
            NAME => {
                let value = parse_value(cx, meta, |input| event_name(cx, input, NAME));
                set(&mut attrs.name, key, value);
                None
            }
            ALIASES => {
                let value = parse_value(cx, meta, |input| name_list(cx, input, ALIASES));
                set(&mut attrs.aliases, key, value);
                None
            }
            VERSION => {
                let value = parse_value(cx, meta, |input| version(cx, input, VERSION));
                set(&mut attrs.version, key, value);
                None
            }
            MIGRATE => {
                let value = parse_list(
                    cx,
                    meta,
                    MIGRATE,
                    "migrate(1 => to_v2, 2 => to_v3)",
                    |input| migrate_steps(cx, input),
                );
                set(&mut attrs.migrate, key, value);
                None
            }
            UPCAST_FROM => {
                let value = parse_value(cx, meta, |input| {
                    type_value(
                        input,
                        "`upcast_from` takes the type of the previous version: `upcast_from = ProductAddedV2`",
                    )
                });
                set(&mut attrs.upcast_from, key, value);
                None
            }
            IGNORE => {
                misplaced(
                    cx,
                    meta,
                    key,
                    "`ignore` belongs on the `#[event]` enum of an aggregate's events, not on an event struct",
                );
                None
            }
            _ => unknown(cx, meta, key, EVENT, EVENT_STRUCT_KEYS),
        }
    });
    attrs.written = written;
    attrs
}

/// Parses the arguments of `#[event(...)]` on an enum.
pub fn event_enum(cx: &Ctxt, args: TokenStream) -> EventEnumAttrs {
    let mut attrs = EventEnumAttrs::default();
    let mut written = Written::new(EVENT, EVENT_ENUM_KEYS);
    parse_keys(cx, args, &mut written, |meta, key| {
        let key_text = key.to_string();
        match key_text.as_str() {
            IGNORE => {
                let value = parse_value(cx, meta, |input| name_list(cx, input, IGNORE));
                set(&mut attrs.ignore, key, value);
                None
            }
            k if EVENT_STRUCT_KEYS.contains(&k) => {
                misplaced(
                    cx,
                    meta,
                    key,
                    &format!(
                        "`{k}` belongs on an event struct; on the enum of an aggregate's events, `#[event]` takes only `ignore = [..]`"
                    ),
                );
                None
            }
            _ => unknown(cx, meta, key, EVENT, EVENT_ENUM_KEYS),
        }
    });
    attrs
}

/// True for the attributes `#[event(...)]` on a variant: `event` or a path ending in it
/// (`es_core::event`), as the enum's own attribute may be written.
pub fn is_event_attribute(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == EVENT)
}

/// Parses every `#[event(...)]` on a variant of an event enum into one set of keys.
pub fn event_variant(cx: &Ctxt, variant: &syn::Variant) -> EventVariantAttrs {
    let mut attrs = EventVariantAttrs::default();
    let mut written = Written::new(EVENT, EVENT_VARIANT_KEYS);
    for attr in variant.attrs.iter().filter(|a| is_event_attribute(a)) {
        let args = match &attr.meta {
            syn::Meta::List(list) => list.tokens.clone(),
            other => {
                cx.error_spanned_by(
                    other,
                    "on a variant, `#[event]` takes `legacy`: `#[event(legacy)]` keeps a retired event decoded and applied while commands can no longer produce it",
                );
                continue;
            }
        };
        parse_keys(cx, args, &mut written, |meta, key| {
            let key_text = key.to_string();
            match key_text.as_str() {
                LEGACY => {
                    if at_item_end(meta.input) {
                        attrs.legacy = Some(key.clone());
                    } else {
                        cx.error_at(
                            meta.input.span(),
                            "`legacy` takes no value: `#[event(legacy)]`",
                        );
                        skip_item(meta);
                    }
                    None
                }
                IGNORE => {
                    misplaced(
                        cx,
                        meta,
                        key,
                        "`ignore` belongs on the `#[event]` enum itself, not on one of its variants",
                    );
                    None
                }
                k if EVENT_STRUCT_KEYS.contains(&k) => {
                    misplaced(
                        cx,
                        meta,
                        key,
                        &format!(
                            "`{k}` belongs on the event struct that the variant wraps: variant names are Rust-only, the struct's event name is what is stored; on a variant, `#[event]` takes only `legacy`"
                        ),
                    );
                    None
                }
                _ => unknown(cx, meta, key, EVENT, EVENT_VARIANT_KEYS),
            }
        });
    }
    attrs
}

/// Parses every `#[aggregate(...)]` among `attrs` into one set of keys.
pub fn aggregate(cx: &Ctxt, input_attrs: &[syn::Attribute]) -> AggregateAttrs {
    let mut attrs = AggregateAttrs::default();
    let mut written = Written::new(AGGREGATE, AGGREGATE_KEYS);
    for attr in input_attrs {
        if !attr.path().is_ident(AGGREGATE) {
            continue;
        }
        if attrs.attribute.is_none() {
            attrs.attribute = Some(attr.path().clone());
        }
        let args = match &attr.meta {
            syn::Meta::List(list) => list.tokens.clone(),
            other => {
                cx.error_spanned_by(
                    other,
                    "expected `#[aggregate(kind = \"...\", event = YourEvents)]`",
                );
                continue;
            }
        };
        parse_keys(cx, args, &mut written, |meta, key| {
            match key.to_string().as_str() {
                KIND => {
                    let value = parse_value(cx, meta, |input| kind(cx, input));
                    set(&mut attrs.kind, key, value);
                    None
                }
                EVENT => {
                    let value = parse_value(cx, meta, |input| {
                        type_value(
                            input,
                            "`event` takes the `#[event]` enum of this aggregate's events: `event = CartEvent`",
                        )
                    });
                    set(&mut attrs.event, key, value);
                    None
                }
                SNAPSHOT_EVERY => {
                    let value = parse_value(cx, meta, |input| {
                        positive(
                            cx,
                            input,
                            SNAPSHOT_EVERY,
                            "a snapshot every 0 events is no snapshot; use 1 or more, or leave `snapshot_every` out",
                        )
                    });
                    set(&mut attrs.snapshot_every, key, value);
                    None
                }
                SNAPSHOT_VERSION => {
                    let value = parse_value(cx, meta, |input| {
                        positive(cx, input, SNAPSHOT_VERSION, "snapshot versions start at 1")
                    });
                    set(&mut attrs.snapshot_version, key, value);
                    None
                }
                _ => unknown(cx, meta, key, AGGREGATE, AGGREGATE_KEYS),
            }
        });
    }
    attrs.written = written;
    attrs
}

/// Runs `each` on every `key ...` item of a comma-separated list, after reporting a valid
/// key written a second time (whose value is then skipped). Whatever `each` does not
/// consume up to the next comma is reported by syn; a key that is not a plain identifier
/// is reported here.
fn parse_keys(
    cx: &Ctxt,
    args: TokenStream,
    written: &mut Written,
    mut each: impl FnMut(&ParseNestedMeta, &Ident) -> Option<&'static str>,
) {
    let parser = syn::meta::parser(|meta| {
        let Some(key) = meta.path.get_ident().cloned() else {
            cx.error_spanned_by(&meta.path, "expected a key such as `version = 2`");
            skip_item(&meta);
            return Ok(());
        };
        let text = key.unraw().to_string();
        match written.valid.iter().find(|k| **k == text) {
            Some(valid) if written.keys.contains(valid) => {
                cx.error_spanned_by(
                    &key,
                    format!("duplicate `{}` attribute `{valid}`", written.attribute),
                );
                skip_item(&meta);
            }
            Some(valid) => {
                written.keys.push(valid);
                each(&meta, &key);
            }
            None => {
                if let Some(meant) = each(&meta, &key) {
                    written.meant.push(meant);
                }
            }
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(args) {
        cx.syn_error(e);
    }
}

/// Parses `= value` with `value`, recording any error and skipping what is left of it.
/// `value` returns `None` after recording errors of its own.
fn parse_value<T>(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    value: impl FnOnce(ParseStream) -> syn::Result<Option<T>>,
) -> Option<T> {
    if !meta.input.peek(Token![=]) {
        let key = meta
            .path
            .get_ident()
            .map(Ident::to_string)
            .unwrap_or_default();
        cx.error_spanned_by(
            &meta.path,
            format!("`{key}` needs a value: `{}`", example(&key)),
        );
        skip_value(meta.input);
        return None;
    }
    let result = meta.value().and_then(value);
    match result {
        Ok(v) => {
            if !at_item_end(meta.input) {
                cx.error_at(meta.input.span(), "expected `,` after the value");
                skip_value(meta.input);
            }
            v
        }
        Err(e) => {
            cx.syn_error(e);
            skip_value(meta.input);
            None
        }
    }
}

/// Parses `key(...)`, handing the parenthesized tokens to `content` as a parse of their own.
fn parse_list<T>(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    key: &str,
    example: &str,
    content: impl FnOnce(ParseStream) -> syn::Result<Option<T>>,
) -> Option<T> {
    let group = match meta.input.fork().parse::<TokenTree>() {
        Ok(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis => {
            let _ = meta.input.parse::<TokenTree>();
            g
        }
        _ => {
            cx.error_at(
                meta.input.span(),
                format!("`{key}` takes a parenthesized list: `{example}`"),
            );
            skip_value(meta.input);
            return None;
        }
    };
    if group.stream().is_empty() {
        cx.error_at(group.span(), format!("`{key}()` is empty: `{example}`"));
        return None;
    }
    match content.parse2(group.stream()) {
        Ok(v) => v,
        Err(e) => {
            cx.syn_error(e);
            None
        }
    }
}

fn at_item_end(input: ParseStream) -> bool {
    input.is_empty() || input.peek(Token![,])
}

/// Skips what is left of the current item, up to the next top-level comma.
fn skip_value(input: ParseStream) {
    while !at_item_end(input) {
        if input.parse::<TokenTree>().is_err() {
            break;
        }
    }
}

/// Stores a well-formed value under its key.
fn set<T>(slot: &mut Option<Attr<T>>, key: &Ident, value: Option<T>) {
    if let Some(value) = value {
        *slot = Some(Attr {
            key: key.clone(),
            value,
        });
    }
}

/// Reports an unknown key, suggesting the closest valid one, which it returns.
fn unknown(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    key: &Ident,
    attribute: &str,
    valid: &[&'static str],
) -> Option<&'static str> {
    let key_text = key.unraw().to_string();
    let expected = valid
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut message = if valid.len() == 1 {
        format!("unknown `{attribute}` attribute `{key_text}`; expected {expected}")
    } else {
        format!("unknown `{attribute}` attribute `{key_text}`; expected one of {expected}")
    };
    let suggestion = closest(&key_text, valid);
    if let Some(closest) = suggestion.filter(|_| valid.len() > 1) {
        message.push_str(&format!("; did you mean `{closest}`?"));
    }
    cx.error_spanned_by(key, message);
    skip_item(meta);
    suggestion
}

fn misplaced(cx: &Ctxt, meta: &ParseNestedMeta, key: &Ident, message: &str) {
    cx.error_spanned_by(key, message);
    skip_item(meta);
}

/// Skips the value of a key that is not parsed: `= value`, `(...)` or nothing.
fn skip_item(meta: &ParseNestedMeta) {
    if meta.input.peek(Token![=]) {
        let _ = meta.input.parse::<Token![=]>();
    }
    skip_value(meta.input);
}

/// A type as a key's value; a value that is not a type is reported with `message`, which
/// says what the key takes.
fn type_value(input: ParseStream, message: &str) -> syn::Result<Option<syn::Type>> {
    let ty = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), message))?;
    Ok(Some(ty))
}

/// The valid key closest to a mistyped one, if any is close enough to be the intent.
pub fn closest<'a>(key: &str, valid: &[&'a str]) -> Option<&'a str> {
    let key = key.to_lowercase();
    valid
        .iter()
        .map(|v| (edit_distance(&key, v), *v))
        .filter(|(d, v)| *d <= (v.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// Edit distance counting insertions, deletions, substitutions and swaps of two adjacent
/// characters as one edit each (so `verison` is one edit from `version`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

// ---- values ----

/// `"Name"`: a stored event type name.
fn event_name(cx: &Ctxt, input: ParseStream, key: &str) -> syn::Result<Option<LitStr>> {
    let lit: LitStr = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("`{key}` takes a string literal: `{key} = \"ProductAdded\"`"),
        )
    })?;
    Ok(check_event_name(cx, &lit).then_some(lit))
}

/// Checks a stored type name: what a store would refuse is refused here, at compile time.
pub fn check_event_name(cx: &Ctxt, lit: &LitStr) -> bool {
    match event_name_problem(&lit.value()) {
        Some(problem) => {
            cx.error_spanned_by(lit, problem);
            false
        }
        None => true,
    }
}

/// What a store would refuse in a stored type name, if anything.
pub fn event_name_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        Some("an event name cannot be empty".to_owned())
    } else if let Some(c) = value.chars().find(|c| c.is_control()) {
        Some(format!(
            "an event name cannot contain control characters; found {c:?}"
        ))
    } else if value.trim() != value {
        Some("an event name cannot start or end with whitespace".to_owned())
    } else if value.len() > MAX_NAME_LEN {
        Some(format!(
            "an event name is at most {MAX_NAME_LEN} bytes; this one is {}",
            value.len()
        ))
    } else {
        None
    }
}

/// `["A", "B"]`: event type names. Each bad entry is reported; the good ones are kept.
fn name_list(cx: &Ctxt, input: ParseStream, key: &str) -> syn::Result<Option<Vec<LitStr>>> {
    let example = format!("`{key} = [\"OldName\", \"OlderName\"]`");
    let group = match input.parse::<TokenTree>() {
        Ok(TokenTree::Group(g)) if g.delimiter() == Delimiter::Bracket => g,
        Ok(other) => {
            return Err(syn::Error::new(
                other.span(),
                format!("`{key}` takes a list of string literals: {example}"),
            ));
        }
        Err(e) => {
            return Err(syn::Error::new(
                e.span(),
                format!("`{key}` takes a list of string literals: {example}"),
            ));
        }
    };
    let parser = |content: ParseStream| {
        let mut names = Vec::new();
        while !content.is_empty() {
            match content.parse::<LitStr>() {
                Ok(lit) => {
                    if check_event_name(cx, &lit) {
                        names.push(lit);
                    }
                }
                Err(_) => {
                    let span = content.span();
                    cx.error_at(span, format!("expected a string literal: {example}"));
                    skip_value(content);
                }
            }
            if !content.is_empty() {
                content.parse::<Token![,]>()?;
            }
        }
        Ok(names)
    };
    parser.parse2(group.stream()).map(Some)
}

/// An integer literal; a quoted one is refused with the literal to write instead.
fn integer(input: ParseStream, key: &str, example: &str) -> syn::Result<LitInt> {
    if input.peek(LitStr) {
        let quoted: LitStr = input.parse()?;
        let value = quoted.value();
        if !value.is_empty() && value.trim().chars().all(|c| c.is_ascii_digit()) {
            return Err(syn::Error::new(
                quoted.span(),
                format!(
                    "`{key}` takes an integer literal, without quotes: `{key} = {}`",
                    value.trim()
                ),
            ));
        }
        return Err(syn::Error::new(
            quoted.span(),
            format!("`{key}` takes an integer literal: `{key} = {example}`"),
        ));
    }
    input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("`{key}` takes an integer literal: `{key} = {example}`"),
        )
    })
}

/// `N`: a schema version, 1 or more.
fn version(cx: &Ctxt, input: ParseStream, key: &str) -> syn::Result<Option<Number<u32>>> {
    let lit = integer(input, key, "2")?;
    let value: u32 = lit.base10_parse()?;
    if value == 0 {
        cx.error_spanned_by(
            &lit,
            "schema versions start at 1; `version = 0` is not a version",
        );
        return Ok(None);
    }
    Ok(Some(Number { value, lit }))
}

/// `N` with N >= 1 for the snapshot settings.
fn positive<T>(
    cx: &Ctxt,
    input: ParseStream,
    key: &str,
    zero: &str,
) -> syn::Result<Option<Number<T>>>
where
    T: std::str::FromStr + Default + PartialEq,
    T::Err: std::fmt::Display,
{
    let lit = integer(input, key, "100")?;
    let value: T = lit.base10_parse()?;
    if value == T::default() {
        cx.error_spanned_by(&lit, zero);
        return Ok(None);
    }
    Ok(Some(Number { value, lit }))
}

/// `1 => f, 2 => g`: every step is parsed and checked on its own.
fn migrate_steps(cx: &Ctxt, input: ParseStream) -> syn::Result<Option<MigrateSteps>> {
    let mut steps = Vec::new();
    let mut complete = true;
    while !input.is_empty() {
        match migrate_step(cx, input) {
            Ok(Some(step)) => steps.push(step),
            Ok(None) => complete = false,
            Err(e) => {
                cx.syn_error(e);
                skip_value(input);
                complete = false;
            }
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    Ok(Some(MigrateSteps { steps, complete }))
}

fn migrate_step(cx: &Ctxt, input: ParseStream) -> syn::Result<Option<MigrateStep>> {
    let shape = "a migration step is `N => function`, where the function turns a version N payload into version N + 1";
    let lit: LitInt = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), shape))?;
    let value: u32 = lit.base10_parse()?;
    input
        .parse::<Token![=>]>()
        .map_err(|e| syn::Error::new(e.span(), shape))?;
    let function: syn::Expr = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), shape))?;
    if value == 0 {
        cx.error_spanned_by(
            &lit,
            "schema versions start at 1; there is no version 0 to migrate from",
        );
        return Ok(None);
    }
    Ok(Some(MigrateStep {
        from: Number { value, lit },
        function,
    }))
}

/// `"cart"`: the aggregate kind, the part of a stream id before the first `-`.
fn kind(cx: &Ctxt, input: ParseStream) -> syn::Result<Option<LitStr>> {
    let lit: LitStr = input.parse().map_err(|e| {
        syn::Error::new(e.span(), "`kind` takes a string literal: `kind = \"cart\"`")
    })?;
    let value = lit.value();
    let problem = if value.is_empty() {
        Some("the aggregate kind cannot be empty: it is the prefix of every stream id, `{kind}-{id}`".to_owned())
    } else if let Some(c) = value.chars().find(|c| c.is_control()) {
        Some(format!(
            "the aggregate kind cannot contain control characters; found {c:?}"
        ))
    } else if let Some(c) = value.chars().find(|c| c.is_whitespace()) {
        Some(format!(
            "the aggregate kind cannot contain whitespace; found {c:?}"
        ))
    } else if value.contains('-') {
        Some(format!(
            "the aggregate kind cannot contain `-`: stream ids are `{{kind}}-{{id}}` and the kind ends at the first `-`; try `{}`",
            value.replace('-', "_")
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => {
            cx.error_spanned_by(&lit, problem);
            Ok(None)
        }
        None => Ok(Some(lit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(closest("verison", EVENT_STRUCT_KEYS), Some(VERSION));
        assert_eq!(closest("Version", EVENT_STRUCT_KEYS), Some(VERSION));
        assert_eq!(closest("alias", EVENT_STRUCT_KEYS), Some(ALIASES));
        assert_eq!(closest("upcast", EVENT_STRUCT_KEYS), None);
        assert_eq!(closest("kinds", AGGREGATE_KEYS), Some(KIND));
        assert_eq!(
            closest("snapshot_evry", AGGREGATE_KEYS),
            Some(SNAPSHOT_EVERY)
        );
        assert_eq!(closest("colour", AGGREGATE_KEYS), None);
    }

    #[test]
    fn edit_distance_counts_swaps_once() {
        assert_eq!(edit_distance("version", "version"), 0);
        assert_eq!(edit_distance("verison", "version"), 1);
        assert_eq!(edit_distance("name", "names"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
