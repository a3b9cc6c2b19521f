//! Response shaping: Nova JSON bodies for servers, flavors and version documents, per
//! microversion, as in Nova's api samples.
//!
//! Invariants:
//! - A field appears only from the microversion that introduced it, and admin-only
//!   fields (`OS-EXT-SRV-ATTR:*` host attributes, `host_status`, fault `details` of
//!   500 faults) only for admins.
//! - Shaping is pure: it reads an [`Instance`] / [`Flavor`] and the host table, never
//!   the log, and never fails.

use domain::flavor::Flavor;
use domain::instance::{FlavorSnapshot, Instance};
use projections::Views;
use serde_json::{json, Map, Value};

use crate::microversion::Version;
use crate::util::{iso_micros, iso_z, sha224_hex};

/// What shaping depends on besides the resource itself.
#[derive(Clone, Copy)]
pub struct ViewCtx<'a> {
    /// Microversion of the request.
    pub version: Version,
    /// Caller is admin.
    pub is_admin: bool,
    /// `scheme://host` for links.
    pub base: &'a str,
    /// The world (host table for availability zones and host status).
    pub views: &'a Views,
}

/// `self` and `bookmark` links of a resource.
pub fn links(base: &str, collection: &str, id: &str) -> Value {
    json!([
        {"href": format!("{base}/v2.1/{collection}/{id}"), "rel": "self"},
        {"href": format!("{base}/{collection}/{id}"), "rel": "bookmark"},
    ])
}

fn bookmark(base: &str, collection: &str, id: &str) -> Value {
    json!([{"href": format!("{base}/{collection}/{id}"), "rel": "bookmark"}])
}

/// `{"id", "links", "name"}` of a server (GET /servers).
pub fn server_summary(i: &Instance, base: &str) -> Value {
    let id = i.id().to_string();
    json!({"id": id, "links": links(base, "servers", &id), "name": i.spec.name})
}

/// How much of a down cell's instance to show (Nova >= 2.69).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownCellView {
    /// `GET /servers`: id, status, links.
    Index,
    /// `GET /servers/detail`: + tenant_id, created.
    Detail,
    /// `GET /servers/{id}`: + image, flavor, availability zone, power state, user.
    Show,
}

/// The partial record Nova returns (microversion >= 2.69) for an instance whose cell
/// does not respond: only what the api database knows (here: the api stream and the
/// last folded state), status `UNKNOWN`, power state 0 (NOSTATE).
pub fn down_cell_server(i: &Instance, cx: &ViewCtx<'_>, level: DownCellView) -> Value {
    let id = i.id().to_string();
    let mut s = Map::new();
    s.insert("id".into(), json!(id));
    s.insert("status".into(), json!("UNKNOWN"));
    s.insert("links".into(), links(cx.base, "servers", &id));
    if level == DownCellView::Index {
        return Value::Object(s);
    }
    s.insert("tenant_id".into(), json!(i.spec.project_id));
    s.insert("created".into(), json!(iso_z(i.created_at)));
    if level == DownCellView::Show {
        let image = if i.spec.boot_from_volume || i.spec.image_ref.is_empty() {
            json!("")
        } else {
            json!({"id": i.spec.image_ref, "links": bookmark(cx.base, "images", &i.spec.image_ref)})
        };
        s.insert("image".into(), image);
        s.insert("flavor".into(), embedded_flavor(&i.flavor));
        s.insert(
            "OS-EXT-AZ:availability_zone".into(),
            json!(i
                .spec
                .availability_zone
                .clone()
                .unwrap_or_else(|| "UNKNOWN".into())),
        );
        s.insert("OS-EXT-STS:power_state".into(), json!(0));
        s.insert("user_id".into(), json!(i.spec.user_id));
        if cx.version.at_least(71) {
            s.insert("server_groups".into(), server_groups_of(i, cx));
        }
    }
    Value::Object(s)
}

/// Statuses for which Nova reports `progress`.
const PROGRESS_STATUSES: &[&str] = &[
    "ACTIVE",
    "BUILD",
    "REBUILD",
    "RESIZE",
    "VERIFY_RESIZE",
    "MIGRATING",
];

