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
use eventlog::Subject;

use crate::{Engine, EngineError, Meta, Outcome};

/// `stratus.api.image.<uuid>`.
pub fn image_subject(id: &ImageId) -> Subject {
    Subject::api(eventlog::SubjectKind::Image, &id.to_string()).expect("uuid is a valid token")
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
        self.execute_on_world(
            &subject,
            &format!("image {id}"),
            |v| {
                let row = v.images().get(id);
                let evs = image::decide(id, row.map(|r| &r.state), cmd.clone(), ctx)?;
                Ok((
                    evs.into_iter().map(Event::Image).collect(),
                    row.map(|r| r.seq).unwrap_or(0),
                ))
            },
            |v| v.images().get(id).map(|r| r.seq),
            ctx,
            meta,
        )
        .await
    }
}
