//! Subjects, terms and their days, bell periods; the replace-all transactions.

use super::*;

#[tokio::test]
async fn subjects_crud() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let math = SubjectRow {
            id: new_id(id_prefix::SUBJECT),
            district_id: world.district.id.clone(),
            name: "Mathematics".into(),
        };
        store.create_subject(&math).await.expect("create");
        let listed = store.list_subjects(&world.district.id).await.expect("list");
        assert_eq!(listed, vec![world.subject.clone(), math.clone()]);
        let renamed = SubjectRow {
            name: "数学".into(),
            ..math.clone()
        };
        store.update_subject(&renamed).await.expect("update");
        assert_eq!(store.get_subject(&math.id).await.expect("get"), renamed);
        store.delete_subject(&math.id).await.expect("delete");
        assert_err!(
            store.get_subject(&math.id).await,
            StoreError::NotFound { .. }
        );
    })
    .await;
}

#[tokio::test]
async fn terms_crud() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let spring = TermRow {
            id: new_id(id_prefix::TERM),
            name: "2026 spring".into(),
            start_date: day("2026-02-23"),
            end_date: day("2026-07-03"),
            ..world.term.clone()
        };
        store.create_term(&spring).await.expect("create");
        let listed = store.list_terms(&world.district.id).await.expect("list");
        assert_eq!(
            listed,
            vec![spring.clone(), world.term.clone()],
            "latest first"
        );
        let moved = TermRow {
            end_date: day("2026-07-10"),
            ..spring.clone()
        };
        store.update_term(&moved).await.expect("update");
        assert_eq!(store.get_term(&spring.id).await.expect("get"), moved);
        store.delete_term(&spring.id).await.expect("delete");
        assert_err!(
            store.get_term(&spring.id).await,
            StoreError::NotFound { .. }
        );
    })
    .await;
}

#[tokio::test]
async fn term_days_are_replaced_whole_or_not_at_all() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let term = &world.term.id;
        let national_day = |date: &str| TermDayRow {
            date: day(date),
            kind: TermDayKind::Holiday,
            follows_weekday: None,
        };
        let makeup = TermDayRow {
            date: day("2025-09-28"),
            kind: TermDayKind::Makeup,
            follows_weekday: Some(3),
        };
        let first = vec![
            national_day("2025-10-01"),
            national_day("2025-10-02"),
            makeup.clone(),
        ];
        store.set_term_days(term, &first).await.expect("set");
        let listed = store.list_term_days(term).await.expect("list");
        assert_eq!(
            listed,
            vec![makeup.clone(), first[0].clone(), first[1].clone()]
        );

        // A duplicate date fails the second insert: the first set stays, untouched.
        let twice = vec![national_day("2025-10-03"), national_day("2025-10-03")];
        assert_err!(
            store.set_term_days(term, &twice).await,
            StoreError::Conflict { .. }
        );
        assert_eq!(store.list_term_days(term).await.expect("list"), listed);

        // A make-up day without its weekday breaks the CHECK: nothing changes either.
        let bad = vec![
            national_day("2025-10-03"),
            TermDayRow {
                follows_weekday: None,
                ..makeup.clone()
            },
        ];
        assert_err!(
            store.set_term_days(term, &bad).await,
            StoreError::Invalid { .. }
        );
        assert_eq!(store.list_term_days(term).await.expect("list"), listed);

        store.set_term_days(term, &[]).await.expect("clear");
        assert!(store.list_term_days(term).await.expect("list").is_empty());
        assert_err!(
            store.set_term_days("trm_nothing", &[]).await,
            StoreError::NotFound { .. }
        );

        // The days go with their term.
        store.set_term_days(term, &first).await.expect("set");
        store.delete_term(term).await.expect("delete");
        assert!(store.list_term_days(term).await.expect("list").is_empty());
    })
    .await;
}

#[tokio::test]
async fn bell_periods_are_replaced_whole_or_not_at_all() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let bell = |period: u8, start: &str, end: &str| BellPeriodRow {
            period,
            start_time: hm(start),
            end_time: hm(end),
        };
        let urban = vec![bell(1, "08:00", "08:40"), bell(2, "08:50", "09:30")];
        let rural = vec![bell(1, "08:30", "09:10")];
        store
            .set_bell_periods(&world.urban.id, &urban)
            .await
            .expect("set");
        store
            .set_bell_periods(&world.rural.id, &rural)
            .await
            .expect("set");
        assert_eq!(
            store
                .list_bell_periods(&world.urban.id)
                .await
                .expect("list"),
            urban
        );

        let twice = vec![bell(1, "08:00", "08:45"), bell(1, "09:00", "09:45")];
        let result = store.set_bell_periods(&world.urban.id, &twice).await;
        assert_err!(result, StoreError::Conflict { .. });
        assert_eq!(
            store
                .list_bell_periods(&world.urban.id)
                .await
                .expect("kept"),
            urban
        );

        let map = store
            .list_bell_periods_in_district(&world.district.id)
            .await
            .expect("map");
        assert_eq!(map.len(), 2);
        assert_eq!(map[&world.urban.id], urban);
        assert_eq!(map[&world.rural.id], rural);

        let zero = vec![bell(0, "07:00", "07:40")];
        let result = store.set_bell_periods(&world.urban.id, &zero).await;
        assert_err!(result, StoreError::Invalid { .. });
        assert_err!(
            store.set_bell_periods("sch_nothing", &urban).await,
            StoreError::NotFound { .. }
        );
    })
    .await;
}
