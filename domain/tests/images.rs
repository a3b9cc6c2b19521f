//! The image aggregate: given events, when a command, then events or a refusal.

use std::collections::{BTreeMap, BTreeSet};

use domain::image::{
    self, Image, ImageChange, ImageCommand, ImageData, ImageEvent, ImageSpec, ImageStatus,
    Visibility,
};
use domain::{Ctx, DomainError, ImageId, Timestamp};
use uuid::Uuid;

fn id() -> ImageId {
    ImageId(Uuid::from_u128(42))
}

fn ctx(project: &str, admin: bool) -> Ctx {
    Ctx {
        now: Timestamp(100),
        is_admin: admin,
        user_id: "u".into(),
        project_id: project.into(),
        op_id: Uuid::from_u128(1),
    }
}

fn spec(owner: &str, visibility: Visibility) -> ImageSpec {
    ImageSpec {
        id: id(),
        name: Some("img".into()),
        owner: owner.into(),
        visibility,
        protected: false,
        disk_format: Some("qcow2".into()),
        container_format: Some("bare".into()),
        min_disk: 0,
        min_ram: 0,
        tags: BTreeSet::new(),
        properties: BTreeMap::new(),
    }
}

fn data() -> ImageData {
    ImageData {
        size: 3,
        checksum: "900150983cd24fb0d6963f7d28e17f72".into(),
        os_hash_algo: "sha512".into(),
        os_hash_value: "ddaf".into(),
    }
}

fn given(events: &[ImageEvent]) -> Option<Image> {
    events.iter().fold(None, image::evolve)
}

fn created(owner: &str, v: Visibility) -> ImageEvent {
    ImageEvent::Created {
        spec: spec(owner, v),
        at: Timestamp(1),
    }
}

fn when(state: &Option<Image>, cmd: ImageCommand, c: &Ctx) -> Result<Vec<ImageEvent>, DomainError> {
    image::decide(&id(), state.as_ref(), cmd, c)
}

#[test]
fn create_queues_an_image_owned_by_the_callers_project() {
    let evs = when(
        &None,
        ImageCommand::Create(spec("p1", Visibility::Private)),
        &ctx("p1", false),
    )
    .unwrap();
    assert_eq!(evs.len(), 1);
    let s = given(&evs).unwrap();
    assert_eq!(s.status, ImageStatus::Queued);
    assert_eq!(s.spec.owner, "p1");
    assert_eq!(s.created_at, Timestamp(100));
    assert!(s.data.is_none());
}

#[test]
fn creating_an_existing_or_deleted_id_is_a_conflict() {
    let s = given(&[created("p1", Visibility::Private)]);
    let e = when(
        &s,
        ImageCommand::Create(spec("p1", Visibility::Private)),
        &ctx("p1", false),
    )
    .unwrap_err();
    assert!(matches!(e, DomainError::Conflict(_)), "{e:?}");
    let s = given(&[
        created("p1", Visibility::Private),
        ImageEvent::Deleted { at: Timestamp(2) },
    ]);
    let e = when(
        &s,
        ImageCommand::Create(spec("p1", Visibility::Private)),
        &ctx("p1", false),
    )
    .unwrap_err();
    assert!(matches!(e, DomainError::Conflict(_)), "{e:?}");
}

#[test]
fn only_admins_create_public_images() {
    let e = when(
        &None,
        ImageCommand::Create(spec("p1", Visibility::Public)),
        &ctx("p1", false),
    )
    .unwrap_err();
    assert!(matches!(e, DomainError::Forbidden(_)), "{e:?}");
    assert!(when(
        &None,
        ImageCommand::Create(spec("p1", Visibility::Public)),
        &ctx("adm", true)
    )
    .is_ok());
}

