//! Flavor creates and deletes that keep names unique (`stratus.api.flavor_name.<name>`
//! beside `stratus.api.flavor.<id>`).
//!
//! Invariants:
//! - A create claims its name first ([`domain::flavor::decide_name`], appended with
//!   the name subject's expected sequence): of concurrent creates of one name, in any
//!   number of processes, one claim wins and the others are decided again on it and
//!   refused with Nova's 409. Only then is the flavor created; when that is refused
//!   (its id exists), the claim is released, so a failed create holds no name.
//! - A delete releases the deleted flavor's claim once the delete is committed.
//! - A crash between the claim and the create (or the delete and the release) leaves a
//!   claim that the domain stops honouring by itself (see [`domain::flavor`]).
//! - When these return Ok, the world reflects every append (read-your-writes).

use domain::flavor::{self, Flavor, FlavorCommand, FlavorFacts, FlavorSpec};
use domain::{Ctx, Event, FlavorId};
use projections::{flavor_name_subject, Views};

use crate::{Engine, EngineError, Meta, Outcome};

/// Flavor facts read from a world snapshot.
pub struct WorldFlavors<'a>(pub &'a Views);

impl FlavorFacts for WorldFlavors<'_> {
    fn flavor(&self, id: &FlavorId) -> Option<&Flavor> {
        self.0
            .flavors()
            .get(&Engine::flavor_subject(id))
            .and_then(|r| r.state.as_ref())
    }

    fn live_named(&self, name: &str, except: &FlavorId) -> bool {
        self.0
            .flavors()
            .values()
            .filter_map(|r| r.state.as_ref())
            .any(|f| !f.deleted && f.spec.name == name && &f.spec.id != except)
    }
}

impl Engine {
    /// Creates a flavor whose name no live flavor has (see the module invariants).
    pub async fn create_flavor(
        &self,
        spec: FlavorSpec,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let (id, name) = (spec.id.clone(), spec.name.clone());
        let subject = flavor_name_subject(&name);
        self.execute_on_world(
            &subject,
            &format!("flavor name {name}"),
            |v| {
                let row = v.flavor_names().get(&subject);
                let evs = flavor::decide_name(
                    row.and_then(|r| r.state.as_ref()),
                    &name,
                    &id,
                    &WorldFlavors(v),
                    ctx.now,
                )?;
                Ok((
                    evs.into_iter().map(Event::Flavor).collect(),
                    row.map_or(0, |r| r.seq),
                ))
            },
            |v| v.flavor_names().get(&subject).map(|r| r.seq),
            ctx,
            meta,
        )
        .await?;
        match self
            .flavor(&id, FlavorCommand::Create(spec), ctx, meta)
            .await
        {
            Ok(out) => Ok(out),
            Err(e) => {
                if let Err(release) = self.release_flavor_name(&name, &id, ctx, meta).await {
                    // The claim stops holding after its grace anyway.
                    tracing::warn!(%name, error = %release, "could not release a flavor name claim");
                }
                Err(e)
            }
        }
    }

    /// Deletes a flavor and releases its name.
    pub async fn delete_flavor(
        &self,
        id: &FlavorId,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let name = self
            .world
            .read()
            .flavor(id.as_str())
            .map(|f| f.spec.name.clone());
        let out = self.flavor(id, FlavorCommand::Delete, ctx, meta).await?;
        if let Some(name) = name {
            if let Err(e) = self.release_flavor_name(&name, id, ctx, meta).await {
                tracing::warn!(%name, error = %e, "could not release a flavor name claim");
            }
        }
        Ok(out)
    }

    /// Releases the claim of flavor `id` on `name`, if it still has it.
    async fn release_flavor_name(
        &self,
        name: &str,
        id: &FlavorId,
        ctx: &Ctx,
        meta: &Meta,
    ) -> Result<Outcome, EngineError> {
        let subject = flavor_name_subject(name);
        self.execute_on_world(
            &subject,
            &format!("flavor name {name}"),
            |v| {
                let row = v.flavor_names().get(&subject);
                let evs = flavor::decide_release(row.and_then(|r| r.state.as_ref()), id);
                Ok((
                    evs.into_iter().map(Event::Flavor).collect(),
                    row.map_or(0, |r| r.seq),
                ))
            },
            |v| v.flavor_names().get(&subject).map(|r| r.seq),
            ctx,
            meta,
        )
        .await
    }
}
