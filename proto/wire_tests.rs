//! Wire checks: the generated types put high-risk fields at upstream's field numbers.
//!
//! A wrong number decodes silently as an unknown field, so a pod's Linux config or a
//! container's seccomp profile would simply vanish. These tests encode a message and read
//! the raw tag back (`field_number << 3 | wire_type`). The full comparison against
//! upstream's descriptor set is `e2e/check-proto.py`, run in CI.

use prost::Message;

use crate::v1;

/// Returns the (field number, wire type) of every top-level field in an encoded message.
fn top_level_tags(mut buf: &[u8]) -> Vec<(u32, u8)> {
    let mut tags = Vec::new();
    while !buf.is_empty() {
        let key = prost::encoding::decode_varint(&mut buf).expect("key");
        let (field, wire) = ((key >> 3) as u32, (key & 7) as u8);
        match wire {
            0 => {
                prost::encoding::decode_varint(&mut buf).expect("varint");
            }
            1 => buf = &buf[8..],
            2 => {
                let len = prost::encoding::decode_varint(&mut buf).expect("len") as usize;
                buf = &buf[len..];
            }
            5 => buf = &buf[4..],
            other => panic!("unexpected wire type {other}"),
        }
        tags.push((field, wire));
    }
    tags
}

const LEN: u8 = 2;
const VARINT: u8 = 0;

#[test]
fn pod_sandbox_config_linux_is_field_8() {
    let msg = v1::PodSandboxConfig { linux: Some(v1::LinuxPodSandboxConfig::default()), ..Default::default() };
    assert_eq!(top_level_tags(&msg.encode_to_vec()), vec![(8, LEN)]);
}

#[test]
fn container_config_log_path_is_field_11() {
    let msg = v1::ContainerConfig { log_path: "c/0.log".into(), ..Default::default() };
    assert_eq!(top_level_tags(&msg.encode_to_vec()), vec![(11, LEN)]);
}

#[test]
fn container_security_context_seccomp_is_field_15_and_run_as_group_12() {
    let msg = v1::LinuxContainerSecurityContext {
        seccomp: Some(v1::SecurityProfile { profile_type: 2, localhost_ref: "/p.json".into() }),
        run_as_group: Some(v1::Int64Value { value: 5 }),
        ..Default::default()
    };
    let mut tags = top_level_tags(&msg.encode_to_vec());
    tags.sort();
    assert_eq!(tags, vec![(12, LEN), (15, LEN)]);
}

#[test]
fn sandbox_security_context_out_of_order_numbers() {
    // run_as_group (8), seccomp (9) and supplemental_groups_policy (11) were added after
    // readonly_rootfs (4) and privileged (6); their numbers do not follow declaration order.
    let msg = v1::LinuxSandboxSecurityContext {
        run_as_group: Some(v1::Int64Value { value: 1 }),
        seccomp: Some(v1::SecurityProfile::default()),
        supplemental_groups_policy: v1::SupplementalGroupsPolicy::Strict as i32,
        privileged: true,
        ..Default::default()
    };
    let mut tags = top_level_tags(&msg.encode_to_vec());
    tags.sort();
    assert_eq!(tags, vec![(6, VARINT), (8, LEN), (9, LEN), (11, VARINT)]);
}

#[test]
fn image_spec_late_fields() {
    let msg = v1::ImageSpec {
        user_specified_image: "busybox".into(),
        runtime_handler: "h".into(),
        image_ref: "sha256:x".into(),
        ..Default::default()
    };
    let mut tags = top_level_tags(&msg.encode_to_vec());
    tags.sort();
    assert_eq!(tags, vec![(18, LEN), (19, LEN), (20, LEN)]);
}

#[test]
fn container_config_stop_signal_and_cdi_devices() {
    let msg = v1::ContainerConfig {
        cdi_devices: vec![v1::CdiDevice { name: "vendor.com/gpu=0".into() }],
        stop_signal: v1::Signal::Sigterm as i32,
        ..Default::default()
    };
    let mut tags = top_level_tags(&msg.encode_to_vec());
    tags.sort();
    assert_eq!(tags, vec![(17, LEN), (18, VARINT)]);
    assert_eq!(v1::Signal::Sigterm as i32, 23);
}

#[test]
fn enums_keep_upstream_values() {
    assert_eq!(v1::CgroupDriver::Cgroupfs as i32, 1);
    assert_eq!(v1::NamespaceMode::Target as i32, 3);
    assert_eq!(v1::ContainerState::ContainerUnknown as i32, 3);
    assert_eq!(v1::MountPropagation::PropagationBidirectional as i32, 2);
    assert_eq!(v1::Protocol::Sctp as i32, 2);
}

#[test]
fn status_response_features_and_mount_options() {
    let msg = v1::StatusResponse {
        features: Some(v1::RuntimeFeatures { mount_options: true, ..Default::default() }),
        ..Default::default()
    };
    assert_eq!(top_level_tags(&msg.encode_to_vec()), vec![(4, LEN)]);
    let features = v1::RuntimeFeatures { mount_options: true, ..Default::default() };
    assert_eq!(top_level_tags(&features.encode_to_vec()), vec![(3, VARINT)]);
}

#[test]
fn decoding_keeps_a_kubelet_encoded_container_config() {
    // Bytes as a Go client would write them: field 11 (log_path) then field 14 (tty = true).
    let bytes = [0x5a, 0x03, b'a', b'/', b'b', 0x70, 0x01];
    let decoded = v1::ContainerConfig::decode(&bytes[..]).unwrap();
    assert_eq!(decoded.log_path, "a/b");
    assert!(decoded.tty);
}