#[test]
fn bad_formats_names_tags_and_reserved_properties_are_refused() {
    let c = ctx("p1", false);
    let mut s = spec("p1", Visibility::Private);
    s.disk_format = Some("floppy".into());
    assert!(matches!(
        when(&None, ImageCommand::Create(s), &c),
        Err(DomainError::BadRequest(_))
    ));
    let mut s = spec("p1", Visibility::Private);
    s.container_format = Some("box".into());
    assert!(matches!(
        when(&None, ImageCommand::Create(s), &c),
        Err(DomainError::BadRequest(_))
    ));
    let mut s = spec("p1", Visibility::Private);
    s.name = Some("x".repeat(256));
    assert!(matches!(
        when(&None, ImageCommand::Create(s), &c),
        Err(DomainError::BadRequest(_))
    ));
    let mut s = spec("p1", Visibility::Private);
    s.tags.insert(String::new());
    assert!(matches!(
        when(&None, ImageCommand::Create(s), &c),
        Err(DomainError::BadRequest(_))
    ));
    let mut s = spec("p1", Visibility::Private);
    s.properties.insert("status".into(), "active".into());
    assert!(matches!(
        when(&None, ImageCommand::Create(s), &c),
        Err(DomainError::Forbidden(_))
    ));
}

#[test]
fn upload_goes_queued_saving_active() {
    let c = ctx("p1", false);
    let mut evs = vec![created("p1", Visibility::Private)];
    let start = when(&given(&evs), ImageCommand::StartUpload, &c).unwrap();
    assert_eq!(
        start,
        vec![ImageEvent::UploadStarted { at: Timestamp(100) }]
    );
    evs.extend(start);
    assert_eq!(given(&evs).unwrap().status, ImageStatus::Saving);
    let fin = when(&given(&evs), ImageCommand::FinishUpload(data()), &c).unwrap();
    evs.extend(fin);
    let s = given(&evs).unwrap();
    assert_eq!(s.status, ImageStatus::Active);
    assert_eq!(s.data, Some(data()));
    // A second upload is refused: only queued images take data.
    let e = when(&Some(s), ImageCommand::StartUpload, &c).unwrap_err();
    assert_eq!(
        e,
        DomainError::Conflict(
            "Image status transition from active to saving is not allowed".into()
        )
    );
}

#[test]
fn an_inspected_upload_records_its_virtual_size_then_finishes() {
    let c = ctx("p1", false);
    let mut evs = vec![
        created("p1", Visibility::Private),
        ImageEvent::UploadStarted { at: Timestamp(2) },
    ];
    let cmd = |virtual_size| ImageCommand::FinishInspectedUpload {
        data: data(),
        virtual_size,
    };
    let fin = when(&given(&evs), cmd(Some(1 << 30)), &c).unwrap();
    assert_eq!(
        fin,
        vec![
            ImageEvent::VirtualSizeRecorded {
                virtual_size: 1 << 30,
                at: Timestamp(100)
            },
            ImageEvent::UploadFinished {
                data: data(),
                at: Timestamp(100)
            },
        ]
    );
    evs.extend(fin);
    let s = given(&evs).unwrap();
    assert_eq!(
        (s.status, s.virtual_size),
        (ImageStatus::Active, Some(1 << 30))
    );
    // Unknown size: just the finish; and only from `saving`.
    evs.truncate(2);
    assert_eq!(when(&given(&evs), cmd(None), &c).unwrap().len(), 1);
    evs.truncate(1);
    assert!(matches!(
        when(&given(&evs), cmd(None), &c),
        Err(DomainError::Conflict(_))
    ));
}

#[test]
fn a_failed_upload_returns_to_queued_and_abort_elsewhere_is_a_no_op() {
    let c = ctx("p1", false);
    let evs = vec![
        created("p1", Visibility::Private),
        ImageEvent::UploadStarted { at: Timestamp(2) },
    ];
    let ab = when(&given(&evs), ImageCommand::AbortUpload, &c).unwrap();
    assert_eq!(ab.len(), 1);
    let mut all = evs.clone();
    all.extend(ab);
    assert_eq!(given(&all).unwrap().status, ImageStatus::Queued);
    assert_eq!(
        when(&given(&all), ImageCommand::AbortUpload, &c).unwrap(),
        vec![]
    );
    // Finishing without a started upload is refused.
    assert!(matches!(
        when(&given(&all), ImageCommand::FinishUpload(data()), &c),
        Err(DomainError::Conflict(_))
    ));
}

