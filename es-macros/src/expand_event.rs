//! `#[event]` on a struct: serde derives, the `Event` impl and its upcast chain.

use crate::ast::{Chain, EventStruct, derives};
use crate::attr::MigrateStep;
use crate::print::written;
use crate::shape::Shape;
use crate::tokens::{escape_braces, local, local_const};
use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{ItemStruct, LitInt, LitStr};

/// The struct with serde's derives, reached through es-core so that users need not
/// depend on serde. A trait the user derives already is left out: that mistake is
/// reported on its own, and a second impl would only add a conflict error.
pub fn with_serde(item: &ItemStruct) -> TokenStream {
    let (serialize, deserialize) = derived_by_user(item);
    let serialize = (!serialize).then(|| quote!(::es_core::__private::serde::Serialize));
    let deserialize = (!deserialize).then(|| quote!(::es_core::__private::serde::Deserialize));
    if serialize.is_none() && deserialize.is_none() {
        return quote!(#item);
    }
    let derives = serialize.into_iter().chain(deserialize);
    quote! {
        #[derive(#(#derives),*)]
        #[serde(crate = "::es_core::__private::serde")]
        #item
    }
}

/// Whether the item's own `#[derive(..)]` lists `Serialize` and `Deserialize`.
fn derived_by_user(item: &ItemStruct) -> (bool, bool) {
    let (mut serialize, mut deserialize) = (false, false);
    for path in derives(item) {
        if let Some(last) = path.segments.last() {
            serialize |= last.ident == "Serialize";
            deserialize |= last.ident == "Deserialize";
        }
    }
    (serialize, deserialize)
}

/// `const NAME`, `const VERSION` and `const ALIASES` of the `Event` impl.
pub fn constants(event: &EventStruct) -> TokenStream {
    let name = LitStr::new(&event.name(), event.ident().span());
    let version = LitInt::new(&event.version().to_string(), Span::call_site());
    constants_with(event, name.into_token_stream(), version.into_token_stream())
}

/// The constants of the stub impl of a struct whose attribute has a mistake: a name or
/// version that the mistake hides is `UNKNOWN_NAME` or `UNKNOWN_VERSION`, which the checks
/// of other items (an `upcast_from` naming this struct, a set that wraps it) accept, so
/// that they do not report the same mistake again as a wrong name or version.
pub fn stub_constants(event: &EventStruct) -> TokenStream {
    let name = match event.known_name() {
        Some(name) => LitStr::new(&name, event.ident().span()).into_token_stream(),
        None => quote!(::es_core::__private::UNKNOWN_NAME),
    };
    let version = match event.known_version() {
        Some(version) => LitInt::new(&version.to_string(), Span::call_site()).into_token_stream(),
        None => quote!(::es_core::__private::UNKNOWN_VERSION),
    };
    constants_with(event, name, version)
}

fn constants_with(event: &EventStruct, name: TokenStream, version: TokenStream) -> TokenStream {
    let aliases = event.aliases();
    let aliases = (!aliases.is_empty()).then(|| {
        quote! {
            const ALIASES: &'static [&'static ::core::primitive::str] = &[#(#aliases),*];
        }
    });
    quote! {
        const NAME: &'static ::core::primitive::str = #name;
        const VERSION: ::core::primitive::u32 = #version;
        const OBJECT_PAYLOAD: ::core::primitive::bool = true;
        #aliases
    }
}

/// The struct with serde's derives and its `Event` impl, with the upcast chain and the
/// assertions about the previous version's type.
pub fn expand(event: &EventStruct) -> TokenStream {
    let ident = event.ident();
    let item = with_serde(event.item);
    let constants = constants(event);
    let schema = schema(event);
    let (upcast, assertions) = match event.chain() {
        Chain::None => (None, None),
        Chain::Migrate(steps) => (Some(migrate(steps)), None),
        Chain::UpcastFrom(old) => (
            Some(upcast_from(old)),
            Some(typed_step_assertions(event, old)),
        ),
    };
    quote! {
        #item

        const _: () = {
            #[automatically_derived]
            impl ::es_core::Event for #ident {
                #constants
                #schema
                #upcast
            }

            #assertions
        };
    }
}

