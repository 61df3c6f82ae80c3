//! The macros of es-core: `#[event]` and `#[derive(Aggregate)]`.
//!
//! Depend on `es-core`, which re-exports both (feature `derive`, on by default); the
//! generated code names `::es_core` paths only and reaches serde through es-core, so a
//! crate that uses the macros needs neither this crate nor serde in its own dependencies
//! (serde_json only to write JSON migrations).
//!
//! A third macro, `#[fingerprint]`, goes on `Apply` handlers: it adds a handler's code to
//! its aggregate's snapshot fingerprint.
//!
//! Mistakes in the attributes are compile errors at the token that is wrong, all reported
//! at once. Rules the macro cannot decide alone, because they involve another type (the
//! name, version and aliases of an `upcast_from` type, names shared by two variants of a
//! set, an ignored name that is also a variant), are const assertions in the generated
//! code, so they are compile errors too.
#![warn(missing_docs)]

// Each macro runs the same phases, and each phase uses only the ones before it: `attr`
// parses the attribute grammar and `ast` the item into a typed model (both record
// mistakes in `ctxt` and go on); `check` applies the rules that span several attributes;
// then either the macro's `expand_*` module writes the code or, when a mistake was
// recorded, `fallback` writes the errors beside stubs built from the same pieces. The
// functions at the end of this file run the phases; `print`, `shape` and `tokens` serve
// them all.
mod ast;
mod attr;
mod check;
mod ctxt;
mod expand_aggregate;
mod expand_event;
mod expand_event_set;
mod expand_fingerprint;
mod fallback;
mod print;
mod shape;
mod tokens;

use ctxt::Ctxt;
use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;