#[test]
fn upload_needs_both_formats() {
    let mut s = spec("p1", Visibility::Private);
    s.container_format = None;
    let st = given(&[ImageEvent::Created {
        spec: s,
        at: Timestamp(1),
    }]);
    assert!(matches!(
        when(&st, ImageCommand::StartUpload, &ctx("p1", false)),
        Err(DomainError::BadRequest(_))
    ));
}

#[test]
fn private_images_are_invisible_to_other_projects_public_ones_read_only() {
    let private = given(&[created("p1", Visibility::Private)]);
    for cmd in [
        ImageCommand::StartUpload,
        ImageCommand::Delete,
        ImageCommand::Update(vec![]),
    ] {
        let e = when(&private, cmd, &ctx("p2", false)).unwrap_err();
        assert!(
            matches!(e, DomainError::NotFound { kind: "Image", .. }),
            "{e:?}"
        );
    }
    let public = given(&[created("adm", Visibility::Public)]);
    assert!(public.as_ref().unwrap().visible_to(&ctx("p2", false)));
    let e = when(&public, ImageCommand::Delete, &ctx("p2", false)).unwrap_err();
    assert!(matches!(e, DomainError::Forbidden(_)), "{e:?}");
    // Admins may change anything they can see, which is everything.
    assert!(when(&private, ImageCommand::Delete, &ctx("x", true)).is_ok());
}

#[test]
fn patch_changes_are_validated_in_order_and_applied_all_together() {
    let c = ctx("p1", false);
    let st = given(&[created("p1", Visibility::Private)]);
    let changes = vec![
        ImageChange::Name(Some("new".into())),
        ImageChange::AddProperty("os_distro".into(), "cirros".into()),
        ImageChange::ReplaceProperty("os_distro".into(), "ubuntu".into()),
        ImageChange::MinRam(256),
    ];
    let evs = when(&st, ImageCommand::Update(changes), &c).unwrap();
    let mut all = vec![created("p1", Visibility::Private)];
    all.extend(evs);
    let s = given(&all).unwrap();
    assert_eq!(s.spec.name.as_deref(), Some("new"));
    assert_eq!(
        s.spec.properties.get("os_distro").map(String::as_str),
        Some("ubuntu")
    );
    assert_eq!(s.spec.min_ram, 256);
    assert_eq!(s.updated_at, Timestamp(100));

    // Removing a missing property refuses the whole patch.
    let e = when(
        &Some(s.clone()),
        ImageCommand::Update(vec![
            ImageChange::Name(Some("other".into())),
            ImageChange::RemoveProperty("nope".into()),
        ]),
        &c,
    )
    .unwrap_err();
    assert_eq!(
        e,
        DomainError::Conflict("Property nope does not exist.".into())
    );
    // `add` of an existing property overwrites it (v2.1 patch); a reserved name is forbidden.
    let evs = when(
        &Some(s.clone()),
        ImageCommand::Update(vec![ImageChange::AddProperty(
            "os_distro".into(),
            "x".into(),
        )]),
        &c,
    )
    .unwrap();
    let over = evs.iter().fold(Some(s.clone()), image::evolve).unwrap();
    assert_eq!(over.spec.properties["os_distro"], "x");
    let e = when(
        &Some(s.clone()),
        ImageCommand::Update(vec![ImageChange::AddProperty("owner".into(), "x".into())]),
        &c,
    )
    .unwrap_err();
    assert!(matches!(e, DomainError::Forbidden(_)));
    // Making it public needs admin.
    let e = when(
        &Some(s.clone()),
        ImageCommand::Update(vec![ImageChange::Visibility(Visibility::Public)]),
        &c,
    )
    .unwrap_err();
    assert!(matches!(e, DomainError::Forbidden(_)));
}

#[test]
fn formats_change_only_while_queued() {
    let c = ctx("p1", false);
    let active = given(&[
        created("p1", Visibility::Private),
        ImageEvent::UploadStarted { at: Timestamp(2) },
        ImageEvent::UploadFinished {
            data: data(),
            at: Timestamp(3),
        },
    ]);
    let e = when(
        &active,
        ImageCommand::Update(vec![ImageChange::DiskFormat(Some("raw".into()))]),
        &c,
    )
    .unwrap_err();
    assert!(matches!(e, DomainError::Forbidden(_)), "{e:?}");
    let queued = given(&[created("p1", Visibility::Private)]);
    assert!(when(
        &queued,
        ImageCommand::Update(vec![ImageChange::DiskFormat(Some("raw".into()))]),
        &c
    )
    .is_ok());
}

