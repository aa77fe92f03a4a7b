//! The simulator's built-in organization: deterministic, so a demo or a test
//! sees the same groups, devices, tags and alerts every time. Times are
//! relative to the start, so "offline for six weeks" stays true.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta as Duration, Utc};

use super::tenant::Tenant;
use level_api::model::{
    CustomFieldPatch, Device, Disk, DiskPartition, MemoryModule, Motherboard, NetworkInterface,
    NewCustomField, OperatingSystem, Security, ValueChange,
};

/// Devices in the default organization.
pub const DEFAULT_DEVICE_COUNT: usize = 60;

/// The token of the seeded automation webhook ("Restart agent").
pub const SEED_WEBHOOK_TOKEN: &str = "whk_restart_agent_7f3a";

/// A small deterministic generator (64-bit LCG), so the seed needs no RNG crate state.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Builds the seeded organization with `device_count` devices, relative to `now`.
pub fn seed(device_count: usize, now: DateTime<Utc>) -> Tenant {
    let mut t = Tenant::default();
    let acme = t.insert_group("Acme Corp", None);
    let acme_hq = t.insert_group("HQ", Some(&acme));
    let acme_finance = t.insert_group("Finance", Some(&acme_hq));
    let acme_branch = t.insert_group("Branch Office", Some(&acme));
    let globex = t.insert_group("Globex", None);
    let globex_servers = t.insert_group("Servers", Some(&globex));
    let initech = t.insert_group("Initech", None);
    let groups = [
        (&acme_hq, "acme-hq"),
        (&acme_finance, "acme-fin"),
        (&acme_branch, "acme-br"),
        (&globex, "globex"),
        (&globex_servers, "globex-dc"),
        (&initech, "initech"),
    ];

    let vip = tag(&mut t, "vip");
    let laptop = tag(&mut t, "laptop");
    let critical = tag(&mut t, "business-critical");

    let mut rng = Lcg(0x0001_e7e1_5eed);
    let mut device_ids = Vec::new();
    for i in 0..device_count {
        let (group, prefix) = groups[i % groups.len()];
        let server = group == &globex_servers || i % 11 == 0;
        let platform = if server {
            ["Windows", "Linux"][i % 2]
        } else {
            ["Windows", "Windows", "Mac", "Linux"][i % 4]
        };
        // Every seventh device has been offline for weeks, a few more for hours.
        let (online, seen) = if i % 7 == 3 {
            (false, now - Duration::days(20 + rng.below(60) as i64))
        } else if i % 9 == 5 {
            (false, now - Duration::hours(2 + rng.below(30) as i64))
        } else {
            (true, now - Duration::seconds(rng.below(300) as i64))
        };
        let mut tags = BTreeSet::new();
        if i % 10 == 0 {
            tags.insert(vip.clone());
        }
        if !server && platform != "Linux" && i % 3 == 0 {
            tags.insert(laptop.clone());
        }
        if server && i % 2 == 0 {
            tags.insert(critical.clone());
        }
        let hostname = format!("{prefix}-{}{:03}", if server { "srv" } else { "ws" }, i + 1);
        let device = device(
            &hostname, group, platform, server, online, seen, now, &mut rng,
        );
        device_ids.push(t.insert_device(device, tags));
    }
    t.insert_webhook(SEED_WEBHOOK_TOKEN, "Restart agent");

    // Custom fields: an organization default with a group override, and a per-device value.
    let region = t
        .create_custom_field(NewCustomField {
            name: "Region".to_owned(),
            admin_only: false,
        })
        .ok();
    let owner = t
        .create_custom_field(NewCustomField {
            name: "Asset Owner".to_owned(),
            admin_only: true,
        })
        .ok();
    if let Some(region) = &region {
        let _ = t.set_value(value(&region.id, None, "EU"));
        let _ = t.set_value(value(&region.id, Some(&globex), "US"));
    }
    if let Some(owner) = &owner {
        let _ = t.update_custom_field(&owner.id, CustomFieldPatch::default());
        for (n, id) in device_ids.iter().enumerate().step_by(5) {
            let _ = t.set_value(value(&owner.id, Some(id), &format!("user{n}@example.com")));
        }
    }

    // Alerts: some active, some resolved.
    let names = [
        ("Disk almost full", "warning"),
        ("Agent offline", "critical"),
        ("High CPU", "information"),
        ("Backup failed", "emergency"),
    ];
    for (n, id) in device_ids.iter().enumerate().step_by(8) {
        let (name, severity) = names[n % names.len()];
        let _ = t.raise_alert(id, name, severity);
    }
    for (n, id) in device_ids.iter().enumerate().skip(2).step_by(13) {
        let started = level_api::clock::timestamp(now - Duration::days(3 + n as i64 % 5));
        let resolved = level_api::clock::timestamp(now - Duration::days(1));
        let _ = t.insert_resolved_alert(id, "Windows update pending", "warning", started, resolved);
    }
    t
}

