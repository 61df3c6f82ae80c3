//! The schema check catches what breaks stored history: a field change without a new
//! version (the catalogue), a migration that no longer reads an old version (the golden
//! payloads), a field that no longer reads back, a removed event or alias, a handler that
//! panics; and a bless run writes what is missing without hiding what is broken.
//!
//! Each module below is one release of the same code: the same event set, `ShopEvent`,
//! changed in one way. A test blesses the fixtures with the first release, then checks
//! them with a later one.

use es_core::testing::{SchemaCheck, SchemaProblem};
use std::path::{Path, PathBuf};

/// The first release.
mod v1 {
    use es_core::prelude::*;

    #[event]
    #[derive(Debug, Clone)]
    pub struct ShopOpened {
        pub owner: String,
    }

    #[event(aliases = ["ProductStocked"])]
    #[derive(Debug, Clone)]
    pub struct ItemAdded {
        pub sku: String,
        pub quantity: u32,
    }

    #[event(ignore = ["ShopViewed"])]
    #[derive(Debug, Clone)]
    pub enum ShopEvent {
        ShopOpened(ShopOpened),
        ItemAdded(ItemAdded),
    }

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(kind = "shop", event = ShopEvent)]
    pub struct Shop {
        pub items: u32,
    }

    impl Apply<ShopOpened> for Shop {
        fn apply(&mut self, _: &ShopOpened) {}
    }

    impl Apply<ItemAdded> for Shop {
        fn apply(&mut self, e: &ItemAdded) {
            self.items += e.quantity;
        }
    }

    pub fn samples() -> Vec<ShopEvent> {
        vec![
            ShopOpened {
                owner: "ada".into(),
            }
            .into(),
            ItemAdded {
                sku: "tea".into(),
                quantity: 2,
            }
            .into(),
        ]
    }
}

/// Defines the rest of a release around its `ItemAdded`: the set, the aggregate (whose
/// `ItemAdded` handler is `$apply`) and the samples.
macro_rules! release {
    ($sample:expr, |$shop:ident, $e:ident| $apply:expr) => {
        use es_core::prelude::*;

        pub use crate::v1::ShopOpened;

        #[event(ignore = ["ShopViewed"])]
        #[derive(Debug, Clone)]
        pub enum ShopEvent {
            ShopOpened(ShopOpened),
            ItemAdded(ItemAdded),
        }

        #[derive(Debug, Default, Aggregate)]
        #[aggregate(kind = "shop", event = ShopEvent)]
        pub struct Shop {
            pub items: u32,
        }

        impl Apply<ShopOpened> for Shop {
            fn apply(&mut self, _: &ShopOpened) {}
        }

        impl Apply<ItemAdded> for Shop {
            fn apply(&mut self, $e: &ItemAdded) {
                let $shop = self;
                $apply;
            }
        }

        pub fn samples() -> Vec<ShopEvent> {
            vec![
                ShopOpened {
                    owner: "ada".into(),
                }
                .into(),
                ItemAdded::from($sample).into(),
            ]
        }
    };
}

/// `quantity` renamed `count`, still at version 1: the silent breaking change.
mod renamed_field {
    #[es_core::event(aliases = ["ProductStocked"])]
    #[derive(Debug, Clone)]
    pub struct ItemAdded {
        pub sku: String,
        pub count: u32,
    }

    impl From<u32> for ItemAdded {
        fn from(count: u32) -> Self {
            ItemAdded {
                sku: "tea".into(),
                count,
            }
        }
    }

    release!(2u32, |shop, e| shop.items += e.count);
}

/// The same rename done right: version 2 with a migration step.
mod renamed_with_migration {
    use es_core::UpcastError;
    use serde_json::Value;

    #[es_core::event(aliases = ["ProductStocked"], version = 2, migrate(1 => rename_quantity))]
    #[derive(Debug, Clone)]
    pub struct ItemAdded {
        pub sku: String,
        pub count: u32,
    }

    fn rename_quantity(mut v: Value) -> Result<Value, UpcastError> {
        let object = v
            .as_object_mut()
            .ok_or_else(|| UpcastError::new("expected an object"))?;
        let quantity = object
            .remove("quantity")
            .ok_or_else(|| UpcastError::missing_field("quantity"))?;
        object.insert("count".into(), quantity);
        Ok(v)
    }

