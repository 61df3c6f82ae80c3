//! `#[event]` on an enum: the `EventSet` impl, conversions from each event struct, and the
//! dispatch to `Apply` handlers that `#[derive(Aggregate)]` calls.

use crate::ast::{EventEnum, Variant};
use crate::tokens::{escape_braces, local, local_const};
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, LitStr};

/// The enum with its `EventSet` impl, the conversions into it, the dispatch to `Apply`
/// handlers, and the assertions about its events' names.
pub fn expand(set: &EventEnum) -> TokenStream {
    let item = &set.output;
    let event_set = event_set(set);
    let variants: Vec<_> = set.variants.iter().collect();
    let conversions = conversions(set.ident(), &variants);
    let dispatch = dispatch(set);
    let assertions = name_assertions(set);
    quote! {
        #item

        const _: () = {
            #event_set
            #conversions
            #dispatch
            #assertions
        };
    }
}

fn event_set(set: &EventEnum) -> TokenStream {
    let ident = set.ident();
    let event = local("event");
    let event_type = local("event_type");
    let version = local("version");
    let payload = local("payload");
    let variants = &set.variants;
    let idents: Vec<_> = variants.iter().map(|v| v.ident).collect();
    // Every use of a variant's `Event` impl is spanned at the variant's type, so that a
    // type that is not an event is reported once, there, instead of once per use.
    let names: Vec<_> = variants.iter().map(|v| event_item(v.ty, "NAME")).collect();
    let versions = variants.iter().map(|v| event_item(v.ty, "VERSION"));
    let aliases = variants.iter().map(|v| event_item(v.ty, "ALIASES"));
    let decode_stored: Vec<_> = variants
        .iter()
        .map(|v| event_item(v.ty, "decode_stored"))
        .collect();
    let encode = variants.iter().map(|v| event_item(v.ty, "encode_stored"));
    let schemas = variants.iter().map(|v| event_item(v.ty, "SCHEMA"));
    let set_name = LitStr::new(&ident.unraw().to_string(), Span::call_site());
    let events_const = local_const("EVENTS");
    let ignored_names = set.ignored();
    let ignored = (!ignored_names.is_empty()).then(|| {
        quote! {
            if ::core::matches!(#event_type, #(#ignored_names)|*) {
                return ::core::result::Result::Ok(::core::option::Option::None);
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl ::es_core::EventSet for #ident {
            const EVENT_TYPES: &'static [&'static ::core::primitive::str] = &[#(#names),*];

            const SCHEMA: ::core::option::Option<::es_core::schema::SetSchema> = {
                const #events_const: &[::es_core::schema::EventSchema] = &[#(#schemas),*];
                ::core::option::Option::Some(::es_core::schema::SetSchema::new(
                    #set_name,
                    #events_const,
                    &[#(#ignored_names),*],
                ))
            };

            #[inline]
            fn event_type(&self) -> &'static ::core::primitive::str {
                match self {
                    #(Self::#idents(_) => #names,)*
                }
            }

            #[inline]
            fn schema_version(&self) -> ::core::primitive::u32 {
                match self {
                    #(Self::#idents(_) => #versions,)*
                }
            }

            fn encode(&self) -> ::core::result::Result<::es_core::EncodedEvent, ::es_core::EncodeError> {
                match self {
                    #(Self::#idents(#event) => #encode(#event),)*
                }
            }

            fn decode(
                #event_type: &::core::primitive::str,
                #version: ::core::primitive::u32,
                #payload: &[::core::primitive::u8],
            ) -> ::core::result::Result<::core::option::Option<Self>, ::es_core::DecodeError> {
                // Two variants sharing a name fail a const assertion below; the match need
                // not warn about it as well.
                #[allow(unreachable_patterns)]
                match #event_type {
                    #(#names => {
                        return #decode_stored(#version, #payload)
                            .map(|#event| ::core::option::Option::Some(Self::#idents(#event)));
                    })*
                    _ => {}
                }
                #(if ::es_core::__private::is_alias(#aliases, #event_type) {
                    return #decode_stored(#version, #payload)
                        .map(|#event| ::core::option::Option::Some(Self::#idents(#event)));
                })*
                #ignored
                ::core::result::Result::Err(::es_core::DecodeError::UnknownType {
                    event_type: ::core::convert::From::from(#event_type),
                    version: #version,
                })
            }
        }
    }
}