/// Makes a struct an event, or an enum the event set of an aggregate.
///
/// # On a struct: one event type
///
/// The struct gets serde's `Serialize` and `Deserialize` (through es-core: do not derive
/// them yourself; serde's field attributes such as `#[serde(default)]` work as usual) and an
/// [`Event`](../es_core/event/trait.Event.html) impl with a stable type name and schema version.
///
/// The struct has named fields, so that its payload is a JSON object: a later version can
/// add a field (with `#[serde(default)]` or a migration step), and a migration step can
/// edit it by name. An event without data is written with braces, `pub struct
/// CartClosed {}`, and stored as `{}`. Tuple structs (`struct Deposited(u64)`, stored as a
/// bare `5`) and unit structs (`struct CartClosed;`, stored as `null`) are refused with a
/// compile error that shows the struct to write. For the same reason serde's container
/// attributes that store something else are refused: `transparent` (the one field's value
/// bare), `into`, `from` and `try_from` (another type's JSON, whose shape the schema
/// fingerprint does not see), and `tag` (which writes the struct's Rust name into every
/// payload, so that renaming the struct would change what is stored).
///
/// | key | value | default | meaning |
/// | --- | --- | --- | --- |
/// | `name` | string | the Rust name | the type name written to the store (at most 256 bytes, the Rust name too) |
/// | `aliases` | `["..", ..]` | none | names the event was stored under before a rename |
/// | `version` | integer ≥ 1 | 1 | the current schema version |
/// | `migrate` | `(N => f, ..)` | none | JSON steps: `f` turns a version `N` payload into version `N + 1` |
/// | `upcast_from` | a type | none | the previous version, kept as an `#[event]` struct, converted with `From` |
///
/// A struct at `version = N` (N ≥ 2) says how each older version is brought up to date, in
/// exactly one of two ways:
///
/// - `migrate(1 => f, 2 => g, ..)` with one step for every version from 1 to N − 1 (in any
///   order, none missing, none twice, none at or above N). Each step is a
///   `fn(serde_json::Value) -> Result<serde_json::Value, es_core::UpcastError>`; a stored
///   payload runs through the steps from its version on, then is deserialized. A step sees
///   a JSON value, not the stored text, which does not keep everything: an integer beyond
///   the range of `i64` and `u64` becomes the nearest float (a `u128` field then fails to
///   decode, naming the integer), fields of `serde_json::value::RawValue` come out with their keys
///   sorted and their numbers formatted anew, and of a key written twice the last value
///   wins. A version that needs any of these kept exactly is upcast with a typed step.
/// - `upcast_from = Old`, where `Old` is an `#[event]` struct with the same name (or one of
///   this struct's aliases) at version N − 1, and `Self: From<Old>`. A payload older than N
///   is decoded as `Old` from the stored bytes, through `Old`'s own chain (JSON steps or
///   typed), then converted; a chain of typed steps reads a payload exactly as its own
///   version would. The struct must also answer to every alias of `Old`: events stored
///   under them decode through it, so copy `Old`'s aliases onto it (a compile error names
///   one that is missing).
///
/// The two cannot be mixed on one struct: with `upcast_from`, every older version is the
/// old type's business, so JSON steps for versions below N − 1 go on the old type.
/// Chains compose across types: version 1 migrated by JSON into a version 2 struct, which a
/// version 3 struct upcasts from.
///
/// ```
/// use es_core::prelude::*;
/// use es_core::UpcastError;
/// use serde_json::Value;
///
/// /// Version 1 stored `{"product": ..}`; version 2 added the quantity.
/// #[event(name = "ProductAdded", version = 2, migrate(1 => add_quantity))]
/// #[derive(Debug)]
/// pub struct ProductAddedV2 { pub product: String, pub quantity: u32 }
///
/// fn add_quantity(mut v: Value) -> Result<Value, UpcastError> {
///     let object = v.as_object_mut().ok_or_else(|| UpcastError::new("expected an object"))?;
///     object.insert("quantity".into(), 1.into());
///     Ok(v)
/// }
///
/// /// Version 3 added the unit price; the type was `ItemAdded` before a rename.
/// #[event(version = 3, upcast_from = ProductAddedV2, aliases = ["ItemAdded"])]
/// #[derive(Debug, PartialEq)]
/// pub struct ProductAdded { pub product: String, pub quantity: u32, pub unit_price_cents: u64 }
///
/// impl From<ProductAddedV2> for ProductAdded {
///     fn from(old: ProductAddedV2) -> Self {
///         ProductAdded { product: old.product, quantity: old.quantity, unit_price_cents: 0 }
///     }
/// }
///
/// let v1 = ProductAdded::decode_stored(1, br#"{"product":"tea"}"#).unwrap();
/// assert_eq!(v1, ProductAdded { product: "tea".into(), quantity: 1, unit_price_cents: 0 });
/// assert_eq!((ProductAdded::NAME, ProductAdded::VERSION), ("ProductAdded", 3));
/// ```
///
/// # On an enum: the event set of an aggregate
///
/// Each variant wraps one `#[event]` struct: `Name(Name)`. The enum gets
/// [`EventSet`](../es_core/event/trait.EventSet.html) (decoding by name or alias, upcasting, and
/// a typed error for anything else), `From<Struct>` and `IntoEvents<Enum>` for each
/// struct, so that a command may return a struct, and the dispatch to `Apply` handlers
/// that `#[derive(Aggregate)]` uses.
///
/// **Variant names are Rust-only.** An event is stored under its struct's event name (the
/// struct's `name = ".."`, or its Rust name), never under the variant's: in
/// `enum CartEvent { Added(ProductAdded) }` the event is stored and decoded as
/// `"ProductAdded"`, and renaming the variant changes nothing in the store, the schema
/// catalogue or snapshot fingerprints. To rename a stored event, rename the struct and keep
/// the old name with `name = ".."` or `aliases = [..]` on the struct.
///
/// | key | value | meaning |
/// | --- | --- | --- |
/// | `ignore` | `["..", ..]` | retired event types: decoding returns `Ok(None)` and they are skipped |
///
/// On a variant, `#[event(...)]` takes one key:
///
/// | key | value | meaning |
/// | --- | --- | --- |
/// | `legacy` | none | an event that history holds but commands no longer produce: decoded, upcast and applied like any other, but its struct gets no `From` or `IntoEvents` conversion into the set, so a command that returns it does not compile |
///
/// `legacy` is for an event replaced by others (split in two, say) whose stored
/// occurrences must still count: keep its struct and its `Apply` handler, mark the variant,
/// and add the new events (the recipe is in `docs/schema-safety.md` of the source repository). An event
/// whose stored occurrences no longer matter goes in `ignore` instead, with its variant
/// removed. The variant itself can still be built by hand, as tests and fixtures do.
///
/// ```
/// use es_core::prelude::*;
///
/// /// Replaced by `ItemAdded` and `ItemRemoved`; kept so that stored swaps still load.
/// #[event]
/// #[derive(Debug)]
/// pub struct ItemSwapped { pub added: String, pub removed: String }
///
/// #[event]
/// #[derive(Debug)]
/// pub struct ItemAdded { pub item: String }
///
/// #[event]
/// #[derive(Debug)]
/// pub struct ItemRemoved { pub item: String }
///
/// #[event]
/// #[derive(Debug)]
/// pub enum CartEvent {
///     #[event(legacy)]
///     ItemSwapped(ItemSwapped),
///     ItemAdded(ItemAdded),
///     ItemRemoved(ItemRemoved),
/// }
///
/// let stored = br#"{"added":"tea","removed":"milk"}"#;
/// let swapped = CartEvent::decode("ItemSwapped", 1, stored).unwrap();
/// assert!(matches!(swapped, Some(CartEvent::ItemSwapped(ItemSwapped { .. }))));
/// // `CartEvent::from(ItemSwapped { .. })` does not compile; the new events convert.
/// let added = CartEvent::from(ItemAdded { item: "tea".into() });
/// assert_eq!(added.event_type(), "ItemAdded");
/// ```
///
/// Two variants may not share a name or an alias, and an ignored name may not be a
/// variant's name or alias: both are compile errors. A variant may not carry `#[cfg(..)]`
/// either: events stored under its name must load in every build.
///
/// ```
/// use es_core::prelude::*;
///
/// #[event]
/// #[derive(Debug, Clone, PartialEq)]
/// pub struct CartCreated { pub user_id: String }
///
/// #[event]
/// #[derive(Debug, Clone, PartialEq)]
/// pub struct CartCleared {}
///
/// #[event(ignore = ["CartViewed"])]
/// #[derive(Debug, Clone, PartialEq)]
/// pub enum CartEvent {
///     CartCreated(CartCreated),
///     CartCleared(CartCleared),
/// }
///
/// let encoded = CartEvent::from(CartCleared {}).encode().unwrap();
/// assert_eq!((encoded.event_type, encoded.schema_version), ("CartCleared", 1));
/// let decoded = CartEvent::decode("CartCleared", 1, &encoded.payload).unwrap();
/// assert_eq!(decoded, Some(CartEvent::CartCleared(CartCleared {})));
/// assert_eq!(CartEvent::decode("CartViewed", 4, b"{}").unwrap(), None);
/// assert!(CartEvent::decode("CartExploded", 1, b"{}").is_err());
/// ```
///
/// Generic structs and enums are refused: a stored event must not depend on a type
/// parameter.
///
/// # Schema descriptions
///
/// Each struct also gets `Event::SCHEMA`: its name, version, aliases, its fields (names,
/// types and serde attributes as written) and a fingerprint of them; each enum gets
/// `EventSet::SCHEMA`, the list of its events and ignored names. The schema check of
/// es-core's `testing` feature compares them with a checked-in catalogue and runs golden
/// payloads of every stored version through the upcast chain (see
/// `docs/schema-safety.md` in the source repository).
///
/// ```
/// use es_core::prelude::*;
///
/// #[event(name = "CartCreated", aliases = ["BasketCreated"])]
/// pub struct CartCreated { pub user_id: String }
///
/// #[event(ignore = ["CartViewed"])]
/// pub enum CartEvent { CartCreated(CartCreated) }
///
/// let set = CartEvent::SCHEMA.unwrap();
/// assert_eq!(set.ignored, ["CartViewed"]);
/// let created = set.event("BasketCreated").unwrap();
/// assert_eq!((created.name, created.version), ("CartCreated", 1));
/// assert_eq!(created.fields.unwrap()[0].to_string(), "user_id: String");
/// ```
#[proc_macro_attribute]
pub fn event(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let item = match syn::parse::<syn::Item>(input.clone()) {
        Ok(item) => item,
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(proc_macro2::TokenStream::from(input));
            return out.into();
        }
    };
    match &item {
        syn::Item::Struct(s) => event_struct(args, s),
        syn::Item::Enum(e) => event_enum(args, e),
        other => {
            let error = syn::Error::new_spanned(
                ast::item_keyword(other),
                "`#[event]` goes on a struct (one event type) or on an enum whose variants wrap `#[event]` structs (an aggregate's event set)",
            );
            let mut out = error.to_compile_error();
            quote::ToTokens::to_tokens(&item, &mut out);
            out
        }
    }
    .into()
}

