//! `#[derive(Aggregate)]`: the `Aggregate` impl, its kind, event set, dispatch and
//! snapshot settings.

use crate::ast::AggregateInput;
use crate::attr::{AGGREGATE, Attr, Number};
use crate::print::canonical;
use crate::tokens::local;
use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident, LitStr};

/// The `Aggregate` impl, with the snapshot settings when `snapshot_every` is given.
pub fn expand(aggregate: &AggregateInput) -> TokenStream {
    let attrs = &aggregate.attrs;
    let (Some(kind), Some(events)) = (&attrs.kind, &attrs.event) else {
        unreachable!("check::aggregate reports a missing kind or event");
    };
    let snapshots = attrs
        .snapshot_every
        .as_ref()
        .map(|every| snapshots(aggregate, every));
    impl_aggregate(aggregate.ident(), &kind.value, &events.value, snapshots)
}

/// With `snapshot_every`: the policy, the state encoded as JSON with serde, and a
/// fingerprint of the state's shape, the event set's schema and the fingerprinted
/// handlers, so that a snapshot written before one of them changed is ignored rather than
/// misread.
fn snapshots(aggregate: &AggregateInput, every: &Attr<Number<u64>>) -> TokenStream {
    let every_lit = &every.value.lit;
    let version = aggregate
        .attrs
        .snapshot_version
        .as_ref()
        .map_or_else(|| quote!(1), |v| v.value.lit.to_token_stream());
    let state_text = LitStr::new(&state_text(aggregate.input), Span::call_site());
    let state_fingerprint =
        quote!(::es_core::schema::Fnv::new().bytes(#state_text.as_bytes()).finish());
    let ident = aggregate.ident();
    let events = &aggregate
        .attrs
        .event
        .as_ref()
        .expect("check::aggregate reports a missing event")
        .value;
    // Spanned at `event = ...`, like the dispatch: a set without a handler for one of its
    // events is reported once, there.
    let fingerprint = quote_spanned! {events.span()=>
        ::es_core::__private::snapshot_fingerprint(
            #state_fingerprint,
            <#events as ::es_core::EventSet>::SCHEMA,
            <#events as ::es_core::__private::Dispatch<#ident>>::HANDLERS_FINGERPRINT,
        )
    };
    let state = local("state");
    // Spanned at `snapshot_every`: a state without serde's traits is reported there, once
    // (see `StateProbe`).
    let codec = quote_spanned! {every.key.span()=>
        (&::es_core::__private::StateProbe::<Self>::new()).state_codec()
    };
    let encode = quote_spanned! {every.key.span()=> (#codec.encode)(self) };
    let decode = quote_spanned! {every.key.span()=> (#codec.decode)(#state) };
    let codec_traits = quote! {
        #[allow(unused_imports)]
        use ::es_core::__private::{ViaSerde as _, WithoutSerde as _};
    };
    quote! {
        #[inline]
        fn snapshot_policy() -> ::core::option::Option<::es_core::SnapshotPolicy> {
            ::core::option::Option::Some(::es_core::SnapshotPolicy {
                every: #every_lit,
                snapshot_version: #version,
            })
        }

        #[inline]
        fn snapshot_fingerprint() -> ::core::primitive::u64 {
            const __ES_FINGERPRINT: ::core::primitive::u64 = #fingerprint;
            __ES_FINGERPRINT
        }

        fn encode_snapshot(
            &self,
        ) -> ::core::option::Option<
            ::core::result::Result<::std::vec::Vec<::core::primitive::u8>, ::std::string::String>,
        > {
            #codec_traits
            ::core::option::Option::Some(#encode)
        }

        fn decode_snapshot(
            #state: &[::core::primitive::u8],
        ) -> ::core::option::Option<::core::result::Result<Self, ::std::string::String>> {
            #codec_traits
            ::core::option::Option::Some(#decode)
        }
    }
}

/// The text that the fingerprint of the state type's shape hashes: its field (or variant)
/// names, types and attributes other than doc comments and `#[aggregate(transient)]`
/// (which changes nothing serde writes), and its container attributes other than doc
/// comments and derives.
fn state_text(input: &DeriveInput) -> String {
    let mut data = input.data.clone();
    let keep =
        |attr: &syn::Attribute| !attr.path().is_ident("doc") && !attr.path().is_ident(AGGREGATE);
    match &mut data {
        syn::Data::Struct(s) => {
            for field in s.fields.iter_mut() {
                field.attrs.retain(keep);
            }
        }
        syn::Data::Enum(e) => {
            for variant in e.variants.iter_mut() {
                variant.attrs.retain(keep);
                for field in variant.fields.iter_mut() {
                    field.attrs.retain(keep);
                }
            }
        }
        syn::Data::Union(u) => {
            for field in u.fields.named.iter_mut() {
                field.attrs.retain(keep);
            }
        }
    }
    let mut text = String::new();
    for attr in &input.attrs {
        let path = attr.path();
        if !path.is_ident("doc") && !path.is_ident("derive") && !path.is_ident(AGGREGATE) {
            canonical(attr.to_token_stream(), &mut text);
        }
    }
    let body = match &data {
        syn::Data::Struct(s) => s.fields.to_token_stream(),
        syn::Data::Enum(e) => e.variants.to_token_stream(),
        syn::Data::Union(u) => u.fields.to_token_stream(),
    };
    canonical(body, &mut text);
    text
}

/// The impl itself, also used as the stub of a failed expansion.
pub fn impl_aggregate(
    ident: &Ident,
    kind: &syn::LitStr,
    events: &syn::Type,
    snapshots: Option<TokenStream>,
) -> TokenStream {
    let event = local("event");
    // Spanned at `event = ...`: an aggregate without a handler for one of the events is
    // reported there, naming the event and the impl to write.
    let apply = quote_spanned! {events.span()=>
        <#events as ::es_core::__private::Dispatch<Self>>::dispatch(#event, self)
    };
    // Spanned at the type's name: a missing `Default` (or `Send`, `Sync`) is reported once,
    // there.
    let trait_path = quote_spanned!(ident.span()=> ::es_core::Aggregate);
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #trait_path for #ident {
                const KIND: &'static ::core::primitive::str = #kind;
                type Events = #events;

                #[inline]
                fn apply_event(&mut self, #event: &#events) {
                    #apply
                }

                #snapshots
            }
        };
    }
}
