//! Districts, schools, classrooms: CRUD and scoped listings.

use super::*;

#[tokio::test]
async fn districts_crud() {
    on_both(|store| async move {
        let a = DistrictRow {
            id: new_id(id_prefix::DISTRICT),
            name: "A district".into(),
        };
        let b = DistrictRow {
            id: new_id(id_prefix::DISTRICT),
            name: "B district".into(),
        };
        store.create_district(&b).await.expect("create b");
        store.create_district(&a).await.expect("create a");
        assert_err!(
            store.create_district(&a).await,
            StoreError::Conflict { what: "district" }
        );
        assert_eq!(store.get_district(&a.id).await.expect("get"), a);
        assert_eq!(
            store.list_districts().await.expect("list"),
            vec![a.clone(), b.clone()]
        );

        let renamed = DistrictRow {
            name: "城关区".into(),
            ..a.clone()
        };
        store.update_district(&renamed).await.expect("update");
        assert_eq!(store.get_district(&a.id).await.expect("get"), renamed);

        store.delete_district(&a.id).await.expect("delete");
        assert_err!(
            store.get_district(&a.id).await,
            StoreError::NotFound {
                what: "district",
                ..
            }
        );
        assert_err!(
            store.delete_district(&a.id).await,
            StoreError::NotFound { .. }
        );
        assert_err!(
            store.update_district(&renamed).await,
            StoreError::NotFound { .. }
        );
        assert_eq!(store.list_districts().await.expect("list"), vec![b]);
    })
    .await;
}

#[tokio::test]
async fn schools_crud_and_listing_by_district() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let other = DistrictRow {
            id: new_id(id_prefix::DISTRICT),
            name: "Other".into(),
        };
        store.create_district(&other).await.expect("other district");
        let elsewhere = school(&other, "Elsewhere School", SchoolKind::TeachingPoint);
        store
            .create_school(&elsewhere)
            .await
            .expect("school elsewhere");

        let listed = store.list_schools(&world.district.id).await.expect("list");
        assert_eq!(listed, vec![world.urban.clone(), world.rural.clone()]);
        assert_eq!(
            store.list_schools(&other.id).await.expect("list"),
            vec![elsewhere.clone()]
        );

        let changed = SchoolRow {
            name: "教学点 A".into(),
            kind: SchoolKind::TeachingPoint,
            district_id: world.district.id.clone(),
            ..elsewhere.clone()
        };
        store
            .update_school(&changed)
            .await
            .expect("update moves it");
        assert_eq!(store.get_school(&elsewhere.id).await.expect("get"), changed);
        assert!(
            store
                .list_schools(&other.id)
                .await
                .expect("list")
                .is_empty()
        );

        store.delete_school(&elsewhere.id).await.expect("delete");
        assert_err!(
            store.get_school(&elsewhere.id).await,
            StoreError::NotFound { .. }
        );
    })
    .await;
}

#[tokio::test]
async fn classrooms_crud_devices_and_listings() {
    on_both(|store| async move {
        let world = World::build(&store).await;
        let got = store.get_classroom(&world.lead_room.id).await.expect("get");
        assert_eq!(got, world.lead_room);
        assert_eq!(got.devices["cameras"][0]["visca_port"], 52381);

        let rural = store.list_classrooms(&world.rural.id).await.expect("list");
        assert_eq!(
            rural,
            vec![world.rural_room.clone(), world.rural_room_2.clone()]
        );
        let in_district = store
            .list_classrooms_in_district(&world.district.id)
            .await
            .expect("district list");
        assert_eq!(in_district.len(), 3);

        let mut changed = world.rural_room_2.clone();
        changed.name = "四年级".into();
        changed.kind = ClassroomKind::Recording;
        changed.devices = json!([]);
        store.update_classroom(&changed).await.expect("update");
        assert_eq!(
            store.get_classroom(&changed.id).await.expect("get"),
            changed
        );

        store.delete_classroom(&changed.id).await.expect("delete");
        assert_err!(
            store.get_classroom(&changed.id).await,
            StoreError::NotFound { .. }
        );
        assert_eq!(
            store
                .list_classrooms(&world.rural.id)
                .await
                .expect("list")
                .len(),
            1
        );
    })
    .await;
}
