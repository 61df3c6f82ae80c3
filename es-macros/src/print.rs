//! Code as text. `written` is for people: the user's code quoted in error messages, types
//! and attributes in the schema catalogue. `canonical` is for hashes: it spells every
//! token the same way, whatever the spacing of the source.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::ToTokens;

/// One unit of written code: a word, an operator (punctuation joined as written) or a
/// delimited group.
enum Atom {
    Word(String),
    Op(String),
    Group(Delimiter, String),
}

/// Tokens as a person writes them: `BTreeMap<String, u32>`, `#[serde(rename = "x")]`,
/// `&'static str`, `fn(u32) -> u32`, `a::B`. The same tokens always give the same text,
/// however the source was spaced: messages quote the user's code with it, and the schema
/// catalogue lists types and attributes with it.
pub fn written(tokens: impl ToTokens) -> String {
    let mut atoms = Vec::new();
    let mut pending_op = String::new();
    for tree in tokens.into_token_stream() {
        match tree {
            TokenTree::Punct(punct) => {
                pending_op.push(punct.as_char());
                if punct.spacing() == Spacing::Alone {
                    atoms.push(Atom::Op(std::mem::take(&mut pending_op)));
                }
                continue;
            }
            other => {
                if !pending_op.is_empty() {
                    atoms.push(Atom::Op(std::mem::take(&mut pending_op)));
                }
                atoms.push(match other {
                    TokenTree::Group(group) => {
                        Atom::Group(group.delimiter(), written(group.stream()))
                    }
                    TokenTree::Ident(ident) => Atom::Word(ident.to_string()),
                    TokenTree::Literal(literal) => Atom::Word(literal.to_string()),
                    TokenTree::Punct(_) => unreachable!("handled above"),
                });
            }
        }
    }
    if !pending_op.is_empty() {
        atoms.push(Atom::Op(pending_op));
    }
    let mut out = String::new();
    let mut previous: Option<&Atom> = None;
    for atom in &atoms {
        if let Some(previous) = previous
            && space_between(previous, atom)
        {
            out.push(' ');
        }
        match atom {
            Atom::Word(word) | Atom::Op(word) => out.push_str(word),
            Atom::Group(delimiter, inner) => {
                let (open, close) = delimiters(*delimiter);
                out.push_str(open);
                out.push_str(inner);
                out.push_str(close);
            }
        }
        previous = Some(atom);
    }
    out
}

fn space_between(previous: &Atom, next: &Atom) -> bool {
    /// Operators written with a space on both sides.
    fn spaced(op: &str) -> bool {
        matches!(op, "=" | "=>" | "->" | "+" | "|")
    }
    match (previous, next) {
        (_, Atom::Op(op)) if matches!(op.as_str(), "," | ";" | ":") => false,
        (Atom::Op(op), _) if matches!(op.as_str(), "," | ";" | ":") => true,
        (Atom::Op(op), _) | (_, Atom::Op(op)) if spaced(op) => true,
        (Atom::Word(_), Atom::Word(_)) => true,
        (Atom::Word(_), Atom::Group(Delimiter::Brace, _)) => true,
        _ => false,
    }
}

fn delimiters(delimiter: Delimiter) -> (&'static str, &'static str) {
    match delimiter {
        Delimiter::Parenthesis => ("(", ")"),
        Delimiter::Brace => ("{", "}"),
        Delimiter::Bracket => ("[", "]"),
        Delimiter::None => ("", ""),
    }
}

/// Tokens as text that does not depend on how the compiler spaces them, for the hashes
/// of snapshot fingerprints. Its output must stay the same from one release to the next:
/// a change would make every stored snapshot look stale.
pub fn canonical(tokens: TokenStream, out: &mut String) {
    for tree in tokens {
        match tree {
            TokenTree::Group(group) => {
                let (open, close) = delimiters(group.delimiter());
                out.push_str(open);
                canonical(group.stream(), out);
                out.push_str(close);
            }
            TokenTree::Ident(ident) => {
                out.push_str(&ident.to_string());
                out.push(' ');
            }
            TokenTree::Punct(punct) => {
                out.push(punct.as_char());
                if punct.spacing() == Spacing::Alone {
                    out.push(' ');
                }
            }
            TokenTree::Literal(literal) => {
                out.push_str(&literal.to_string());
                out.push(' ');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn types_and_attributes_read_as_written() {
        assert_eq!(
            written(quote!(std::collections::BTreeMap<String, Vec<(u32, u64)>>)),
            "std::collections::BTreeMap<String, Vec<(u32, u64)>>"
        );
        assert_eq!(written(quote!(&'static str)), "&'static str");
        assert_eq!(
            written(quote!(Option<Box<dyn Fn(u32) -> u32 + Send>>)),
            "Option<Box<dyn Fn(u32) -> u32 + Send>>"
        );
        assert_eq!(written(quote!([u8; 32])), "[u8; 32]");
        assert_eq!(
            written(quote!(serde(rename = "qty", default))),
            "serde(rename = \"qty\", default)"
        );
        assert_eq!(written(quote!(r#type)), "r#type");
    }
}
