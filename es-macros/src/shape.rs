//! The stored shape of an event struct, as the schema catalogue lists it and its
//! fingerprint hashes: what serde's derive sees of the struct.

use crate::print::written;
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
            ty: written(&f.ty),
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
        .map(|attr| format!("#[{}]", written(&attr.meta)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
