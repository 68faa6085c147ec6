//! Generated code for Switchyard's protobuf packages, and small helpers
//! for the well-known types the canonical model uses.

pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("switchyard.gateway.v1");
    }
}

pub mod bus {
    pub mod v1 {
        tonic::include_proto!("switchyard.bus.v1");
    }
}

/// Encoded `FileDescriptorSet` of every package, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("switchyard_descriptor");

pub mod json;
