//! What a guest learns about itself: Nova's metadata documents (`meta_data.json`,
//! `network_data.json`, `vendor_data*.json`, `user_data`, the EC2 tree), built from the
//! read model of the log, served two ways as Nova does: on a config drive (an ISO 9660
//! volume labelled `config-2`, [`config_drive`]) and by the metadata HTTP service
//! behind Neutron's metadata proxy ([`http`]).
//!
//! The documents are functions of the read model ([`InstanceMetadata::from_views`]
//! gathers everything first, as Nova's `InstanceMetadata` does), except `random_seed`,
//! which is fresh randomness for every `meta_data.json`, as in Nova.

pub mod config_drive;
pub mod http;
pub mod pyjson;

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine as _;
use domain::instance::Instance;
use domain::InstanceId;
use projections::views::Views;
use pyjson::Json;

/// The EC2 metadata versions (Nova's `VERSIONS`), oldest first.
pub const EC2_VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
];

/// The OpenStack metadata versions (Nova's `OPENSTACK_VERSIONS`), oldest first: Folsom,
/// Grizzly, Havana, Liberty, Newton (two), Ocata, Rocky, Victoria, Epoxy.
pub const OPENSTACK_VERSIONS: &[&str] = &[
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "2020-10-14",
    "2025-04-04",
];

const GRIZZLY: &str = "2013-04-04";
const HAVANA: &str = "2013-10-17";
const LIBERTY: &str = "2015-10-15";
const NEWTON_ONE: &str = "2016-06-30";
const NEWTON_TWO: &str = "2016-10-06";
const VICTORIA: &str = "2020-10-14";

/// Nova's `config_drive_skip_versions` default: the EC2 versions a config drive leaves
/// out (it carries 2009-04-04 and latest).
const CONFIG_DRIVE_SKIP_EC2: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
];

/// `text/plain`: listings, user data, `network_data.json` (Nova leaves its type alone).
pub const TEXT_PLAIN: &str = "text/plain";
/// `application/json`: `meta_data.json` and the vendor data.
pub const APPLICATION_JSON: &str = "application/json";

/// The metadata crate's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the config drive's tree or running genisoimage failed.
    #[error("config drive: {0}")]
    Io(#[from] std::io::Error),
    /// genisoimage ran and failed.
    #[error("genisoimage failed: {0}")]
    Genisoimage(String),
    /// A path inside the config drive would leave its tree.
    #[error("config drive: bad file path {0:?}")]
    BadPath(String),
}

/// Deployment settings of the documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Nova's `[api] dhcp_domain`: appended to the hostname (`<hostname>.<domain>`);
    /// empty: the bare hostname. Default `novalocal`, as Nova.
    pub dhcp_domain: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dhcp_domain: "novalocal".into(),
        }
    }
}

/// Everything the documents of one instance are made of, gathered from the read model
/// at once (Nova's `InstanceMetadata`).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceMetadata {
    pub uuid: String,
    pub name: String,
    /// With the DHCP domain.
    pub hostname: String,
    pub project_id: String,
    pub launch_index: u32,
    pub availability_zone: Option<String>,
    pub reservation_id: String,
    /// The server metadata (`meta`).
    pub meta: BTreeMap<String, String>,
    pub key_name: Option<String>,
    /// The key pair's (name, type, public key), when it still exists.
    pub key: Option<(String, String, String)>,
    /// Decoded user data.
    pub user_data: Option<Vec<u8>>,
    /// `network_data.json` (None: the server has no ports, Nova's `{}`).
    pub network: Option<Json>,
    /// IPv4 fixed addresses, port by port.
    pub fixed_ipv4: Vec<String>,
    pub floating_ips: Vec<String>,
    /// Names of the security groups of its ports.
    pub security_groups: Vec<String>,
    pub flavor_name: String,
    pub image_ref: String,
    /// EC2 block-device-mapping.
    pub mappings: Json,
}