#[test]
fn protected_images_cannot_be_deleted_and_deleted_ones_are_gone() {
    let c = ctx("p1", false);
    let mut s = spec("p1", Visibility::Private);
    s.protected = true;
    let st = given(&[ImageEvent::Created {
        spec: s,
        at: Timestamp(1),
    }]);
    let e = when(&st, ImageCommand::Delete, &c).unwrap_err();
    assert_eq!(
        e,
        DomainError::Forbidden(format!(
            "Image {} is protected and cannot be deleted.",
            id()
        ))
    );
    let gone = given(&[
        created("p1", Visibility::Private),
        ImageEvent::Deleted { at: Timestamp(5) },
    ]);
    assert_eq!(gone.as_ref().unwrap().status, ImageStatus::Deleted);
    for cmd in [ImageCommand::Delete, ImageCommand::StartUpload] {
        assert!(matches!(
            when(&gone, cmd, &ctx("p1", true)),
            Err(DomainError::NotFound { .. })
        ));
    }
}

#[test]
fn evolve_ignores_events_of_a_missing_image() {
    assert_eq!(
        image::evolve(None, &ImageEvent::Deleted { at: Timestamp(1) }),
        None
    );
    assert_eq!(
        image::evolve(None, &ImageEvent::UploadStarted { at: Timestamp(1) }),
        None
    );
}

#[test]
fn a_hidden_create_is_one_append_of_created_and_updated() {
    let evs = when(
        &None,
        ImageCommand::CreateWith(
            spec("p1", Visibility::Private),
            vec![ImageChange::Hidden(true)],
        ),
        &ctx("p1", false),
    )
    .unwrap();
    assert_eq!(evs.len(), 2);
    assert!(given(&evs).unwrap().hidden);
    // A change the caller may not make refuses the whole create.
    assert!(matches!(
        when(
            &None,
            ImageCommand::CreateWith(
                spec("p1", Visibility::Private),
                vec![ImageChange::Owner("p2".into())],
            ),
            &ctx("p1", false),
        ),
        Err(DomainError::Forbidden(_))
    ));
}

#[test]
fn members_of_a_shared_image_see_it_and_answer_for_themselves() {
    let shared = given(&[created("p1", Visibility::Shared)]);
    let owner = ctx("p1", false);
    let bob = ctx("p2", false);
    assert!(!shared.as_ref().unwrap().visible_to(&bob));
    // Only the owner shares.
    assert!(matches!(
        when(&shared, ImageCommand::AddMember("p2".into()), &bob),
        Err(DomainError::NotFound { .. })
    ));
    let added = when(&shared, ImageCommand::AddMember("p2".into()), &owner).unwrap();
    let mut evs = vec![created("p1", Visibility::Shared)];
    evs.extend(added);
    let st = given(&evs);
    let img = st.as_ref().unwrap();
    assert!(img.visible_to(&bob), "a pending member sees the image");
    assert_eq!(img.member_status("p2"), Some(image::MemberStatus::Pending));
    assert!(matches!(
        when(&st, ImageCommand::AddMember("p2".into()), &owner),
        Err(DomainError::Conflict(_))
    ));
    // The owner cannot accept for the member; the member can; a member cannot remove.
    assert!(matches!(
        when(
            &st,
            ImageCommand::SetMemberStatus("p2".into(), image::MemberStatus::Accepted),
            &owner
        ),
        Err(DomainError::Forbidden(_))
    ));
    let accepted = when(
        &st,
        ImageCommand::SetMemberStatus("p2".into(), image::MemberStatus::Accepted),
        &bob,
    )
    .unwrap();
    assert_eq!(
        accepted,
        vec![ImageEvent::MemberUpdated {
            member: "p2".into(),
            status: image::MemberStatus::Accepted,
            at: Timestamp(100)
        }]
    );
    assert!(matches!(
        when(&st, ImageCommand::RemoveMember("p2".into()), &bob),
        Err(DomainError::Forbidden(_))
    ));
    // Private again: the membership stays but grants nothing.
    evs.push(ImageEvent::Updated {
        changes: vec![ImageChange::Visibility(Visibility::Private)],
        at: Timestamp(5),
    });
    let st = given(&evs);
    assert!(!st.as_ref().unwrap().visible_to(&bob));
    assert!(matches!(
        when(&st, ImageCommand::AddMember("p3".into()), &owner),
        Err(DomainError::Forbidden(_))
    ));
}

