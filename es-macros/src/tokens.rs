//! Pieces of generated code that every expansion uses: names for its own bindings and
//! constants that cannot meet the user's, and messages for the assertions it emits.

use proc_macro2::Span;
use syn::Ident;

/// A parameter or binding of generated code. Mixed-site hygiene keeps it apart from the
/// user's locals, but a pattern still resolves to a constant of the same name in scope,
/// so the name is also one that no user item plausibly has.
pub fn local(name: &str) -> Ident {
    Ident::new(&format!("__es_{name}"), Span::mixed_site())
}

/// A constant of generated code, named so that no user item plausibly shares its name.
pub fn local_const(name: &str) -> Ident {
    Ident::new(&format!("__ES_{name}"), Span::mixed_site())
}

/// A message passed as `assert!`'s format string.
pub fn escape_braces(message: &str) -> String {
    message.replace('{', "{{").replace('}', "}}")
}