impl InstanceMetadata {
    /// The documents' source for `id`; None when the read model has no such instance
    /// or it is deleted (Nova's `InstanceNotFound`: the service answers 404).
    pub fn from_views(views: &Views, id: &InstanceId, opts: &Options) -> Option<Self> {
        let row = views.instances().get(id)?;
        let i = row.state()?;
        if i.deleted {
            return None;
        }
        let extras = &row.extras;
        let base = extras
            .hostname
            .clone()
            .unwrap_or_else(|| domain::instance::default_hostname(&i.spec.name));
        let hostname = if opts.dhcp_domain.is_empty() {
            base
        } else {
            format!("{base}.{}", opts.dhcp_domain)
        };
        let availability_zone = i
            .host
            .as_ref()
            .map(|h| views.host_availability_zone(h))
            .or_else(|| i.spec.availability_zone.clone());
        let key = i.spec.key_name.as_ref().and_then(|name| {
            views.keypairs().get(&i.spec.user_id, name).map(|k| {
                (
                    k.name.clone(),
                    k.key_type.as_str().to_string(),
                    k.public_key.clone(),
                )
            })
        });
        let user_data = extras.user_data.as_ref().map(|u| {
            base64::engine::general_purpose::STANDARD
                .decode(u.trim())
                .unwrap_or_else(|_| u.clone().into_bytes())
        });
        let device = i.id().0.to_string();
        let ports = views.networks().ports_of_device(&device);
        let mut fixed_ipv4 = Vec::new();
        let mut floating_ips = Vec::new();
        let mut sg_ids = Vec::new();
        for p in &ports {
            for f in &p.fixed_ips {
                if f.ip_address.is_ipv4() {
                    fixed_ipv4.push(f.ip_address.to_string());
                }
            }
            for f in views.floating_ips().of_port(p.id) {
                floating_ips.push(f.floating_ip_address.to_string());
            }
            for g in &p.security_groups {
                if !sg_ids.contains(g) {
                    sg_ids.push(*g);
                }
            }
        }
        let security_groups = sg_ids
            .iter()
            .filter_map(|g| views.security_groups().get(&domain::SecurityGroupId(*g)))
            .map(|g| g.spec.name.clone())
            .collect();
        Some(InstanceMetadata {
            uuid: device,
            name: i.spec.name.clone(),
            hostname,
            project_id: i.spec.project_id.clone(),
            launch_index: extras.launch_index,
            availability_zone,
            reservation_id: extras
                .reservation_id
                .clone()
                .unwrap_or_else(|| format!("r-{}", &i.id().0.simple().to_string()[8..16])),
            meta: i.spec.metadata.clone(),
            key_name: i.spec.key_name.clone(),
            key,
            user_data,
            network: network_data(views, &ports),
            fixed_ipv4,
            floating_ips,
            security_groups,
            flavor_name: i.flavor.spec.name.clone(),
            image_ref: i.spec.image_ref.clone(),
            mappings: block_device_mapping(i),
        })
    }

    /// `openstack/<version>/meta_data.json` (the version already resolved).
    pub fn meta_data(&self, version: &str) -> Json {
        let mut m = Json::obj();
        m.put("uuid", self.uuid.as_str());
        if !self.meta.is_empty() {
            m.put(
                "meta",
                Json::Obj(
                    self.meta
                        .iter()
                        .map(|(k, v)| (k.clone(), Json::from(v.as_str())))
                        .collect(),
                ),
            );
        }
        if let Some((name, ty, data)) = &self.key {
            m.put(
                "public_keys",
                Json::Obj(vec![(name.clone(), data.as_str().into())]),
            );
            let mut k = Json::obj();
            k.put("name", name.as_str());
            k.put("type", ty.as_str());
            k.put("data", data.as_str());
            m.put("keys", Json::Arr(vec![k]));
        }
        m.put("hostname", self.hostname.as_str());
        m.put("name", self.name.as_str());
        m.put("launch_index", self.launch_index);
        m.put("availability_zone", self.availability_zone.clone());
        if os_at_least(version, GRIZZLY) {
            let mut seed = vec![0u8; 512];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
            m.put(
                "random_seed",
                base64::engine::general_purpose::STANDARD.encode(seed),
            );
        }
        if os_at_least(version, LIBERTY) {
            m.put("project_id", self.project_id.as_str());
        }
        if os_at_least(version, NEWTON_ONE) {
            // No tagged devices are recorded: Nova lists only tagged NICs and disks.
            m.put("devices", Json::Arr(Vec::new()));
        }
        if os_at_least(version, VICTORIA) {
            // No CPU pinning: Nova's list of pinned host CPUs is empty then.
            m.put("dedicated_cpus", Json::Arr(Vec::new()));
        }
        m
    }

    /// `network_data.json`: `{}` for a server without ports, as Nova.
    pub fn network_data(&self) -> Json {
        self.network.clone().unwrap_or_else(Json::obj)
    }

