//! `#[derive(Aggregate)]`: the `Aggregate` impl, its kind, event set, dispatch and
//! snapshot settings.

use crate::ast::AggregateInput;
use crate::ctxt::Ctxt;
use crate::expand_event::local;
use crate::{check, fallback};
use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident};

pub fn expand(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let aggregate = AggregateInput::from_input(&cx, input);
    check::aggregate(&cx, &aggregate);
    match cx.check() {
        Ok(()) => generate(&aggregate),
        Err(errors) => fallback::aggregate(&aggregate, errors),
    }
}

fn generate(aggregate: &AggregateInput) -> TokenStream {
    let attrs = &aggregate.attrs;
    let (Some(kind), Some(events)) = (&attrs.kind, &attrs.event) else {
        unreachable!("check::aggregate reports a missing kind or event");
    };
    let snapshot_policy = attrs.snapshot_every.as_ref().map(|every| {
        let every = &every.value.lit;
        let version = attrs
            .snapshot_version
            .as_ref()
            .map_or_else(|| quote!(1), |v| v.value.lit.clone().into_token_stream());
        quote! {
            #[inline]
            fn snapshot_policy() -> ::core::option::Option<::es_core::SnapshotPolicy> {
                ::core::option::Option::Some(::es_core::SnapshotPolicy {
                    every: #every,
                    version: #version,
                })
            }
        }
    });
    impl_aggregate(
        aggregate.ident(),
        &kind.value,
        &events.value,
        snapshot_policy,
    )
}

/// The impl itself, also used as the stub of a failed expansion.
pub fn impl_aggregate(
    ident: &Ident,
    kind: &syn::LitStr,
    events: &syn::Type,
    snapshot_policy: Option<TokenStream>,
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
                const KIND: &'static str = #kind;
                type Events = #events;

                #[inline]
                fn apply(&mut self, #event: &#events) {
                    #apply
                }

                #snapshot_policy
            }
        };
    }
}
