// A field's `#[cfg(..)]`, or a `#[cfg_attr(..)]` applying `cfg` or serde, would make the
// stored shape depend on the build while the fingerprint stays the same: refused.
use es_core::prelude::*;

#[event]
pub struct Noted {
    pub a: u32,
    #[cfg(all())]
    pub note: String,
}

#[event]
pub struct Renamed {
    #[cfg_attr(all(), serde(rename = "ln2"))]
    pub line: String,
}

#[event]
pub struct Hidden {
    #[cfg_attr(all(), cfg(any()))]
    pub gone: String,
}

// a doc comment or a lint under a condition changes nothing stored
#[event]
pub struct Documented {
    #[cfg_attr(all(), doc = "the amount")]
    pub amount: u64,
}

fn main() {}