/// The zone of the host a server is on (Nova's `get_instance_availability_zone`: the
/// host's current zone from its aggregates, else `nova`); None before it has a host.
fn host_az(i: &Instance, views: &Views) -> Option<String> {
    let host = i.host.as_ref()?;
    Some(views.host_availability_zone(host))
}

/// Embedded flavor of a server from 2.47.
pub fn embedded_flavor(f: &FlavorSnapshot) -> Value {
    json!({
        "vcpus": f.spec.vcpus,
        "ram": f.spec.ram_mb,
        "disk": f.spec.disk_gb,
        "ephemeral": f.spec.ephemeral_gb,
        "swap": f.spec.swap_mb,
        "original_name": f.spec.name,
        "extra_specs": f.extra_specs,
    })
}

/// Which response a server body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerBody {
    /// `GET /servers/{id}`: everything, plus `server_groups` (2.71).
    Show,
    /// An item of `GET /servers/detail`: everything but `server_groups`.
    Detail,
    /// `PUT /servers/{id}`: before 2.75 Nova leaves out the extended attributes
    /// (`OS-EXT-*`, `OS-SRV-USG:*`, `config_drive`, `key_name`, `security_groups`,
    /// volumes, `host_status`); from 2.75 it is the same as [`ServerBody::Show`].
    Update,
}

/// 2.71 `server_groups`: the id of the group the server is a member of (at most one).
fn server_groups_of(i: &Instance, cx: &ViewCtx<'_>) -> Value {
    json!(cx
        .views
        .server_groups()
        .of_member(&i.id())
        .map(|g| vec![g.id.to_string()])
        .unwrap_or_default())
}