/// Implements `es_core::Aggregate` for the state of an aggregate.
///
/// | key | value | default | meaning |
/// | --- | --- | --- | --- |
/// | `kind` | string | required | the stream prefix: instance `42` lives in stream `{kind}-42`; not empty, no `-`, whitespace or control characters; one kind per aggregate type in a store (two types of one kind read each other's streams, and a load fails with "unknown event type" at the first event of the other's set) |
/// | `event` | a type | required | the `#[event]` enum of the aggregate's events |
/// | `snapshot_every` | integer ≥ 1 | no snapshots | snapshot each time a command crosses a multiple of this many events |
/// | `snapshot_version` | integer ≥ 1 | 1 | the snapshot schema version (requires `snapshot_every`); raise it when a change the fingerprint cannot see alters what a state means |
///
/// With `snapshot_every`, the state is saved as JSON through serde, so the type must
/// implement `serde::Serialize` and `serde::Deserialize` (derive them; this needs `serde`
/// with its `derive` feature among your dependencies). A field that serde skips
/// (`#[serde(skip)]`, `skip_serializing`, `skip_deserializing`) holds its default in a state
/// restored from a snapshot, where a replay gives it its value: it is a compile error
/// unless the field says it may differ, with `#[aggregate(transient)]` (a cache, a count
/// of what one load folded).
///
/// # What invalidates a snapshot
///
/// Each snapshot is stored with the `snapshot_version` and a fingerprint; a snapshot whose
/// version or fingerprint differs from the code's is ignored and the state is rebuilt from
/// events (a cache miss, never an error). The fingerprint changes when any of these does:
///
/// - the **state type's definition**: field (or variant) names, types and attributes, and
///   the container's attributes other than derives (doc comments never count);
/// - the **event set's schema**: any event's name, version, aliases or stored shape
///   (fields, types, serde attributes), and the ignored names;
/// - the code of every **`Apply` handler marked `#[fingerprint]`** (its tokens: a
///   renamed variable counts, reformatting and ordinary comments do not).
///
/// It cannot see: handlers without `#[fingerprint]`, functions, methods and constants
/// that handlers call, the definitions of the types that fields use (a nested struct, a
/// type alias), serde behaviour of those types, and the code of the upcasters (the
/// functions of `migrate(..)`, the `From` conversions of `upcast_from`): fixing a
/// migration that computed a wrong value leaves the snapshots folded through it in use.
/// When such a change alters what a state means, raise `snapshot_version`: an explicit
/// `snapshot_version` always wins, a snapshot written under another version is never
/// used, whatever the fingerprint says.
///
/// `Aggregate::apply_event` hands each event to the aggregate's `Apply<E>` impl for that
/// event's struct; an event without a handler is a compile error naming the aggregate,
/// the event and the impl to write. A handler may call another with `self.apply(&event)`.
/// The type must implement `Default` (the state before any event) and have no generic
/// parameters.
///
/// ```
/// use es_core::prelude::*;
/// use es_core::testing::AggregateTest;
///
/// #[event]
/// #[derive(Debug, Clone)]
/// pub struct Deposited { pub amount: u64 }
///
/// #[event]
/// #[derive(Debug, Clone)]
/// pub struct Withdrawn { pub amount: u64 }
///
/// #[event]
/// #[derive(Debug, Clone)]
/// pub enum AccountEvent { Deposited(Deposited), Withdrawn(Withdrawn) }
///
/// #[derive(Debug, Default, Aggregate, serde::Serialize, serde::Deserialize)]
/// #[aggregate(kind = "account", event = AccountEvent, snapshot_every = 100)]
/// pub struct Account { balance: u64 }
///
/// impl Apply<Deposited> for Account {
///     fn apply(&mut self, e: &Deposited) { self.balance += e.amount }
/// }
/// impl Apply<Withdrawn> for Account {
///     fn apply(&mut self, e: &Withdrawn) { self.balance -= e.amount }
/// }
///
/// impl Account {
///     pub fn withdraw(&self, amount: u64) -> Result<Withdrawn, String> {
///         if amount > self.balance { return Err(format!("balance is {}", self.balance)); }
///         Ok(Withdrawn { amount })
///     }
/// }
///
/// assert_eq!(Account::stream_id("7"), "account-7");
/// assert_eq!(Account::snapshot_policy(), Some(es_core::SnapshotPolicy { every: 100, snapshot_version: 1 }));
/// let account = AggregateTest::<Account>::given(Deposited { amount: 50 })
///     .when(|a| a.withdraw(20))
///     .then_expect_events(Withdrawn { amount: 20 });
/// assert_eq!(account.balance, 30);
/// ```
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    match syn::parse::<syn::DeriveInput>(input) {
        Ok(input) => aggregate(&input),
        Err(e) => e.to_compile_error(),
    }
    .into()
}