/// `const SCHEMA`: the stored shape of the struct as written, for the schema check and
/// snapshot fingerprints. The fingerprint is computed by es-core from the same strings
/// that the catalogue lists, so that the two cannot disagree.
fn schema(event: &EventStruct) -> TokenStream {
    let shape = Shape::of(event.item);
    let name = LitStr::new(&event.name(), Span::call_site());
    let version = LitInt::new(&event.version().to_string(), Span::call_site());
    let aliases = event.aliases();
    let rust_type = LitStr::new(&event.ident().unraw().to_string(), Span::call_site());
    let form = shape.form;
    let attributes = &shape.attributes;
    let fields = shape.fields.iter().map(|f| {
        let (name, ty, attributes) = (&f.name, &f.ty, &f.attributes);
        quote!(::es_core::schema::FieldSchema::new(#name, #ty, &[#(#attributes),*]))
    });
    let fields_const = local_const("FIELDS");
    let attributes_const = local_const("ATTRIBUTES");
    quote! {
        const SCHEMA: ::es_core::schema::EventSchema = {
            const #fields_const: &[::es_core::schema::FieldSchema] = &[#(#fields),*];
            const #attributes_const: &[&::core::primitive::str] = &[#(#attributes),*];
            ::es_core::schema::EventSchema::new(#name, #version)
                .with_aliases(&[#(#aliases),*])
                .with_rust_type(#rust_type)
                .with_shape(
                    #attributes_const,
                    #fields_const,
                    ::es_core::__private::shape_fingerprint(#form, #attributes_const, #fields_const),
                )
        };
    }
}

/// The upcaster of `migrate(1 => f, 2 => g)`: the steps in version order, each coerced to
/// `MigrationFn` at the user's token, so that a function of the wrong signature is
/// reported where it is named.
fn migrate(steps: &[MigrateStep]) -> TokenStream {
    let mut steps: Vec<_> = steps.iter().collect();
    steps.sort_by_key(|s| s.from.value);
    let functions = steps.iter().map(|step| {
        let function = &step.function;
        quote_spanned! {function.span()=> #function }
    });
    let len = steps.len();
    let version = local("version");
    let payload = local("payload");
    let chain = local("steps");
    quote! {
        fn upcast(
            #version: ::core::primitive::u32,
            #payload: ::es_core::__private::serde_json::Value,
        ) -> ::core::result::Result<Self, ::es_core::UpcastError> {
            let #chain: [::es_core::MigrationFn; #len] = [#(#functions),*];
            ::es_core::__private::migrate(<Self as ::es_core::Event>::NAME, #version, &#chain, #payload)
        }
    }
}

/// The upcasters of `upcast_from = Old`: decode as `Old` (through `Old`'s own chain), then
/// convert with `From`. `upcast_stored` decodes the stored bytes as `Old` directly, so that
/// a typed chain reads a payload as its own version does (integers beyond 64 bits, raw
/// JSON, duplicate keys); `upcast` serves callers that hold a JSON value already. Both are
/// spanned at `Old`, which is where a missing `From` impl or an `Old` that is not an event
/// is reported (once: identical errors at one span are shown once, and the const
/// assertions use the same spans).
fn upcast_from(old: &syn::Type) -> TokenStream {
    let version = local("version");
    let payload = local("payload");
    let error = local("error");
    let from_value = quote_spanned! {old.span()=>
        <#old as ::es_core::Event>::from_value(#version, #payload)
            .map(<Self as ::core::convert::From<#old>>::from)
            .map_err(::es_core::UpcastError::from)
    };
    let decode_stored = quote_spanned! {old.span()=>
        <#old as ::es_core::Event>::decode_stored(#version, #payload)
            .map(<Self as ::core::convert::From<#old>>::from)
    };
    quote! {
        fn upcast(
            #version: ::core::primitive::u32,
            #payload: ::es_core::__private::serde_json::Value,
        ) -> ::core::result::Result<Self, ::es_core::UpcastError> {
            #from_value
        }

        fn upcast_stored(
            #version: ::core::primitive::u32,
            #payload: &[::core::primitive::u8],
        ) -> ::core::result::Result<Self, ::es_core::DecodeError> {
            #decode_stored.map_err(|#error| {
                ::es_core::__private::typed_step_error::<Self>(#version, #error)
            })
        }
    }
}

/// The old type is another item, so its name, version and aliases are only known to the
/// compiler: const assertions check them, reported at the `upcast_from` value.
fn typed_step_assertions(event: &EventStruct, old: &syn::Type) -> TokenStream {
    let ident = event.ident();
    let current = event.version();
    let previous = current.saturating_sub(1);
    let previous_lit = LitInt::new(&previous.to_string(), Span::call_site());
    let name = event.name();
    let old_text = written(old);
    let names = std::iter::once(format!("\"{name}\""))
        .chain(event.aliases().iter().map(|a| format!("\"{}\"", a.value())))
        .collect::<Vec<_>>()
        .join(" or ");
    let version_message = escape_braces(&format!(
        "`{ident}` is version {current}, so `upcast_from = {old_text}` must name the event at version {previous}: set `version = {previous}` on `{old_text}` or upcast from the type that has it"
    ));
    let name_message = escape_braces(&format!(
        "`upcast_from = {old_text}` must name an older version of the same event, with the event name {names}: set `name = \"{name}\"` on `{old_text}`"
    ));
    // The alias that is missing is a constant of `Old`: the message is joined in a
    // constant, as the clashes of a set are.
    let dropped = local_const("DROPPED");
    let parts = local_const("PARTS");
    let message = local_const("MESSAGE");
    let before = format!("`{ident}` upcasts from `{old_text}`, which answers to the alias \"");
    let middle = format!("\", but `{ident}` does not: stored \"");
    let after = format!(
        "\" events would fail to load as an unknown type, and another event could take the name. Copy the old aliases onto the new version: add it to `aliases = [..]` on `{ident}`"
    );
    quote_spanned! {old.span()=>
        ::core::assert!(
            ::es_core::__private::is_version(<#old as ::es_core::Event>::VERSION, #previous_lit),
            #version_message
        );
        ::core::assert!(
            ::es_core::__private::is_same_event(
                <#ident as ::es_core::Event>::NAME,
                <#ident as ::es_core::Event>::ALIASES,
                <#old as ::es_core::Event>::NAME,
            ),
            #name_message
        );
        {
            const #dropped: &::core::primitive::str = ::es_core::__private::dropped_alias(
                <#ident as ::es_core::Event>::NAME,
                <#ident as ::es_core::Event>::ALIASES,
                <#old as ::es_core::Event>::ALIASES,
            );
            const #parts: &[&::core::primitive::str] =
                &[#before, #dropped, #middle, #dropped, #after];
            const #message: [::core::primitive::u8; ::es_core::__private::concat_len(#parts)] =
                ::es_core::__private::concat(#parts);
            if !#dropped.is_empty() {
                ::core::panic!("{}", ::es_core::__private::text(&#message));
            }
        }
    }
}
