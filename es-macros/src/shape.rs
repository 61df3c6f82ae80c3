//! Types and code as text: the stored shape of an event struct as the schema catalogue
//! lists it, and the canonical token text that snapshot fingerprints hash.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Attribute, Fields, ItemStruct};

/// The stored shape of an event struct: what serde's derive sees of it.
pub struct Shape {
    /// `named`, `tuple` or `unit`: each serializes differently. `#[event]` refuses the
    /// last two before it describes a struct; the form stays in the fingerprint so that
    /// the fingerprints in existing catalogues keep their values.
    pub form: &'static str,
    /// Container attributes that shape the JSON, as written.
    pub attributes: Vec<String>,
    /// Named fields sorted by name (their order does not change the JSON), tuple fields
    /// in order.
    pub fields: Vec<Field>,
}

/// One field as written.
pub struct Field {
    pub name: String,
    pub ty: String,
    pub attributes: Vec<String>,
}

impl Shape {
    pub fn of(item: &ItemStruct) -> Shape {
        let attributes = shaping_attributes(&item.attrs);
        let field = |name: String, f: &syn::Field| Field {
            name,
            ty: written(f.ty.to_token_stream()),
            attributes: shaping_attributes(&f.attrs),
        };
        let (form, fields) = match &item.fields {
            Fields::Named(named) => {
                let mut fields: Vec<Field> = named
                    .named
                    .iter()
                    .map(|f| {
                        let name = f.ident.as_ref().map(|i| i.unraw().to_string());
                        field(name.unwrap_or_default(), f)
                    })
                    .collect();
                fields.sort_by(|a, b| a.name.cmp(&b.name));
                ("named", fields)
            }
            Fields::Unnamed(unnamed) => (
                "tuple",
                unnamed
                    .unnamed
                    .iter()
                    .enumerate()
                    .map(|(i, f)| field(i.to_string(), f))
                    .collect(),
            ),
            Fields::Unit => ("unit", Vec::new()),
        };
        Shape {
            form,
            attributes,
            fields,
        }
    }
}

/// The attributes that can change what serde writes or reads: serde's own (and those of
/// crates named `serde_*`, such as `serde_as`), and `cfg`/`cfg_attr`, which can remove a
/// field or add a serde attribute. Doc comments, derives and lints cannot.
fn shaping_attributes(attrs: &[Attribute]) -> Vec<String> {
    attrs
        .iter()
        .filter(|attr| {
            let path = attr.path();
            path.is_ident("cfg")
                || path.is_ident("cfg_attr")
                || path
                    .segments
                    .first()
                    .is_some_and(|s| s.ident.to_string().starts_with("serde"))
        })
        .map(|attr| format!("#[{}]", written(attr.meta.to_token_stream())))
        .collect()
}

/// One unit of written code: a word, an operator (punctuation joined as written) or a
/// delimited group.
enum Atom {
    Word(String),
    Op(String),
    Group(Delimiter, String),
}

/// Tokens as a person writes them: `BTreeMap<String, u32>`, `#[serde(rename = "x")]`,
/// `&'static str`, `fn(u32) -> u32`. The same tokens always give the same text, however
/// the source was spaced.
pub fn written(tokens: TokenStream) -> String {
    let mut atoms = Vec::new();
    let mut pending_op = String::new();
    for tree in tokens {
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

/// Tokens as text that does not depend on how the compiler spaces them, for hashing.
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

/// A 64-bit FNV-1a hash, never 0 (which means "no fingerprint").
pub fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash.max(1)
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

    #[test]
    fn shapes_sort_named_fields_and_keep_only_shaping_attributes() {
        let item: ItemStruct = syn::parse_quote! {
            /// Docs do not count.
            #[derive(Debug)]
            #[serde(rename_all = "camelCase")]
            struct Added {
                /// Neither here.
                #[serde(default)]
                quantity: u32,
                #[allow(dead_code)]
                r#product: String,
            }
        };
        let shape = Shape::of(&item);
        assert_eq!(shape.form, "named");
        assert_eq!(shape.attributes, ["#[serde(rename_all = \"camelCase\")]"]);
        let fields: Vec<_> = shape
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.ty.as_str(), f.attributes.clone()))
            .collect();
        assert_eq!(
            fields,
            [
                ("product", "String", vec![]),
                ("quantity", "u32", vec!["#[serde(default)]".to_owned()])
            ]
        );
        let tuple: ItemStruct = syn::parse_quote!(
            struct Amount(u64, #[serde(skip)] u8);
        );
        let shape = Shape::of(&tuple);
        assert_eq!(shape.form, "tuple");
        assert_eq!(shape.fields[1].name, "1");
    }
}
