//! Image metadata-definition commands (`stratus.api.metadefs.all`, one subject for all).
//!
//! Invariants:
//! - Every command decides on the whole [`domain::metadef::MetadefSet`] read from the
//!   world and appends with the set subject's expected sequence, so namespace (and
//!   child) name uniqueness holds under any concurrency. When `metadef` returns Ok the
//!   world reflects the append.
//! - A refused command appends nothing.

use domain::metadef::{self, MetadefCommand};
use domain::{Ctx, Event};
use projections::metadefs::metadefs_subject;

use crate::{Engine, EngineError, Meta, Outcome};

impl Engine {
    /// Executes a metadata-definitions command.
    pub async fn metadef(
        &self,
        cmd: MetadefCommand,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = metadefs_subject();
        self.execute_on_world(
            &subject,
            "image metadata definitions",
            |v| {
                let (set, seq) = v.metadefs().set();
                let evs = metadef::decide(set, cmd.clone(), ctx)?;
                Ok((evs.into_iter().map(Event::Metadef).collect(), seq))
            },
            |v| Some(v.metadefs().set().1),
            ctx,
            meta,
        )
        .await
    }
}
