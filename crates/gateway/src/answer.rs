//! What a host call returned, back in Level's own JSON: each `level:api`
//! record turned into the `level_api::model` object Level (and the
//! simulator) answers with, after the gate filtered it field by field (a tag
//! or custom field outside the grant's scopes is already gone).

use level_api::model;
use levelhost_runtime::bindings::{
    alerts, custom_field_values, custom_fields, devices, groups, tags,
};

/// A device as Level shows it.
pub fn device(d: devices::Device) -> model::Device {
    model::Device {
        id: d.id,
        hostname: d.hostname,
        nickname: d.nickname,
        role: d.role.map(|r| match r {
            devices::Role::Workstation => "workstation".to_owned(),
            devices::Role::Server => "server".to_owned(),
            devices::Role::DomainController => "domain_controller".to_owned(),
            devices::Role::Other(other) => other,
        }),
        group_id: d.group_id,
        group_name: d.group_name,
        tags: d.tags,
        flag: d.flag,
        maintenance_mode: d.maintenance_mode,
        online: d.online,
        notes: d.notes,
        manufacturer: d.manufacturer,
        model: d.model,
        architecture: d.architecture,
        serial_number: d.serial_number,
        total_memory: d.total_memory,
        memory_slots: d.memory_slots,
        cpu_cores: d.cpu_cores,
        last_logged_in_user: d.last_logged_in_user,
        last_reboot_time: d.last_reboot_time,
        last_seen_at: d.last_seen_at,
        city: d.city,
        country: d.country,
        security_score: d.security_score,
        platform: d.platform.map(|p| match p {
            devices::Platform::Windows => "Windows".to_owned(),
            devices::Platform::Mac => "Mac".to_owned(),
            devices::Platform::Linux => "Linux".to_owned(),
            devices::Platform::Other(other) => other,
        }),
        public_ip_address: d.public_ip_address,
        private_ip_addresses: d.private_ip_addresses,
        operating_system: d.operating_system.map(|o| model::OperatingSystem {
            full_operating_system: o.full_operating_system,
            major_version: o.major_version,
            minor_version: o.minor_version,
            architecture: o.architecture,
            install_date: o.install_date,
            end_of_life: o.end_of_life,
        }),
        cpus: d.cpus.map(|v| {
            v.into_iter()
                .map(|c| model::Cpu {
                    model: c.model,
                    clock_speed: c.clock_speed,
                    cores: c.cores,
                })
                .collect()
        }),
        memory: d.memory.map(|v| {
            v.into_iter()
                .map(|m| model::MemoryModule {
                    location: m.location,
                    manufacturer: m.manufacturer,
                    memory_type: m.memory_type,
                    clock_speed: m.clock_speed,
                    size: m.size,
                    serial_number: m.serial_number,
                    part_number: m.part_number,
                    form_factor: m.form_factor,
                })
                .collect()
        }),
        disks: d.disks.map(|v| {
            v.into_iter()
                .map(|k| model::Disk {
                    model: k.model,
                    disk_type: k.disk_type,
                    serial_number: k.serial_number,
                    size: k.size,
                })
                .collect()
        }),
        disk_partitions: d.disk_partitions.map(|v| {
            v.into_iter()
                .map(|p| model::DiskPartition {
                    label: p.label,
                    mount_point: p.mount_point,
                    encrypted: p.encrypted,
                    primary: p.primary,
                    size: p.size,
                    free_space: p.free_space,
                    file_system: p.file_system,
                })
                .collect()
        }),
        network_interfaces: d.network_interfaces.map(|v| {
            v.into_iter()
                .map(|n| model::NetworkInterface {
                    description: n.description,
                    interface: n.interface,
                    label: n.label,
                    mac_address: n.mac_address,
                    ip_addresses: n.ip_addresses,
                    gateway: n.gateway,
                    domain: n.domain,
                    dhcp_server: n.dhcp_server,
                    dns_servers: n.dns_servers,
                })
                .collect()
        }),
        motherboard: d.motherboard.map(|m| model::Motherboard {
            manufacturer: m.manufacturer,
            model: m.model,
            bios_version: m.bios_version,
        }),
        security: d.security.map(|s| model::Security {
            score: s.score,
            risk: s.risk,
            patch_compliance: s.patch_compliance,
            patch_security_risk: s.patch_security_risk,
            os_end_of_life: s.os_end_of_life,
            primary_partition_encrypted: s.primary_partition_encrypted,
            firewall_provider: s.firewall_provider,
            firewall_enabled: s.firewall_enabled,
            firewall_status: s.firewall_status,
            antivirus_provider: s.antivirus_provider,
            antivirus_status: s.antivirus_status,
            user_account_control_enabled: s.user_account_control_enabled,
            auto_update: s.auto_update,
            admin_accounts_count: s.admin_accounts_count,
        }),
    }
}

/// A group as Level shows it; `shown` says whether this answer carries the
/// group's own custom field values (a group's show does, a list does not).
pub fn group(g: groups::Group, shown: bool) -> model::Group {
    model::Group {
        id: g.id,
        parent_id: g.parent_id,
        child_ids: g.child_ids,
        name: g.name,
        device_count: g.device_count,
        descendent_device_count: g.descendent_device_count,
        custom_fields: shown.then(|| {
            g.custom_fields
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect()
        }),
    }
}

/// A tag as Level shows it.
pub fn tag(t: tags::Tag) -> model::Tag {
    model::Tag {
        id: t.id,
        name: t.name,
        device_count: t.device_count,
    }
}

/// An alert as Level shows it.
pub fn alert(a: alerts::Alert) -> model::Alert {
    model::Alert {
        id: a.id,
        device_id: a.device_id,
        device_hostname: a.device_hostname,
        name: a.name,
        description: a.description,
        payload: a.payload,
        severity: match a.severity {
            alerts::Severity::Information => "information".to_owned(),
            alerts::Severity::Warning => "warning".to_owned(),
            alerts::Severity::Critical => "critical".to_owned(),
            alerts::Severity::Emergency => "emergency".to_owned(),
            alerts::Severity::Other(other) => other,
        },
        is_resolved: a.is_resolved,
        started_at: a.started_at,
        resolved_at: a.resolved_at,
    }
}

/// A custom field as Level shows it.
pub fn custom_field(f: custom_fields::CustomField) -> model::CustomField {
    model::CustomField {
        id: f.id,
        name: f.name,
        reference: f.reference,
        admin_only: f.admin_only,
    }
}

/// A custom field value as Level shows it.
pub fn value(v: custom_field_values::CustomFieldValue) -> model::CustomFieldValue {
    model::CustomFieldValue {
        custom_field_id: v.custom_field_id,
        custom_field_name: v.custom_field_name,
        assigned_to_id: v.assigned_to_id,
        value: v.value,
    }
}

/// A list page in Level's envelope.
pub fn page<T>(data: Vec<T>, has_more: bool) -> model::Page<T> {
    model::Page { data, has_more }
}
