//! Pairings and class series: multi-row writes in one transaction, scoped listings, exceptions.

use super::*;

fn pairing(world: &World, schools: &[&SchoolRow], subjects: &[&SubjectRow]) -> PairingRow {
    PairingRow {
        id: new_id(id_prefix::PAIRING),
        district_id: world.district.id.clone(),
        lead_school_id: world.urban.id.clone(),
        scope: PairingScope::County,
        round_start: day("2025-09-01"),
        round_end: day("2028-07-31"),
        school_ids: schools.iter().map(|s| s.id.clone()).collect(),
        subject_ids: subjects.iter().map(|s| s.id.clone()).collect(),
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn pairings_crud_with_members_and_listing() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let point = school(&world.district, "Teaching Point", SchoolKind::TeachingPoint);
        store.create_school(&point).await.expect("school");
        let mut p = pairing(&world, &[&world.rural, &point], &[&world.subject]);
        store.create_pairing(&p).await.expect("create");
        p.school_ids = sorted(p.school_ids);
        assert_eq!(store.get_pairing(&p.id).await.expect("get"), p);
        assert_eq!(
            store.list_pairings(&world.district.id).await.expect("list"),
            vec![p.clone()]
        );
        for member in [&world.urban, &world.rural, &point] {
            let of_school = store
                .list_pairings_of_school(&member.id)
                .await
                .expect("of school");
            assert_eq!(
                of_school,
                vec![p.clone()],
                "lead or partner: {}",
                member.name
            );
        }

        let changed = PairingRow {
            scope: PairingScope::Prefecture,
            school_ids: vec![point.id.clone()],
            subject_ids: vec![],
            ..p.clone()
        };
        store.update_pairing(&changed).await.expect("update");
        assert_eq!(store.get_pairing(&p.id).await.expect("get"), changed);
        assert!(
            store
                .list_pairings_of_school(&world.rural.id)
                .await
                .expect("list")
                .is_empty()
        );
        // Still a member somewhere: the school cannot go.
        assert_err!(
            store.delete_school(&point.id).await,
            StoreError::ForeignKey { .. }
        );

        store.delete_pairing(&p.id).await.expect("delete");
        assert_err!(store.get_pairing(&p.id).await, StoreError::NotFound { .. });
        store
            .delete_school(&point.id)
            .await
            .expect("members went with the pairing");
    })
    .await;
}

#[tokio::test]
async fn pairing_writes_leave_nothing_behind_when_a_member_fails() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let ghost = SubjectRow {
            id: "sub_doesnotexist0000".into(),
            ..world.subject.clone()
        };
        let bad = pairing(&world, &[&world.rural], &[&world.subject, &ghost]);
        assert_err!(
            store.create_pairing(&bad).await,
            StoreError::ForeignKey { .. }
        );
        assert_err!(
            store.get_pairing(&bad.id).await,
            StoreError::NotFound { .. }
        );
        for table in ["pairings", "pairing_schools", "pairing_subjects"] {
            assert_eq!(count(&store, table).await, 0, "{table} is empty");
        }

        let good = pairing(&world, &[&world.rural], &[&world.subject]);
        store.create_pairing(&good).await.expect("create");
        let bad_update = PairingRow {
            scope: PairingScope::Province,
            school_ids: vec![],
            subject_ids: vec![ghost.id.clone()],
            ..good.clone()
        };
        assert_err!(
            store.update_pairing(&bad_update).await,
            StoreError::ForeignKey { .. }
        );
        assert_eq!(store.get_pairing(&good.id).await.expect("unchanged"), good);
        let missing = PairingRow {
            id: "par_nothing".into(),
            ..good.clone()
        };
        assert_err!(
            store.update_pairing(&missing).await,
            StoreError::NotFound { .. }
        );
    })
    .await;
}