#[test]
fn tags_are_added_once_and_removed_when_present() {
    let st = given(&[created("p1", Visibility::Private)]);
    let c = ctx("p1", false);
    let evs = when(&st, ImageCommand::AddTag("a".into()), &c).unwrap();
    let mut all = vec![created("p1", Visibility::Private)];
    all.extend(evs);
    let st = given(&all);
    assert!(when(&st, ImageCommand::AddTag("a".into()), &c)
        .unwrap()
        .is_empty());
    assert!(matches!(
        when(&st, ImageCommand::RemoveTag("b".into()), &c),
        Err(DomainError::NotFound { .. })
    ));
    assert_eq!(
        when(&st, ImageCommand::RemoveTag("a".into()), &c)
            .unwrap()
            .len(),
        1
    );
}

fn import(task: &str, method: &str) -> ImageCommand {
    ImageCommand::StartImport(image::ImportStart {
        task: task.into(),
        method: method.into(),
        stores: vec!["file".into()],
    })
}

#[test]
fn glance_direct_needs_staged_data_and_ends_active_with_the_lock_dropped() {
    let me = ctx("p1", false);
    let mut evs = vec![created("p1", Visibility::Private)];
    let s = given(&evs);
    let e = when(&s, import("t1", "glance-direct"), &me).unwrap_err();
    assert!(matches!(e, DomainError::Conflict(m) if m.contains("needs to be staged")));
    evs.extend(when(&s, ImageCommand::StartStage, &me).unwrap());
    let s = given(&evs);
    assert_eq!(s.as_ref().unwrap().status, ImageStatus::Uploading);
    // Staging under way: not importable yet, not stageable again.
    assert!(when(&s, import("t1", "glance-direct"), &me).is_err());
    assert!(when(&s, ImageCommand::StartStage, &me).is_err());
    evs.extend(when(&s, ImageCommand::FinishStage(3), &me).unwrap());
    let s = given(&evs);
    assert_eq!(s.as_ref().unwrap().staged, Some(3));
    // web-download wants queued.
    assert!(when(&s, import("t1", "web-download"), &me).is_err());
    evs.extend(when(&s, import("t1", "glance-direct"), &me).unwrap());
    let s = given(&evs);
    let img = s.as_ref().unwrap();
    assert_eq!(img.status, ImageStatus::Importing);
    assert_eq!(img.import_task(), Some("t1"));
    assert_eq!(img.spec.properties[image::IMPORTING_TO_STORES], "file");
    // Another task does not hold the lock: its end is refused or a no-op.
    assert!(when(
        &s,
        ImageCommand::FinishImport {
            task: "t2".into(),
            data: data(),
            virtual_size: None,
            stores: vec!["file".into()],
            converted: None,
            metadata: vec![],
        },
        &me
    )
    .is_err());
    assert_eq!(
        when(
            &s,
            ImageCommand::FailImport {
                task: "t2".into(),
                stores: None
            },
            &me
        )
        .unwrap(),
        vec![]
    );
    evs.extend(
        when(
            &s,
            ImageCommand::FinishImport {
                task: "t1".into(),
                data: data(),
                virtual_size: None,
                stores: vec!["file".into()],
                converted: None,
                metadata: vec![],
            },
            &me,
        )
        .unwrap(),
    );
    let img = given(&evs).unwrap();
    assert_eq!(img.status, ImageStatus::Active);
    assert_eq!(img.data, Some(data()));
    assert_eq!(img.staged, None);
    assert_eq!(img.import_task(), None);
    assert_eq!(img.spec.properties[image::IMPORTING_TO_STORES], "");
}