    /// `vendor_data.json`: Nova's default StaticJSON provider without a file: `{}`.
    pub fn vendor_data(&self) -> Json {
        Json::obj()
    }

    /// `vendor_data2.json`: every provider's data by name; the default StaticJSON
    /// provider without a file gives `{"static": {}}` (no dynamic providers).
    pub fn vendor_data2(&self) -> Json {
        Json::Obj(vec![("static".into(), Json::obj())])
    }

    /// What `openstack/<version>/` lists.
    pub fn version_listing(&self, version: &str) -> Vec<&'static str> {
        let mut v = vec!["meta_data.json"];
        if self.user_data.is_some() {
            v.push("user_data");
        }
        if os_at_least(version, GRIZZLY) {
            v.push("password");
        }
        if os_at_least(version, HAVANA) {
            v.push("vendor_data.json");
        }
        if os_at_least(version, LIBERTY) {
            v.push("network_data.json");
        }
        if os_at_least(version, NEWTON_TWO) {
            v.push("vendor_data2.json");
        }
        v
    }

    /// The EC2 `meta-data` tree of `version` (resolved; `latest` is 2009-04-04), keys
    /// in Nova's order. `public-keys/0` carries Nova's `_name` (`0=<key name>`), which
    /// the listing shows and the config drive drops. `address`: the requester's address
    /// (`X-Forwarded-For`), `local-ipv4` when the server has no IPv4 address.
    pub fn ec2_meta_data(&self, version: &str, address: Option<&str>) -> Json {
        let at_least = |v: &str| ec2_index(version) >= ec2_index(v);
        let mut m = Json::obj();
        let hex8 = |s: &str| s.replace('-', "").chars().take(8).collect::<String>();
        m.put(
            "ami-id",
            (!self.image_ref.is_empty()).then(|| format!("ami-{}", hex8(&self.image_ref))),
        );
        m.put("ami-launch-index", self.launch_index);
        m.put("ami-manifest-path", "FIXME");
        m.put("instance-id", format!("i-{}", hex8(&self.uuid)));
        m.put("hostname", self.hostname.as_str());
        m.put(
            "local-ipv4",
            self.fixed_ipv4
                .first()
                .cloned()
                .or_else(|| address.map(str::to_string)),
        );
        m.put("reservation-id", self.reservation_id.as_str());
        m.put(
            "security-groups",
            Json::Arr(
                self.security_groups
                    .iter()
                    .map(|s| s.as_str().into())
                    .collect(),
            ),
        );
        if let Some(name) = &self.key_name {
            let mut k = Json::obj();
            k.put("_name", format!("0={name}"));
            k.put("openssh-key", self.key.as_ref().map(|(_, _, d)| d.clone()));
            m.put("public-keys", Json::Obj(vec![("0".into(), k)]));
        }
        if at_least("2007-01-19") {
            m.put("local-hostname", self.hostname.as_str());
            m.put("public-hostname", self.hostname.as_str());
            m.put(
                "public-ipv4",
                self.floating_ips.first().cloned().unwrap_or_default(),
            );
        }
        if at_least("2007-08-29") {
            m.put("instance-type", self.flavor_name.as_str());
        }
        if at_least("2007-12-15") {
            m.put("block-device-mapping", self.mappings.clone());
        }
        if at_least("2008-02-01") {
            let mut p = Json::obj();
            p.put("availability-zone", self.availability_zone.clone());
            m.put("placement", p);
        }
        if at_least("2008-09-01") {
            m.put("instance-action", "none");
        }
        m
    }
}

/// Whether OpenStack version `v` is at least `min` (both known).
fn os_at_least(v: &str, min: &str) -> bool {
    let idx = |x: &str| OPENSTACK_VERSIONS.iter().position(|y| *y == x);
    idx(v) >= idx(min)
}

fn ec2_index(v: &str) -> Option<usize> {
    EC2_VERSIONS.iter().position(|y| *y == v)
}

/// An OpenStack version as requested (`latest`: the newest), if known.
pub fn resolve_os_version(v: &str) -> Option<&'static str> {
    if v == "latest" {
        return OPENSTACK_VERSIONS.last().copied();
    }
    OPENSTACK_VERSIONS.iter().copied().find(|x| *x == v)
}

/// An EC2 version as requested (`latest`: 2009-04-04), if known.
pub fn resolve_ec2_version(v: &str) -> Option<&'static str> {
    if v == "latest" {
        return EC2_VERSIONS.last().copied();
    }
    EC2_VERSIONS.iter().copied().find(|x| *x == v)
}

