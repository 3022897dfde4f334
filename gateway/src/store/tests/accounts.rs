//! Users, login accounting, browser sessions, API tokens.

use super::*;

#[tokio::test]
async fn users_crud_and_unique_username() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        assert_eq!(
            store.get_user(&world.teacher.id).await.expect("get"),
            world.teacher
        );
        let found = store.find_user_by_username("wang").await.expect("find");
        assert_eq!(found.as_ref(), Some(&world.teacher));
        assert_eq!(
            store.find_user_by_username("Wang").await.expect("find"),
            None
        );

        let twin = user("wang", Role::Reviewer, None);
        assert_err!(
            store.create_user(&twin).await,
            StoreError::Conflict { what: "username" }
        );

        let mut changed = world.teacher.clone();
        changed.display_name = "王芳".into();
        changed.role = Role::SchoolAdmin;
        changed.disabled = true;
        changed.failed_logins = 99; // not written by update_user
        store.update_user(&changed).await.expect("update");
        let stored = store.get_user(&changed.id).await.expect("get");
        assert_eq!(
            stored,
            UserRow {
                failed_logins: 0,
                ..changed.clone()
            }
        );

        changed.username = "admin".into();
        assert_err!(
            store.update_user(&changed).await,
            StoreError::Conflict { .. }
        );

        store
            .set_password_hash(&world.teacher.id, "new-hash")
            .await
            .expect("password");
        store
            .set_user_disabled(&world.teacher.id, false)
            .await
            .expect("enable");
        let stored = store.get_user(&world.teacher.id).await.expect("get");
        assert_eq!(
            (stored.password_hash.as_str(), stored.disabled),
            ("new-hash", false)
        );

        let ghost = user("ghost", Role::Teacher, None);
        assert_err!(
            store.update_user(&ghost).await,
            StoreError::NotFound { what: "user", .. }
        );
        store.delete_user(&world.admin.id).await.expect("delete");
        assert_err!(
            store.get_user(&world.admin.id).await,
            StoreError::NotFound { .. }
        );
    })
    .await;
}

#[test]
fn password_hash_is_never_serialised() {
    let u = user("li", Role::Teacher, None);
    let json = serde_json::to_string(&u).expect("serialises");
    assert!(!json.contains("argon2"), "{json}");
    let back: UserRow = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(
        back,
        UserRow {
            password_hash: String::new(),
            ..u
        }
    );
}

#[tokio::test]
async fn users_listed_by_school_and_district() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let room_account = UserRow {
            classroom_id: Some(world.rural_room.id.clone()),
            ..user("grade3-box", Role::Classroom, None)
        };
        store
            .create_user(&room_account)
            .await
            .expect("classroom account");
        let other = DistrictRow {
            id: new_id(id_prefix::DISTRICT),
            name: "Other".into(),
        };
        store.create_district(&other).await.expect("district");
        let outsider = UserRow {
            district_id: Some(other.id.clone()),
            ..user("zhao", Role::Reviewer, None)
        };
        store.create_user(&outsider).await.expect("outsider");

        let names = |users: Vec<UserRow>| users.into_iter().map(|u| u.username).collect::<Vec<_>>();
        let district = store
            .list_users_in_district(&world.district.id)
            .await
            .expect("district");
        assert_eq!(names(district), ["admin", "grade3-box", "wang"]);
        let urban = store
            .list_users_in_school(&world.urban.id)
            .await
            .expect("urban");
        assert_eq!(names(urban), ["wang"]);
        let rural = store
            .list_users_in_school(&world.rural.id)
            .await
            .expect("rural");
        assert_eq!(names(rural), ["grade3-box"]);
    })
    .await;
}

#[tokio::test]
async fn failed_logins_count_atomically_and_lock() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let id = world.teacher.id.clone();
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move { store.record_failed_login(&id).await })
            })
            .collect();
        let mut counts = Vec::new();
        for task in tasks {
            counts.push(task.await.expect("task").expect("counted"));
        }
        counts.sort_unstable();
        assert_eq!(
            counts,
            (1..=12).collect::<Vec<i32>>(),
            "every failure counted once"
        );

        let until = at("2025-09-01T08:15:00Z");
        store.lock_user(&id, until).await.expect("lock");
        let locked = store.get_user(&id).await.expect("get");
        assert_eq!(
            (locked.failed_logins, locked.locked_until),
            (12, Some(until))
        );

        store.clear_failed_logins(&id).await.expect("clear");
        let cleared = store.get_user(&id).await.expect("get");
        assert_eq!((cleared.failed_logins, cleared.locked_until), (0, None));
        assert_err!(
            store.record_failed_login("usr_nobody").await,
            StoreError::NotFound { .. }
        );
    })
    .await;
}

