//! Opening, configuration, pragmas, placeholders, ids, and the safety properties every query
//! relies on (bound values are data, foreign keys are enforced).

use super::*;

#[test]
fn new_id_is_prefix_and_16_base32_chars() {
    let id = new_id(id_prefix::SCHOOL);
    let (prefix, random) = id.split_once('_').expect("prefix and random part");
    assert_eq!(prefix, "sch");
    assert_eq!(random.len(), 16);
    assert!(
        random
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    );
    assert_ne!(new_id("sch"), new_id("sch"));
}

#[test]
fn config_defaults_to_sqlite_and_checks_the_scheme() {
    let config: StoreConfig = serde_json::from_str("{}").expect("empty config parses");
    assert_eq!(config.url, "");
    assert!(config.validate().is_ok());
    for good in [
        "sqlite:///var/lib/duet/duet.db?mode=rwc",
        "postgres://u@h/db",
    ] {
        assert!(
            StoreConfig { url: good.into() }.validate().is_ok(),
            "{good}"
        );
    }
    assert!(
        StoreConfig {
            url: "mysql://u@h/db".into()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn sqlite_url_escapes_awkward_paths() {
    let url = sqlite_url(std::path::Path::new("/data/my dir#1?/数据/duet.db")).expect("UTF-8");
    assert_eq!(
        url,
        "sqlite:///data/my%20dir%231%3F/%E6%95%B0%E6%8D%AE/duet.db?mode=rwc"
    );
}

#[tokio::test]
async fn sqlite_store_in_an_awkward_directory_opens_twice_with_wal_and_foreign_keys() {
    let dir = TempDir::new();
    let data = dir.0.join("数据 #1?");
    let store = StoreConfig::default().open(&data).await.expect("opens");
    assert_eq!(store.backend(), Backend::Sqlite);
    let district = DistrictRow {
        id: new_id(id_prefix::DISTRICT),
        name: "a".into(),
    };
    store.create_district(&district).await.expect("insert");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&store.pool)
        .await
        .expect("foreign_keys");
    assert_eq!(fk, 1);
    store.close().await;
    assert!(data.join("duet.db").exists());

    // Reopening applies no migration twice and keeps the data.
    let store = Store::sqlite_in(&data).await.expect("reopens");
    assert_eq!(
        store.get_district(&district.id).await.expect("kept"),
        district
    );
    store.close().await;
}

#[tokio::test]
async fn unknown_url_scheme_is_a_config_error() {
    assert_err!(Store::open("mysql://u@h/db").await, StoreError::Config(_));
}

#[tokio::test]
async fn dollar_placeholders_bind_by_number_and_repeat() {
    on_both(|store| async move {
        // `$2` before `$1`, and `$1` twice: bound by number on both backends.
        let row: (String, i64) = sqlx::query_as("SELECT $2 || $1 || $2, $3 + $3")
            .bind("b")
            .bind("a")
            .bind(20_i64)
            .fetch_one(&store.pool)
            .await
            .expect("placeholders bind");
        assert_eq!(row, ("aba".to_owned(), 40));
    })
    .await;
}

#[tokio::test]
async fn sql_looking_text_is_stored_literally() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let evil = "'; DROP TABLE users; --";
        let school = school(&world.district, evil, SchoolKind::Rural);
        store.create_school(&school).await.expect("stored");
        assert_eq!(store.get_school(&school.id).await.expect("read").name, evil);
        let found = store
            .find_user_by_username(evil)
            .await
            .expect("lookup runs");
        assert_eq!(found, None);
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&store.pool)
            .await
            .expect("users table survives");
        assert_eq!(users, 2);
    })
    .await;
}

#[tokio::test]
async fn foreign_keys_are_enforced() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let orphan = SchoolRow {
            district_id: "dst_doesnotexist0000".into(),
            ..school(&world.district, "Orphan", SchoolKind::Urban)
        };
        assert_err!(
            store.create_school(&orphan).await,
            StoreError::ForeignKey { .. }
        );
        assert_err!(
            store.delete_district(&world.district.id).await,
            StoreError::ForeignKey { .. }
        );
        assert_err!(
            store.delete_school(&world.rural.id).await,
            StoreError::ForeignKey { .. }
        );
        let mut moved = world.lead_room.clone();
        moved.school_id = "sch_doesnotexist0000".into();
        assert_err!(
            store.update_classroom(&moved).await,
            StoreError::ForeignKey { .. }
        );
        // Nothing above changed anything.
        assert_eq!(
            store
                .get_classroom(&world.lead_room.id)
                .await
                .expect("kept"),
            world.lead_room
        );
    })
    .await;
}