    impl From<u32> for ItemAdded {
        fn from(count: u32) -> Self {
            ItemAdded {
                sku: "tea".into(),
                count,
            }
        }
    }

    release!(2u32, |shop, e| shop.items += e.count);
}

/// Version 2 whose migration step forgets the rename: version 1 no longer reads.
mod broken_migration {
    use es_core::UpcastError;
    use serde_json::Value;

    #[es_core::event(aliases = ["ProductStocked"], version = 2, migrate(1 => keep_as_is))]
    #[derive(Debug, Clone)]
    pub struct ItemAdded {
        pub sku: String,
        pub count: u32,
    }

    fn keep_as_is(v: Value) -> Result<Value, UpcastError> {
        Ok(v)
    }

    impl From<u32> for ItemAdded {
        fn from(count: u32) -> Self {
            ItemAdded {
                sku: "tea".into(),
                count,
            }
        }
    }

    release!(2u32, |shop, e| shop.items += e.count);
}

/// A new field with a default: stored payloads still read, the catalogue must be told.
mod compatible_field {
    #[es_core::event(aliases = ["ProductStocked"])]
    #[derive(Debug, Clone)]
    pub struct ItemAdded {
        pub sku: String,
        pub quantity: u32,
        #[serde(default)]
        pub gift: bool,
    }

    impl From<u32> for ItemAdded {
        fn from(quantity: u32) -> Self {
            ItemAdded {
                sku: "tea".into(),
                quantity,
                gift: false,
            }
        }
    }

    release!(2u32, |shop, e| shop.items += e.quantity);
}

/// `quantity` removed at version 1: old payloads still decode, but lose it.
mod dropped_field {
    #[es_core::event(aliases = ["ProductStocked"])]
    #[derive(Debug, Clone)]
    pub struct ItemAdded {
        pub sku: String,
    }

    impl From<&str> for ItemAdded {
        fn from(sku: &str) -> Self {
            ItemAdded { sku: sku.into() }
        }
    }

    release!("tea", |shop, _e| shop.items += 1);
}

/// A handler that panics on an event it now considers impossible.
mod panicking_handler {
    pub use crate::v1::ItemAdded;

    release!(
        ItemAdded {
            sku: "tea".into(),
            quantity: 2
        },
        |shop, e| {
            assert!(e.quantity > 5, "fewer than 6 items");
            shop.items += e.quantity
        }
    );
}

/// `ItemAdded` without its alias: events stored as "ProductStocked" no longer load.
mod dropped_alias {
    #[es_core::event]
    #[derive(Debug, Clone)]
    pub struct ItemAdded {
        pub sku: String,
        pub quantity: u32,
    }

    impl From<u32> for ItemAdded {
        fn from(quantity: u32) -> Self {
            ItemAdded {
                sku: "tea".into(),
                quantity,
            }
        }
    }

    release!(2u32, |shop, e| shop.items += e.quantity);
}

/// `ItemAdded` gone from the set, and its alias with it.
mod removed_event {
    use es_core::prelude::*;

    pub use crate::v1::ShopOpened;

    #[event]
    #[derive(Debug, Clone)]
    pub enum ShopEvent {
        ShopOpened(ShopOpened),
    }
}

/// `ItemAdded` renamed `StockAdded`, keeping the old name as an alias.
mod renamed_event {
    use es_core::prelude::*;

    pub use crate::v1::ShopOpened;

    #[event(aliases = ["ItemAdded", "ProductStocked"])]
    #[derive(Debug, Clone)]
    pub struct StockAdded {
        pub sku: String,
        pub quantity: u32,
    }

    #[event(ignore = ["ShopViewed"])]
    #[derive(Debug, Clone)]
    pub enum ShopEvent {
        ShopOpened(ShopOpened),
        StockAdded(StockAdded),
    }
}

/// `ItemAdded` renamed `StockAdded` and its `sku` renamed `item`, still at version 1: the
/// rename must not hide the silent breaking change.
mod renamed_and_reshaped {
    use es_core::prelude::*;

    pub use crate::v1::ShopOpened;

    #[event(aliases = ["ItemAdded", "ProductStocked"])]
    #[derive(Debug, Clone)]
    pub struct StockAdded {
        pub item: String,
        pub quantity: u32,
    }

