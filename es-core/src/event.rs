//! Events, event sets and the upcasting of old event schemas.
//!
//! An [`Event`] is one serde type with a stable *type name* and a *schema version*. An
//! [`EventSet`] is the enum of one aggregate's events: it encodes an event to
//! `(type, version, JSON payload)` and decodes any stored triple back, running the upcast
//! chain for old versions. `#[event]` generates both; the traits are public so that a hand
//! written implementation is possible too.

use crate::schema::{EventSchema, SetSchema};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

/// One kind of event: a serde type with a stable type name and a schema version.
///
/// The type name is what the store records, so renaming the Rust type never breaks stored
/// history. Payloads stored with an older `VERSION` are brought up to date by
/// [`Event::upcast_stored`]: by default it parses them into a JSON value and hands that to
/// [`Event::upcast`]; `#[event(upcast_from = Old)]` overrides it to read the stored bytes as
/// `Old` instead.
///
/// `#[event]` implements this trait; a hand-written implementation looks like this:
///
/// ```
/// use es_core::{Event, UpcastError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Deposited { amount_cents: u64 }
///
/// impl Event for Deposited {
///     const NAME: &'static str = "Deposited";
///     const VERSION: u32 = 2;
///     fn upcast(version: u32, mut payload: serde_json::Value) -> Result<Self, UpcastError> {
///         // version 1 stored whole units under `amount`
///         if version == 1 {
///             let amount = payload["amount"].as_u64().ok_or_else(|| UpcastError::new("missing `amount`"))?;
///             payload = serde_json::json!({ "amount_cents": amount * 100 });
///         }
///         es_core::event::deserialize_payload(payload)
///     }
/// }
///
/// let old = br#"{"amount":3}"#;
/// let e = Deposited::decode_stored(1, old).unwrap();
/// assert_eq!(e.amount_cents, 300);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an event",
    note = "annotate the struct with `#[event]` (or implement `es_core::Event` by hand)"
)]
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stable type name written to the store.
    const NAME: &'static str;
    /// The current schema version (1 for a type that never changed).
    const VERSION: u32;
    /// Names this event was stored under before it was renamed.
    const ALIASES: &'static [&'static str] = &[];
    /// Whether a payload of the current version is always a JSON object of fields.
    /// `#[event]` sets it (its structs have named fields); then a payload stored at the
    /// current version that is anything else is refused as a payload error, instead of
    /// being read by serde's derive, which takes an array too, by the order the fields are
    /// declared in (an order the schema check leaves free to change). An older version's
    /// payload goes to the upcast as it was stored. A hand-written event whose payload is
    /// no object (a bare string, an enum) leaves it `false`, the default.
    const OBJECT_PAYLOAD: bool = false;
    /// The stored shape of the current version, for the schema check and snapshot
    /// fingerprints ([`crate::schema`]). `#[event]` describes the fields; the default
    /// knows only the name, version and aliases.
    const SCHEMA: EventSchema =
        EventSchema::new(Self::NAME, Self::VERSION).with_aliases(Self::ALIASES);

    /// Brings a payload stored at `version` (lower than [`Event::VERSION`]) up to date.
    ///
    /// A JSON value is not the stored text: see [`Event::upcast_stored`] for what it loses.
    /// The default knows no older version and refuses every call.
    fn upcast(version: u32, payload: Value) -> Result<Self, UpcastError> {
        let _ = payload;
        Err(UpcastError::new(format!(
            "`{}` has no upcaster from version {version} to version {}",
            Self::NAME,
            Self::VERSION
        )))
    }

    /// Decodes a JSON value stored at `version`: deserialized directly at the current
    /// version, upcast from an older one, refused from a newer one.
    fn from_value(version: u32, payload: Value) -> Result<Self, DecodeError> {
        check_version::<Self>(version)?;
        if version == Self::VERSION {
            if Self::OBJECT_PAYLOAD && !payload.is_object() {
                return Err(payload_error::<Self>(version, not_an_object(&payload)));
            }
            serde_json::from_value(payload).map_err(|e| payload_error::<Self>(version, e))
        } else {
            Self::upcast(version, payload).map_err(|source| DecodeError::Upcast {
                event_type: Self::NAME.to_owned(),
                version,
                target_version: Self::VERSION,
                source,
            })
        }
    }

    /// Encodes the event as a store records it: [`Event::NAME`], the current
    /// [`Event::VERSION`] and the JSON payload. The inverse of [`Event::decode_stored`].
    ///
    /// ```
    /// # use es_core::doc_support::Deposited;
    /// use es_core::Event;
    ///
    /// let encoded = Deposited { amount: 5 }.encode_stored().unwrap();
    /// assert_eq!((encoded.event_type, encoded.schema_version), ("Deposited", 1));
    /// assert_eq!(Deposited::decode_stored(1, &encoded.payload).unwrap().amount, 5);
    /// ```
    fn encode_stored(&self) -> Result<EncodedEvent, EncodeError> {
        EncodeError::encode(self)
    }

    /// Decodes payload bytes stored at `version`. The current version is parsed straight
    /// into `Self`; older versions go through [`Event::upcast_stored`].
    fn decode_stored(version: u32, payload: &[u8]) -> Result<Self, DecodeError> {
        check_version::<Self>(version)?;
        if version == Self::VERSION {
            let decoded = if Self::OBJECT_PAYLOAD {
                from_json_object(payload)
            } else {
                from_json(payload)
            };
            decoded.map_err(|e| payload_error::<Self>(version, e))
        } else {
            Self::upcast_stored(version, payload)
        }
    }

    /// Decodes payload bytes stored at `version`, lower than [`Event::VERSION`] (called by
    /// [`Event::decode_stored`], which checks the version first).
    ///
    /// The default parses the bytes into a JSON value and calls [`Event::from_value`], so
    /// that [`Event::upcast`] (the JSON steps of `migrate(..)`) can edit it. A value is not
    /// the stored text, and the default refuses what it would silently change:
    ///
    /// - an integer beyond the range of `i64` and `u64` becomes the nearest float: a field
    ///   that takes a float gets what a direct parse gives it too, and one that takes such
    ///   an integer exactly (`u128`, `i128`) fails, with an [`UpcastError`] that names the
    ///   integer and says to use a typed step;
    /// - fields of `serde_json::value::RawValue` are written again from the value: their
    ///   key order (keys come out sorted) and number formatting (`1.50` becomes `1.5`) are
    ///   not kept;
    /// - a key written twice keeps its last value, where the current version's parse
    ///   refuses a duplicate field.
    ///
    /// `#[event(upcast_from = Old)]` overrides it: the bytes are decoded by `Old`'s own
    /// `decode_stored` and the result converted with `From`. A payload stored at `Old`'s
    /// version is thus parsed straight into `Old`, and all of the above is kept or refused
    /// exactly as at the current version; an older one takes `Old`'s own chain.
    fn upcast_stored(version: u32, payload: &[u8]) -> Result<Self, DecodeError> {
        let value: Value = from_json(payload).map_err(|e| payload_error::<Self>(version, e))?;
        Self::from_value(version, value).map_err(|e| match e {
            // the value the steps made did not fit the type: a field that takes an integer
            // beyond 64 bits exactly (`u128`, `i128`) found a float there; say why. (A field
            // that takes a float gets the float a direct parse gives too; with serde_json's
            // `arbitrary_precision` the value holds the integer exactly and nothing fails.
            // A failed step keeps its own error.)
            DecodeError::Upcast {
                event_type,
                version,
                target_version,
                source,
            } if source.step().is_none() => {
                let source = match integer_beyond_64_bits(payload) {
                    Some(integer) => UpcastError::new(format!(
                        "{}; the payload holds the integer {}, beyond the 64-bit range that a JSON migration step carries exactly (it becomes a float): bring this version up to date with a typed step (`upcast_from = ..`), which reads the stored bytes as they are",
                        source.message(),
                        shortened(integer)
                    )),
                    None => source,
                };
                DecodeError::Upcast {
                    event_type,
                    version,
                    target_version,
                    source,
                }
            }
            e => e,
        })
    }
}