#[tokio::test]
async fn sessions_find_delete_and_expire() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let session = |hash: &str, user: &UserRow, expires: &str| BrowserSessionRow {
            id_hash: hash.into(),
            user_id: user.id.clone(),
            csrf_token: format!("csrf-{hash}"),
            created_at: at("2025-09-01T00:00:00Z"),
            expires_at: at(expires),
        };
        let old = session("h-old", &world.teacher, "2025-09-01T08:00:00Z");
        let edge = session("h-edge", &world.teacher, "2025-09-01T09:00:00Z");
        let fresh = session("h-fresh", &world.teacher, "2025-09-01T09:00:00.000001Z");
        let admins = session("h-admin", &world.admin, "2025-09-02T00:00:00Z");
        for s in [&old, &edge, &fresh, &admins] {
            store.insert_session(s).await.expect("insert");
        }
        assert_err!(
            store.insert_session(&old).await,
            StoreError::Conflict { .. }
        );
        let orphan = BrowserSessionRow {
            user_id: "usr_nobody".into(),
            ..session("h-x", &world.admin, "2025-09-02T00:00:00Z")
        };
        assert_err!(
            store.insert_session(&orphan).await,
            StoreError::ForeignKey { .. }
        );
        assert_eq!(
            store.find_session("h-old").await.expect("find"),
            Some(old.clone())
        );
        assert_eq!(store.find_session("h-none").await.expect("find"), None);

        // Expired means expires_at <= now, compared as instants (µs precision).
        let expired = store
            .delete_expired_sessions(at("2025-09-01T09:00:00Z"))
            .await;
        assert_eq!(expired.expect("expire"), 2);
        assert_eq!(store.find_session("h-edge").await.expect("find"), None);
        assert_eq!(
            store.find_session("h-fresh").await.expect("find"),
            Some(fresh)
        );

        store.delete_session("h-fresh").await.expect("logout");
        assert_err!(
            store.delete_session("h-fresh").await,
            StoreError::NotFound { .. }
        );

        // A user's sessions go with the user.
        store
            .delete_user(&world.admin.id)
            .await
            .expect("delete user");
        assert_eq!(store.find_session("h-admin").await.expect("find"), None);
        assert_eq!(
            store
                .delete_sessions_of_user(&world.teacher.id)
                .await
                .expect("none left"),
            0
        );
    })
    .await;
}

#[tokio::test]
async fn api_tokens_insert_find_list_revoke() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let token = |name: &str, hash: &str, school: Option<&SchoolRow>| ApiTokenRow {
            id: new_id(id_prefix::API_TOKEN),
            name: name.into(),
            token_hash: hash.into(),
            district_id: school.is_none().then(|| world.district.id.clone()),
            school_id: school.map(|s| s.id.clone()),
            created_by: world.admin.id.clone(),
            created_at: at("2025-09-01T00:00:00Z"),
            revoked_at: None,
        };
        let district_wide = token("scheduler", "hash-1", None);
        let recorder = ApiTokenRow {
            created_at: at("2025-09-02T00:00:00Z"),
            ..token("recorder 3", "hash-2", Some(&world.rural))
        };
        store
            .insert_api_token(&district_wide)
            .await
            .expect("insert");
        store.insert_api_token(&recorder).await.expect("insert");
        let same_hash = token("dup", "hash-1", None);
        assert_err!(
            store.insert_api_token(&same_hash).await,
            StoreError::Conflict { .. }
        );

        let found = store.find_api_token("hash-2").await.expect("find");
        assert_eq!(found.as_ref(), Some(&recorder));
        assert!(recorder.is_active());
        let listed = store
            .list_api_tokens_in_district(&world.district.id)
            .await
            .expect("list");
        assert_eq!(listed, vec![recorder.clone(), district_wide.clone()]);
        let of_school = store
            .list_api_tokens_of_school(&world.rural.id)
            .await
            .expect("list");
        assert_eq!(of_school, vec![recorder.clone()]);

        store
            .revoke_api_token(&recorder.id, at("2025-09-03T00:00:00Z"))
            .await
            .expect("revoke");
        store
            .revoke_api_token(&recorder.id, at("2025-09-04T00:00:00Z"))
            .await
            .expect("again");
        let revoked = store.get_api_token(&recorder.id).await.expect("get");
        assert_eq!(revoked.revoked_at, Some(at("2025-09-03T00:00:00Z")));
        assert!(!revoked.is_active());
        assert_err!(
            store
                .revoke_api_token("tok_nothing", at("2025-09-03T00:00:00Z"))
                .await,
            StoreError::NotFound { .. }
        );
        // The creator cannot be deleted while their tokens exist (disable them instead).
        assert_err!(
            store.delete_user(&world.admin.id).await,
            StoreError::ForeignKey { .. }
        );
    })
    .await;
}