    #[event(ignore = ["ShopViewed"])]
    #[derive(Debug, Clone)]
    pub enum ShopEvent {
        ShopOpened(ShopOpened),
        StockAdded(StockAdded),
    }
}

/// `ItemAdded` retired into `ignore`, its own alias forgotten.
mod retired_event {
    use es_core::prelude::*;

    pub use crate::v1::ShopOpened;

    #[event(ignore = ["ShopViewed", "ItemAdded"])]
    #[derive(Debug, Clone)]
    pub enum ShopEvent {
        ShopOpened(ShopOpened),
    }
}

/// `ItemAdded` split into `StockReceived` and `StockCounted`: the old event stays in the
/// set, unchanged, as a legacy variant that is still read and applied.
mod split_event {
    use es_core::prelude::*;

    pub use crate::v1::{ItemAdded, ShopOpened};

    #[event]
    #[derive(Debug, Clone)]
    pub struct StockReceived {
        pub sku: String,
        pub quantity: u32,
    }

    #[event]
    #[derive(Debug, Clone)]
    pub struct StockCounted {
        pub sku: String,
    }

    #[event(ignore = ["ShopViewed"])]
    #[derive(Debug, Clone)]
    pub enum ShopEvent {
        ShopOpened(ShopOpened),
        #[event(legacy)]
        ItemAdded(ItemAdded),
        StockReceived(StockReceived),
        StockCounted(StockCounted),
    }

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(kind = "shop", event = ShopEvent)]
    pub struct Shop {
        pub items: u32,
    }

    impl Apply<ShopOpened> for Shop {
        fn apply(&mut self, _: &ShopOpened) {}
    }

    impl Apply<ItemAdded> for Shop {
        fn apply(&mut self, e: &ItemAdded) {
            self.apply(&StockReceived {
                sku: e.sku.clone(),
                quantity: e.quantity,
            });
            self.apply(&StockCounted { sku: e.sku.clone() });
        }
    }

    impl Apply<StockReceived> for Shop {
        fn apply(&mut self, e: &StockReceived) {
            self.items += e.quantity;
        }
    }

    impl Apply<StockCounted> for Shop {
        fn apply(&mut self, _: &StockCounted) {}
    }

    /// Samples of the new events only: the legacy event's golden payload exists.
    pub fn samples() -> (StockReceived, StockCounted) {
        (
            StockReceived {
                sku: "tea".into(),
                quantity: 2,
            },
            StockCounted { sku: "tea".into() },
        )
    }
}

/// The ignored `ShopViewed` taken again by a new event.
mod retired_name_reused {
    use es_core::prelude::*;

    pub use crate::v1::{ItemAdded, ShopOpened};

    #[event]
    #[derive(Debug, Clone)]
    pub struct ShopViewed {
        pub page: String,
    }

    #[event]
    #[derive(Debug, Clone)]
    pub enum ShopEvent {
        ShopOpened(ShopOpened),
        ItemAdded(ItemAdded),
        ShopViewed(ShopViewed),
    }
}

/// The set renamed: `ShopEvent` is now `StoreEvent`, without `ItemAdded`.
mod renamed_set {
    use es_core::prelude::*;

    pub use crate::v1::ShopOpened;

    #[event]
    #[derive(Debug, Clone)]
    pub enum StoreEvent {
        ShopOpened(ShopOpened),
    }
}

/// A fresh, empty fixtures directory for one test.
struct Fixtures(PathBuf);

