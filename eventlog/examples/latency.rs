//! Sequential append latency and append->subscriber latency of the embedded log.
use std::time::Instant;

use eventlog::*;

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("lat-{}", std::process::id()));
    let log = EmbeddedLog::open(&dir).unwrap();
    let s = StreamName::new("cell1").unwrap();
    log.ensure_stream(&s).await.unwrap();
    let mut sub = log.subscribe(&s, 1).await.unwrap();
    let n = 300;
    let t0 = Instant::now();
    let mut sub_lat = 0.0;
    for i in 0..n {
        let subj = Subject::parse(&format!("stratus.cell.cell1.instance.x{i}")).unwrap();
        let t = Instant::now();
        log.append(AppendRequest {
            subject: subj,
            expected: ExpectedSeq::Exactly(0),
            dedupe_id: format!("d{i}"),
            meta: Metadata::default(),
            events: vec![NewEvent {
                event_type: "t".into(),
                version: 1,
                payload: vec![0; 200],
            }],
        })
        .await
        .unwrap();
        sub.next().await.unwrap().unwrap();
        sub_lat += t.elapsed().as_secs_f64();
    }
    println!("append+deliver: {:.3} ms avg", sub_lat / n as f64 * 1000.0);
    println!("total {:.3} s", t0.elapsed().as_secs_f64());
    log.close();
    let _ = std::fs::remove_dir_all(dir);
}
