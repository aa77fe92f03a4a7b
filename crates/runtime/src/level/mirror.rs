//! The `level:api` records that are Level's objects field for field, made
//! from each other both ways: a host call hands a plugin Level's object as
//! its record, and the gateway hands a client the record back as Level's
//! object. One list of fields per record serves both; a field added to
//! either side and not here fails to compile.

use level_api::model;

use crate::bindings::{custom_field_values, custom_fields, devices, tags};

/// Both `From`s of a record and its Level object. A field is moved as it is,
/// or with `: one` (an optional record), `: each` (an optional list of
/// records), or `: [to_record, to_level]` (an optional value with a function
/// each way).
macro_rules! mirror {
    ($($model:ty => $wit:ty { $($field:ident $(: $how:tt)?),* $(,)? })*) => {$(
        impl From<$model> for $wit {
            fn from(m: $model) -> Self {
                Self { $($field: field!(to_record m.$field $(, $how)?)),* }
            }
        }

        impl From<$wit> for $model {
            fn from(w: $wit) -> Self {
                Self { $($field: field!(to_level w.$field $(, $how)?)),* }
            }
        }
    )*};
}

/// One field of [`mirror!`], converted in direction `to_record` or `to_level`.
macro_rules! field {
    ($way:ident $value:expr, one) => {
        $value.map(Into::into)
    };
    ($way:ident $value:expr, each) => {
        $value.map(|list| list.into_iter().map(Into::into).collect())
    };
    (to_record $value:expr, [$to_record:ident, $to_level:ident]) => {
        $value.map($to_record)
    };
    (to_level $value:expr, [$to_record:ident, $to_level:ident]) => {
        $value.map($to_level)
    };
    ($way:ident $value:expr) => {
        $value
    };
}

fn role(name: String) -> devices::Role {
    match name.as_str() {
        "workstation" => devices::Role::Workstation,
        "server" => devices::Role::Server,
        "domain_controller" => devices::Role::DomainController,
        _ => devices::Role::Other(name),
    }
}

fn role_name(role: devices::Role) -> String {
    match role {
        devices::Role::Workstation => "workstation".to_owned(),
        devices::Role::Server => "server".to_owned(),
        devices::Role::DomainController => "domain_controller".to_owned(),
        devices::Role::Other(name) => name,
    }
}

fn platform(name: String) -> devices::Platform {
    match name.as_str() {
        "Windows" => devices::Platform::Windows,
        "Mac" => devices::Platform::Mac,
        "Linux" => devices::Platform::Linux,
        _ => devices::Platform::Other(name),
    }
}

fn platform_name(platform: devices::Platform) -> String {
    match platform {
        devices::Platform::Windows => "Windows".to_owned(),
        devices::Platform::Mac => "Mac".to_owned(),
        devices::Platform::Linux => "Linux".to_owned(),
        devices::Platform::Other(name) => name,
    }
}

mirror! {
    // All of a device; a host call then leaves out the tags outside the grant's tag scope.
    model::Device => devices::Device {
        id, hostname, nickname, role: [role, role_name], group_id, group_name, tags, flag,
        maintenance_mode, online, notes, manufacturer, model, architecture, serial_number,
        total_memory, memory_slots, cpu_cores, last_logged_in_user, last_reboot_time, last_seen_at,
        city, country, security_score, platform: [platform, platform_name], public_ip_address,
        private_ip_addresses, operating_system: one, cpus: each, memory: each, disks: each,
        disk_partitions: each, network_interfaces: each, motherboard: one, security: one,
    }
    model::OperatingSystem => devices::OperatingSystem {
        full_operating_system, major_version, minor_version, architecture, install_date, end_of_life,
    }
    model::Cpu => devices::Cpu { model, clock_speed, cores }
    model::MemoryModule => devices::MemoryModule {
        location, manufacturer, memory_type, clock_speed, size, serial_number, part_number, form_factor,
    }
    model::Disk => devices::Disk { model, disk_type, serial_number, size }
    model::DiskPartition => devices::DiskPartition {
        label, mount_point, encrypted, primary, size, free_space, file_system,
    }
    model::NetworkInterface => devices::NetworkInterface {
        description, interface, label, mac_address, ip_addresses, gateway, domain, dhcp_server, dns_servers,
    }
    model::Motherboard => devices::Motherboard { manufacturer, model, bios_version }
    model::Security => devices::Security {
        score, risk, patch_compliance, patch_security_risk, os_end_of_life, primary_partition_encrypted,
        firewall_provider, firewall_enabled, firewall_status, antivirus_provider, antivirus_status,
        user_account_control_enabled, auto_update, admin_accounts_count,
    }
    model::Tag => tags::Tag { id, name, device_count }
    model::CustomField => custom_fields::CustomField { id, name, reference, admin_only }
    model::CustomFieldValue => custom_field_values::CustomFieldValue {
        custom_field_id, custom_field_name, assigned_to_id, value,
    }
}
