//! The audit log, idempotency keys, attendance.

use super::*;

fn entry(at_text: &str, actor: &str, action: &str, target: &str) -> AuditRow {
    AuditRow {
        id: new_id(id_prefix::AUDIT),
        at: at(at_text),
        actor: actor.into(),
        action: action.into(),
        target: target.into(),
        detail: r#"{"why":"test"}"#.into(),
        ip: "10.0.0.7".into(),
    }
}

#[tokio::test]
async fn audit_appends_and_lists_newest_first_with_filters() {
    on_both(|store| async move {
        let e1 = entry("2025-09-01T08:00:00Z", "usr_a", "login.ok", "usr_a");
        let e2 = entry("2025-09-01T09:00:00Z", "usr_b", "login.failed", "usr_b");
        let e3 = entry("2025-09-01T10:00:00Z", "usr_a", "series.create", "ser_1");
        let e4 = entry("2025-09-01T10:00:00.5Z", "usr_a", "series.delete", "ser_1");
        for e in [&e1, &e2, &e3, &e4] {
            store.append_audit(e).await.expect("append");
        }
        let all = store
            .list_audit(&AuditFilter::default())
            .await
            .expect("all");
        assert_eq!(all, vec![e4.clone(), e3.clone(), e2.clone(), e1.clone()]);

        let by_a = AuditFilter {
            actor: Some("usr_a".into()),
            ..AuditFilter::default()
        };
        assert_eq!(
            store.list_audit(&by_a).await.expect("actor"),
            vec![e4.clone(), e3.clone(), e1.clone()]
        );
        let window = AuditFilter {
            since: Some(at("2025-09-01T09:00:00Z")),
            before: Some(at("2025-09-01T10:00:00.5Z")),
            ..AuditFilter::default()
        };
        assert_eq!(
            store.list_audit(&window).await.expect("window"),
            vec![e3.clone(), e2.clone()]
        );
        let narrow = AuditFilter {
            action: Some("series.create".into()),
            target: Some("ser_1".into()),
            ..AuditFilter::default()
        };
        assert_eq!(
            store.list_audit(&narrow).await.expect("narrow"),
            vec![e3.clone()]
        );
        let newest = AuditFilter {
            limit: 1,
            ..AuditFilter::default()
        };
        assert_eq!(store.list_audit(&newest).await.expect("limit"), vec![e4]);
    })
    .await;
}

#[tokio::test]
async fn idempotency_keys_get_put_per_user_and_prune() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let row = |user: &UserRow, created: &str| IdempotencyRow {
            key: "7f3a-retry".into(),
            user_id: user.id.clone(),
            response_json: r#"{"status":201,"body":{"id":"ser_x"}}"#.into(),
            created_at: at(created),
        };
        let teachers = row(&world.teacher, "2025-09-01T08:00:00Z");
        assert_eq!(
            store
                .find_idempotency(&world.teacher.id, "7f3a-retry")
                .await
                .expect("get"),
            None
        );
        store.put_idempotency(&teachers).await.expect("put");
        let found = store
            .find_idempotency(&world.teacher.id, "7f3a-retry")
            .await
            .expect("get");
        assert_eq!(found, Some(teachers.clone()));
        assert_err!(
            store.put_idempotency(&teachers).await,
            StoreError::Conflict { .. }
        );

        // The same key from another user is another key.
        let admins = row(&world.admin, "2025-09-02T08:00:00Z");
        store.put_idempotency(&admins).await.expect("other user");
        assert_eq!(
            store
                .find_idempotency(&world.admin.id, "7f3a-retry")
                .await
                .expect("get"),
            Some(admins.clone())
        );

        let pruned = store
            .delete_idempotency_before(at("2025-09-02T00:00:00Z"))
            .await;
        assert_eq!(pruned.expect("prune"), 1);
        assert_eq!(
            store
                .find_idempotency(&world.teacher.id, "7f3a-retry")
                .await
                .expect("get"),
            None
        );
        store
            .delete_user(&world.admin.id)
            .await
            .expect("user goes with their keys");
        assert_eq!(
            store
                .find_idempotency(&world.admin.id, "7f3a-retry")
                .await
                .expect("get"),
            None
        );
    })
    .await;
}

#[tokio::test]
async fn attendance_join_leave_list_and_protects_its_series() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let series = world.series(&[&world.rural_room]);
        store.create_series(&series).await.expect("series");
        let join = |who: &str, role: &str, date: &str, joined: &str| AttendanceRow {
            id: new_id(id_prefix::ATTENDANCE),
            series_id: series.id.clone(),
            date: day(date),
            participant: who.into(),
            role: role.into(),
            joined_at: at(joined),
            left_at: None,
        };
        let teacher = join(
            &world.teacher.id,
            "lead",
            "2025-09-01",
            "2025-09-01T00:49:30Z",
        );
        let room = join(
            &world.rural_room.id,
            "classroom",
            "2025-09-01",
            "2025-09-01T00:49:10Z",
        );
        let next_week = join(
            &world.rural_room.id,
            "classroom",
            "2025-09-08",
            "2025-09-08T00:50:00Z",
        );
        for record in [&teacher, &room, &next_week] {
            store.record_join(record).await.expect("join");
        }
        let left = at("2025-09-01T01:30:00Z");
        assert!(store.record_leave(&teacher.id, left).await.expect("leave"));
        let later = at("2025-09-01T01:31:00Z");
        assert!(
            !store
                .record_leave(&teacher.id, later)
                .await
                .expect("second leave")
        );
        assert_err!(
            store.record_leave("att_nothing", left).await,
            StoreError::NotFound { .. }
        );

        let first_day = store
            .list_attendance(&series.id, Some(day("2025-09-01")))
            .await;
        let teacher_left = AttendanceRow {
            left_at: Some(left),
            ..teacher.clone()
        };
        assert_eq!(
            first_day.expect("list"),
            vec![room.clone(), teacher_left.clone()]
        );
        let all = store.list_attendance(&series.id, None).await.expect("all");
        assert_eq!(all, vec![room, teacher_left, next_week]);

        let orphan = AttendanceRow {
            id: new_id(id_prefix::ATTENDANCE),
            series_id: "ser_nothing".into(),
            ..teacher.clone()
        };
        assert_err!(
            store.record_join(&orphan).await,
            StoreError::ForeignKey { .. }
        );
        // Attendance is evidence: its series cannot be deleted.
        assert_err!(
            store.delete_series(&series.id).await,
            StoreError::ForeignKey { .. }
        );
    })
    .await;
}
