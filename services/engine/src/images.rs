//! Image commands (`stratus.api.image.<uuid>`).
//!
//! Invariants:
//! - Like flavors, images decide on the in-memory world and append with the subject's
//!   expected last sequence; on conflict the world catches up and the command is
//!   decided again (bounded retries). When `image` returns Ok the world reflects the
//!   append (read-your-writes).
//! - A refused command appends nothing.

use domain::image::{self, ImageCommand};
use domain::{Ctx, Event, ImageId};
use eventlog::{LogError, Subject};

use crate::{Engine, EngineError, Meta, Outcome, MAX_RETRIES};

/// `stratus.api.image.<uuid>`.
pub fn image_subject(id: &ImageId) -> Subject {
    Subject::api("image", &id.to_string()).expect("uuid is a valid token")
}

impl Engine {
    /// Executes an image command.
    pub async fn image(
        &self,
        id: &ImageId,
        cmd: ImageCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = image_subject(id);
        let _guard = self.lock(subject.as_str()).await;
        for _ in 0..MAX_RETRIES {
            let (events, expected) = {
                let v = self.world.read();
                let row = v.images.get(id);
                let evs = image::decide(id, row.map(|r| &r.image), cmd.clone(), ctx)?;
                (evs, row.map(|r| r.seq).unwrap_or(0))
            };
            if events.is_empty() {
                return Ok(Outcome::default());
            }
            let events: Vec<Event> = events.into_iter().map(Event::Image).collect();
            match self
                .append(subject.clone(), expected, &events, ctx, meta)
                .await
            {
                Ok(ack) => {
                    self.settle(&subject, &ack).await?;
                    return Ok(Outcome {
                        events,
                        ack: Some(ack),
                    });
                }
                Err(LogError::WrongLastSequence { actual, .. }) => {
                    self.wait_seq(|v| v.images.get(id).is_some_and(|r| r.seq >= actual))
                        .await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Contention(format!("image {id}")))
    }
}