/// `<Ty as ::es_core::Event>::item`, spanned at `Ty`.
fn event_item(ty: &syn::Type, item: &str) -> TokenStream {
    let item = Ident::new(item, ty.span());
    quote_spanned!(ty.span()=> <#ty as ::es_core::Event>::#item)
}

/// `IntoEvents` for the set and, with `From`, for each variant's struct, so that a command
/// can return either. A legacy variant's struct gets neither: a command that returns it
/// does not compile.
pub fn conversions(ident: &Ident, variants: &[&Variant]) -> TokenStream {
    let event = local("event");
    let out = local("out");
    let produced = variants.iter().filter(|v| !v.legacy);
    let per_variant = produced.map(|v| {
        let (variant, ty) = (v.ident, v.ty);
        quote! {
            #[automatically_derived]
            impl ::core::convert::From<#ty> for #ident {
                #[inline]
                fn from(#event: #ty) -> Self {
                    Self::#variant(#event)
                }
            }

            #[automatically_derived]
            impl ::es_core::IntoEvents<#ident> for #ty {
                #[inline]
                fn into_events(self, #out: &mut ::std::vec::Vec<#ident>) {
                    #out.push(#ident::#variant(self));
                }
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl ::es_core::IntoEvents<#ident> for #ident {
            #[inline]
            fn into_events(self, #out: &mut ::std::vec::Vec<#ident>) {
                #out.push(self);
            }
        }

        #(#per_variant)*
    }
}

/// `Dispatch<A>` for every `A` with an `Apply` handler per variant. The bound of each
/// variant is spanned at its type, so a missing handler points at the event.
fn dispatch(set: &EventEnum) -> TokenStream {
    let ident = set.ident();
    let aggregate_ty = Ident::new("__EsAggregate", Span::call_site());
    let aggregate = local("aggregate");
    let event = local("event");
    let bounds = set.variants.iter().map(|v| {
        let ty = v.ty;
        quote_spanned!(ty.span()=> #aggregate_ty: ::es_core::Apply<#ty>)
    });
    let handlers = set.variants.iter().map(|Variant { ty, .. }| {
        quote_spanned!(ty.span()=> <#aggregate_ty as ::es_core::Apply<#ty>>::FINGERPRINT)
    });
    let arms = set.variants.iter().map(|Variant { ident: variant, ty, .. }| {
        quote! {
            Self::#variant(#event) => <#aggregate_ty as ::es_core::Apply<#ty>>::apply(#aggregate, #event),
        }
    });
    quote! {
        #[automatically_derived]
        impl<#aggregate_ty> ::es_core::__private::Dispatch<#aggregate_ty> for #ident
        where
            #(#bounds,)*
        {
            const HANDLERS_FINGERPRINT: ::core::primitive::u64 =
                ::es_core::__private::handlers_fingerprint(&[#(#handlers),*]);

            #[inline]
            fn dispatch(&self, #aggregate: &mut #aggregate_ty) {
                match self {
                    #(#arms)*
                }
            }
        }
    }
}

/// Names are constants of other items, so clashes between variants, and between a
/// variant and an ignored name, are const assertions, reported at the later token. A
/// clash between variants names the shared name, which only the compiler knows: the
/// message is joined in a constant.
fn name_assertions(set: &EventEnum) -> TokenStream {
    let ident = set.ident();
    let variants = &set.variants;
    let shared = local_const("SHARED");
    let parts = local_const("PARTS");
    let message = local_const("MESSAGE");
    let mut assertions = Vec::new();
    for (i, later) in variants.iter().enumerate() {
        for earlier in &variants[..i] {
            let (a, b) = (earlier.ty, later.ty);
            let (first, second) = (earlier.ident, later.ident);
            let before = format!(
                "`{ident}`: variants `{first}` and `{second}` both answer to the event name \""
            );
            let between = "\" (as their `name` or one of their `aliases`), so a stored \"";
            let after =
                "\" event would be ambiguous: give one of them another `name`, or remove the alias";
            let (a_name, a_aliases) = (event_item(a, "NAME"), event_item(a, "ALIASES"));
            let (b_name, b_aliases) = (event_item(b, "NAME"), event_item(b, "ALIASES"));
            assertions.push(quote_spanned! {b.span()=>
                {
                    const #shared: &::core::primitive::str =
                        ::es_core::__private::shared_name(#a_name, #a_aliases, #b_name, #b_aliases);
                    const #parts: &[&::core::primitive::str] =
                        &[#before, #shared, #between, #shared, #after];
                    const #message: [::core::primitive::u8; ::es_core::__private::concat_len(#parts)] =
                        ::es_core::__private::concat(#parts);
                    if !#shared.is_empty() {
                        ::core::panic!("{}", ::es_core::__private::text(&#message));
                    }
                }
            });
        }
    }
    for name in set.ignored() {
        for variant in variants {
            let ty = variant.ty;
            let message = escape_braces(&format!(
                "`{ident}` ignores \"{}\", which is the name or an alias of variant `{}`: an event type is either decoded or ignored; remove it from `ignore` or from the variant",
                name.value(),
                variant.ident
            ));
            let (ty_name, ty_aliases) = (event_item(ty, "NAME"), event_item(ty, "ALIASES"));
            assertions.push(quote_spanned! {name.span()=>
                ::core::assert!(
                    !::es_core::__private::answers_to(#ty_name, #ty_aliases, #name),
                    #message
                );
            });
        }
    }
    quote!(#(#assertions)*)
}
