//! What a failed expansion emits: the errors, the item unchanged, and stub impls that let
//! the rest of the crate type-check, so that the user sees the real mistake and not a
//! cascade of "not an event" / "not an aggregate" errors at every use.
//!
//! The stubs never run: the `compile_error!` beside them fails the build. They are built
//! from the same pieces as the real expansion, so that they cannot drift apart from it.

use crate::ast::{AggregateInput, EventEnum, EventStruct, reshaping_serde_keys};
use crate::expand_aggregate::impl_aggregate;
use crate::expand_event::{stub_constants, with_serde};
use crate::expand_event_set::conversions;
use crate::print::written;
use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

pub fn event_struct(event: &EventStruct, errors: syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    if event.has_generics() {
        let item = event.item;
        return quote!(#errors #item);
    }
    let ident = event.ident();
    // serde's attributes that `#[event]` refuses are reported; left in, they would only
    // add serde's own errors about them
    let mut stub = event.item.clone();
    stub.attrs
        .retain(|attr| reshaping_serde_keys(attr).is_empty());
    let item = with_serde(&stub);
    let constants = stub_constants(event);
    quote! {
        #errors
        #item
        const _: () = {
            impl ::es_core::Event for #ident {
                #constants
            }
        };
    }
}

pub fn event_enum(set: &EventEnum, errors: syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    let item = &set.output;
    if set.has_generics() {
        return quote!(#errors #item);
    }
    let ident = set.ident();
    // A struct wrapped twice is one of the reported mistakes; converting it once keeps
    // the conversions from conflicting.
    let mut seen = std::collections::BTreeSet::new();
    let variants: Vec<_> = set
        .variants
        .iter()
        .filter(|v| seen.insert(written(v.ty)))
        .collect();
    let conversions = conversions(ident, &variants);
    quote! {
        #errors
        #item
        const _: () = {
            impl ::es_core::EventSet for #ident {
                const EVENT_TYPES: &'static [&'static ::core::primitive::str] = &[];
                fn event_type(&self) -> &'static ::core::primitive::str {
                    ::core::unreachable!()
                }
                fn schema_version(&self) -> ::core::primitive::u32 {
                    ::core::unreachable!()
                }
                fn encode(&self) -> ::core::result::Result<::es_core::EncodedEvent, ::es_core::EncodeError> {
                    ::core::unreachable!()
                }
                fn decode(
                    _: &::core::primitive::str,
                    _: ::core::primitive::u32,
                    _: &[::core::primitive::u8],
                ) -> ::core::result::Result<::core::option::Option<Self>, ::es_core::DecodeError> {
                    ::core::unreachable!()
                }
            }
            impl<A> ::es_core::__private::Dispatch<A> for #ident {
                fn dispatch(&self, _: &mut A) {}
            }
            #conversions
        };
    }
}

pub fn aggregate(aggregate: &AggregateInput, errors: syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    let attrs = &aggregate.attrs;
    // Without the event set there is no `Aggregate` impl to write.
    let Some(events) = attrs.event.as_ref().filter(|_| !aggregate.has_generics()) else {
        return errors;
    };
    let kind = attrs.kind.as_ref().map_or_else(
        || syn::LitStr::new("", proc_macro2::Span::call_site()),
        |k| k.value.clone(),
    );
    let stub = impl_aggregate(aggregate.ident(), &kind, &events.value, None);
    quote!(#errors #stub)
}

/// A `#[fingerprint]` handler stays as written: without `FINGERPRINT` it keeps the
/// trait's default, so the aggregate still compiles and only the real mistake is shown.
pub fn handler(item: &syn::Item, errors: syn::Error) -> TokenStream {
    let mut out = errors.to_compile_error();
    item.to_tokens(&mut out);
    out
}