/// Nova's `instance_block_mapping` for a libvirt guest: the root disk `/dev/vda`, then
/// the ephemeral disk and swap in the flavor's order; before it is built (no root
/// device yet) Nova's defaults.
fn block_device_mapping(i: &Instance) -> Json {
    let mut m = Json::obj();
    if i.host.is_none() {
        m.put("ami", "sda1");
        m.put("ephemeral0", "sda2");
        m.put("root", "/dev/sda1");
        m.put("swap", "sda3");
        return m;
    }
    m.put("ami", "vda");
    m.put("root", "/dev/vda");
    let mut next = b'b';
    if i.flavor.spec.ephemeral_gb > 0 {
        m.put("ephemeral0", format!("/dev/vd{}", next as char));
        next += 1;
    }
    if i.flavor.spec.swap_mb > 0 {
        m.put("swap", format!("/dev/vd{}", next as char));
    }
    m
}

/// Nova's `get_network_metadata` over the server's ports (Neutron's view of them): a
/// link per port with addresses, a network per first IPv4 and first IPv6 subnet of it
/// (`ipv4_dhcp` / `ipv6_dhcp` when the subnet runs DHCP, the address, netmask and
/// routes otherwise), and the subnets' DNS servers. None without ports.
fn network_data(views: &Views, ports: &[&domain::network::Port]) -> Option<Json> {
    if ports.is_empty() {
        return None;
    }
    let nets_model = views.networks();
    let mut links = Vec::new();
    let mut nets = Vec::new();
    let mut services: Vec<Json> = Vec::new();
    let mut net_num = 0usize;
    for p in ports {
        let Some(network) = nets_model.get(&p.network_id) else {
            continue;
        };
        // The port's subnets, in the network's order; each with the port's addresses.
        let subnets: Vec<(&domain::network::Subnet, Vec<IpAddr>)> = network
            .subnets_in_order()
            .into_iter()
            .filter_map(|s| {
                let ips: Vec<IpAddr> = p
                    .fixed_ips
                    .iter()
                    .filter(|f| f.subnet_id == s.id)
                    .map(|f| f.ip_address)
                    .collect();
                (!ips.is_empty()).then_some((s, ips))
            })
            .collect();
        if subnets.is_empty() {
            continue;
        }
        let first = |v: u8| subnets.iter().find(|(s, _)| s.ip_version() == v);
        let (v4, v6) = (first(4), first(6));
        let link_id = format!("tap{}", &p.id.0.to_string()[..11]);
        let mut link = Json::obj();
        link.put("id", link_id.as_str());
        link.put("vif_id", p.id.0.to_string());
        // Nova exposes the legacy VIF types (ovs once bound) and says `phy` otherwise.
        link.put("type", if p.vif_type() == "ovs" { "ovs" } else { "phy" });
        // No DHCP ports exist here: the link carries the network's MTU.
        link.put("mtu", i64::from(network.spec.mtu));
        link.put("ethernet_mac_address", p.mac_address.as_str());
        links.push(link);
        for (v, sub) in [(4u8, v4), (6u8, v6)] {
            let Some((s, ips)) = sub else { continue };
            let dns: Vec<Json> = s.dns_nameservers.iter().map(|a| dns_service(a)).collect();
            nets.push(net_entry(s, ips[0], v, net_num, &link_id, p));
            net_num += 1;
            for d in dns {
                if !services.contains(&d) {
                    services.push(d);
                }
            }
        }
    }
    let mut doc = Json::obj();
    doc.put("links", Json::Arr(links));
    doc.put("networks", Json::Arr(nets));
    doc.put("services", Json::Arr(services));
    Some(doc)
}

fn dns_service(address: &str) -> Json {
    let mut d = Json::obj();
    d.put("type", "dns");
    d.put("address", address);
    d
}

