//! Crash safety: acknowledged commits survive SIGKILL, and no commit is ever partial.
//!
//! The parent test re-runs this test executable as a child (filtered to [`crash_child`], with
//! `STRATUS_CRASH_CHILD=<dir>` set). The child appends 3-event commits from several tasks and
//! prints one `ACK <subject> <subject_seq> <stream_seq>` line per acknowledged append. The
//! parent kills it (SIGKILL on unix) once it has read enough acks, reopens the log and checks
//! every acknowledged commit is there, whole. Rounds repeat on the same directory, so appends
//! also resume correctly after a crash.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use eventlog::{
    AppendRequest, EmbeddedLog, EventLog, ExpectedSeq, Metadata, NewEvent, StreamName, Subject,
};

const CHILD_ENV: &str = "STRATUS_CRASH_CHILD";
const TASKS: usize = 16;
const EVENTS_PER_COMMIT: usize = 3;
const ACKS_PER_ROUND: usize = 2000;
const ROUNDS: usize = 3;

fn cell() -> StreamName {
    StreamName::cell("cell1").unwrap()
}

fn subject(task: usize) -> Subject {
    Subject::cell(
        &cell(),
        eventlog::SubjectKind::Instance,
        &format!("crash{task}"),
    )
    .unwrap()
}

/// The child: appends forever until killed. A no-op when not run as the child.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = EmbeddedLog::open(Path::new(&dir)).unwrap();
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let log = log.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let s = subject(t);
                let mut seq = log.last_subject_seq(&s).await.unwrap();
                loop {
                    let ack = log
                        .append(AppendRequest {
                            subject: s.clone(),
                            expected: ExpectedSeq::Exactly(seq),
                            dedupe_id: format!("{s}/{}", seq + 1),
                            meta: Metadata::default(),
                            events: (0..EVENTS_PER_COMMIT)
                                .map(|i| NewEvent {
                                    event_type: "crash.test".into(),
                                    version: 1,
                                    payload: format!("{t}/{}/{i}", seq + 1).into_bytes(),
                                })
                                .collect(),
                        })
                        .await
                        .unwrap();
                    assert!(!ack.duplicate);
                    seq = ack.subject_seq;
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ACK {s} {} {}", ack.subject_seq, ack.stream_seq).unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Runs one child until it has acknowledged `ACKS_PER_ROUND` appends, then SIGKILLs it.
/// Returns the acks read: (subject, subject_seq, stream_seq).
fn run_child_and_kill(dir: &Path) -> Vec<(String, u64, u64)> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    // Watchdog: a child that hangs is killed, so the read below sees EOF and the test fails
    // instead of hanging. Dropping `done` stands it down.
    let (done, watch) = std::sync::mpsc::channel::<()>();
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            watch.recv_timeout(std::time::Duration::from_secs(120))
        {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    });
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut acks = Vec::new();
    let mut line = String::new();
    while acks.len() < ACKS_PER_ROUND {
        line.clear();
        let n = reader.read_line(&mut line).expect("read child output");
        if n == 0 {
            let status = child.wait().unwrap();
            panic!("child exited early ({status}) after {} acks", acks.len());
        }
        // Only complete lines count: the parent stops reading before the kill anyway.
        let Some(rest) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ACK ")) else {
            continue;
        };
        let parts: Vec<&str> = rest.split(' ').collect();
        assert_eq!(parts.len(), 3, "bad ack line {line:?}");
        acks.push((
            parts[0].to_string(),
            parts[1].parse().unwrap(),
            parts[2].parse().unwrap(),
        ));
    }
    child.kill().expect("kill child");
    child.wait().expect("reap child");
    drop(done);
    acks
}

/// Checks the stored stream against everything acknowledged so far.
async fn verify(dir: &Path, acked: &[(String, u64, u64)]) -> u64 {
    let log = EmbeddedLog::open(dir).unwrap();
    let mut all = Vec::new();
    loop {
        let from = all.len() as u64 + 1;
        let batch = log.read_stream(&cell(), from, 1000).await.unwrap();
        if batch.is_empty() {
            break;
        }
        all.extend(batch);
    }
    let mut per_subject: BTreeMap<String, u64> = BTreeMap::new();
    for (i, c) in all.iter().enumerate() {
        assert_eq!(c.stream_seq, i as u64 + 1, "stream_seq not contiguous");
        assert_eq!(
            c.events.len(),
            EVENTS_PER_COMMIT,
            "commit {} is partial: {} events",
            c.stream_seq,
            c.events.len()
        );
        let task: String = c.subject.id_token().trim_start_matches("crash").to_string();
        for (i, e) in c.events.iter().enumerate() {
            let want = format!("{task}/{}/{i}", c.subject_seq);
            assert_eq!(
                e.payload,
                want.as_bytes(),
                "commit {} event {i} corrupt",
                c.stream_seq
            );
        }
        let last = per_subject.entry(c.subject.to_string()).or_insert(0);
        assert_eq!(
            c.subject_seq,
            *last + 1,
            "subject_seq not contiguous on {}",
            c.subject
        );
        *last = c.subject_seq;
    }
    let by_pos: HashMap<u64, (&str, u64)> = all
        .iter()
        .map(|c| (c.stream_seq, (c.subject.as_str(), c.subject_seq)))
        .collect();
    for (s, sseq, pos) in acked {
        assert_eq!(
            by_pos.get(pos),
            Some(&(s.as_str(), *sseq)),
            "acknowledged commit {s}#{sseq} at {pos} lost after SIGKILL"
        );
    }
    for (s, last) in &per_subject {
        let subject = Subject::parse(s).unwrap();
        assert_eq!(log.last_subject_seq(&subject).await.unwrap(), *last);
        assert_eq!(
            log.read_subject(&subject, 1).await.unwrap().len() as u64,
            *last
        );
    }
    assert_eq!(
        log.last_stream_seq(&cell()).await.unwrap(),
        all.len() as u64
    );
    log.close();
    all.len() as u64
}

#[tokio::test]
async fn acknowledged_commits_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    let mut stored = 0;
    for round in 1..=ROUNDS {
        let acks = run_child_and_kill(dir.path());
        acked.extend(acks);
        let now = verify(dir.path(), &acked).await;
        assert!(
            now >= acked.len() as u64,
            "round {round}: fewer commits than acks"
        );
        assert!(now > stored, "round {round}: nothing appended after reopen");
        eprintln!(
            "round {round}: {} acked in total, {now} stored",
            acked.len()
        );
        stored = now;
    }
}