/// An import the conversion plugin converted records the new formats first, then the
/// virtual size, then the import's end.
#[test]
fn a_converted_import_records_its_new_formats_once() {
    let me = ctx("p1", false);
    let mut evs = vec![created("p1", Visibility::Private)];
    evs.extend(when(&given(&evs), import("t1", "web-download"), &me).unwrap());
    let finish = |store: &str| ImageCommand::FinishImport {
        task: "t1".into(),
        data: data(),
        virtual_size: Some(1 << 20),
        stores: vec![store.into()],
        converted: Some("raw".into()),
        metadata: vec![],
    };
    let first = when(&given(&evs), finish("file"), &me).unwrap();
    let types: Vec<_> = first
        .iter()
        .map(|e| domain::Event::Image(e.clone()).event_type())
        .collect();
    assert_eq!(
        types,
        [
            "image.converted",
            "image.virtual_size_recorded",
            "image.import_finished"
        ]
    );
    evs.extend(first);
    let img = given(&evs).unwrap();
    assert_eq!(img.spec.disk_format.as_deref(), Some("raw"));
    assert_eq!(img.spec.container_format.as_deref(), Some("bare"));
    assert_eq!(img.virtual_size, Some(1 << 20));
}

#[test]
fn a_failed_import_queues_the_image_and_lists_the_failed_store() {
    let me = ctx("p1", false);
    let mut evs = vec![created("p1", Visibility::Private)];
    evs.extend(when(&given(&evs), import("t1", "web-download"), &me).unwrap());
    evs.extend(
        when(
            &given(&evs),
            ImageCommand::FailImport {
                task: "t1".into(),
                stores: None,
            },
            &me,
        )
        .unwrap(),
    );
    let img = given(&evs).unwrap();
    assert_eq!(img.status, ImageStatus::Queued);
    assert_eq!(img.spec.properties[image::FAILED_IMPORT], "file");
    assert_eq!(img.import_task(), None);
    // A new import takes the store off the failed list.
    evs.extend(when(&given(&evs), import("t2", "web-download"), &me).unwrap());
    let img = given(&evs).unwrap();
    assert_eq!(img.spec.properties[image::FAILED_IMPORT], "");
    // The os_glance namespace is the service's.
    let e = when(
        &given(&evs),
        ImageCommand::Update(vec![ImageChange::AddProperty(
            "os_glance_import_task".into(),
            "x".into(),
        )]),
        &me,
    )
    .unwrap_err();
    assert!(matches!(e, DomainError::Forbidden(_)));
}

#[test]
fn copies_keep_the_image_active_and_stores_can_be_removed_but_not_the_last() {
    let me = ctx("p1", true);
    let mut evs = vec![created("p1", Visibility::Private)];
    evs.extend(when(&given(&evs), ImageCommand::StartUpload, &me).unwrap());
    evs.extend(when(&given(&evs), ImageCommand::FinishUpload(data()), &me).unwrap());
    let rm = |store: &str| ImageCommand::RemoveStore {
        store: store.into(),
        default: "fast".into(),
    };
    // Uploaded data is in the default store only.
    assert!(matches!(
        when(&given(&evs), rm("fast"), &me),
        Err(DomainError::Forbidden(_))
    ));
    assert!(when(&given(&evs), import("t1", "glance-direct"), &me).is_err());
    let copy = ImageCommand::StartImport(image::ImportStart {
        task: "t1".into(),
        method: "copy-image".into(),
        stores: vec!["cheap".into(), "slow".into()],
    });
    evs.extend(when(&given(&evs), copy, &me).unwrap());
    assert_eq!(given(&evs).unwrap().status, ImageStatus::Active);
    evs.extend(
        when(
            &given(&evs),
            ImageCommand::FinishImport {
                task: "t1".into(),
                data: data(),
                virtual_size: None,
                stores: vec!["fast".into(), "cheap".into()],
                converted: None,
                metadata: vec![],
            },
            &me,
        )
        .unwrap(),
    );
    // One store to go: the lock is held.
    assert_eq!(given(&evs).unwrap().import_task(), Some("t1"));
    evs.extend(
        when(
            &given(&evs),
            ImageCommand::FailImport {
                task: "t1".into(),
                stores: Some(vec!["slow".into()]),
            },
            &me,
        )
        .unwrap(),
    );
    let img = given(&evs).unwrap();
    assert_eq!(img.status, ImageStatus::Active);
    assert_eq!(img.import_task(), None);
    assert_eq!(img.spec.properties[image::FAILED_IMPORT], "slow");
    assert_eq!(
        img.stores,
        BTreeSet::from(["cheap".to_string(), "fast".to_string()])
    );
    assert!(matches!(
        when(&given(&evs), rm("slow"), &me),
        Err(DomainError::NotFound { .. })
    ));
    evs.extend(when(&given(&evs), rm("fast"), &me).unwrap());
    let img = given(&evs).unwrap();
    assert_eq!(img.stores, BTreeSet::from(["cheap".to_string()]));
    assert!(matches!(
        when(&given(&evs), rm("cheap"), &me),
        Err(DomainError::Forbidden(_))
    ));
}

