//! A typed model of each macro's input, keeping the original syntax for error spans.

use crate::attr::{self, AggregateAttrs, EventEnumAttrs, EventStructAttrs, MigrateStep};
use crate::ctxt::Ctxt;
use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{DeriveInput, Fields, Generics, Ident, ItemEnum, ItemImpl, ItemStruct};

/// `#[event]` on a struct: one event type.
pub struct EventStruct<'a> {
    pub item: &'a ItemStruct,
    pub attrs: EventStructAttrs,
}

/// How a struct's older versions are brought up to date.
pub enum Chain<'a> {
    /// Version 1: nothing to upcast.
    None,
    /// `migrate(1 => f, ..)`: JSON steps, in the order they were written.
    Migrate(&'a [MigrateStep]),
    /// `upcast_from = Old`: the previous version is a type of its own.
    UpcastFrom(&'a syn::Type),
}

impl<'a> EventStruct<'a> {
    pub fn from_item(cx: &Ctxt, args: TokenStream, item: &'a ItemStruct) -> Self {
        let attrs = attr::event_struct(cx, args);
        no_generics(
            cx,
            &item.generics,
            "`#[event]` on a struct",
            "a stored event's type name and schema must not depend on a type or lifetime parameter",
        );
        EventStruct { item, attrs }
    }

    pub fn ident(&self) -> &'a Ident {
        &self.item.ident
    }

    /// The stored type name: `name = ".."`, or the Rust name.
    pub fn name(&self) -> String {
        match &self.attrs.name {
            Some(name) => name.value.value(),
            None => self.item.ident.unraw().to_string(),
        }
    }

    /// The current schema version: `version = N`, or 1.
    pub fn version(&self) -> u32 {
        self.attrs.version.as_ref().map_or(1, |v| v.value.value)
    }

    /// The current schema version, or `None` when a mistake hides it: `version` (or a
    /// mistyped key taken to mean it) was written, but its value did not parse. Rules that
    /// depend on the version are then not checked, since they would only report the same
    /// mistake again in other words.
    pub fn known_version(&self) -> Option<u32> {
        match &self.attrs.version {
            Some(version) => Some(version.value.value),
            None if self.attrs.written.mentions(attr::VERSION) => None,
            None => Some(1),
        }
    }

    /// The stored type name, or `None` when a mistake hides it (see
    /// [`EventStruct::known_version`]).
    pub fn known_name(&self) -> Option<String> {
        if self.attrs.name.is_none() && self.attrs.written.mentions(attr::NAME) {
            None
        } else {
            Some(self.name())
        }
    }

    /// True when the older versions' chain was written, or meant, even if it did not
    /// parse.
    pub fn mentions_chain(&self) -> bool {
        self.attrs.written.mentions(attr::MIGRATE) || self.attrs.written.mentions(attr::UPCAST_FROM)
    }

    pub fn chain(&self) -> Chain<'_> {
        if let Some(steps) = &self.attrs.migrate {
            Chain::Migrate(&steps.value.steps)
        } else if let Some(old) = &self.attrs.upcast_from {
            Chain::UpcastFrom(&old.value)
        } else {
            Chain::None
        }
    }

    pub fn aliases(&self) -> &[syn::LitStr] {
        self.attrs.aliases.as_ref().map_or(&[], |a| &a.value)
    }

    pub fn has_generics(&self) -> bool {
        has_generics(&self.item.generics)
    }
}

/// `#[event]` on an enum: the event set of one aggregate.
pub struct EventEnum<'a> {
    pub item: &'a ItemEnum,
    /// The enum as it is emitted: without the `#[event(...)]` of its variants, which only
    /// this macro reads.
    pub output: ItemEnum,
    pub attrs: EventEnumAttrs,
    /// The well-formed variants (the others are reported and left out).
    pub variants: Vec<Variant<'a>>,
}

/// A `Name(EventStruct)` variant.
pub struct Variant<'a> {
    pub ident: &'a Ident,
    pub ty: &'a syn::Type,
    /// `#[event(legacy)]`: decoded and applied, but not converted from its struct, so
    /// that no command can return it.
    pub legacy: bool,
}

