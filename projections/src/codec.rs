//! Encoding of domain events into log events and back.
//!
//! Payloads are postcard. Each event has a stable type name (`instance.paused`) and an
//! explicit version. postcard is not self-describing, so:
//! - the variant order of the event enums is frozen: new variants go at the end;
//! - a payload whose shape changes gets a new version; the old shape stays decodable
//!   here and is upcast to the current one;
//! - `eventlog`-independent corpus tests (`projections/tests/corpus.rs`) decode a
//!   committed file of encoded events of every type and version, forever.

use domain::aggregate::AggregateEvent;
use domain::audit::AuditEvent;
use domain::cell::{CellEvent, HostMappingEvent};
use domain::flavor::FlavorEvent;
use domain::host::HostEvent;
use domain::identity::IdentityEvent;
use domain::image::ImageEvent;
use domain::instance::InstanceEvent;
use domain::keypair::KeypairEvent;
use domain::metadef::MetadefEvent;
use domain::network::pool::PoolEvent;
use domain::network::quota::NetQuotaEvent;
use domain::network::NetworkEvent;
use domain::quota::QuotaEvent;
use domain::router::{FloatingIpEvent, RouterEvent};
use domain::security_group::SecurityGroupEvent;
use domain::server_group::ServerGroupEvent;
use domain::subscription::SubscriptionEvent;
use domain::task::TaskEvent;
use domain::Event;
use eventlog::{NewEvent, StoredEvent};

/// Why an event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Unknown type name or version.
    #[error("unknown event type {0} v{1}")]
    Unknown(String, u16),
    /// Payload does not decode.
    #[error("cannot decode {0}: {1}")]
    Payload(String, String),
}

/// Encodes a domain event.
pub fn encode(e: &Event) -> NewEvent {
    let payload = match e {
        Event::Instance(x) => postcard::to_stdvec(x),
        Event::Flavor(x) => postcard::to_stdvec(x),
        Event::Host(x) => postcard::to_stdvec(x),
        Event::Cell(x) => postcard::to_stdvec(x),
        Event::HostMapping(x) => postcard::to_stdvec(x),
        Event::Image(x) => postcard::to_stdvec(x),
        Event::Identity(x) => postcard::to_stdvec(x),
        Event::Quota(x) => postcard::to_stdvec(x),
        Event::ServerGroup(x) => postcard::to_stdvec(x),
        Event::Keypair(x) => postcard::to_stdvec(x),
        Event::Aggregate(x) => postcard::to_stdvec(x),
        Event::UsageAudit(x) => postcard::to_stdvec(x),
        Event::Subscription(x) => postcard::to_stdvec(x),
        Event::Metadef(x) => postcard::to_stdvec(x),
        Event::Task(x) => postcard::to_stdvec(x),
        Event::Network(x) => postcard::to_stdvec(x),
        Event::NetworkQuota(x) => postcard::to_stdvec(x),
        Event::SubnetPool(x) => postcard::to_stdvec(x),
        Event::Router(x) => postcard::to_stdvec(x),
        Event::FloatingIp(x) => postcard::to_stdvec(x),
        Event::SecurityGroup(x) => postcard::to_stdvec(x),
    }
    .expect("postcard encoding of owned data cannot fail");
    NewEvent {
        event_type: e.event_type().to_string(),
        version: e.version(),
        payload,
    }
}

/// Decodes a stored event (upcasting old versions).
pub fn decode(e: &StoredEvent) -> Result<Event, CodecError> {
    decode_parts(&e.event_type, e.version, &e.payload)
}

/// Decodes from type, version and payload bytes.
pub fn decode_parts(event_type: &str, version: u16, payload: &[u8]) -> Result<Event, CodecError> {
    let perr = |err: postcard::Error| CodecError::Payload(event_type.to_string(), err.to_string());
    let ev = match (event_type.split('.').next(), version) {
        // Host mappings live in the api stream but share the `host.` prefix: matched
        // by full name before the host aggregate's events.
        (Some("host"), 1) if event_type == "host.mapped" => {
            Event::HostMapping(postcard::from_bytes::<HostMappingEvent>(payload).map_err(perr)?)
        }
        (Some("identity" | "project" | "user" | "role"), 1) => {
            Event::Identity(postcard::from_bytes::<IdentityEvent>(payload).map_err(perr)?)
        }
        (Some("cell"), 1) => Event::Cell(postcard::from_bytes::<CellEvent>(payload).map_err(perr)?),
        (Some("instance"), 1) => {
            Event::Instance(postcard::from_bytes::<InstanceEvent>(payload).map_err(perr)?)
        }
        (Some("flavor"), 1) => {
            Event::Flavor(postcard::from_bytes::<FlavorEvent>(payload).map_err(perr)?)
        }
        (Some("image"), 1) => {
            Event::Image(postcard::from_bytes::<ImageEvent>(payload).map_err(perr)?)
        }
        (Some("quota"), 1) => {
            Event::Quota(postcard::from_bytes::<QuotaEvent>(payload).map_err(perr)?)
        }
        (Some("server_group"), 1) => {
            Event::ServerGroup(postcard::from_bytes::<ServerGroupEvent>(payload).map_err(perr)?)
        }
        (Some("keypair"), 1) => {
            Event::Keypair(postcard::from_bytes::<KeypairEvent>(payload).map_err(perr)?)
        }
        (Some("aggregate"), 1) => {
            Event::Aggregate(postcard::from_bytes::<AggregateEvent>(payload).map_err(perr)?)
        }
        (Some("audit"), 1) => {
            Event::UsageAudit(postcard::from_bytes::<AuditEvent>(payload).map_err(perr)?)
        }
        (Some("subscription"), 1) => {
            Event::Subscription(postcard::from_bytes::<SubscriptionEvent>(payload).map_err(perr)?)
        }
        (Some("task"), 1) => Event::Task(postcard::from_bytes::<TaskEvent>(payload).map_err(perr)?),
        (Some("metadef"), 1) => {
            Event::Metadef(postcard::from_bytes::<MetadefEvent>(payload).map_err(perr)?)
        }
        (Some("subnetpool"), 1) => {
            Event::SubnetPool(postcard::from_bytes::<PoolEvent>(payload).map_err(perr)?)
        }
        (Some("network_quota"), 1) => {
            Event::NetworkQuota(postcard::from_bytes::<NetQuotaEvent>(payload).map_err(perr)?)
        }
        (Some("network"), 1) => {
            Event::Network(postcard::from_bytes::<NetworkEvent>(payload).map_err(perr)?)
        }
        (Some("router"), 1) => {
            Event::Router(postcard::from_bytes::<RouterEvent>(payload).map_err(perr)?)
        }
        (Some("floatingip"), 1) => {
            Event::FloatingIp(postcard::from_bytes::<FloatingIpEvent>(payload).map_err(perr)?)
        }
        (Some("security_group"), 1) => {
            Event::SecurityGroup(postcard::from_bytes::<SecurityGroupEvent>(payload).map_err(perr)?)
        }
        (Some("host"), 1) => Event::Host(postcard::from_bytes::<HostEvent>(payload).map_err(perr)?),
        _ => return Err(CodecError::Unknown(event_type.to_string(), version)),
    };
    if ev.event_type() != event_type {
        return Err(CodecError::Payload(
            event_type.to_string(),
            format!("payload is a {}", ev.event_type()),
        ));
    }
    Ok(ev)
}