fn location(url: &str, size: Option<u64>) -> image::NewLocation {
    image::NewLocation {
        location: image::ImageLocation {
            url: url.into(),
            metadata: "{}".into(),
        },
        size,
        validation: image::ValidationData::default(),
    }
}

fn add(pos: &str, new: image::NewLocation) -> image::PatchStep {
    image::PatchStep::Location(image::LocationChange::Add {
        pos: pos.into(),
        new,
    })
}

fn remove(pos: &str) -> image::PatchStep {
    image::PatchStep::Location(image::LocationChange::Remove { pos: pos.into() })
}

fn apply(st: Option<Image>, evs: &[ImageEvent]) -> Option<Image> {
    evs.iter().fold(st, image::evolve)
}

#[test]
fn a_location_activates_a_queued_image_in_patch_order() {
    let owner = ctx("p1", false);
    let st = given(&[created("p1", Visibility::Private)]);
    // An attribute change, then a location: two events, in order, one decision.
    let evs = when(
        &st,
        ImageCommand::Patch(vec![
            image::PatchStep::Change(ImageChange::MinRam(64)),
            add("-", location("http://x/a", Some(10))),
        ]),
        &owner,
    )
    .unwrap();
    assert!(matches!(evs[0], ImageEvent::Updated { .. }));
    let ImageEvent::LocationAdded { status, data, .. } = &evs[1] else {
        panic!("{evs:?}")
    };
    assert_eq!(*status, ImageStatus::Active);
    assert_eq!(data.size, Some(10));
    let st = apply(st, &evs);
    let img = st.clone().unwrap();
    assert_eq!(img.locations.len(), 1);
    assert_eq!(img.spec.min_ram, 64);
    // Invalid location, duplicate, bad position: 400; nothing decided.
    for (step, msg) in [
        (add("-", location("gopher://x", None)), "Invalid location"),
        (
            add("-", location("http://x/a", Some(10))),
            "The location http://x/a already exists",
        ),
        (
            add("x", location("http://x/b", Some(10))),
            "Invalid position for adding a location.",
        ),
    ] {
        assert_eq!(
            when(&st, ImageCommand::Patch(vec![step]), &owner),
            Err(DomainError::BadRequest(msg.into()))
        );
    }
    // Removing: admins only, never the last one.
    assert!(matches!(
        when(&st, ImageCommand::Patch(vec![remove("0")]), &owner),
        Err(DomainError::Forbidden(_))
    ));
    assert_eq!(
        when(
            &st,
            ImageCommand::Patch(vec![remove("0")]),
            &ctx("p1", true)
        ),
        Err(DomainError::Forbidden(
            "Cannot remove last location in the image.".into()
        ))
    );
    let evs = when(
        &st,
        ImageCommand::Patch(vec![
            add("0", location("http://x/b", Some(10))),
            remove("-"),
        ]),
        &ctx("p1", true),
    )
    .unwrap();
    let img = apply(st, &evs).unwrap();
    assert_eq!(img.locations.len(), 1);
    assert_eq!(img.locations[0].url, "http://x/b");
}