/// Adds the code of an `Apply` handler to its aggregate's snapshot fingerprint.
///
/// A derive cannot see impl blocks other than its own, so a snapshot taken before a
/// handler changed would otherwise be reused, holding a state that the new handler would
/// not have built. On `impl Apply<E> for A { .. }` this sets `Apply::FINGERPRINT` to a
/// hash of the block's tokens (doc comments aside), and `#[derive(Aggregate)]` with
/// `snapshot_every` combines the fingerprints of all of `A`'s handlers: change one and
/// older snapshots of `A` are ignored, the state is rebuilt from events.
///
/// It sees the block only: helper functions the handler calls are not part of it (raise
/// `snapshot_version` when one of them changes meaning).
///
/// ```
/// use es_core::prelude::*;
///
/// #[event]
/// pub struct Deposited { pub amount: u64 }
///
/// #[event]
/// pub enum AccountEvent { Deposited(Deposited) }
///
/// #[derive(Default, Aggregate, serde::Serialize, serde::Deserialize)]
/// #[aggregate(kind = "account", event = AccountEvent, snapshot_every = 100)]
/// pub struct Account { balance: u64 }
///
/// #[fingerprint]
/// impl Apply<Deposited> for Account {
///     fn apply(&mut self, e: &Deposited) { self.balance += e.amount }
/// }
///
/// assert_ne!(<Account as Apply<Deposited>>::FINGERPRINT, 0);
/// ```
#[proc_macro_attribute]
pub fn fingerprint(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    match syn::parse::<syn::Item>(input.clone()) {
        Ok(item) => handler(&args, &item).into(),
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(proc_macro2::TokenStream::from(input));
            out.into()
        }
    }
}