impl Fixtures {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("es-schema-check-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Fixtures(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Blesses the fixtures with the first release.
    fn released_with_v1(name: &str) -> Self {
        let fixtures = Fixtures::new(name);
        let report = SchemaCheck::new(fixtures.path())
            .bless(true)
            .aggregate::<v1::Shop>(v1::samples())
            .check()
            .expect("blessing the first release");
        assert_eq!(report.written.len(), 2, "{report}");
        fixtures
    }
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn problems(check: SchemaCheck) -> Vec<SchemaProblem> {
    check
        .bless(false)
        .check()
        .expect_err("the check must fail")
        .problems
}

fn messages(problems: &[SchemaProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_bless_run_writes_golden_payloads_and_the_catalogue_then_the_check_passes() {
    let fixtures = Fixtures::released_with_v1("bless");
    let golden = fixtures.path().join("ShopEvent/ItemAdded/v1.json");
    let payload: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&golden).unwrap()).unwrap();
    assert_eq!(payload, serde_json::json!({"sku": "tea", "quantity": 2}));
    let catalogue = std::fs::read_to_string(fixtures.path().join("schema-catalogue.json")).unwrap();
    for expected in [
        "\"ShopEvent\"",
        "\"ShopViewed\"",
        "\"ProductStocked\"",
        "\"quantity: u32\"",
        "\"sku: String\"",
        "\"fingerprint\": \"0x",
    ] {
        assert!(catalogue.contains(expected), "{expected} in {catalogue}");
    }

    let check = SchemaCheck::new(fixtures.path())
        .bless(false)
        .aggregate::<v1::Shop>(v1::samples());
    let report = check.check().expect("the same code passes");
    assert_eq!(report.goldens_checked, 2);
    assert!(report.written.is_empty());
    assert_eq!(check.render_catalogue(), catalogue);
    assert!(check.compare_catalogue(&catalogue).is_empty());
}

#[test]
fn a_breaking_field_change_without_a_version_bump_fails() {
    let fixtures = Fixtures::released_with_v1("renamed-field");
    let found = problems(
        SchemaCheck::new(fixtures.path())
            .aggregate::<renamed_field::Shop>(renamed_field::samples()),
    );
    let text = messages(&found);
    // The catalogue names the event, the change and the way out.
    let changed = found
        .iter()
        .find(|p| matches!(p, SchemaProblem::ChangedWithoutVersionBump { .. }))
        .unwrap_or_else(|| panic!("no catalogue problem in:\n{text}"));
    assert_eq!(
        changed.to_string(),
        "`ShopEvent`: event `ItemAdded` changed its stored shape but is still at version 1:\n       \
         - field `quantity: u32`\n       \
         + field `count: u32`\n   \
         Events already stored at version 1 have the old shape. If the change breaks them, set \
         `version = 2` on the struct with a step from version 1 (`migrate(1 => f)`, or \
         `upcast_from = ` the old struct kept as a type), then run `ES_SCHEMA_BLESS=1 cargo test` \
         to write the new golden payload and catalogue. If the change is compatible (a new field \
         with `#[serde(default)]`, say), accept it by regenerating the catalogue with \
         `ES_SCHEMA_BLESS=1 cargo test`"
    );
    // The golden payload of version 1 no longer reads either.
    assert!(
        text.contains("`ShopEvent` can no longer read the golden payload of `ItemAdded` version 1"),
        "{text}"
    );
    assert!(text.contains("missing field `count`"), "{text}");

    // A bless run accepts the catalogue change but cannot make the golden payload pass.
    let failure = SchemaCheck::new(fixtures.path())
        .bless(true)
        .aggregate::<renamed_field::Shop>(renamed_field::samples())
        .check()
        .unwrap_err();
    assert!(matches!(
        failure.problems[..],
        [SchemaProblem::GoldenBroken { version: 1, .. }]
    ));
    assert_eq!(
        failure.report.accepted,
        [
            "`ShopEvent`: `ItemAdded` changed its stored shape at version 1: \
          - field `quantity: u32`, + field `count: u32`"
        ]
    );
}

#[test]
fn the_catalogue_can_be_checked_as_a_string() {
    let fixtures = Fixtures::new("catalogue-string");
    let released = SchemaCheck::new(fixtures.path()).aggregate::<v1::Shop>(v1::samples());
    let catalogue = released.render_catalogue();
    let changed = SchemaCheck::new(fixtures.path())
        .aggregate::<renamed_field::Shop>(renamed_field::samples());
    let found = changed.compare_catalogue(&catalogue);
    assert!(
        matches!(&found[..], [SchemaProblem::ChangedWithoutVersionBump { event, version: 1, changes, .. }]
            if event == "ItemAdded" && changes.len() == 2),
        "{found:?}"
    );
    let garbled = changed.compare_catalogue("{ not json");
    assert!(
        garbled[0]
            .to_string()
            .starts_with("cannot read the schema catalogue"),
        "{garbled:?}"
    );
}

#[test]
fn a_version_bump_with_a_migration_passes_once_blessed() {
    let fixtures = Fixtures::released_with_v1("bumped");
    let check = || {
        SchemaCheck::new(fixtures.path())
            .aggregate::<renamed_with_migration::Shop>(renamed_with_migration::samples())
    };
    let text = messages(&problems(check()));
    assert!(
        text.contains("no golden payload for `ItemAdded` version 2")
            && text.contains("Write it from a sample with `ES_SCHEMA_BLESS=1 cargo test`"),
        "{text}"
    );
    assert!(
        text.contains("`ItemAdded` is now at version 2 (the catalogue has version 1)"),
        "{text}"
    );
    assert!(
        !text.contains("version 1 ("),
        "version 1 still reads: {text}"
    );

    let report = check().bless(true).check().expect("bless writes version 2");
    assert_eq!(
        report.written,
        [fixtures.path().join("ShopEvent/ItemAdded/v2.json")]
    );
    check()
        .bless(false)
        .check()
        .expect("and then the check passes");
}

#[test]
fn a_broken_migration_fails_the_golden_payload_of_the_old_version() {
    let fixtures = Fixtures::released_with_v1("broken-migration");
    // Version 2's golden payload exists, as it would once version 2 was released.
    let v2 = fixtures.path().join("ShopEvent/ItemAdded/v2.json");
    std::fs::write(&v2, r#"{"sku": "tea", "count": 2}"#).unwrap();
    let check = || {
        SchemaCheck::new(fixtures.path())
            .aggregate::<broken_migration::Shop>(broken_migration::samples())
    };
    let found = problems(check());
    let broken: Vec<_> = found
        .iter()
        .filter(|p| matches!(p, SchemaProblem::GoldenBroken { .. }))
        .collect();
    assert_eq!(broken.len(), 1, "{found:?}");
    let message = broken[0].to_string();
    assert!(
        message.starts_with(
            "`ShopEvent` can no longer read the golden payload of `ItemAdded` version 1"
        ) && message.contains("cannot upcast `ItemAdded` from version 1 to 2")
            && message.contains("missing field `count`")
            && message.contains("Do not edit the golden payload to make it pass"),
        "{message}"
    );
    // Blessing does not help: a golden payload is never rewritten.
    let failure = check().bless(true).check().unwrap_err();
    assert!(
        failure
            .problems
            .iter()
            .any(|p| matches!(p, SchemaProblem::GoldenBroken { version: 1, .. })),
        "{failure}"
    );
}

#[test]
fn a_compatible_change_is_accepted_by_regenerating_the_catalogue() {
    let fixtures = Fixtures::released_with_v1("compatible");
    let check = || {
        SchemaCheck::new(fixtures.path())
            .aggregate::<compatible_field::Shop>(compatible_field::samples())
    };
    let found = problems(check());
    assert!(
        matches!(&found[..], [SchemaProblem::ChangedWithoutVersionBump { changes, .. }]
            if changes == &["+ field `#[serde(default)] gift: bool`"]),
        "{found:?}"
    );
    let report = check()
        .bless(true)
        .check()
        .expect("the golden payloads still read");
    assert!(report.written.is_empty());
    assert!(report.catalogue_written.is_some());
    check().bless(false).check().expect("accepted");
}

#[test]
fn a_field_that_no_longer_reads_back_is_lost_data() {
    let fixtures = Fixtures::released_with_v1("dropped");
    let found = problems(
        SchemaCheck::new(fixtures.path())
            .aggregate::<dropped_field::Shop>(dropped_field::samples()),
    );
    let lossy = found
        .iter()
        .find(|p| matches!(p, SchemaProblem::GoldenLossy { .. }))
        .unwrap_or_else(|| panic!("{found:?}"));
    let message = lossy.to_string();
    assert!(
        message.contains("`ItemAdded` version 1 does not read all of its golden payload")
            && message.contains("`/quantity` (2) is dropped"),
        "{message}"
    );
}

#[test]
fn a_handler_that_panics_on_a_golden_payload_fails() {
    let fixtures = Fixtures::released_with_v1("panics");
    let found = problems(
        SchemaCheck::new(fixtures.path())
            .aggregate::<panicking_handler::Shop>(panicking_handler::samples()),
    );
    assert!(
        matches!(&found[..], [SchemaProblem::ApplyPanicked { aggregate, message, .. }]
            if aggregate == "Shop" && message == "fewer than 6 items"),
        "{found:?}"
    );
}

#[test]
fn removing_an_event_puts_history_at_risk_but_renaming_it_does_not() {
    let fixtures = Fixtures::released_with_v1("removed");
    let text = messages(&problems(
        SchemaCheck::new(fixtures.path()).event_set::<removed_event::ShopEvent>(()),
    ));
    assert!(
        text.contains(
            "event `ItemAdded` (version 1) was removed: stored `ItemAdded` events will fail to load"
        ),
        "{text}"
    );
    assert!(
        text.contains("\"ShopViewed\" is no longer ignored"),
        "{text}"
    );

    let renamed = SchemaCheck::new(fixtures.path()).event_set::<renamed_event::ShopEvent>(());
    let found =
        renamed.compare_catalogue(&std::fs::read_to_string(renamed.catalogue_file()).unwrap());
    assert_eq!(
        messages(&found),
        "`ShopEvent`: event `ItemAdded` was renamed `StockAdded`, which keeps \"ItemAdded\" as an \
         alias; record it by regenerating the catalogue with `ES_SCHEMA_BLESS=1 cargo test`"
    );
}

#[test]
fn missing_golden_payloads_say_how_to_get_them() {
    let fixtures = Fixtures::new("missing");
    let check = || {
        SchemaCheck::new(fixtures.path()).aggregate::<renamed_with_migration::Shop>(
            // no sample of `ItemAdded`
            renamed_with_migration::ShopOpened {
                owner: "ada".into(),
            },
        )
    };
    let text = messages(&problems(check()));
    assert!(
        text.contains("no golden payload for `ItemAdded` version 1")
            && text.contains("An older version cannot be written from today's code"),
        "{text}"
    );
    assert!(text.contains("no schema catalogue at"), "{text}");

    let failure = check().bless(true).check().unwrap_err();
    let text = failure.to_string();
    assert!(
        text.contains("cannot write the golden payload of `ItemAdded` version 2")
            && text.contains("no sample of `ItemAdded` was given"),
        "{text}"
    );
    // What could be written was.
    assert_eq!(
        failure.report.written,
        [fixtures.path().join("ShopEvent/ShopOpened/v1.json")]
    );
}

#[test]
fn a_golden_payload_newer_than_the_code_means_the_version_went_back() {
    let fixtures = Fixtures::released_with_v1("ahead");
    std::fs::write(
        fixtures.path().join("ShopEvent/ItemAdded/v2.json"),
        r#"{"sku": "tea", "count": 2}"#,
    )
    .unwrap();
    let found = problems(SchemaCheck::new(fixtures.path()).aggregate::<v1::Shop>(v1::samples()));
    assert!(
        matches!(
            &found[..],
            [SchemaProblem::GoldenAhead {
                version: 2,
                current: 1,
                ..
            }]
        ),
        "{found:?}"
    );
}

#[test]
fn a_hand_written_set_is_reported_undescribed() {
    let fixtures = Fixtures::new("undescribed");
    let found = problems(
        SchemaCheck::new(fixtures.path()).event_set::<es_core::testing::counter::CounterEvent>(()),
    );
    assert!(
        found[0]
            .to_string()
            .starts_with("event set `CounterEvent` has no schema description"),
        "{found:?}"
    );
}

#[test]
fn a_set_registered_twice_is_reported() {
    let fixtures = Fixtures::released_with_v1("twice");
    let found = problems(
        SchemaCheck::new(fixtures.path())
            .aggregate::<v1::Shop>(v1::samples())
            .event_set::<renamed_event::ShopEvent>(()),
    );
    assert!(
        matches!(&found[..], [SchemaProblem::DuplicateSet { set }] if set == "ShopEvent"),
        "{found:?}"
    );
}

#[test]
fn an_event_split_in_two_keeps_its_golden_payloads_checked() {
    let fixtures = Fixtures::released_with_v1("split");
    let check =
        || SchemaCheck::new(fixtures.path()).aggregate::<split_event::Shop>(split_event::samples());
    // Only the two new events are news to the catalogue; the legacy one is unchanged.
    let found = problems(check());
    let text = messages(&found);
    assert!(
        text.contains("StockReceived") && text.contains("StockCounted"),
        "{text}"
    );
    assert!(!text.contains("ItemAdded"), "{text}");

    let report = check()
        .bless(true)
        .check()
        .expect("bless adds the new events");
    assert_eq!(
        report.written,
        [
            fixtures.path().join("ShopEvent/StockReceived/v1.json"),
            fixtures.path().join("ShopEvent/StockCounted/v1.json"),
        ]
    );
    let report = check().check().expect("and then the check passes");
    // The legacy event's golden payload is still decoded, applied and written back.
    assert_eq!(report.goldens_checked, 4);
    let catalogue = std::fs::read_to_string(fixtures.path().join("schema-catalogue.json")).unwrap();
    assert!(catalogue.contains("\"ItemAdded\""), "{catalogue}");
}

#[test]
fn a_renamed_event_is_compared_with_what_was_stored_under_its_old_name() {
    let fixtures = Fixtures::released_with_v1("renamed-reshaped");
    let found = problems(
        SchemaCheck::new(fixtures.path()).event_set::<renamed_and_reshaped::ShopEvent>(()),
    );
    let text = messages(&found);
    // the catalogue: the same version, another shape
    assert!(
        found.iter().any(|p| matches!(p,
            SchemaProblem::ChangedWithoutVersionBump { event, .. } if event == "StockAdded")),
        "{text}"
    );
    // the golden payload kept under the old name no longer reads
    assert!(
        found.iter().any(|p| matches!(p,
            SchemaProblem::GoldenBroken { path, .. } if path.ends_with("ItemAdded/v1.json"))),
        "{text}"
    );
}

#[test]
fn retiring_an_event_does_not_drop_its_aliases_silently() {
    let fixtures = Fixtures::released_with_v1("retired");
    let text = messages(&problems(
        SchemaCheck::new(fixtures.path()).event_set::<retired_event::ShopEvent>(()),
    ));
    assert!(
        text.contains("alias \"ProductStocked\" of the retired `ItemAdded`"),
        "{text}"
    );
}

#[test]
fn golden_payloads_under_a_name_no_event_answers_to_fail_even_when_blessed() {
    let fixtures = Fixtures::released_with_v1("unanswered");
    let unanswered = |found: &[SchemaProblem]| {
        found
            .iter()
            .filter(|p| {
                matches!(p, SchemaProblem::GoldenNameUnknown { event, versions, .. }
                    if event == "ItemAdded" && versions == &[1])
            })
            .count()
    };
    let found =
        problems(SchemaCheck::new(fixtures.path()).event_set::<removed_event::ShopEvent>(()));
    assert_eq!(unanswered(&found), 1, "{}", messages(&found));
    let text = messages(&found);
    assert!(
        text.contains("golden payloads are filed under \"ItemAdded\"")
            && text.contains("a name no event of the set answers to: stored `ItemAdded` events would fail to load"),
        "{text}"
    );
    let failure = SchemaCheck::new(fixtures.path())
        .bless(true)
        .event_set::<removed_event::ShopEvent>(())
        .check()
        .unwrap_err();
    assert_eq!(unanswered(&failure.problems), 1, "{failure}");

    // an ignored name still answers: its stored events are skipped, not refused
    let found =
        problems(SchemaCheck::new(fixtures.path()).event_set::<retired_event::ShopEvent>(()));
    assert_eq!(unanswered(&found), 0, "{}", messages(&found));
}

#[test]
fn a_golden_payload_under_an_old_name_is_read_whatever_its_version() {
    let fixtures = Fixtures::released_with_v1("old-name-versions");
    // an older golden payload kept under the alias, beside the event's own
    let dir = fixtures.path().join("ShopEvent/ProductStocked");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("v1.json"), r#"{"sku": "tea"}"#).unwrap();
    let found = problems(SchemaCheck::new(fixtures.path()).aggregate::<v1::Shop>(v1::samples()));
    assert!(
        matches!(&found[..], [SchemaProblem::GoldenBroken { path, error, .. }]
            if path.ends_with("ProductStocked/v1.json") && error.contains("missing field `quantity`")),
        "{found:?}"
    );
}

#[test]
fn a_bless_run_does_not_accept_history_at_risk() {
    let fixtures = Fixtures::released_with_v1("bless-at-risk");
    let catalogue = fixtures.path().join("schema-catalogue.json");
    let before = std::fs::read_to_string(&catalogue).unwrap();
    let check = || {
        SchemaCheck::new(fixtures.path()).aggregate::<dropped_alias::Shop>(dropped_alias::samples())
    };
    let failure = check().bless(true).check().unwrap_err();
    assert!(
        matches!(&failure.problems[..], [SchemaProblem::HistoryAtRisk { change, .. }]
            if change == "alias \"ProductStocked\" of `ItemAdded` was removed"),
        "{failure}"
    );
    assert!(failure.report.accepted.is_empty(), "{failure}");
    // the catalogue still records the alias, so the next check fails the same way
    assert_eq!(std::fs::read_to_string(&catalogue).unwrap(), before);
    let found = problems(check());
    assert!(
        matches!(&found[..], [SchemaProblem::HistoryAtRisk { .. }]),
        "{found:?}"
    );
}

/// A name the set ignored, taken again by a new event: stored events skipped until now
/// would be read as the new one. History at risk, which a bless run does not accept (it
/// was reported as a new event, and blessed).
#[test]
fn a_retired_name_taken_again_puts_history_at_risk() {
    let fixtures = Fixtures::released_with_v1("retired-reused");
    let catalogue = fixtures.path().join("schema-catalogue.json");
    let before = std::fs::read_to_string(&catalogue).unwrap();
    let check = || {
        SchemaCheck::new(fixtures.path()).event_set::<retired_name_reused::ShopEvent>(
            retired_name_reused::ShopViewed { page: "/".into() },
        )
    };
    let failure = check().bless(true).check().unwrap_err();
    assert!(
        failure
            .problems
            .iter()
            .any(|p| matches!(p, SchemaProblem::HistoryAtRisk { change, .. }
            if change == "\"ShopViewed\", ignored until now, is decoded by `ShopViewed`")),
        "{failure}"
    );
    assert_eq!(std::fs::read_to_string(&catalogue).unwrap(), before);
}

/// A set the catalogue lists but the check no longer registers (renamed, or left out):
/// blessing would drop what the catalogue records of it (its events, their versions, its
/// ignored names) unchecked, so it is history at risk, and the catalogue stays.
#[test]
fn a_set_no_longer_registered_is_not_dropped_by_a_bless_run() {
    let fixtures = Fixtures::released_with_v1("set-renamed");
    let catalogue = fixtures.path().join("schema-catalogue.json");
    let before = std::fs::read_to_string(&catalogue).unwrap();
    let failure = SchemaCheck::new(fixtures.path())
        .bless(true)
        .event_set::<renamed_set::StoreEvent>(())
        .check()
        .unwrap_err();
    assert!(
        failure.problems.iter().any(
            |p| matches!(p, SchemaProblem::HistoryAtRisk { set, change, .. }
            if set == "ShopEvent" && change.contains("does not register it"))
        ),
        "{failure}"
    );
    assert!(
        failure
            .to_string()
            .contains("rename its entry in the catalogue"),
        "{failure}"
    );
    assert_eq!(std::fs::read_to_string(&catalogue).unwrap(), before);
}

/// A catalogue that does not parse (a merge conflict) or is of a newer format is not
/// written over by a bless run: what it records would be lost unchecked.
#[test]
fn a_bless_run_does_not_write_over_a_catalogue_it_cannot_read() {
    let fixtures = Fixtures::released_with_v1("unreadable");
    let catalogue = fixtures.path().join("schema-catalogue.json");
    let released = std::fs::read_to_string(&catalogue).unwrap();
    let conflicted = format!("<<<<<<< HEAD\n{released}=======\n{released}>>>>>>> other\n");
    let newer = released.replacen("\"format\": ", "\"format\": 1000", 1);
    assert_ne!(newer, released);
    for text in [conflicted, newer] {
        std::fs::write(&catalogue, &text).unwrap();
        let failure = SchemaCheck::new(fixtures.path())
            .bless(true)
            .aggregate::<v1::Shop>(v1::samples())
            .check()
            .unwrap_err();
        assert!(
            matches!(
                &failure.problems[..],
                [SchemaProblem::CatalogueUnreadable { .. }]
            ),
            "{failure}"
        );
        assert!(
            failure.to_string().contains("does not write over it"),
            "{failure}"
        );
        assert_eq!(std::fs::read_to_string(&catalogue).unwrap(), text);
    }
}