fn tag(t: &mut Tenant, name: &str) -> String {
    t.create_tag(name).map(|tag| tag.id).unwrap_or_default()
}

fn value(field: &str, target: Option<&str>, value: &str) -> ValueChange {
    ValueChange {
        custom_field_id: field.to_owned(),
        assigned_to_id: target.map(str::to_owned),
        value: Some(value.to_owned()),
        force: false,
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "a seed helper with one call site"
)]
fn device(
    hostname: &str,
    group: &str,
    platform: &str,
    server: bool,
    online: bool,
    seen: DateTime<Utc>,
    now: DateTime<Utc>,
    rng: &mut Lcg,
) -> Device {
    let (os, manufacturer, model) = match platform {
        "Windows" if server => (
            "Windows Server 2022 Standard",
            "Dell Inc.",
            "PowerEdge R650",
        ),
        "Windows" => ("Windows 11 Pro", "Lenovo", "ThinkPad T14 Gen 4"),
        "Mac" => ("macOS 15 Sequoia", "Apple", "MacBook Pro (M3, 2024)"),
        _ if server => ("Ubuntu 24.04 LTS", "Supermicro", "SYS-1029P"),
        _ => ("Debian 12", "Framework", "Laptop 13"),
    };
    let memory_gib = [8u64, 16, 32, 64][rng.below(4) as usize] * if server { 4 } else { 1 };
    let cores = [4u32, 8, 12, 16][rng.below(4) as usize];
    let serial = (platform != "Linux" || !server).then(|| format!("SN{:08X}", rng.next()));
    Device {
        id: String::new(),
        hostname: hostname.to_owned(),
        nickname: None,
        role: Some(if server { "server" } else { "workstation" }.to_owned()),
        group_id: Some(group.to_owned()),
        group_name: None,
        tags: Vec::new(),
        flag: None,
        maintenance_mode: false,
        online,
        notes: None,
        manufacturer: Some(manufacturer.to_owned()),
        model: Some(model.to_owned()),
        architecture: Some(if platform == "Mac" { "arm64" } else { "x64" }.to_owned()),
        serial_number: serial,
        total_memory: Some(memory_gib << 30),
        memory_slots: Some(if server { 8 } else { 2 }),
        cpu_cores: Some(cores),
        last_logged_in_user: (!server).then(|| format!("ACME\\{}", hostname.replace('-', "."))),
        last_reboot_time: Some(level_api::clock::timestamp(
            seen - Duration::days(rng.below(20) as i64),
        )),
        last_seen_at: Some(level_api::clock::timestamp(seen)),
        city: Some(["Berlin", "Austin", "Lisbon", "Toronto"][rng.below(4) as usize].to_owned()),
        country: Some(["DE", "US", "PT", "CA"][rng.below(4) as usize].to_owned()),
        security_score: Some(40 + rng.below(60) as i32),
        platform: Some(platform.to_owned()),
        public_ip_address: Some(format!("203.0.113.{}", 1 + rng.below(250))),
        private_ip_addresses: vec![format!("10.0.{}.{}", rng.below(8), 2 + rng.below(250))],
        operating_system: Some(OperatingSystem {
            full_operating_system: Some(os.to_owned()),
            major_version: os
                .split_whitespace()
                .find_map(|w| w.parse::<u32>().ok())
                .map(|v| v.to_string()),
            minor_version: None,
            architecture: Some("64-bit".to_owned()),
            install_date: Some(level_api::clock::timestamp(
                now - Duration::days(200 + rng.below(600) as i64),
            )),
            end_of_life: false,
        }),
        cpus: Some(vec![level_api::model::Cpu {
            model: Some(
                if platform == "Mac" {
                    "Apple M3"
                } else {
                    "Intel Core i7-1365U"
                }
                .to_owned(),
            ),
            clock_speed: Some(2400 + 100 * rng.below(10) as u32),
            cores: Some(cores),
        }]),
        // Memory modules and the motherboard follow from what was drawn above,
        // so the seed draws the same numbers as before they were added.
        memory: Some(memory_modules(
            memory_gib,
            if server { 8 } else { 2 },
            server,
        )),
        disks: Some(vec![Disk {
            model: Some("NVMe SSD".to_owned()),
            disk_type: Some("SSD".to_owned()),
            serial_number: None,
            size: Some(512 << 30),
        }]),
        disk_partitions: Some(vec![DiskPartition {
            label: Some("System".to_owned()),
            mount_point: Some(if platform == "Windows" { "C:" } else { "/" }.to_owned()),
            encrypted: Some(rng.below(5) != 0),
            primary: Some(true),
            size: Some(500 << 30),
            free_space: Some((20 + rng.below(400)) << 30),
            file_system: Some(
                if platform == "Windows" {
                    "NTFS"
                } else {
                    "ext4"
                }
                .to_owned(),
            ),
        }]),
        network_interfaces: Some(vec![NetworkInterface {
            description: Some("Ethernet".to_owned()),
            interface: Some("eth0".to_owned()),
            label: None,
            mac_address: Some(format!(
                "00:1a:2b:{:02x}:{:02x}:{:02x}",
                rng.below(256),
                rng.below(256),
                rng.below(256)
            )),
            ip_addresses: Vec::new(),
            gateway: Some("10.0.0.1".to_owned()),
            domain: Some("corp.example".to_owned()),
            dhcp_server: Some("10.0.0.1".to_owned()),
            dns_servers: vec!["10.0.0.53".to_owned()],
        }]),
        motherboard: Some(Motherboard {
            manufacturer: Some(manufacturer.to_owned()),
            model: Some(format!("{model} board")),
            bios_version: Some(
                if platform == "Mac" {
                    "11881.1.1"
                } else {
                    "1.14.2"
                }
                .to_owned(),
            ),
        }),
        security: Some(Security {
            score: Some(40 + rng.below(60) as i32),
            firewall_enabled: Some(true),
            antivirus_provider: Some("Defender".to_owned()),
            ..Security::default()
        }),
    }
}

/// `slots` equal modules holding `gib` GiB together, as an agent reports them.
fn memory_modules(gib: u64, slots: u64, server: bool) -> Vec<MemoryModule> {
    (0..slots)
        .map(|slot| MemoryModule {
            location: Some(format!("DIMM{slot}")),
            manufacturer: Some(if server { "Samsung" } else { "SK Hynix" }.to_owned()),
            memory_type: Some(if server { "DDR4" } else { "DDR5" }.to_owned()),
            clock_speed: Some(if server { 3200 } else { 5600 }),
            size: Some((gib << 30) / slots),
            serial_number: None,
            part_number: None,
            form_factor: Some(if server { "DIMM" } else { "SODIMM" }.to_owned()),
        })
        .collect()
}