/// The first integer literal of a JSON text (one that parsed) outside the ranges of `i64`
/// and `u64`: what serde_json turns into an `f64` when it builds a [`Value`]. Strings are
/// skipped, escapes included; a number with a fraction or an exponent is a float already.
fn integer_beyond_64_bits(json: &[u8]) -> Option<&str> {
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                i += 1;
                while i < json.len() {
                    match json[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                let mut integer = true;
                i += 1;
                while i < json.len()
                    && matches!(json[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    integer &= json[i].is_ascii_digit();
                    i += 1;
                }
                if !integer {
                    continue;
                }
                // the text parsed as JSON, so the literal is ASCII
                let literal = std::str::from_utf8(&json[start..i]).unwrap_or_default();
                let fits = if literal.starts_with('-') {
                    literal.parse::<i64>().is_ok()
                } else {
                    literal.parse::<u64>().is_ok()
                };
                if !fits {
                    return Some(literal);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// A number for a message: a literal of thousands of digits is cut.
fn shortened(literal: &str) -> String {
    const SHOWN: usize = 60;
    if literal.len() <= SHOWN {
        literal.to_owned()
    } else {
        format!(
            "{}.. ({} digits)",
            &literal[..SHOWN],
            literal.trim_start_matches('-').len()
        )
    }
}

fn check_version<E: Event>(version: u32) -> Result<(), DecodeError> {
    if version == 0 {
        return Err(DecodeError::InvalidVersion {
            event_type: E::NAME.to_owned(),
            version,
        });
    }
    if version > E::VERSION {
        return Err(DecodeError::FutureVersion {
            event_type: E::NAME.to_owned(),
            version,
            supported: E::VERSION,
        });
    }
    Ok(())
}

/// Parses JSON bytes: one UTF-8 check of the whole text, then a parse that does not check
/// each string again (about a fifth fewer instructions than parsing the bytes for a
/// typical event). Bytes that are not UTF-8 are parsed as bytes, for serde_json's own
/// error with its line and column.
pub(crate) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// [`from_json`] of a payload that must be a JSON object of fields
/// ([`Event::OBJECT_PAYLOAD`]): serde's derive would also read an array, by the order the
/// fields are declared in (which the schema check leaves free to change), so anything but
/// an object is refused.
pub(crate) fn from_json_object<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{') {
        // the parse names what the payload is, or where it is not JSON
        return match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => Err(not_an_object(&value)),
            Err(e) => Err(e),
        };
    }
    from_json(bytes)
}

/// The error for a payload that is not a JSON object.
pub(crate) fn not_an_object(value: &Value) -> serde_json::Error {
    use serde::de::{Error, Unexpected};
    let found = match value {
        Value::Null => Unexpected::Other("null"),
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(_) => Unexpected::Other("a number"),
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    };
    serde_json::Error::invalid_type(found, &"a JSON object of the event's fields")
}

fn payload_error<E: Event>(version: u32, e: serde_json::Error) -> DecodeError {
    DecodeError::Payload {
        event_type: E::NAME.to_owned(),
        version,
        source: e.into(),
    }
}

/// Deserializes an upcast JSON value into the current type, for hand-written upcasters.
pub fn deserialize_payload<E: DeserializeOwned>(value: Value) -> Result<E, UpcastError> {
    serde_json::from_value(value).map_err(|e| UpcastError::new(e.to_string()))
}

/// Runs a chain of JSON migrations: `steps[i]` turns version `i + 1` into version `i + 2`.
///
/// Generated code for `migrate(1 => f, 2 => g)` calls this with `[f, g]`; the payload
/// stored at `version` enters the chain at `steps[version - 1]`.
pub fn run_migrations(
    event_type: &str,
    version: u32,
    steps: &[MigrationFn],
    mut payload: Value,
) -> Result<Value, UpcastError> {
    let first = (version as usize)
        .checked_sub(1)
        .filter(|&i| i < steps.len());
    let Some(first) = first else {
        return Err(UpcastError::new(format!(
            "`{event_type}` has no migration from version {version}"
        )));
    };
    for (index, step) in steps.iter().enumerate().skip(first) {
        let from = index as u32 + 1;
        // a step written for the payloads it expects may panic on stored data it did not
        // expect (`v["qty"] = ..` on an array): that is the step's error on this event,
        // not a panic of the load (with `panic = "abort"`, the process ends regardless)
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(payload)));
        payload = match ran {
            Ok(stepped) => stepped.map_err(|e| e.at_step(from))?,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                let message = crate::store::shown(&message);
                let error = UpcastError::new(format!("the step panicked: {message}"));
                return Err(error.at_step(from));
            }
        };
    }
    Ok(payload)
}

