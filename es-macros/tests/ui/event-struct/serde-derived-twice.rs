use es_core::prelude::*;
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Serialize, Deserialize)]
pub struct CartCreated {
    pub user_id: String,
}

fn main() {}