/// The full server body (GET /servers/{id}, /servers/detail items, PUT response).
pub fn server_view(i: &Instance, cx: &ViewCtx<'_>, body: ServerBody) -> Value {
    let show = body != ServerBody::Detail;
    // The pre-2.75 update response: the basic fields and the versioned ones only.
    let extended = body != ServerBody::Update || cx.version.at_least(75);
    let v = cx.version;
    let base = cx.base;
    let id = i.id().to_string();
    let status = i.status();
    let mut s = Map::new();
    let mut put = |k: &str, val: Value| {
        s.insert(k.to_string(), val);
    };
    put("id", json!(id));
    put("name", json!(i.spec.name));
    put("status", json!(status));
    put("tenant_id", json!(i.spec.project_id));
    put("user_id", json!(i.spec.user_id));
    put("metadata", json!(i.spec.metadata));
    let host_id = match &i.host {
        Some(h) => sha224_hex(format!("{}{}", i.spec.project_id, h).as_bytes()),
        None => String::new(),
    };
    put("hostId", json!(host_id));
    let row = cx.views.instances().get(&i.id());
    let details = row.map(|r| &r.details);
    let extras = row.map(|r| &r.extras);
    let image = if i.spec.boot_from_volume || i.spec.image_ref.is_empty() {
        json!("")
    } else if v.at_least(98) {
        json!({
            "id": i.spec.image_ref,
            "links": bookmark(base, "images", &i.spec.image_ref),
            "properties": json_values(details.map(|d| &d.image_properties)),
        })
    } else {
        json!({"id": i.spec.image_ref, "links": bookmark(base, "images", &i.spec.image_ref)})
    };
    put("image", image);
    let flavor = if v.at_least(47) {
        embedded_flavor(&i.flavor)
    } else {
        let fid = i.flavor.spec.id.to_string();
        json!({"id": fid, "links": bookmark(base, "flavors", &fid)})
    };
    put("flavor", flavor);
    put("created", json!(iso_z(i.created_at)));
    put("updated", json!(iso_z(i.updated_at)));
    put(
        "addresses",
        crate::server_networks::addresses(cx.views, &id, extended),
    );
    let access = |ip: Option<&String>| json!(ip.map(String::as_str).unwrap_or(""));
    put(
        "accessIPv4",
        access(extras.and_then(|e| e.access_ip_v4.as_ref())),
    );
    put(
        "accessIPv6",
        access(extras.and_then(|e| e.access_ip_v6.as_ref())),
    );
    put("links", links(base, "servers", &id));
    let auto = extras.and_then(|e| e.auto_disk_config) == Some(true);
    put(
        "OS-DCF:diskConfig",
        json!(if auto { "AUTO" } else { "MANUAL" }),
    );
    if extended {
        put("key_name", json!(i.spec.key_name));
        // Nova stores the request as the string "True" (else "").
        let drive = extras.is_some_and(|e| e.config_drive);
        put("config_drive", json!(if drive { "True" } else { "" }));
        let az = host_az(i, cx.views)
            .or_else(|| i.spec.availability_zone.clone())
            .unwrap_or_default();
        put("OS-EXT-AZ:availability_zone", json!(az));
        put("OS-EXT-STS:vm_state", json!(i.vm_state.as_str()));
        put(
            "OS-EXT-STS:task_state",
            json!(i.task_state.map(|t| t.as_str())),
        );
        put("OS-EXT-STS:power_state", json!(i.power_state.code()));
        put(
            "OS-SRV-USG:launched_at",
            json!(i.launched_at.map(iso_micros)),
        );
        put(
            "OS-SRV-USG:terminated_at",
            json!(i.terminated_at.map(iso_micros)),
        );
        if let Some(groups) = crate::server_security_groups::names(cx.views, &id) {
            put("security_groups", groups);
        }
        put("os-extended-volumes:volumes_attached", json!([]));
    }
    if PROGRESS_STATUSES.contains(&status) {
        put("progress", json!(0));
    }
    if let Some(f) = i
        .fault
        .as_ref()
        .filter(|_| matches!(status, "ERROR" | "DELETED"))
    {
        let mut fault = json!({"code": f.code, "created": iso_z(f.created), "message": f.message});
        if cx.is_admin || f.code != 500 {
            fault["details"] = json!(f.details);
        }
        put("fault", fault);
    }
    if cx.is_admin && extended {
        let host = i.host.as_ref().map(|h| h.to_string());
        put("OS-EXT-SRV-ATTR:host", json!(host));
        put("OS-EXT-SRV-ATTR:hypervisor_hostname", json!(host));
        let simple = i.id().0.simple().to_string();
        put(
            "OS-EXT-SRV-ATTR:instance_name",
            json!(format!("instance-{}", &simple[..8])),
        );
        if v.at_least(3) {
            put(
                "OS-EXT-SRV-ATTR:reservation_id",
                json!(reservation_id(i, extras)),
            );
            put(
                "OS-EXT-SRV-ATTR:launch_index",
                json!(extras.map_or(0, |e| e.launch_index)),
            );
            put("OS-EXT-SRV-ATTR:kernel_id", json!(""));
            put("OS-EXT-SRV-ATTR:ramdisk_id", json!(""));
            put(
                "OS-EXT-SRV-ATTR:root_device_name",
                json!(i.host.as_ref().map(|_| "/dev/vda")),
            );
            put(
                "OS-EXT-SRV-ATTR:user_data",
                json!(extras.and_then(|e| e.user_data.clone())),
            );
        }
    }
    if extended && v.at_least(3) && (cx.is_admin || v.at_least(90)) {
        let explicit = extras.and_then(|e| e.hostname.clone());
        put(
            "OS-EXT-SRV-ATTR:hostname",
            json!(explicit.unwrap_or_else(|| domain::instance::default_hostname(&i.spec.name))),
        );
    }
    if v.at_least(9) {
        put("locked", json!(i.locked.is_some()));
    }
    if extended && v.at_least(16) && cx.is_admin {
        let hs = match &i.host {
            None => "",
            Some(h) if cx.views.hosts().values().any(|r| &r.state.spec.name == h) => "UP",
            Some(_) => "UNKNOWN",
        };
        put("host_status", json!(hs));
    }
    if v.at_least(19) {
        put("description", json!(i.spec.description));
    }
    if v.at_least(26) {
        put(
            "tags",
            json!(extras.map(|e| e.tags.clone()).unwrap_or_default()),
        );
    }
    if v.at_least(63) {
        put(
            "trusted_image_certificates",
            json!(extras.and_then(|e| e.trusted_image_certificates.clone())),
        );
    }
    if v.at_least(71) && show {
        put("server_groups", server_groups_of(i, cx));
    }
    if v.at_least(73) {
        put(
            "locked_reason",
            json!(i.locked.as_ref().and_then(|l| l.reason.clone())),
        );
    }
    if v.at_least(96) {
        put("pinned_availability_zone", json!(i.spec.availability_zone));
    }
    if v.at_least(100) {
        put(
            "scheduler_hints",
            json_values(details.map(|d| &d.scheduler_hints)),
        );
    }
    Value::Object(s)
}

