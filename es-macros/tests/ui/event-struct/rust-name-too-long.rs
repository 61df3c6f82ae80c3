// Without `name = ".."`, the Rust name is the stored name: it is held to the same limit.
use es_core::prelude::*;

#[event]
pub struct ProductAddedToTheCartOfACustomerWhoArrivedFromTheNewsletterCampaignProductAddedToTheCartOfACustomerWhoArrivedFromTheNewsletterCampaignProductAddedToTheCartOfACustomerWhoArrivedFromTheNewsletterCampaignProductAddedToTheCartOfACustomerWhoArrivedFromTheNewslet {
    pub product: String,
}

fn main() {}