/// A JSON-level migration step: the stored value of version N becomes the value of N + 1.
/// A step is given the value as it was stored, or as the step before returned it; for an
/// `#[event]` struct the last step must return a JSON object of the current version's
/// fields (anything else is an error naming the event). A step that panics on a value it
/// did not expect fails the decode with an [`UpcastError`] naming the step, instead of
/// panicking (unless the build aborts on panics); the panic still goes through the panic
/// hook, which prints it by default, on every decode of that event. Write steps that
/// return an error instead: `v.as_object_mut()` says whether the value is an object,
/// where `v["field"] = ..` panics on an array and turns `null` into an object.
///
/// A step sees a [`Value`], not the stored text (see [`Event::upcast_stored`]): an
/// integer beyond the range of `i64` and `u64` is a float there (a `u128` field then fails
/// to decode, with an error that names the integer), fields of
/// `serde_json::value::RawValue` come out with their keys sorted and their numbers
/// formatted anew, and of a key written twice only the last value is seen. A
/// version whose payloads need any of these kept exactly is upcast with a typed step
/// (`upcast_from = Old`) instead.
pub type MigrationFn = fn(Value) -> Result<Value, UpcastError>;

/// The encoded form of one event: what a store records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    /// Stable type name ([`Event::NAME`]).
    pub event_type: &'static str,
    /// Schema version ([`Event::VERSION`]).
    pub schema_version: u32,
    /// UTF-8 JSON payload.
    pub payload: Vec<u8>,
}

