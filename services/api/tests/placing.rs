//! A user command on a server the scheduler has mapped to a cell but not yet placed
//! there (between its two appends) waits for the placement and then succeeds, as Nova
//! accepts an update of a building server; it never answers 409 for that window.

mod common;

use std::time::Duration;

use common::{svc_ctx, ALICE};
use domain::instance::InstanceCommand;
use domain::{CellName, ClaimId, InstanceId};
use engine::Meta;
use reqwest::StatusCode;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_between_mapped_and_placed_waits_for_the_placement() {
    let s = std::sync::Arc::new(common::start().await);
    s.flavor("1", "m1.tiny", 512, 1).await;
    let host = s.register_host("h1").await;
    let id = s.server(ALICE, "before", "1").await;
    let iid = InstanceId::parse(&id).unwrap();
    let op = s
        .engine
        .world()
        .read()
        .instance(&iid)
        .unwrap()
        .op
        .unwrap()
        .id;
    s.engine
        .instance(
            iid,
            InstanceCommand::Map {
                op,
                cell: CellName::cell1(),
                host: Some((host, ClaimId(Uuid::new_v4()))),
                fault: None,
                fault_details: None,
            },
            &svc_ctx(),
            &Meta::default(),
        )
        .await
        .unwrap();
    let rename = {
        let (s, id) = (s.clone(), id.clone());
        tokio::spawn(async move {
            s.put(
                &format!("/v2.1/servers/{id}"),
                ALICE,
                None,
                serde_json::json!({"server": {"name": "after"}}),
            )
            .await
        })
    };
    // The rename waits while the instance is mapped but not placed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rename.is_finished(), "answered before the placement");
    s.engine
        .instance(iid, InstanceCommand::Place, &svc_ctx(), &Meta::default())
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), rename)
        .await
        .expect("the rename finished")
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["server"]["name"], "after");
    // Recorded on the cell subject, after the placement.
    let row_cell = s
        .engine
        .world()
        .read()
        .instances()
        .get(&iid)
        .and_then(|r| r.cell_subject.clone());
    assert!(row_cell.is_some());
    let shown = s.get(&format!("/v2.1/servers/{id}"), ALICE, None).await;
    assert_eq!(shown.body["server"]["name"], "after");
}