#[test]
fn validation_data_must_agree_with_the_image() {
    let owner = ctx("p1", false);
    let st = given(&[created("p1", Visibility::Private)]);
    let mut new = location("http://x/a", Some(10));
    new.validation = image::ValidationData {
        checksum: Some("1".repeat(32)),
        os_hash_algo: Some("sha512".into()),
        os_hash_value: Some("ab".repeat(64)),
    };
    let evs = when(
        &st,
        ImageCommand::Patch(vec![add("-", new.clone())]),
        &owner,
    )
    .unwrap();
    let st = apply(st, &evs);
    let img = st.clone().unwrap();
    assert_eq!(img.data_facts().checksum, Some("1".repeat(32)));
    // The same values again are fine; a different one is a 409.
    let mut same = new.clone();
    same.location.url = "http://x/b".into();
    assert!(when(
        &st,
        ImageCommand::Patch(vec![add("-", same.clone())]),
        &owner
    )
    .is_ok());
    let mut other = same;
    other.validation.os_hash_algo = Some("sha256".into());
    assert_eq!(
        when(&st, ImageCommand::Patch(vec![add("-", other)]), &owner),
        Err(DomainError::Conflict(
            "os_hash_algo is already set with a different value".into()
        ))
    );
    // A queued image needs sha512 of the right size.
    let q = given(&[created("p1", Visibility::Private)]);
    let mut short = location("http://x/a", Some(10));
    short.validation = image::ValidationData {
        checksum: None,
        os_hash_algo: Some("sha512".into()),
        os_hash_value: Some("ab".repeat(32)),
    };
    assert!(matches!(
        when(&q, ImageCommand::Patch(vec![add("-", short)]), &owner),
        Err(DomainError::Conflict(m)) if m.contains("not the correct size")
    ));
}

#[test]
fn a_location_import_hashes_then_activates_or_goes_back_to_queued() {
    let owner = ctx("p1", false);
    let st = given(&[created("p1", Visibility::Private)]);
    let start = |task: &str| ImageCommand::StartLocationImport {
        task: task.into(),
        location: location("http://x/a", None).location,
        size: Some(10),
        validation: image::ValidationData {
            checksum: None,
            os_hash_algo: Some("sha256".into()),
            os_hash_value: Some("ab".repeat(32)),
        },
        hashing: true,
    };
    let evs = when(&st, start("t1"), &owner).unwrap();
    let st = apply(st, &evs);
    let img = st.clone().unwrap();
    assert_eq!(img.status, ImageStatus::Importing);
    assert_eq!(img.import_task(), Some("t1"));
    assert_eq!(img.data_facts().os_hash_algo.as_deref(), Some("sha256"));
    // Locked: another start is a 409; another task's end is nothing.
    assert!(matches!(
        when(&st, start("t2"), &owner),
        Err(DomainError::Conflict(_))
    ));
    let end_other = ImageCommand::EndLocationImport {
        task: "t2".into(),
        hashes: None,
        ok: false,
    };
    assert_eq!(when(&st, end_other, &owner), Ok(vec![]));
    // A mismatch: queued, no hashes, the location kept.
    let failed = when(
        &st,
        ImageCommand::EndLocationImport {
            task: "t1".into(),
            hashes: None,
            ok: false,
        },
        &owner,
    )
    .unwrap();
    let img = apply(st.clone(), &failed).unwrap();
    assert_eq!(img.status, ImageStatus::Queued);
    assert_eq!(img.data_facts().os_hash_algo, None);
    assert_eq!(img.locations.len(), 1);
    assert_eq!(img.import_task(), None);
    // A match: active with the hashes.
    let ok = when(
        &st,
        ImageCommand::EndLocationImport {
            task: "t1".into(),
            hashes: Some(image::ValidationData {
                checksum: Some("c".into()),
                os_hash_algo: Some("sha256".into()),
                os_hash_value: Some("ab".repeat(32)),
            }),
            ok: true,
        },
        &owner,
    )
    .unwrap();
    let img = apply(st, &ok).unwrap();
    assert_eq!(img.status, ImageStatus::Active);
    assert_eq!(img.data_facts().checksum.as_deref(), Some("c"));
}
