// `version = 0` is the only error: the migration step beside it is not also reported as
// a step at or above the current version.
use es_core::prelude::*;

fn to_v2(v: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    Ok(v)
}

#[event(version = 0, migrate(1 => to_v2))]
pub struct CartCreated {
    pub user_id: String,
}

fn main() {}