impl<'a> EventEnum<'a> {
    pub fn from_item(cx: &Ctxt, args: TokenStream, item: &'a ItemEnum) -> Self {
        let attrs = attr::event_enum(cx, args);
        no_generics(
            cx,
            &item.generics,
            "`#[event]` on an enum",
            "an event set decodes stored events by name, which must not depend on a type or lifetime parameter",
        );
        if item.variants.is_empty() {
            cx.error_spanned_by(
                &item.ident,
                "an `#[event]` enum needs at least one variant: `EventName(EventName)`, wrapping an `#[event]` struct",
            );
        }
        let mut variants = Vec::new();
        for variant in &item.variants {
            let variant_attrs = attr::event_variant(cx, variant);
            let legacy = variant_attrs.legacy.is_some();
            if let Some((_, discriminant)) = &variant.discriminant {
                cx.error_spanned_by(
                    discriminant,
                    "variants of an `#[event]` enum take no discriminant: events are stored by name",
                );
            }
            // A variant compiled out would leave the generated decoding, schema and
            // dispatch naming it; it is reported and left out of them.
            if let Some(cfg) = variant.attrs.iter().find(|a| is_cfg(a)) {
                cx.error_spanned_by(
                    cfg,
                    format!(
                        "`#[cfg(..)]` cannot go on a variant of an `#[event]` enum: stored `{}` events must load in every build, and the set's decoding, schema and `Apply` dispatch list every variant; keep the variant in every build, or put the `#[cfg(..)]` on the whole enum",
                        variant.ident
                    ),
                );
                continue;
            }
            match &variant.fields {
                Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                    let field = &fields.unnamed[0];
                    variants.push(Variant {
                        ident: &variant.ident,
                        ty: &field.ty,
                        legacy,
                    });
                }
                Fields::Unnamed(fields) => {
                    cx.error_spanned_by(
                        variant,
                        format!(
                            "variant `{}` wraps {} values; each variant of an `#[event]` enum wraps exactly one `#[event]` struct",
                            variant.ident,
                            fields.unnamed.len()
                        ),
                    );
                }
                Fields::Named(_) | Fields::Unit => {
                    let ident = &variant.ident;
                    cx.error_spanned_by(
                        variant,
                        format!(
                            "each variant of an `#[event]` enum wraps one `#[event]` struct: declare `#[event] struct {ident} {{ .. }}` and write the variant as `{ident}({ident})`"
                        ),
                    );
                }
            }
        }
        let mut output = item.clone();
        for variant in &mut output.variants {
            variant.attrs.retain(|a| !attr::is_event_attribute(a));
        }
        EventEnum {
            item,
            output,
            attrs,
            variants,
        }
    }

    pub fn ident(&self) -> &'a Ident {
        &self.item.ident
    }

    pub fn ignored(&self) -> &[syn::LitStr] {
        self.attrs.ignore.as_ref().map_or(&[], |a| &a.value)
    }

    pub fn has_generics(&self) -> bool {
        has_generics(&self.item.generics)
    }
}

/// `#[fingerprint]`: the `impl` block it goes on, or `None` (reported) when the item is
/// something else.
pub fn handler<'a>(cx: &Ctxt, args: &TokenStream, item: &'a syn::Item) -> Option<&'a ItemImpl> {
    if !args.is_empty() {
        cx.error_spanned_by(
            args,
            "`#[fingerprint]` takes no arguments: it hashes the code of the handler it is on",
        );
    }
    match item {
        syn::Item::Impl(handler) => Some(handler),
        other => {
            cx.error_spanned_by(
                item_keyword(other),
                "`#[fingerprint]` goes on an `Apply` handler, `impl Apply<Event> for Aggregate { .. }`: it adds the handler's code to the aggregate's snapshot fingerprint",
            );
            None
        }
    }
}

/// `#[derive(Aggregate)]` and its `#[aggregate(...)]` settings.
pub struct AggregateInput<'a> {
    pub input: &'a DeriveInput,
    pub attrs: AggregateAttrs,
}

impl<'a> AggregateInput<'a> {
    pub fn from_input(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let attrs = attr::aggregate(cx, &input.attrs);
        no_generics(
            cx,
            &input.generics,
            "`#[derive(Aggregate)]`",
            "an aggregate has one kind and one event set, which must not depend on a type or lifetime parameter",
        );
        AggregateInput { input, attrs }
    }