/// A recorded name -> JSON text map as a JSON object (`{}` when absent).
fn json_values(m: Option<&std::collections::BTreeMap<String, String>>) -> Value {
    let mut out = Map::new();
    for (k, v) in m.into_iter().flatten() {
        out.insert(
            k.clone(),
            serde_json::from_str(v).unwrap_or_else(|_| json!(v)),
        );
    }
    Value::Object(out)
}

/// A flavor: `{id, links, name}` (+ description 2.55) when `!detail`, else the full body.
pub fn flavor_view(f: &Flavor, version: Version, base: &str, detail: bool) -> Value {
    let spec = &f.spec;
    let id = spec.id.to_string();
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("links".into(), links(base, "flavors", &id));
    m.insert("name".into(), json!(spec.name));
    if detail {
        m.insert("ram".into(), json!(spec.ram_mb));
        m.insert("vcpus".into(), json!(spec.vcpus));
        m.insert("disk".into(), json!(spec.disk_gb));
        m.insert("OS-FLV-EXT-DATA:ephemeral".into(), json!(spec.ephemeral_gb));
        let swap = if spec.swap_mb == 0 && !version.at_least(75) {
            json!("")
        } else {
            json!(spec.swap_mb)
        };
        m.insert("swap".into(), swap);
        m.insert("rxtx_factor".into(), json!(spec.rxtx_factor));
        m.insert("OS-FLV-DISABLED:disabled".into(), json!(false));
        m.insert("os-flavor-access:is_public".into(), json!(spec.is_public));
    }
    if version.at_least(55) {
        m.insert("description".into(), json!(spec.description));
    }
    if detail && version.at_least(61) {
        m.insert("extra_specs".into(), json!(f.extra_specs));
    }
    Value::Object(m)
}

fn v21_version(base: &str, full: bool) -> Value {
    let mut v = json!({
        "id": "v2.1",
        "links": [{"href": format!("{base}/v2.1/"), "rel": "self"}],
        "status": "CURRENT",
        "version": Version::MAX.to_string(),
        "min_version": Version::MIN.to_string(),
        "updated": "2013-07-23T11:33:21Z",
    });
    if full {
        v["links"] = json!([
            {"href": format!("{base}/v2.1/"), "rel": "self"},
            {"href": "http://docs.openstack.org/", "rel": "describedby", "type": "text/html"},
        ]);
        v["media-types"] = json!([{
            "base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2.1",
        }]);
    }
    v
}

/// The legacy v2.0 entry (deprecated, no microversions: `version` and `min_version`
/// are empty strings, as Nova answers). `full` adds what the single-version document
/// has (a `describedby` link and `media-types`).
fn v20_version(base: &str, full: bool) -> Value {
    let mut v = json!({
        "id": "v2.0",
        "links": [{"href": format!("{base}/v2/"), "rel": "self"}],
        "status": "DEPRECATED",
        "version": "",
        "min_version": "",
        "updated": "2025-07-04T12:00:00Z",
    });
    if full {
        v["links"] = json!([
            {"href": format!("{base}/v2/"), "rel": "self"},
            {"href": "http://docs.openstack.org/", "rel": "describedby", "type": "text/html"},
        ]);
        v["media-types"] = json!([{
            "base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2",
        }]);
    }
    v
}

/// GET /: v2.0 then v2.1, in Nova's order (clients such as tempest expect v2.0 first).
pub fn versions_doc(base: &str) -> Value {
    json!({"versions": [v20_version(base, false), v21_version(base, false)]})
}

/// GET /v2.
pub fn legacy_version_doc(base: &str) -> Value {
    json!({"version": v20_version(base, true)})
}

/// GET /v2.1.
pub fn version_doc(base: &str) -> Value {
    json!({"version": v21_version(base, true)})
}

/// A server's `reservation_id`: its multiple create's, else one derived from its id (a
/// single create is a reservation of one).
pub fn reservation_id(i: &Instance, extras: Option<&domain::instance::ServerExtras>) -> String {
    match extras.and_then(|e| e.reservation_id.clone()) {
        Some(r) => r,
        None => format!("r-{}", &i.id().0.simple().to_string()[8..16]),
    }
}
