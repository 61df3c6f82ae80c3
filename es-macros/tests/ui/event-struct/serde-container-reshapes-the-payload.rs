// Container attributes that store something other than an object of the struct's named
// fields, or that write the Rust name into the payload, are refused.
use es_core::prelude::*;

#[event]
#[serde(transparent)]
pub struct Deposited {
    pub amount: u64,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Wire {
    pub text: String,
}

impl From<Noted> for Wire {
    fn from(noted: Noted) -> Self {
        Wire { text: noted.note }
    }
}

impl From<Wire> for Noted {
    fn from(wire: Wire) -> Self {
        Noted { note: wire.text }
    }
}

#[event]
#[derive(Clone)]
#[serde(into = "Wire", from = "Wire")]
pub struct Noted {
    pub note: String,
}

#[event]
#[serde(try_from = "Wire")]
pub struct Checked {
    pub note: String,
}

impl TryFrom<Wire> for Checked {
    type Error = String;
    fn try_from(wire: Wire) -> Result<Self, String> {
        Ok(Checked { note: wire.text })
    }
}

#[event]
#[serde(deny_unknown_fields, tag = "type")]
pub struct Tagged {
    pub note: String,
}

#[event]
#[cfg_attr(all(), serde(transparent))]
pub struct Withdrawn {
    pub amount: u64,
}

fn main() {}