/// One entry of `networks` (Nova's `_get_nets`).
fn net_entry(
    s: &domain::network::Subnet,
    ip: IpAddr,
    version: u8,
    net_num: usize,
    link_id: &str,
    p: &domain::network::Port,
) -> Json {
    let mut n = Json::obj();
    n.put("id", format!("network{net_num}"));
    let ty = match &s.ipv6_address_mode {
        Some(mode) => format!("ipv{version}_{mode}"),
        None if s.enable_dhcp => {
            n.put("type", format!("ipv{version}_dhcp"));
            n.put("link", link_id);
            n.put("network_id", p.network_id.0.to_string());
            return n;
        }
        None => format!("ipv{version}"),
    };
    n.put("type", ty);
    n.put("link", link_id);
    n.put("ip_address", ip.to_string());
    n.put(
        "netmask",
        netmask(s.cidr.ip.is_ipv4(), s.cidr.prefix).to_string(),
    );
    let mut routes = Vec::new();
    if let Some(gw) = s.gateway_ip {
        let any = if version == 4 { "0.0.0.0" } else { "::" };
        let mut r = Json::obj();
        r.put("network", any);
        r.put("netmask", any);
        r.put("gateway", gw.to_string());
        routes.push(r);
    }
    for hr in &s.host_routes {
        let mut r = Json::obj();
        r.put("network", hr.destination.ip.to_string());
        r.put(
            "netmask",
            netmask(hr.destination.ip.is_ipv4(), hr.destination.prefix).to_string(),
        );
        r.put("gateway", hr.nexthop.to_string());
        routes.push(r);
    }
    n.put("routes", Json::Arr(routes));
    n.put("network_id", p.network_id.0.to_string());
    n.put(
        "services",
        Json::Arr(s.dns_nameservers.iter().map(|a| dns_service(a)).collect()),
    );
    n
}

/// The netmask of a prefix length, as an address (`255.255.255.0`, `ffff:ffff::`).
fn netmask(v4: bool, prefix: u8) -> IpAddr {
    if v4 {
        let m = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix.min(32)))
        };
        IpAddr::V4(m.into())
    } else {
        let m = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(prefix.min(128)))
        };
        IpAddr::V6(m.into())
    }
}

/// Every document of the OpenStack and EC2 trees a config drive carries (Nova's
/// `metadata_for_config_drive`): (path, content).
pub fn config_drive_tree(md: &InstanceMetadata) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for v in EC2_VERSIONS.iter().copied().chain(["latest"]) {
        if CONFIG_DRIVE_SKIP_EC2.contains(&v) {
            continue;
        }
        let resolved = resolve_ec2_version(v).expect("known version");
        if let Some(ud) = &md.user_data {
            out.push((format!("ec2/{v}/user-data"), ud.clone()));
        }
        // Nova means to drop `public-keys/0/_name` here but looks for it one level too
        // high, so its drives keep it: so do these.
        let meta = md.ec2_meta_data(resolved, None);
        out.push((format!("ec2/{v}/meta-data.json"), meta.dumps().into_bytes()));
    }
    for v in OPENSTACK_VERSIONS.iter().copied().chain(["latest"]) {
        let r = resolve_os_version(v).expect("known version");
        out.push((
            format!("openstack/{v}/meta_data.json"),
            md.meta_data(r).dumps().into_bytes(),
        ));
        if let Some(ud) = &md.user_data {
            out.push((format!("openstack/{v}/user_data"), ud.clone()));
        }
        if os_at_least(r, HAVANA) {
            out.push((
                format!("openstack/{v}/vendor_data.json"),
                md.vendor_data().dumps().into_bytes(),
            ));
        }
        if os_at_least(r, LIBERTY) {
            out.push((
                format!("openstack/{v}/network_data.json"),
                md.network_data().dumps().into_bytes(),
            ));
        }
        if os_at_least(r, NEWTON_TWO) {
            out.push((
                format!("openstack/{v}/vendor_data2.json"),
                md.vendor_data2().dumps().into_bytes(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks_as_netaddr_prints_them() {
        assert_eq!(netmask(true, 24).to_string(), "255.255.255.0");
        assert_eq!(netmask(true, 0).to_string(), "0.0.0.0");
        assert_eq!(netmask(true, 32).to_string(), "255.255.255.255");
        assert_eq!(netmask(false, 64).to_string(), "ffff:ffff:ffff:ffff::");
        assert_eq!(netmask(false, 0).to_string(), "::");
    }

    #[test]
    fn versions_resolve_and_order() {
        assert_eq!(resolve_os_version("latest"), Some("2025-04-04"));
        assert_eq!(resolve_ec2_version("latest"), Some("2009-04-04"));
        assert_eq!(resolve_os_version("2013-04-04"), Some(GRIZZLY));
        assert_eq!(resolve_os_version("2013-04-05"), None);
        assert!(os_at_least("2015-10-15", LIBERTY) && !os_at_least(HAVANA, LIBERTY));
    }
}
