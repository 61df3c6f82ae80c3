//! `#[fingerprint]` on an `Apply` handler: the impl with `const FINGERPRINT` set to a hash
//! of its code, which the aggregate's snapshot fingerprint includes.

use crate::print::canonical;
use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{ImplItem, ItemImpl, LitStr};

/// The handler with `const FINGERPRINT` first among its items.
pub fn expand(handler: &ItemImpl) -> TokenStream {
    let text = LitStr::new(&handler_text(handler), Span::call_site());
    let mut handler = handler.clone();
    handler.items.insert(
        0,
        syn::parse_quote! {
            const FINGERPRINT: ::core::primitive::u64 =
                ::es_core::schema::Fnv::new().bytes(#text.as_bytes()).finish();
        },
    );
    quote!(#handler)
}

/// The text that the fingerprint hashes: the impl's tokens, doc comments aside (its
/// generics, the event and aggregate types, and the code of every item in it). Spacing
/// and ordinary comments are not tokens, so reformatting does not change it.
fn handler_text(handler: &ItemImpl) -> String {
    let mut handler = handler.clone();
    let keep = |attr: &syn::Attribute| !attr.path().is_ident("doc");
    handler.attrs.retain(keep);
    for item in &mut handler.items {
        match item {
            ImplItem::Fn(f) => f.attrs.retain(keep),
            ImplItem::Const(c) => c.attrs.retain(keep),
            ImplItem::Type(t) => t.attrs.retain(keep),
            ImplItem::Macro(m) => m.attrs.retain(keep),
            _ => {}
        }
    }
    let mut text = String::new();
    canonical(handler.to_token_stream(), &mut text);
    text
}
