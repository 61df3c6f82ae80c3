//! `#[fingerprint]` on an `Apply` handler: the impl with `const FINGERPRINT` set to a hash
//! of its code, which the aggregate's snapshot fingerprint includes.

use crate::ctxt::Ctxt;
use crate::shape::{canonical, fnv1a};
use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{ImplItem, Item, ItemImpl, LitInt};

pub fn expand(args: TokenStream, item: &Item) -> TokenStream {
    let cx = Ctxt::new();
    if !args.is_empty() {
        cx.error_spanned_by(
            &args,
            "`#[fingerprint]` takes no arguments: it hashes the code of the handler it is on",
        );
    }
    let handler = match item {
        Item::Impl(handler) => Some(handler),
        other => {
            cx.error_spanned_by(
                crate::item_keyword(other),
                "`#[fingerprint]` goes on an `Apply` handler, `impl Apply<Event> for Aggregate { .. }`: it adds the handler's code to the aggregate's snapshot fingerprint",
            );
            None
        }
    };
    if let Some(handler) = handler {
        check(&cx, handler);
    }
    match (cx.check(), handler) {
        (Ok(()), Some(handler)) => generate(handler),
        (Err(errors), _) => {
            let mut out = errors.to_compile_error();
            item.to_tokens(&mut out);
            out
        }
        (Ok(()), None) => unreachable!("a non-impl item is reported"),
    }
}

fn check(cx: &Ctxt, handler: &ItemImpl) {
    let Some((path, _)) = &handler.trait_ else {
        cx.error_spanned_by(
            &handler.self_ty,
            "`#[fingerprint]` goes on an `Apply` handler, `impl Apply<Event> for Aggregate { .. }`, not on an inherent impl: only the handlers are part of a snapshot fingerprint",
        );
        return;
    };
    let is_apply = path.segments.last().is_some_and(|s| s.ident == "Apply");
    if handler.modifiers.polarity.is_some() || !is_apply {
        cx.error_spanned_by(
            path,
            format!(
                "`#[fingerprint]` goes on an `Apply` handler, `impl Apply<Event> for Aggregate {{ .. }}`, not on an impl of `{}`",
                crate::ast::display_tokens(path)
            ),
        );
        return;
    }
    for item in &handler.items {
        if let ImplItem::Const(constant) = item
            && constant.ident == "FINGERPRINT"
        {
            cx.error_spanned_by(
                &constant.ident,
                "`#[fingerprint]` sets `FINGERPRINT` itself: remove this constant, or remove `#[fingerprint]` to keep your own",
            );
        }
    }
}

fn generate(handler: &ItemImpl) -> TokenStream {
    let fingerprint = LitInt::new(
        &format!("{:#018x}", handler_fingerprint(handler)),
        Span::call_site(),
    );
    let mut handler = handler.clone();
    handler.items.insert(
        0,
        syn::parse_quote! {
            const FINGERPRINT: u64 = #fingerprint;
        },
    );
    quote!(#handler)
}

/// The hash of the impl's tokens, doc comments aside: its generics, the event and
/// aggregate types, and the code of every item in it. Spacing and ordinary comments are
/// not tokens, so reformatting does not change it.
fn handler_fingerprint(handler: &ItemImpl) -> u64 {
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
    fnv1a(&text)
}