fn event_struct(args: TokenStream2, item: &syn::ItemStruct) -> TokenStream2 {
    let cx = Ctxt::new();
    let event = ast::EventStruct::from_item(&cx, args, item);
    check::event_struct(&cx, &event);
    match cx.check() {
        Ok(()) => expand_event::expand(&event),
        Err(errors) => fallback::event_struct(&event, errors),
    }
}

fn event_enum(args: TokenStream2, item: &syn::ItemEnum) -> TokenStream2 {
    let cx = Ctxt::new();
    let set = ast::EventEnum::from_item(&cx, args, item);
    check::event_enum(&cx, &set);
    match cx.check() {
        Ok(()) => expand_event_set::expand(&set),
        Err(errors) => fallback::event_enum(&set, errors),
    }
}

fn aggregate(input: &syn::DeriveInput) -> TokenStream2 {
    let cx = Ctxt::new();
    let aggregate = ast::AggregateInput::from_input(&cx, input);
    check::aggregate(&cx, &aggregate);
    match cx.check() {
        Ok(()) => expand_aggregate::expand(&aggregate),
        Err(errors) => fallback::aggregate(&aggregate, errors),
    }
}

fn handler(args: &TokenStream2, item: &syn::Item) -> TokenStream2 {
    let cx = Ctxt::new();
    let handler = ast::handler(&cx, args, item);
    if let Some(handler) = handler {
        check::handler(&cx, handler);
    }
    match (cx.check(), handler) {
        (Ok(()), Some(handler)) => expand_fingerprint::expand(handler),
        (Err(errors), _) => fallback::handler(item, errors),
        (Ok(()), None) => unreachable!("an item other than an impl is reported"),
    }
}