#[tokio::test]
async fn series_crud_and_listings_by_term_classroom_and_teacher() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let p = pairing(&world, &[&world.rural], &[&world.subject]);
        store.create_pairing(&p).await.expect("pairing");
        let mut monday = world.series(&[&world.rural_room, &world.rural_room_2]);
        monday.pairing_id = Some(p.id.clone());
        monday.receiver_ids = sorted(monday.receiver_ids);
        let tuesday = SeriesRow {
            weekday: 2,
            ..world.series(&[&world.rural_room])
        };
        store.create_series(&tuesday).await.expect("create");
        store.create_series(&monday).await.expect("create");
        assert_eq!(store.get_series(&monday.id).await.expect("get"), monday);

        let both = vec![monday.clone(), tuesday.clone()];
        assert_eq!(
            store
                .list_series_of_term(&world.term.id)
                .await
                .expect("term"),
            both
        );
        assert_eq!(
            store
                .list_series_of_teacher(&world.teacher.id)
                .await
                .expect("teacher"),
            both
        );
        assert!(
            store
                .list_series_of_teacher(&world.admin.id)
                .await
                .expect("none")
                .is_empty()
        );
        let lead = store
            .list_series_of_classroom(&world.lead_room.id)
            .await
            .expect("lead");
        assert_eq!(lead, both, "as lead");
        let receiver = store
            .list_series_of_classroom(&world.rural_room.id)
            .await
            .expect("rx");
        assert_eq!(receiver, both, "as receiver");
        let receiver_2 = store
            .list_series_of_classroom(&world.rural_room_2.id)
            .await
            .expect("rx");
        assert_eq!(receiver_2, vec![monday.clone()]);

        let changed = SeriesRow {
            period: 5,
            receiver_ids: vec![world.rural_room_2.id.clone()],
            pairing_id: None,
            ..tuesday.clone()
        };
        store.update_series(&changed).await.expect("update");
        assert_eq!(store.get_series(&tuesday.id).await.expect("get"), changed);
        let receiver = store
            .list_series_of_classroom(&world.rural_room.id)
            .await
            .expect("rx");
        assert_eq!(receiver, vec![monday.clone()]);

        // A referenced pairing, classroom, teacher or subject cannot be deleted.
        assert_err!(
            store.delete_pairing(&p.id).await,
            StoreError::ForeignKey { .. }
        );
        assert_err!(
            store.delete_classroom(&world.rural_room.id).await,
            StoreError::ForeignKey { .. }
        );
        assert_err!(
            store.delete_user(&world.teacher.id).await,
            StoreError::ForeignKey { .. }
        );
        assert_err!(
            store.delete_subject(&world.subject.id).await,
            StoreError::ForeignKey { .. }
        );
        assert_err!(
            store.delete_term(&world.term.id).await,
            StoreError::ForeignKey { .. }
        );

        store.delete_series(&monday.id).await.expect("delete");
        assert_err!(
            store.get_series(&monday.id).await,
            StoreError::NotFound { .. }
        );
        store
            .delete_classroom(&world.rural_room.id)
            .await
            .expect("no longer used");
    })
    .await;
}

#[tokio::test]
async fn series_writes_leave_nothing_behind_when_a_receiver_fails() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let ghost = ClassroomRow {
            id: "cls_doesnotexist0000".into(),
            ..world.rural_room.clone()
        };
        let bad = world.series(&[&world.rural_room, &ghost]);
        assert_err!(
            store.create_series(&bad).await,
            StoreError::ForeignKey { .. }
        );
        assert_err!(store.get_series(&bad.id).await, StoreError::NotFound { .. });
        assert_eq!(count(&store, "class_series").await, 0);
        assert_eq!(count(&store, "class_series_receivers").await, 0);

        let twice = world.series(&[&world.rural_room, &world.rural_room]);
        assert_err!(
            store.create_series(&twice).await,
            StoreError::Conflict { .. }
        );
        assert_eq!(count(&store, "class_series").await, 0);

        let good = world.series(&[&world.rural_room]);
        store.create_series(&good).await.expect("create");
        let bad_update = SeriesRow {
            weekday: 4,
            receiver_ids: vec![world.rural_room_2.id.clone(), ghost.id.clone()],
            ..good.clone()
        };
        assert_err!(
            store.update_series(&bad_update).await,
            StoreError::ForeignKey { .. }
        );
        assert_eq!(store.get_series(&good.id).await.expect("unchanged"), good);
        let out_of_range = SeriesRow {
            weekday: 8,
            ..good.clone()
        };
        assert_err!(
            store.update_series(&out_of_range).await,
            StoreError::Invalid { .. }
        );
        assert_eq!(store.get_series(&good.id).await.expect("unchanged"), good);
    })
    .await;
}

#[tokio::test]
async fn exceptions_add_list_delete() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let series = world.series(&[&world.rural_room]);
        store.create_series(&series).await.expect("series");
        let cancel = ExceptionRow {
            series_id: series.id.clone(),
            date: day("2025-10-06"),
            kind: ExceptionKind::Cancel,
            new_date: None,
            new_period: None,
        };
        let moved = ExceptionRow {
            date: day("2025-09-15"),
            kind: ExceptionKind::Move,
            new_date: Some(day("2025-09-17")),
            new_period: Some(6),
            ..cancel.clone()
        };
        store.add_exception(&cancel).await.expect("cancel");
        store.add_exception(&moved).await.expect("move");
        let listed = store.list_exceptions(&series.id).await.expect("list");
        assert_eq!(listed, vec![moved.clone(), cancel.clone()]);
        let of_term = store
            .list_exceptions_of_term(&world.term.id)
            .await
            .expect("term");
        assert_eq!(of_term, listed);

        assert_err!(
            store.add_exception(&cancel).await,
            StoreError::Conflict { .. }
        );
        let vague_move = ExceptionRow {
            date: day("2025-09-22"),
            new_date: None,
            ..moved.clone()
        };
        assert_err!(
            store.add_exception(&vague_move).await,
            StoreError::Invalid { .. }
        );
        let orphan = ExceptionRow {
            series_id: "ser_nothing".into(),
            ..cancel.clone()
        };
        assert_err!(
            store.add_exception(&orphan).await,
            StoreError::ForeignKey { .. }
        );

        store
            .delete_exception(&series.id, cancel.date)
            .await
            .expect("delete");
        assert_err!(
            store.delete_exception(&series.id, cancel.date).await,
            StoreError::NotFound { .. }
        );
        store
            .delete_series(&series.id)
            .await
            .expect("series goes, with its exceptions");
        assert_eq!(count(&store, "class_exceptions").await, 0);
    })
    .await;
}

/// The number of rows in `table` (a constant name from the test).
pub(super) async fn count(store: &Store, table: &'static str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&store.pool)
        .await
        .expect("count")
}