/// The enum of one aggregate's events.
///
/// `#[event]` on an enum whose variants each wrap one `#[event]` struct implements it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event set",
    label = "not an event set",
    note = "annotate the enum of this aggregate's events with `#[event]`"
)]
pub trait EventSet: Sized + Send + Sync + 'static {
    /// Every current type name of the set, in declaration order.
    const EVENT_TYPES: &'static [&'static str];
    /// The set's events and ignored names, for the schema check and snapshot
    /// fingerprints ([`crate::schema`]). `#[event]` generates it; `None` for a set it
    /// did not describe.
    const SCHEMA: Option<SetSchema> = None;

    /// The type name of this event.
    fn event_type(&self) -> &'static str;

    /// The schema version this event is encoded at (always the current one).
    fn schema_version(&self) -> u32;

    /// Serializes the event.
    fn encode(&self) -> Result<EncodedEvent, EncodeError>;

    /// Decodes a stored event, upcasting old versions.
    ///
    /// Returns `Ok(None)` for a type the set declares ignored (a retired event); an
    /// unknown type, a version newer than the code, a failed migration or a payload that
    /// does not fit are errors.
    fn decode(event_type: &str, version: u32, payload: &[u8]) -> Result<Option<Self>, DecodeError>;
}

/// Why an event could not be serialized.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode event `{event_type}`: {source}")]
pub struct EncodeError {
    /// The event's type name.
    pub event_type: &'static str,
    /// What serde reported.
    #[source]
    pub source: JsonError,
}

/// An error of serde_json, kept whole as the source of [`DecodeError::Payload`] and
/// [`EncodeError`] (cheap to clone; equal when serde reported the same thing at the same
/// place).
#[derive(Debug, Clone)]
pub struct JsonError(std::sync::Arc<serde_json::Error>);