    pub fn ident(&self) -> &'a Ident {
        &self.input.ident
    }

    pub fn has_generics(&self) -> bool {
        has_generics(&self.input.generics)
    }
}

fn has_generics(generics: &Generics) -> bool {
    !generics.params.is_empty() || generics.where_clause.is_some()
}

fn no_generics(cx: &Ctxt, generics: &Generics, what: &str, why: &str) {
    if !generics.params.is_empty() {
        cx.error_spanned_by(
            generics,
            format!("{what} does not support generic parameters: {why}"),
        );
    } else if let Some(where_clause) = &generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            format!("{what} does not support a `where` clause"),
        );
    }
}

/// `#[cfg(..)]`, or a `#[cfg_attr(..)]` that applies one.
pub fn is_cfg(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("cfg") || cfg_attr_applies(attr, |meta| meta.path().is_ident("cfg"))
}

/// True when `attr` is `#[cfg_attr(predicate, ..)]` and one of the attributes it applies
/// satisfies `test`.
pub fn cfg_attr_applies(attr: &syn::Attribute, test: impl Fn(&syn::Meta) -> bool) -> bool {
    if !attr.path().is_ident("cfg_attr") {
        return false;
    }
    attr.parse_args_with(Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated)
        .is_ok_and(|metas| metas.iter().skip(1).any(test))
}

/// Serde's container attributes that store something other than a JSON object of the
/// struct's named fields, or that write the struct's Rust name into the payload: `#[event]`
/// refuses them.
pub const RESHAPING_SERDE_KEYS: &[&str] = &["transparent", "into", "from", "try_from", "tag"];

/// The keys of [`RESHAPING_SERDE_KEYS`] that `attr` sets: in `#[serde(..)]`, or in a
/// `#[cfg_attr(.., serde(..))]`. An attribute that does not parse is serde's to report.
pub fn reshaping_serde_keys(attr: &syn::Attribute) -> Vec<syn::Path> {
    let parse = |tokens: TokenStream| {
        Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated
            .parse2(tokens)
            .map(|metas| metas.into_iter().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let serde_keys = |meta: &syn::Meta| match meta {
        syn::Meta::List(list) if list.path.is_ident("serde") => parse(list.tokens.clone())
            .into_iter()
            .map(|key| key.path().clone())
            .filter(|key| {
                RESHAPING_SERDE_KEYS
                    .iter()
                    .any(|reshaping| key.is_ident(reshaping))
            })
            .collect(),
        _ => Vec::new(),
    };
    if attr.path().is_ident("cfg_attr") {
        let syn::Meta::List(list) = &attr.meta else {
            return Vec::new();
        };
        parse(list.tokens.clone())
            .iter()
            .skip(1)
            .flat_map(serde_keys)
            .collect()
    } else {
        serde_keys(&attr.meta)
    }
}

/// The paths listed in the item's `#[derive(..)]` attributes.
pub fn derives(item: &ItemStruct) -> Vec<syn::Path> {
    let mut paths = Vec::new();
    for attr in &item.attrs {
        if !attr.path().is_ident("derive") {
            continue;
        }
        if let Ok(list) =
            attr.parse_args_with(Punctuated::<syn::Path, syn::Token![,]>::parse_terminated)
        {
            paths.extend(list);
        }
    }
    paths
}

/// The tokens that name what kind of item this is, for an error about the wrong kind.
pub fn item_keyword(item: &syn::Item) -> TokenStream {
    match item {
        syn::Item::Fn(f) => f.sig.fn_token.to_token_stream(),
        syn::Item::Struct(s) => s.struct_token.to_token_stream(),
        syn::Item::Enum(e) => e.enum_token.to_token_stream(),
        syn::Item::Const(c) => c.const_token.to_token_stream(),
        syn::Item::Static(s) => s.static_token.to_token_stream(),
        syn::Item::Union(u) => u.union_token.to_token_stream(),
        syn::Item::Type(t) => t.type_token.to_token_stream(),
        syn::Item::Trait(t) => t.trait_token.to_token_stream(),
        syn::Item::Impl(i) => i.impl_token.to_token_stream(),
        syn::Item::Mod(m) => m.mod_token.to_token_stream(),
        other => other.to_token_stream(),
    }
}