impl JsonError {
    /// serde_json's error.
    pub fn inner(&self) -> &serde_json::Error {
        &self.0
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        JsonError(std::sync::Arc::new(e))
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl PartialEq for JsonError {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&*self.0, &*other.0);
        (a.classify(), a.line(), a.column()) == (b.classify(), b.line(), b.column())
            && a.to_string() == b.to_string()
    }
}

impl Eq for JsonError {}

impl EncodeError {
    /// Serializes `event` to JSON, naming the event type on failure.
    pub fn encode<E: Event>(event: &E) -> Result<EncodedEvent, EncodeError> {
        encode_json(event)
            .map(|payload| EncodedEvent {
                event_type: E::NAME,
                schema_version: E::VERSION,
                payload,
            })
            .map_err(|e| EncodeError {
                event_type: E::NAME,
                source: e.into(),
            })
    }
}

/// Serializes `value` to JSON in a buffer kept per thread, then copies it out at its
/// exact size: `serde_json::to_vec` starts at 128 bytes and grows by reallocating, which
/// for a typical event of 150 to 250 bytes cost more than the copy. A serializer that
/// encodes another event inside its own (the buffer is then in use) gets a fresh one.
fn encode_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    /// A buffer grown past this by a large event is not kept.
    const KEPT: usize = 64 * 1024;
    BUFFER.with(|cell| {
        let Ok(mut buffer) = cell.try_borrow_mut() else {
            return serde_json::to_vec(value);
        };
        buffer.clear();
        let result =
            serde_json::to_writer(&mut *buffer, value).map(|()| buffer.as_slice().to_vec());
        if buffer.capacity() > KEPT {
            *buffer = Vec::new();
        }
        result
    })
}

/// Why a stored event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The type name is neither a variant, an alias nor a declared ignored type.
    #[error("unknown event type `{event_type}` (schema version {version}) for this event set")]
    UnknownType {
        /// Stored type name.
        event_type: String,
        /// Stored schema version.
        version: u32,
    },
    /// The stored version is newer than the code knows.
    #[error(
        "event `{event_type}` is stored at schema version {version}, but this code knows versions up to {supported}"
    )]
    FutureVersion {
        /// Type name.
        event_type: String,
        /// Stored schema version.
        version: u32,
        /// Highest version the code handles.
        supported: u32,
    },
    /// Schema versions start at 1.
    #[error("event `{event_type}` has schema version {version}; versions start at 1")]
    InvalidVersion {
        /// Type name.
        event_type: String,
        /// Stored schema version.
        version: u32,
    },
    /// A migration step failed.
    #[error("cannot upcast `{event_type}` from version {version} to {target_version}: {source}")]
    Upcast {
        /// Type name.
        event_type: String,
        /// Stored schema version.
        version: u32,
        /// The version the chain was heading for.
        target_version: u32,
        /// What the step reported.
        #[source]
        source: UpcastError,
    },
    /// The payload is not valid JSON or does not fit the type.
    #[error("payload of `{event_type}` version {version} does not fit the type: {source}")]
    Payload {
        /// Type name.
        event_type: String,
        /// Schema version the payload was read at.
        version: u32,
        /// What serde reported.
        #[source]
        source: JsonError,
    },
}

/// The error a migration step returns.
///
/// ```
/// use es_core::UpcastError;
/// fn add_currency(mut v: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
///     let obj = v.as_object_mut().ok_or_else(|| UpcastError::new("expected an object"))?;
///     obj.insert("currency".into(), "EUR".into());
///     Ok(v)
/// }
/// assert!(add_currency(serde_json::json!(3)).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpcastError {
    message: String,
    step: Option<u32>,
}

impl UpcastError {
    /// An error with a message saying what was wrong with the old payload.
    pub fn new(message: impl fmt::Display) -> Self {
        UpcastError {
            message: message.to_string(),
            step: None,
        }
    }

    /// An error for a field the old payload lacks.
    pub fn missing_field(field: &str) -> Self {
        UpcastError::new(format!("missing field `{field}`"))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The version whose migration step failed, when known.
    pub fn step(&self) -> Option<u32> {
        self.step
    }

    fn at_step(mut self, from: u32) -> Self {
        self.step.get_or_insert(from);
        self
    }
}

impl fmt::Display for UpcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => write!(f, "migration {step} => {}: {}", step + 1, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for UpcastError {}

impl From<serde_json::Error> for UpcastError {
    fn from(e: serde_json::Error) -> Self {
        UpcastError::new(e)
    }
}

/// Conversion of what a command returns into the events to append.
///
/// A command may return one event struct, the event set itself, a `Vec`, an `Option`, an
/// array, a tuple of up to four, or `()` for no event. `#[event]` implements this for
/// the enum and each variant's struct, except the structs of variants marked
/// `#[event(legacy)]`: those events are still read, but no longer produced.
#[diagnostic::on_unimplemented(
    message = "a command returned `{Self}`, which is not a list of `{S}` events",
    label = "not convertible into `{S}` events",
    note = "return an event struct of the set (other than those of variants marked `#[event(legacy)]`, which are read from history but no longer produced), the set itself, or a Vec/Option/array/tuple of them"
)]
pub trait IntoEvents<S> {
    /// Appends the events to `out`, in order.
    fn into_events(self, out: &mut Vec<S>);
}

impl<S> IntoEvents<S> for () {
    fn into_events(self, _: &mut Vec<S>) {}
}

impl<S, T: IntoEvents<S>> IntoEvents<S> for Vec<T> {
    fn into_events(self, out: &mut Vec<S>) {
        for t in self {
            t.into_events(out);
        }
    }
}

impl<S, T: IntoEvents<S>> IntoEvents<S> for Option<T> {
    fn into_events(self, out: &mut Vec<S>) {
        if let Some(t) = self {
            t.into_events(out);
        }
    }
}

impl<S, T: IntoEvents<S>, const N: usize> IntoEvents<S> for [T; N] {
    fn into_events(self, out: &mut Vec<S>) {
        for t in self {
            t.into_events(out);
        }
    }
}

macro_rules! tuple_into_events {
    ($($t:ident),+) => {
        impl<S, $($t: IntoEvents<S>),+> IntoEvents<S> for ($($t,)+) {
            #[allow(non_snake_case)]
            fn into_events(self, out: &mut Vec<S>) {
                let ($($t,)+) = self;
                $($t.into_events(out);)+
            }
        }
    };
}
tuple_into_events!(A, B);
tuple_into_events!(A, B, C);
tuple_into_events!(A, B, C, D);

impl From<DecodeError> for UpcastError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Upcast { source, .. } => source,
            other => UpcastError::new(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_beyond_64_bits_are_found_outside_strings_only() {
        fn find(text: &str) -> Option<&str> {
            integer_beyond_64_bits(text.as_bytes())
        }
        assert_eq!(
            find(r#"{"a":18446744073709551615,"b":-9223372036854775808}"#),
            None
        );
        assert_eq!(
            find(r#"{"a":[1,18446744073709551616]}"#),
            Some("18446744073709551616")
        );
        assert_eq!(
            find(r#"{"a":-9223372036854775809}"#),
            Some("-9223372036854775809")
        );
        // floats are floats already; digits in strings and keys are text
        assert_eq!(find(r#"{"a":1e400,"b":123456789012345678901.5}"#), None);
        assert_eq!(
            find(r#"{"123456789012345678901":"\"123456789012345678901\\"}"#),
            None
        );
        assert_eq!(
            find(r#"{"a":"\\","b":123456789012345678901}"#),
            Some("123456789012345678901")
        );
    }

    #[test]
    fn long_numbers_are_cut_in_messages() {
        assert_eq!(shortened("-12"), "-12");
        let long = "9".repeat(100);
        assert_eq!(
            shortened(&long),
            format!("{}.. (100 digits)", "9".repeat(60))
        );
    }
}
